import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { summarizeQuantized } from '../../src/checkpoint/quantized-summary.js';
import { summarize } from '../../src/checkpoint/summary.js';
import type { Checkpoint, TensorInfo } from '../../src/checkpoint/types.js';
import { exact, formatCount, jsonInteger, table } from '../../src/cli/format.js';
import type { Dtype } from '../../src/formats/dtypes.js';
import { writeSafetensors } from '../../src/formats/safetensors/write-file.js';
import { tensorByteLength } from '../../src/formats/safetensors/writer.js';
import { runCli } from '../support/cli.js';

const TINY = 'examples/tiny/model.safetensors';

/** The tiny example parsed with JSON.parse alone: an oracle independent of sluice's parser. */
function oracle(path: string) {
  const file = readFileSync(path);
  const n = Number(file.readBigUInt64LE(0));
  const header = JSON.parse(file.subarray(8, 8 + n).toString('utf8'));
  delete header.__metadata__;
  return Object.entries<{ dtype: string; shape: number[]; data_offsets: [number, number] }>(header).map(
    ([name, t]) => ({ name, ...t, bytes: file.subarray(8 + n + t.data_offsets[0], 8 + n + t.data_offsets[1]) }),
  );
}

const tmp = mkdtempSync(join(tmpdir(), 'sluice-inspect-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('sluice inspect', () => {
  it('--json reports every tensor, the totals and the metadata', async () => {
    const { code, stdout, stderr } = await runCli(['inspect', TINY, '--json']);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const doc = JSON.parse(stdout);
    // Written in batches, laid out as JSON.stringify(doc, null, 2) lays it out.
    expect(stdout).toBe(`${JSON.stringify(doc, null, 2)}\n`);
    const expected = oracle(TINY);
    expect(doc.format).toBe('safetensors');
    expect(doc.files).toEqual([TINY]);
    expect(doc.metadata).toEqual({ format: 'pt' });
    expect(doc.tensor_count).toBe(expected.length);
    const params = expected.reduce((a, t) => a + t.shape.reduce((x, y) => x * y, 1), 0);
    expect(doc.parameters).toBe(params);
    expect(doc.bytes).toBe(expected.reduce((a, t) => a + t.bytes.length, 0));
    expect(doc.bytes_by_dtype).toEqual({ BF16: doc.bytes });
    const byName = new Map(doc.tensors.map((t: { name: string }) => [t.name, t]));
    for (const t of expected) {
      expect(byName.get(t.name)).toEqual({ name: t.name, dtype: t.dtype, shape: t.shape, bytes: t.bytes.length, file: TINY });
    }
  });

  it('--checksum gives the sha256 of each tensor’s bytes', async () => {
    const { code, stdout } = await runCli(['inspect', TINY, '--json', '--checksum']);
    expect(code).toBe(0);
    const doc = JSON.parse(stdout);
    for (const t of oracle(TINY)) {
      const got = doc.tensors.find((x: { name: string }) => x.name === t.name);
      expect(got.sha256).toBe(createHash('sha256').update(t.bytes).digest('hex'));
    }
  });

  it('prints an aligned table with per-layer groups and totals', async () => {
    const { code, stdout } = await runCli(['inspect', TINY]);
    expect(code).toBe(0);
    const lines = stdout.split('\n');
    expect(lines[0]).toMatch(/^name\s+dtype\s+shape\s+size$/);
    expect(stdout).toContain('model.layers.*.mlp.gate_proj.weight (×2)');
    expect(stdout).toMatch(/model\.embed_tokens\.weight\s+BF16\s+\[256, 64\]\s+32\.8 kB/);
    expect(stdout).toMatch(new RegExp(`tensors\\s+${oracle(TINY).length}\\n`));
    expect(stdout).toMatch(/metadata\s+format=pt/);
    // Columns line up: every table row starts its dtype column at the same offset.
    const dtypeAt = lines[0].indexOf('dtype');
    for (const line of lines.slice(1, 12)) expect(line.slice(dtypeAt, dtypeAt + 4)).toBe('BF16');
  });

  it('--all lists every tensor by its own name', async () => {
    const { stdout } = await runCli(['inspect', TINY, '--all']);
    for (const t of oracle(TINY)) expect(stdout).toContain(`${t.name} `);
    expect(stdout).not.toContain('(×');
  });

  it('accepts a directory', async () => {
    const { code, stdout } = await runCli(['inspect', 'examples/tiny', '--json']);
    expect(code).toBe(0);
    expect(JSON.parse(stdout).tensor_count).toBe(oracle(TINY).length);
  });

  it('answers a missing file with one line and exit 1', async () => {
    const { code, stdout, stderr } = await runCli(['inspect', join(tmp, 'nope.safetensors')]);
    expect(code).toBe(1);
    expect(stdout).toBe('');
    expect(stderr).toMatch(/^sluice: .*nope\.safetensors: no such file or directory\n$/);
  });

  it('answers a malformed file with one line naming it, and a stack only with --debug', async () => {
    const bad = join(tmp, 'bad.safetensors');
    const header = Buffer.from('{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}');
    const prefix = Buffer.alloc(8);
    prefix.writeBigUInt64LE(BigInt(header.length));
    writeFileSync(bad, Buffer.concat([prefix, header, Buffer.alloc(4)]));
    const plain = await runCli(['inspect', bad]);
    expect(plain.code).toBe(1);
    expect(plain.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(plain.stderr).toContain(`sluice: ${bad}: tensor "w": shape [2] of F32 is 8 bytes but data_offsets span 4`);
    const debug = await runCli(['inspect', bad, '--debug']);
    expect(debug.stderr.split('\n').length).toBeGreaterThan(3);
    expect(debug.stderr).toContain('at ');
  });

  it('refuses bad usage with exit 2', async () => {
    expect((await runCli(['inspect'])).code).toBe(2);
    const unknown = await runCli(['inspect', TINY, '--bogus']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/^sluice: inspect: .*bogus/);
    expect((await runCli(['inspect', '--help'])).stdout).toContain('Usage: sluice inspect PATH');
  });
});

describe('totals past 2^53', () => {
  // Tensors of 2^52 + 1 bytes: three add up past 2^53, where doubles drop the odd 3 bytes.
  const huge = 2 ** 52 + 1;
  const tensors: TensorInfo[] = ['a', 'b', 'c'].map((name) => ({ name, dtype: 'U8', shape: [huge], byteLength: huge, file: 'x' }));
  const checkpoint = { format: 'safetensors', files: ['x'], metadata: {}, tensors: () => tensors } as unknown as Checkpoint;

  it('summarize adds them exactly, as bigint', () => {
    const s = summarize(checkpoint);
    expect(s.bytes).toBe(3n * BigInt(huge));
    expect(s.bytes).not.toBe(BigInt(huge + huge + huge)); // what double addition gives
    expect(s.parameters).toBe(3n * BigInt(huge));
    expect(s.bytesByDtype).toEqual({ U8: 3n * BigInt(huge) });
  });

  it('--json writes integers past 2^53 − 1 as decimal strings, smaller ones as numbers', () => {
    expect(jsonInteger(3n * BigInt(huge))).toBe('13510798882111491');
    expect(jsonInteger(BigInt(Number.MAX_SAFE_INTEGER))).toBe(Number.MAX_SAFE_INTEGER);
    expect(jsonInteger(BigInt(Number.MAX_SAFE_INTEGER) + 1n)).toBe('9007199254740992');
    expect(jsonInteger(42)).toBe(42);
  });

  it('human output prints every digit', () => {
    expect(exact(3n * BigInt(huge))).toBe('13,510,798,882,111,491');
    expect(formatCount(3n * BigInt(huge))).toBe('13511T');
    expect(formatCount(999n)).toBe('999');
  });

  it('a table of a million rows (inspect --all) does not overflow the stack', () => {
    const rows = Array.from({ length: 1_000_000 }, (_, i) => [`t${i}`, 'U8']);
    expect(table(['name', 'dtype'], rows).split('\n')).toHaveLength(1_000_002);
  });
});

describe('inspect of hostile-looking but valid files', () => {
  const write = (name: string, header: string, data = 0) => {
    const path = join(tmp, name);
    const json = Buffer.from(header);
    const prefix = Buffer.alloc(8);
    prefix.writeBigUInt64LE(BigInt(json.length));
    writeFileSync(path, Buffer.concat([prefix, json, Buffer.alloc(data)]));
    return path;
  };

  it('prints the bytes total exactly beside the rounded one', async () => {
    const { stdout } = await runCli(['inspect', TINY]);
    const bytes = oracle(TINY).reduce((a, t) => a + t.bytes.length, 0);
    expect(stdout).toMatch(new RegExp(`bytes\\s+\\S+ [kM]B = ${bytes.toLocaleString('en-US')} B \\(BF16 `));
  });

  it('clips a long tensor name in the table, keeps it whole in --json', async () => {
    const name = `model.${'x'.repeat(5000)}.weight`;
    const path = write('long-name.safetensors', `{"${name}":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[1],"data_offsets":[2,3]}}`, 3);
    const human = await runCli(['inspect', path]);
    expect(human.code, human.stderr).toBe(0);
    expect(Math.max(...human.stdout.split('\n').map((l) => l.length))).toBeLessThan(250);
    expect(human.stdout).toContain(`${name.slice(0, 159)}…`);
    const json = await runCli(['inspect', path, '--json']);
    expect(JSON.parse(json.stdout).tensors.map((t: { name: string }) => t.name)).toEqual([name, 'b']);
  });

  it('--json of no tensors, and of 12,000 (several 1 MB batches), is laid out as JSON.stringify lays it out', async () => {
    for (const [name, n] of [['none.safetensors', 0], ['many.safetensors', 12_000]] as const) {
      const entries = Array.from({ length: n }, (_, i) => `"layers.${i}.w":{"dtype":"U8","shape":[1],"data_offsets":[${i},${i + 1}]}`);
      const { code, stdout, stderr } = await runCli(['inspect', write(name, `{${entries.join(',')}}`, n), '--json']);
      expect(code, stderr).toBe(0);
      const doc = JSON.parse(stdout);
      expect(doc.tensors).toHaveLength(n);
      expect(stdout).toBe(`${JSON.stringify(doc, null, 2)}\n`);
    }
  });

  it('lists the FNUZ fp8 dtypes and exact dims of an empty tensor', async () => {
    const path = write('fnuz.safetensors', '{"f":{"dtype":"F8_E4M3FNUZ","shape":[2,2],"data_offsets":[0,4]},"e":{"dtype":"F8_E5M2FNUZ","shape":[0,18446744073709551615],"data_offsets":[4,4]}}', 4);
    const { code, stdout, stderr } = await runCli(['inspect', path, '--json']);
    expect(code, stderr).toBe(0);
    const doc = JSON.parse(stdout);
    expect(doc.tensors.map((t: { dtype: string; shape: unknown }) => [t.dtype, t.shape])).toEqual([
      ['F8_E4M3FNUZ', [2, 2]],
      ['F8_E5M2FNUZ', [0, '18446744073709551615']],
    ]);
    expect(doc.parameters_by_dtype).toEqual({ F8_E4M3FNUZ: 4, F8_E5M2FNUZ: 0 });
  });
});

// Pre-quantized checkpoints as the three tools lay them out, shrunk: 2 layers of one
// (N = 48, K = 64) projection each, 4-bit groups of 32, an embedding, a norm and a dense
// lm_head. Only the header matters to inspect, so the data is zeros. The expected figures
// come from N and K, not from the packed shapes the code reads.
describe('inspect of pre-quantized checkpoints (config.json quantization_config)', () => {
  const N = 48;
  const K = 64;
  const G = 32;
  const LAYERS = 2;
  type Spec = [name: string, dtype: Dtype, shape: number[]];
  const DENSE: Spec[] = [['model.embed_tokens.weight', 'F16', [100, K]], ['model.norm.weight', 'F16', [K]], ['lm_head.weight', 'F16', [100, K]]];
  const bytesOf = (specs: Spec[]) => specs.reduce((a, [name, dtype, shape]) => a + tensorByteLength(name, dtype, shape), 0);
  const elementsOf = (specs: Spec[]) => specs.reduce((a, [, , shape]) => a + shape.reduce((x, y) => x * y, 1), 0);
  interface Written {
    dir: string;
    quantizedBytes: number;
    /** Elements of the tensors outside the quantization (embedding, norm, lm_head, biases). */
    otherParameters: number;
    allBytes: number;
  }

  async function model(name: string, config: unknown, perLayer: (p: string) => Spec[]): Promise<Written> {
    const dir = join(tmp, name);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'config.json'), typeof config === 'string' ? config : JSON.stringify({ architectures: ['LlamaForCausalLM'], quantization_config: config }));
    const quantized = Array.from({ length: LAYERS }, (_, i) => perLayer(`model.layers.${i}.self_attn.q_proj`)).flat();
    const all = [...DENSE, ...quantized];
    await writeSafetensors(join(dir, 'model.safetensors'), all.map(([n, dtype, shape]) => ({ name: n, dtype, shape, data: new Uint8Array(tensorByteLength(n, dtype, shape)) })));
    const biases = quantized.filter(([n]) => n.endsWith('.bias'));
    return { dir, quantizedBytes: bytesOf(quantized) - bytesOf(biases), otherParameters: elementsOf([...DENSE, ...biases]), allBytes: bytesOf(all) };
  }

  // AutoGPTQ QuantLinear: qweight (K/8, N), qzeros (groups, N/8), scales (groups, N), g_idx (K); the bias is not part of it.
  const gptq = (p: string): Spec[] => [[`${p}.qweight`, 'I32', [K / 8, N]], [`${p}.qzeros`, 'I32', [K / G, N / 8]], [`${p}.scales`, 'F16', [K / G, N]], [`${p}.g_idx`, 'I32', [K]], [`${p}.bias`, 'F16', [N]]];
  // AutoAWQ WQLinear_GEMM: qweight (K, N/8), qzeros (groups, N/8), scales (groups, N).
  const awq = (p: string): Spec[] => [[`${p}.qweight`, 'I32', [K, N / 8]], [`${p}.qzeros`, 'I32', [K / G, N / 8]], [`${p}.scales`, 'F16', [K / G, N]]];
  // compressed-tensors pack-quantized, asymmetric groups: weight_packed (N, K/8), weight_scale (N, groups),
  // weight_zero_point packed along dim 0 (N/8, groups), weight_shape [N, K].
  const packed = (p: string): Spec[] => [[`${p}.weight_packed`, 'I32', [N, K / 8]], [`${p}.weight_scale`, 'BF16', [N, K / G]], [`${p}.weight_zero_point`, 'I32', [N / 8, K / G]], [`${p}.weight_shape`, 'I64', [2]]];

  const inspect = async (dir: string) => {
    const json = await runCli(['inspect', dir, '--json']);
    expect(json.code, json.stderr).toBe(0);
    const human = await runCli(['inspect', join(dir, 'model.safetensors')]);
    expect(human.code, human.stderr).toBe(0);
    return { q: JSON.parse(json.stdout).quantization, human: human.stdout };
  };
  const expectFigures = (q: Record<string, unknown>, m: Written) => {
    expect(q.quantized_matrices).toBe(LAYERS);
    expect(q.quantized_parameters).toBe(LAYERS * N * K);
    expect(q.quantized_bytes).toBe(m.quantizedBytes);
    expect(q.bytes_per_parameter).toBeCloseTo(m.quantizedBytes / (LAYERS * N * K), 4);
    expect(q.all_parameters).toBe(LAYERS * N * K + m.otherParameters);
    expect(q.all_bytes_per_parameter).toBeCloseTo(m.allBytes / (LAYERS * N * K + m.otherParameters), 4);
  };

  it('GPTQ with act-order: scheme, and bytes per parameter from qweight, qzeros, scales and g_idx', async () => {
    const m = await model('gptq', { quant_method: 'gptq', bits: 4, group_size: G, desc_act: true, sym: false }, gptq);
    const { q, human } = await inspect(m.dir);
    expect(q).toMatchObject({ supported: true, method: 'gptq', format: 'gptq', bits: 4, group_size: G, symmetric: false, act_order: true, dense_modules: [] });
    expectFigures(q, m);
    // 4 bits + per group of 32 an f16 scale and a 4-bit zero, + a 4-byte g_idx per input column.
    expect(q.bytes_per_parameter).toBeCloseTo(0.5 + 2 / G + 0.5 / G + 4 / N, 4);
    expect(human).toMatch(/\nquantization +gptq, 4-bit, group 32, asymmetric \(zero points\), act-order\n/);
    expect(human).toMatch(new RegExp(`\\nquantized +2 matrices: 6\\.14K parameters \\(6,144\\) in [\\d.]+ kB = ${(m.quantizedBytes / 6144).toFixed(3)} bytes per parameter; all tensors [\\d.]+\\n`));
  });

  it('AWQ GEMM: packed along N, and the modules it leaves dense', async () => {
    const m = await model('awq', { quant_method: 'awq', bits: 4, group_size: G, zero_point: true, version: 'gemm', modules_to_not_convert: ['lm_head'] }, awq);
    const { q, human } = await inspect(m.dir);
    expect(q).toMatchObject({ method: 'awq', format: 'awq-gemm', bits: 4, group_size: G, symmetric: false, act_order: false, dense_modules: ['lm_head'] });
    expectFigures(q, m);
    expect(human).toMatch(/\nquantization +awq \(awq-gemm\), 4-bit, group 32, asymmetric \(zero points\); left dense: lm_head\n/);
  });

  it('compressed-tensors pack-quantized: weight_packed with its scale, zero point and shape', async () => {
    const config = {
      quant_method: 'compressed-tensors',
      format: 'pack-quantized',
      config_groups: { group_0: { targets: ['Linear'], weights: { num_bits: 4, type: 'int', symmetric: false, group_size: G, strategy: 'group' } } },
      ignore: ['lm_head'],
    };
    const m = await model('ct', config, packed);
    const { q, human } = await inspect(m.dir);
    expect(q).toMatchObject({ method: 'compressed-tensors', format: 'pack-quantized', bits: 4, group_size: G, symmetric: false, dense_modules: ['lm_head'] });
    expectFigures(q, m);
    expect(human).toMatch(/\nquantization +compressed-tensors \(pack-quantized\), 4-bit, group 32, asymmetric/);
  });

  it('a config that names a scheme the tensors do not have: no matrices, and says which tensors it looked for', async () => {
    const m = await model('gptq-dense', { quant_method: 'gptq', bits: 4, group_size: G }, (p) => [[`${p}.weight`, 'F16', [N, K]]]);
    const { q, human } = await inspect(m.dir);
    expect(q).toMatchObject({ quantized_matrices: 0, quantized_parameters: 0, quantized_bytes: 0, bytes_per_parameter: null, all_bytes_per_parameter: 2 });
    expect(human).toMatch(/\nquantized +none: no 2-D \*\.qweight \(I32\) tensor; all tensors 2\.000\n/);
  });

  it('a dense checkpoint with a config.json shows nothing new', async () => {
    const m = await model('dense', '{"architectures": ["LlamaForCausalLM"]}', (p) => [[`${p}.weight`, 'F16', [N, K]]]);
    const json = await runCli(['inspect', m.dir, '--json']);
    expect(json.code, json.stderr).toBe(0);
    expect(JSON.parse(json.stdout)).not.toHaveProperty('quantization');
    expect((await runCli(['inspect', m.dir])).stdout).not.toMatch(/quantiz/);
  });

  it('a method sluice cannot load is reported, not refused: inspect lists any checkpoint', async () => {
    const m = await model('bnb', { quant_method: 'bitsandbytes', load_in_4bit: true }, (p) => [[`${p}.weight`, 'U8', [N * K / 2, 1]]]);
    const { q, human } = await inspect(m.dir);
    expect(q).toMatchObject({ supported: false, method: 'bitsandbytes' });
    expect(q.reason).toMatch(/"bitsandbytes", which is not supported; sluice reads GPTQ/);
    expect(human).toMatch(/\nquantization +bitsandbytes: the weights are quantized with "bitsandbytes", which is not supported/);
  });

  it('a malformed quantization_config, or config.json that is not JSON: one line naming the file, exit 1', async () => {
    const group = await model('bad-group', { quant_method: 'gptq', bits: 4, group_size: 7 }, gptq);
    const noMethod = await model('no-method', { bits: 4 }, gptq);
    const notJson = await model('not-json', '{"quantization_config": {', gptq);
    for (const [dir, message] of [
      [group.dir, 'config.json: quantization_config.group_size must be a multiple of 8 (or -1), not "7"'],
      [noMethod.dir, 'config.json: quantization_config.quant_method is missing'],
      [notJson.dir, 'config.json: not valid JSON ('],
    ]) {
      for (const argv of [['inspect', dir], ['inspect', dir, '--json']]) {
        const { code, stdout, stderr } = await runCli(argv);
        expect([code, stdout], argv.join(' ')).toEqual([1, '']);
        expect(stderr.trimEnd().split('\n'), argv.join(' ')).toHaveLength(1);
        expect(stderr).toContain(`sluice: ${join(dir, message)}`);
      }
    }
  });

  it('summarizeQuantized: 8-bit GPTQ packs 4 per word, int-quantized counts int8 weights with a scale only', () => {
    const info = (name: string, dtype: Dtype, shape: number[]): TensorInfo => ({ name, dtype, shape, byteLength: tensorByteLength(name, dtype, shape), file: 'x' });
    const g8 = summarizeQuantized([info('a.qweight', 'I32', [K / 4, N]), info('a.scales', 'F16', [1, N]), info('a.qzeros', 'I32', [1, N / 4])], 'gptq', 8);
    expect(g8).toEqual({ packed: '*.qweight (I32)', modules: 1, parameters: BigInt(K * N), bytes: BigInt(K * N + 2 * N + N), otherParameters: 0n, otherBytes: 0n });
    const w8 = summarizeQuantized([info('a.weight', 'I8', [N, K]), info('a.weight_scale', 'F16', [N, 1]), info('b.weight', 'I8', [N, K]), info('norm.weight', 'F16', [K])], 'int-quantized', 8);
    expect(w8).toEqual({ packed: '*.weight (I8)', modules: 1, parameters: BigInt(N * K), bytes: BigInt(N * K + 2 * N), otherParameters: BigInt(N * K + K), otherBytes: BigInt(N * K + 2 * K) });
  });
});

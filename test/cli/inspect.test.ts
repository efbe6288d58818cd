import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { summarize } from '../../src/checkpoint/summary.js';
import type { Checkpoint, TensorInfo } from '../../src/checkpoint/types.js';
import { exact, formatCount, jsonInteger, table } from '../../src/cli/format.js';
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

import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
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

// Real torch.save files (test/fixtures/pytorch/, written by make_pytorch_fixtures.py with
// Debian's python3-torch) against the oracle torch wrote beside each: `<name>.expected.json`
// holds every tensor's dtype, shape and the sha256 of its contiguous little-endian bytes as
// torch computed them, so sluice's zip reader, unpickler and strided gathers are checked
// against torch itself. No Python runs here.

import { createHash } from 'node:crypto';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { basename, join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openCheckpoint } from '../../../src/checkpoint/open-path.js';
import type { Checkpoint } from '../../../src/checkpoint/types.js';
import { dtypeBytes, type Dtype } from '../../../src/formats/dtypes.js';
import { SluiceError } from '../../../src/errors.js';
import { runCli } from '../../support/cli.js';
import { mulberry32, randInt } from '../../support/safetensors-bytes.js';

const FIXTURES = 'test/fixtures/pytorch';
/** What the hostile pickles would create if anything executed them. */
const PWNED = '/tmp/sluice-pwned-fixture';

interface ExpectedTensor {
  name: string;
  dtype: Dtype;
  shape: number[];
  bytes: number;
  sha256: string;
  /** Base name of the file holding it. */
  file: string;
  /** For F32/F16/BF16: sha256 after conversion to each (torch's rounding, sluice's NaN policy). */
  converted?: Record<'F32' | 'F16' | 'BF16', string>;
}

interface Expected {
  format: 'pytorch' | 'safetensors';
  files: string[];
  tensors?: ExpectedTensor[];
  metadata?: Record<string, unknown>;
  error?: { code: string; mentions: string[] };
}

function expected(name: string): Expected {
  return JSON.parse(readFileSync(join(FIXTURES, `${name}.expected.json`), 'utf8'));
}

/** Fixtures that open: [label, path under FIXTURES, expected.json name]. */
const READABLE: Array<[string, string, string]> = [
  ['dtypes.pth', 'dtypes.pth', 'dtypes'],
  ['views.pth', 'views.pth', 'views'],
  ['nested.pth', 'nested.pth', 'nested'],
  ['module.pth', 'module.pth', 'module'],
  ['little-byteorder.pth', 'little-byteorder.pth', 'little-byteorder'],
  ['bigendian.pth', 'bigendian.pth', 'bigendian'],
  ['tiny-llama/ (directory)', 'tiny-llama', 'tiny-llama'],
  ['tiny-llama/pytorch_model.bin', 'tiny-llama/pytorch_model.bin', 'tiny-llama'],
  ['tiny-llama-sharded/ (directory)', 'tiny-llama-sharded', 'tiny-llama-sharded'],
  ['tiny-llama-sharded/pytorch_model.bin.index.json', 'tiny-llama-sharded/pytorch_model.bin.index.json', 'tiny-llama-sharded'],
  ['both/ (safetensors preferred)', 'both', 'both'],
];

const REFUSED: Array<[string, string]> = [
  ['legacy.pth', 'legacy'],
  ['evil-os-system.pth', 'evil-os-system'],
  ['evil-eval.pth', 'evil-eval'],
  ['evil-eval-py2.pth', 'evil-eval-py2'],
];

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

let open: Checkpoint | undefined;
afterEach(async () => {
  await open?.close();
  open = undefined;
});

async function openFixture(path: string): Promise<Checkpoint> {
  open = await openCheckpoint(join(FIXTURES, path));
  return open;
}

/** Row-major slice of contiguous bytes: the reference for `Checkpoint.slice`. */
function sliceBytes(bytes: Uint8Array, shape: number[], elementBytes: number, ranges: Array<[number, number]>): Uint8Array {
  const full = shape.map((d, i) => ranges[i] ?? [0, d]);
  const outShape = full.map(([a, b]) => b - a);
  const n = outShape.reduce((a, b) => a * b, 1);
  const strides = shape.map((_, i) => shape.slice(i + 1).reduce((a, b) => a * b, 1));
  const out = new Uint8Array(n * elementBytes);
  const index = new Array<number>(shape.length).fill(0);
  for (let k = 0; k < n; k++) {
    const at = index.reduce((a, x, i) => a + (full[i][0] + x) * strides[i], 0) * elementBytes;
    out.set(bytes.subarray(at, at + elementBytes), k * elementBytes);
    for (let i = shape.length - 1; i >= 0; i--) {
      if (++index[i] < outShape[i]) break;
      index[i] = 0;
    }
  }
  return out;
}

/**
 * A metadata leaf as the checkpoint reports it: under its own dotted path, or inside an
 * ancestor's entry holding the whole subtree as JSON (`config` → {"lr": ..., "layers": ...}).
 * Values that are JSON come back parsed; plain strings as they are.
 */
function metadataValue(metadata: Record<string, string>, path: string): unknown {
  const parse = (s: string) => {
    try {
      return JSON.parse(s);
    } catch {
      return s;
    }
  };
  if (Object.hasOwn(metadata, path)) return parse(metadata[path]);
  const parts = path.split('.');
  for (let i = parts.length - 1; i > 0; i--) {
    const key = parts.slice(0, i).join('.');
    if (!Object.hasOwn(metadata, key)) continue;
    let v = parse(metadata[key]);
    for (const p of parts.slice(i)) v = v == null ? undefined : (v as Record<string, unknown>)[p];
    return v;
  }
  return undefined;
}

describe.each(READABLE)('%s', (_label, path, name) => {
  const want = expected(name);
  const tensors = want.tensors!;

  it('opens with the format, files, names, dtypes, shapes and sizes torch saved', async () => {
    const ck = await openFixture(path);
    expect(ck.format).toBe(want.format);
    expect(ck.files.map((f) => basename(f)).sort()).toEqual([...want.files].sort());
    const got = ck.tensors();
    expect(got.map((t) => t.name).sort()).toEqual(tensors.map((t) => t.name).sort());
    for (const t of tensors) {
      const info = ck.info(t.name);
      expect({ name: info.name, dtype: info.dtype, shape: info.shape, bytes: info.byteLength, file: basename(info.file) }, t.name).toEqual({
        name: t.name,
        dtype: t.dtype,
        shape: t.shape,
        bytes: t.bytes,
        file: t.file,
      });
      expect(ck.has(t.name)).toBe(true);
    }
    expect(ck.has('no.such.tensor')).toBe(false);
    expect(() => ck.info('no.such.tensor')).toThrow(expect.objectContaining({ code: 'TENSOR_NOT_FOUND' }));
  });

  it('read() gives each tensor’s contiguous little-endian bytes (sha256 as torch computed it)', async () => {
    const ck = await openFixture(path);
    for (const t of tensors) {
      const bytes = await ck.read(t.name);
      expect(bytes.byteLength, t.name).toBe(t.bytes);
      expect(sha256(bytes), t.name).toBe(t.sha256);
    }
  });

  it('inspect --json --checksum reports the same tensors and hashes', async () => {
    const { code, stdout, stderr } = await runCli(['inspect', join(FIXTURES, path), '--json', '--checksum']);
    expect(code, stderr).toBe(0);
    // At most a note saying which file of a directory was used.
    for (const line of stderr.split('\n').filter(Boolean)) expect(line).toMatch(/^sluice: .*using /);
    const doc = JSON.parse(stdout);
    expect(doc.format).toBe(want.format);
    expect(doc.tensor_count).toBe(tensors.length);
    const byName = new Map<string, { dtype: string; shape: number[]; bytes: number; sha256: string }>(
      doc.tensors.map((t: { name: string }) => [t.name, t]),
    );
    for (const t of tensors) {
      expect(byName.get(t.name), t.name).toMatchObject({ dtype: t.dtype, shape: t.shape, bytes: t.bytes, sha256: t.sha256 });
    }
  });

  it('readRange pieces (element-misaligned, seeded cuts) concatenate to read()', async () => {
    const ck = await openFixture(path);
    const rng = mulberry32(0x5eed);
    for (const t of tensors) {
      const whole = await ck.read(t.name);
      // Byte-sized steps on small tensors; a handful of random cuts on every tensor.
      const cuts = new Set<number>([0, t.bytes]);
      if (t.bytes <= 256) for (let at = 0; at < t.bytes; at += 3) cuts.add(at);
      for (let i = 0; i < 6 && t.bytes > 0; i++) cuts.add(randInt(rng, 0, t.bytes));
      const points = [...cuts].sort((a, b) => a - b);
      const parts = new Uint8Array(t.bytes);
      for (let i = 0; i + 1 < points.length; i++) {
        const piece = await ck.readRange(t.name, points[i], points[i + 1] - points[i]);
        expect(piece.byteLength).toBe(points[i + 1] - points[i]);
        parts.set(piece, points[i]);
      }
      expect(sha256(parts), `${t.name} cut at ${points}`).toBe(sha256(whole));
      expect((await ck.readRange(t.name, t.bytes, 0)).byteLength).toBe(0);
    }
  });

  it('slice() equals slicing the whole tensor’s bytes', async () => {
    const ck = await openFixture(path);
    let sliced = 0;
    for (const t of tensors) {
      if (t.shape.length === 0 || t.shape.includes(0)) continue;
      const whole = await ck.read(t.name);
      const es = dtypeBytes(t.dtype)!;
      const middle = t.shape.map((d): [number, number] => [Math.floor(d / 3), Math.max(Math.floor(d / 3) + 1, Math.ceil((2 * d) / 3))]);
      const firstDimOnly: Array<[number, number]> = [[t.shape[0] - 1, t.shape[0]]];
      for (const ranges of [middle, firstDimOnly]) {
        const s = await ck.slice(t.name, ranges);
        const want = sliceBytes(whole, t.shape, es, ranges);
        expect(s.dtype).toBe(t.dtype);
        expect(s.shape).toEqual(t.shape.map((d, i) => (ranges[i] ? ranges[i][1] - ranges[i][0] : d)));
        expect(sha256(s.data), `${t.name} ${JSON.stringify(ranges)}`).toBe(sha256(want));
      }
      sliced++;
    }
    expect(sliced).toBeGreaterThan(0);
  });

  it('reports the non-tensor leaves as metadata', async () => {
    const ck = await openFixture(path);
    for (const [key, value] of Object.entries(want.metadata ?? {})) {
      expect(metadataValue(ck.metadata, key), `metadata ${key} in ${JSON.stringify(ck.metadata)}`).toEqual(value);
    }
    // No tensor leaks into the metadata.
    for (const t of tensors) expect(Object.hasOwn(ck.metadata, t.name)).toBe(false);
  });
});

describe('tied tensors and views', () => {
  it('names sharing one storage each read their own view of it', async () => {
    const ck = await openFixture('views.pth');
    expect(sha256(await ck.read('a'))).toBe(sha256(await ck.read('b')));
    expect(sha256(await ck.read('emb'))).toBe(sha256(await ck.read('head')));
    // x[2:5] is rows 2..4 of x, read through its storage offset.
    const x = await ck.read('x');
    expect(await ck.read('rows_2_5')).toEqual(x.subarray(2 * 5 * 4, 5 * 5 * 4));
  });

  it('lm_head tied to embed_tokens reads the same bytes, in one file and across shards', async () => {
    for (const path of ['tiny-llama', 'tiny-llama-sharded']) {
      const ck = await openFixture(path);
      expect(sha256(await ck.read('lm_head.weight')), path).toBe(sha256(await ck.read('model.embed_tokens.weight')));
      await ck.close();
      open = undefined;
    }
  });
});

describe('both/ holds model.safetensors and pytorch_model.bin', () => {
  it('opens the safetensors file', async () => {
    const ck = await openFixture('both');
    expect(ck.format).toBe('safetensors');
    expect(ck.files.map((f) => basename(f))).toEqual(['model.safetensors']);
  });
});

describe.each(REFUSED)('%s is refused', (file, name) => {
  const want = expected(name);
  const error = want.error!;

  afterEach(() => {
    expect(existsSync(PWNED), `${PWNED} exists: something executed the pickle`).toBe(false);
  });

  it(`openCheckpoint throws ${error.code} naming ${error.mentions.join(' and ')}`, async () => {
    rmSync(PWNED, { force: true });
    let caught: unknown;
    try {
      open = await openCheckpoint(join(FIXTURES, file));
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(SluiceError);
    const e = caught as SluiceError;
    expect(e.code, e.message).toBe(error.code);
    expect(e.message).toContain(file);
    for (const word of error.mentions) expect(e.message.toLowerCase()).toContain(word.toLowerCase());
  });

  it('sluice inspect --checksum fails with one line naming it', async () => {
    rmSync(PWNED, { force: true });
    const { code, stdout, stderr } = await runCli(['inspect', join(FIXTURES, file), '--json', '--checksum']);
    expect(code).toBe(1);
    expect(stdout).toBe('');
    expect(stderr).toMatch(/^sluice: .+\n$/);
    for (const word of error.mentions) expect(stderr.toLowerCase()).toContain(word.toLowerCase());
  });
});

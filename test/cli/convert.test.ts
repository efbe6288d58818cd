// `sluice convert` and `convertCheckpoint`: every PyTorch fixture (and a safetensors input)
// → safetensors, checked against the torch-written oracle in test/fixtures/pytorch/*.expected.json
// (sha256 of each tensor, and of its F32/F16/BF16 conversion as torch rounds it); the float
// conversions against a reference built from first principles (every F16 value decoded
// from its formula, nearest-even chosen by search); sharding, side files, OUT_DIR refusal.

import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  bf16ToF32Bits,
  convertCheckpoint,
  convertFloats,
  f16ToF32Bits,
  f32ToBf16Bits,
  f32ToF16Bits,
} from '../../src/checkpoint/convert.js';
import { openCheckpoint } from '../../src/checkpoint/open-path.js';
import type { Checkpoint, SliceRanges, TensorInfo, TensorSlice } from '../../src/checkpoint/types.js';
import { CHECKSUM_CHUNK } from '../../src/checkpoint/checksum.js';
import { runCli } from '../support/cli.js';
import { mulberry32 } from '../support/safetensors-bytes.js';

const FIXTURES = 'test/fixtures/pytorch';
const tmp = mkdtempSync(join(tmpdir(), 'sluice-convert-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
let outCount = 0;
const freshOut = () => join(tmp, `out-${++outCount}`);

interface ExpectedTensor {
  name: string;
  dtype: string;
  shape: number[];
  sha256: string;
  converted?: Record<'F32' | 'F16' | 'BF16', string>;
}

function expectedTensors(name: string): ExpectedTensor[] {
  return JSON.parse(readFileSync(join(FIXTURES, `${name}.expected.json`), 'utf8')).tensors;
}

interface Inspected {
  format: string;
  files: string[];
  tensors: Array<{ name: string; dtype: string; shape: number[]; sha256: string }>;
}

async function inspect(path: string): Promise<Inspected> {
  const { code, stdout, stderr } = await runCli(['inspect', path, '--json', '--checksum']);
  expect(code, stderr).toBe(0);
  return JSON.parse(stdout);
}

async function convert(args: string[]): Promise<{ code: number; report: Record<string, unknown>; stderr: string }> {
  const { code, stdout, stderr } = await runCli(['convert', ...args, '--json']);
  return { code, report: code === 0 ? JSON.parse(stdout) : {}, stderr };
}

const byName = <T extends { name: string }>(ts: T[]) => new Map(ts.map((t) => [t.name, t]));

// ─── every fixture, --dtype keep ──────────────────────────────────────────────────────

const INPUTS: Array<[path: string, expected: string]> = [
  ['dtypes.pth', 'dtypes'],
  ['views.pth', 'views'],
  ['nested.pth', 'nested'],
  ['module.pth', 'module'],
  ['little-byteorder.pth', 'little-byteorder'],
  ['bigendian.pth', 'bigendian'],
  ['tiny-llama', 'tiny-llama'],
  ['tiny-llama-sharded', 'tiny-llama-sharded'],
  ['tiny-llama-sharded/pytorch_model.bin.index.json', 'tiny-llama-sharded'],
  ['both', 'both'],
];

describe.each(INPUTS)('convert %s', (path, name) => {
  it('writes model.safetensors whose inspect --checksum equals the input’s and torch’s', async () => {
    const out = freshOut();
    const { code, report, stderr } = await convert([join(FIXTURES, path), out]);
    expect(code, stderr).toBe(0);
    const want = expectedTensors(name);
    expect(report).toMatchObject({ tensors: want.length, verified: want.length, dtype: 'keep', converted: 0, index: null });
    expect(readdirSync(out)).toContain('model.safetensors');

    const [before, after] = [await inspect(join(FIXTURES, path)), await inspect(out)];
    expect(after.format).toBe('safetensors');
    const a = byName(after.tensors);
    expect([...a.keys()].sort()).toEqual(before.tensors.map((t) => t.name).sort());
    for (const t of before.tensors) expect(a.get(t.name), t.name).toMatchObject({ dtype: t.dtype, shape: t.shape, sha256: t.sha256 });
    for (const t of want) expect(a.get(t.name)?.sha256, t.name).toBe(t.sha256);
  });
});

// ─── dtype conversion against torch ───────────────────────────────────────────────────

describe.each([
  ['f16', 'F16'],
  ['bf16', 'BF16'],
  ['f32', 'F32'],
] as const)('--dtype %s', (flag, target) => {
  it.each(['dtypes', 'views', 'tiny-llama'])('%s: floats as torch rounds them, other dtypes untouched', async (name) => {
    const input = name === 'tiny-llama' ? name : `${name}.pth`;
    const out = freshOut();
    const { code, report, stderr } = await convert([join(FIXTURES, input), out, '--dtype', flag]);
    expect(code, stderr).toBe(0);
    const want = expectedTensors(name);
    const floats = want.filter((t) => t.converted);
    expect(report.converted).toBe(floats.filter((t) => t.dtype !== target).length);
    expect(report.verified).toBe(want.length);
    const got = byName((await inspect(out)).tensors);
    for (const t of want) {
      const g = got.get(t.name)!;
      if (t.converted) {
        expect(g.dtype, t.name).toBe(target);
        expect(g.sha256, `${t.name}: ${t.dtype} → ${target}`).toBe(t.converted[target]);
      } else {
        expect({ dtype: g.dtype, sha256: g.sha256 }, t.name).toEqual({ dtype: t.dtype, sha256: t.sha256 });
      }
      expect(g.shape).toEqual(t.shape);
    }
  });
});

// ─── float conversion against first principles ────────────────────────────────────────

/** An F16 or BF16 value from its bits, by the formula (no shared code with convert.ts). */
function decode(bits: number, expBits: number, mantBits: number): number {
  const sign = bits >>> (expBits + mantBits) ? -1 : 1;
  const exp = (bits >>> mantBits) & ((1 << expBits) - 1);
  const mant = bits & ((1 << mantBits) - 1);
  const bias = (1 << (expBits - 1)) - 1;
  if (exp === (1 << expBits) - 1) return mant ? NaN : sign * Infinity;
  if (exp === 0) return sign * mant * 2 ** (1 - bias - mantBits);
  return sign * (1 + mant / 2 ** mantBits) * 2 ** (exp - bias);
}
const f16Value = (h: number) => decode(h, 5, 10);
const f32Of = (bits: number) => new DataView(new Uint32Array([bits]).buffer).getFloat32(0, true);
const bitsOf = (x: number) => new DataView(new Float32Array([x]).buffer).getUint32(0, true);

/** The F16 bits nearest `x` (ties to the even mantissa; past 65520 → inf): binary search over all finite positives. */
const POSITIVE_F16 = Array.from({ length: 0x7c00 }, (_, h) => f16Value(h)); // ascending
function refF16(x: number): number {
  if (Number.isNaN(x)) return NaN;
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a >= 65520) return sign | 0x7c00; // 65504 + half an ulp (2^4) rounds to inf
  let lo = 0;
  let hi = POSITIVE_F16.length - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (POSITIVE_F16[mid] <= a) lo = mid;
    else hi = mid;
  }
  const [dl, dh] = [a - POSITIVE_F16[lo], POSITIVE_F16[hi] - a];
  return sign | (dl < dh ? lo : dh < dl ? hi : lo % 2 === 0 ? lo : hi);
}

/** The BF16 bits nearest `x`: compare the two BF16 neighbours of |x| by value (the one past the largest finite counts as 2^128). */
function refBf16(x: number): number {
  if (!Number.isFinite(x)) return bitsOf(x) >>> 16;
  const sign = bitsOf(x) >>> 31 ? 0x8000 : 0;
  const a = Math.abs(x);
  const down = bitsOf(a) >>> 16; // truncation toward zero
  const up = down + 1;
  const value = (h: number) => (h === 0x7f80 ? 2 ** 128 : decode(h, 8, 7));
  const [dl, dh] = [a - value(down), value(up) - a];
  return sign | (dl < dh ? down : dh < dl ? up : down % 2 === 0 ? down : up);
}

describe('float conversion (CPU)', () => {
  it('F16 → F32 is exact for all 65,536 bit patterns (NaN stays NaN, quiet)', () => {
    for (let h = 0; h < 0x10000; h++) {
      const got = f32Of(f16ToF32Bits(h));
      const want = f16Value(h);
      if (Number.isNaN(want)) {
        expect(Number.isNaN(got), h.toString(16)).toBe(true);
        expect(f16ToF32Bits(h) & 0x400000).toBe(0x400000);
        expect(f16ToF32Bits(h) >>> 31).toBe(h >>> 15);
      } else if (!Object.is(got, want)) {
        expect(got, `0x${h.toString(16)}`).toBe(want);
      }
    }
  });

  it('F32 → F16 rounds to nearest even: every midpoint between neighbours, ±inf, overflow, subnormals, seeded randoms', () => {
    const cases: number[] = [0, -0, Infinity, -Infinity, 65504, 65519.99, 65520, 1e6, 2 ** -24, 2 ** -25, 2 ** -25 * 1.0001, 2 ** -26, 1e-40, -1e-45, 3 * 2 ** -25];
    // Midpoints of consecutive F16 values (exact in F32: 12 significant bits).
    for (let h = 0; h + 1 < 0x7c00; h++) cases.push((POSITIVE_F16[h] + POSITIVE_F16[h + 1]) / 2);
    const rng = mulberry32(16);
    for (let i = 0; i < 20000; i++) cases.push(f32Of((rng() * 2 ** 32) >>> 0));
    for (const x of cases) {
      for (const v of [Math.fround(x), -Math.fround(x)]) {
        const got = f32ToF16Bits(bitsOf(v));
        const want = refF16(v);
        if (Number.isNaN(want)) {
          expect(Number.isNaN(f16Value(got)), `${v}`).toBe(true);
        } else if (got !== want) {
          expect(`0x${got.toString(16)}`, `f32ToF16(${v})`).toBe(`0x${want.toString(16)}`);
        }
      }
    }
  });

  it('F32 → BF16 rounds to nearest even (ties, overflow to inf, subnormals, seeded randoms)', () => {
    const cases = [1 + 2 ** -8, 1 + 3 * 2 ** -8, 3.3895313892515355e38, 3.3961e38, 3.4e38, 1e-40, 2 ** -133, 2 ** -134, 0, -0, Infinity, -Infinity];
    const rng = mulberry32(17);
    for (let i = 0; i < 20000; i++) cases.push(f32Of((rng() * 2 ** 32) >>> 0));
    for (const x of cases) {
      if (Number.isNaN(x)) continue;
      for (const v of [Math.fround(x), -Math.fround(x)]) {
        const got = f32ToBf16Bits(bitsOf(v));
        if (got !== refBf16(v)) expect(`0x${got.toString(16)}`, `f32ToBf16(${v})`).toBe(`0x${refBf16(v).toString(16)}`);
      }
    }
    expect(f32ToBf16Bits(bitsOf(1 + 2 ** -8))).toBe(0x3f80); // tie → even (down)
    expect(f32ToBf16Bits(bitsOf(1 + 3 * 2 ** -8))).toBe(0x3f82); // tie → even (up)
    expect(f32ToBf16Bits(bitsOf(3.4e38))).toBe(0x7f80); // past the largest BF16: inf
  });

  it("NaN: as torch's .half()/.float() to F16 and F32; to BF16 sign, quiet bit and top payload kept", () => {
    expect(f32ToF16Bits(0xffa12345)).toBe(0xfe00);
    expect(f32ToF16Bits(0x7f800001)).toBe(0x7e00);
    expect(f16ToF32Bits(0x7c01)).toBe(0x7fc02000); // payload kept, made quiet
    expect(f32ToBf16Bits(0xffa12345)).toBe(0xffe1);
    expect(f32ToBf16Bits(0x7f800001)).toBe(0x7fc0);
    expect(bf16ToF32Bits(0xff81)).toBe(0xff810000); // exact, as torch
    expect(bf16ToF32Bits(0x7f80)).toBe(0x7f800000); // inf is not NaN
  });

  it('convertFloats: F16 ↔ BF16 rounds once (through exact F32), on misaligned input', () => {
    // 0x3c05 = 1 + 2^-8 + 2^-10: just above a BF16 tie, so up; 0x3c04 = 1 + 2^-8: a tie, so even.
    const f16 = [0x3c05, 0x3c04, 0x3c0c, 0x7bff, 0x0001, 0xfd23, 0xfc00];
    const src = new Uint8Array(1 + f16.length * 2).subarray(1); // odd byteOffset
    const dv = new DataView(src.buffer, src.byteOffset);
    f16.forEach((h, i) => dv.setUint16(i * 2, h, true));
    const bf = convertFloats(src, 'F16', 'BF16');
    const got = Array.from({ length: f16.length }, (_, i) => new DataView(bf.buffer).getUint16(i * 2, true));
    expect(got.slice(0, 5)).toEqual(f16.slice(0, 5).map((h) => refBf16(f16Value(h))));
    expect(got[5]).toBe(0xffe4 | 0x40); // −NaN, payload top bits, quiet
    expect(got[6]).toBe(0xff80);
    const back = convertFloats(bf, 'BF16', 'F16');
    expect(new DataView(back.buffer).getUint16(0, true)).toBe(refF16(decode(got[0], 8, 7)));
    expect(() => convertFloats(new Uint8Array(3), 'F16', 'F32')).toThrow(/whole number/);
  });
});

// ─── sharding, side files, progress, refusals ─────────────────────────────────────────

describe('sluice convert', () => {
  it('--max-shard-size splits into shards + an index that openCheckpoint reads', async () => {
    const out = freshOut();
    const { code, report, stderr } = await convert([join(FIXTURES, 'tiny-llama'), out, '--max-shard-size', '10kB']);
    expect(code, stderr).toBe(0);
    const files = report.files as string[];
    expect(files.length).toBeGreaterThan(2);
    expect(report.index).toBe(join(out, 'model.safetensors.index.json'));
    expect(files.map((f) => f.slice(out.length + 1))).toEqual(files.map((_, i) => `model-${String(i + 1).padStart(5, '0')}-of-${String(files.length).padStart(5, '0')}.safetensors`));
    const index = JSON.parse(readFileSync(join(out, 'model.safetensors.index.json'), 'utf8'));
    const want = expectedTensors('tiny-llama');
    expect(Object.keys(index.weight_map).sort()).toEqual(want.map((t) => t.name).sort());
    expect(index.metadata.total_size).toBe(report.bytes);

    const ck = await openCheckpoint(out);
    try {
      expect(ck.files.length).toBe(files.length + 1);
      for (const t of want) expect(createHash('sha256').update(await ck.read(t.name)).digest('hex'), t.name).toBe(t.sha256);
    } finally {
      await ck.close();
    }
  });

  it('copies config and tokenizer files from the input directory, byte for byte', async () => {
    for (const input of ['tiny-llama', 'tiny-llama/pytorch_model.bin', 'tiny-llama-sharded/pytorch_model.bin.index.json']) {
      const out = freshOut();
      const { code, report } = await convert([join(FIXTURES, input), out]);
      expect(code).toBe(0);
      const dir = join(FIXTURES, input.split('/')[0]);
      const sideFiles = ['config.json', 'generation_config.json', 'special_tokens_map.json', 'tokenizer_config.json'];
      expect([...(report.copied as string[])].sort()).toEqual(sideFiles);
      for (const f of sideFiles) expect(readFileSync(join(out, f)), f).toEqual(readFileSync(join(dir, f)));
      expect(readdirSync(out).some((f) => f.endsWith('.bin'))).toBe(false);
    }
    const { report } = await convert([join(FIXTURES, 'views.pth'), freshOut()]);
    expect(report.copied).toEqual([]);
  });

  it('writes tied names (lm_head = embed_tokens) each as its own tensor', async () => {
    const out = freshOut();
    expect((await convert([join(FIXTURES, 'tiny-llama'), out])).code).toBe(0);
    const t = byName((await inspect(out)).tensors);
    expect(t.get('lm_head.weight')!.sha256).toBe(t.get('model.embed_tokens.weight')!.sha256);
  });

  it('prints what it did; progress goes to stderr on a terminal', async () => {
    const out = freshOut();
    const { code, stdout, stderr } = await runCli(['convert', join(FIXTURES, 'tiny-llama'), out, '--dtype', 'f16'], true);
    expect(code).toBe(0);
    expect(stdout).toContain(`wrote ${join(out, 'model.safetensors')}: 21 tensors`);
    expect(stdout).toMatch(/converted 21 tensors to F16/);
    expect(stdout).toMatch(/copied config\.json, generation_config\.json/);
    expect(stdout).toContain('verified: 21/21 tensors');
    expect(stderr).toContain('writing [');
    expect(stderr).toContain('verifying [');
    // Off a terminal: no progress bars, only the note saying which file of the directory was used.
    const quiet = await runCli(['convert', join(FIXTURES, 'tiny-llama'), freshOut()], false);
    expect(quiet.stderr).toMatch(/^sluice: .*using pytorch_model\.bin.*\n$/);
  });

  it('refuses an OUT_DIR that holds safetensors unless --force; other files do not matter', async () => {
    const out = freshOut();
    mkdirSync(out);
    writeFileSync(join(out, 'README.md'), 'notes\n');
    expect((await convert([join(FIXTURES, 'views.pth'), out])).code).toBe(0);
    const again = await runCli(['convert', join(FIXTURES, 'dtypes.pth'), out]);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/^sluice: convert: .*model\.safetensors.*--force.*\n$/);
    // Nothing was touched: still the views checkpoint.
    expect((await inspect(out)).tensors.some((t) => t.name === 'transposed')).toBe(true);
    const forced = await convert([join(FIXTURES, 'dtypes.pth'), out, '--force']);
    expect(forced.code).toBe(0);
    expect((await inspect(out)).tensors.some((t) => t.name === 'bf16')).toBe(true);
    expect(existsSync(join(out, 'README.md'))).toBe(true);
  });

  it('refuses, even with --force, to write over the checkpoint it reads', async () => {
    const dir = freshOut();
    cpSync(join(FIXTURES, 'both'), dir, { recursive: true });
    const { code, stderr } = await runCli(['convert', dir, dir, '--force']);
    expect(code).toBe(2);
    expect(stderr).toMatch(/where the input model\.safetensors lives/);
    // A .bin-only directory may be converted in place: the output does not replace it.
    rmSync(join(dir, 'model.safetensors'));
    const inPlace = await convert([join(dir, 'pytorch_model.bin'), dir]);
    expect(inPlace.code, inPlace.stderr).toBe(0);
    expect(readdirSync(dir).sort()).toEqual(['model.safetensors', 'pytorch_model.bin']);
  });

  it('rejects bad flags as usage errors', async () => {
    const input = join(FIXTURES, 'views.pth');
    for (const args of [[input], [input, freshOut(), '--dtype', 'f8'], [input, freshOut(), '--max-shard-size', '5 parsecs']]) {
      const { code, stderr } = await runCli(['convert', ...args]);
      expect(code, args.join(' ')).toBe(2);
      expect(stderr).toMatch(/^sluice: /);
    }
  });
});

// ─── memory stays bounded ─────────────────────────────────────────────────────────────

/** A 20 MiB F32 tensor made on demand; records every read. */
class BigFake implements Checkpoint {
  readonly format = 'safetensors';
  readonly files = ['fake.safetensors'];
  readonly metadata = {};
  readonly reads: number[] = [];
  static readonly N = 5 * 1024 * 1024;
  private readonly t: TensorInfo = { name: 'w', dtype: 'F32', shape: [BigFake.N / 1024, 1024], byteLength: BigFake.N * 4, file: 'fake.safetensors' };
  tensors() {
    return [this.t];
  }
  has(name: string) {
    return name === 'w';
  }
  info() {
    return this.t;
  }
  read(): Promise<Uint8Array> {
    throw new Error('convert must stream through readRange, not read()');
  }
  async readRange(_name: string, offset: number, length: number): Promise<Uint8Array> {
    this.reads.push(length);
    return BigFake.bytes(offset, length);
  }
  slice(_n: string, _r: SliceRanges): Promise<TensorSlice> {
    throw new Error('not used');
  }
  async close() {}
  /** Element i is the F32 i·2^-12 + 1/3: a mix of rounding cases. */
  static bytes(offset: number, length: number): Uint8Array {
    const out = new Float32Array(length / 4);
    for (let i = 0; i < out.length; i++) out[i] = (offset / 4 + i) * 2 ** -12 + 1 / 3;
    return new Uint8Array(out.buffer);
  }
}

describe('convertCheckpoint', () => {
  it('streams a tensor larger than one chunk in bounded reads, converting as it goes', async () => {
    const input = new BigFake();
    const out = freshOut();
    const phases = new Map<string, number>();
    const report = await convertCheckpoint(input, out, { dtype: 'bf16', onProgress: (p, n) => phases.set(p, (phases.get(p) ?? 0) + n) });
    expect(report).toMatchObject({ tensors: 1, converted: 1, verified: 1, bytes: BigFake.N * 2, copied: [] });
    expect(Math.max(...input.reads)).toBeLessThanOrEqual(CHECKSUM_CHUNK);
    expect(input.reads.length).toBeGreaterThan(1);
    expect(phases.get('write')).toBe(BigFake.N * 2);
    expect(phases.get('verify')).toBe(BigFake.N * 2);
    const ck = await openCheckpoint(out);
    try {
      // Spot-check a few elements against the scalar conversion.
      for (const i of [0, 1, 4097, BigFake.N - 1]) {
        const got = new DataView((await ck.readRange('w', i * 2, 2)).buffer).getUint16(0, true);
        const src = new DataView(BigFake.bytes(i * 4, 4).buffer).getUint32(0, true);
        expect(got, `element ${i}`).toBe(f32ToBf16Bits(src));
      }
    } finally {
      await ck.close();
    }
  });
});

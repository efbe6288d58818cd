// The plain-TypeScript float conversions (test/support/dtype-reference.ts) that GPU
// conversion kernels are checked against, checked here against PyTorch bit for bit: the
// fixtures in test/fixtures/dtype/ are torch 1.13's own results (make_dtype_fixtures.py),
// every f16 and bf16 pattern and 8192 chosen f32 inputs.
//
// NaNs are compared bit for bit too: where torch and IEEE disagree it is only on NaN
// payloads, and the reference follows torch (f32/bf16 → f16: sign | 0x7e00, payload dropped;
// f16 → f32: payload kept, quiet bit set).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  bf16ToF16Bits,
  bf16ToF32Bits,
  convertArray,
  f16ToF32Bits,
  f32ToF16Bits,
} from '../support/dtype-reference.js';
import { root } from '../support/build.js';

const DIR = join(root, 'test', 'fixtures', 'dtype');

function load(name: string): DataView {
  const bytes = readFileSync(join(DIR, name));
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

const hex = (v: number, digits: number): string => `0x${v.toString(16).padStart(digits, '0')}`;

/** it.each rows [in, out, why] with the bit patterns also as hex strings, for the titles. */
const rows = (cases: [number, number, string][], inDigits: number, outDigits: number) =>
  cases.map(([a, b, why]) => [hex(a, inDigits), hex(b, outDigits), why, a, b] as const);

interface Case {
  input: number;
  want: number;
}

/** Counts mismatches and names the first, inputs and outputs in hex. */
function check(cases: Case[], fn: (x: number) => number, inDigits: number, outDigits: number): void {
  let bad = 0;
  let first = '';
  for (const { input, want } of cases) {
    const got = fn(input);
    if (got !== want) {
      if (bad === 0) first = `input ${hex(input, inDigits)}: got ${hex(got, outDigits)}, torch ${hex(want, outDigits)}`;
      bad++;
    }
  }
  expect(bad, `${bad} of ${cases.length} differ from torch; first: ${first}`).toBe(0);
}

/** f32-to-f16.bin: u32 N, N u32 inputs, N u16 outputs. */
function f32ToF16Cases(): Case[] {
  const view = load('f32-to-f16.bin');
  const n = view.getUint32(0, true);
  expect(view.byteLength).toBe(4 + 6 * n);
  const out = 4 + 4 * n;
  return Array.from({ length: n }, (_, i) => ({
    input: view.getUint32(4 + 4 * i, true),
    want: view.getUint16(out + 2 * i, true),
  }));
}

/** A file of 65536 outputs, one per 16-bit input pattern in order. */
function allPatterns(name: string, outSize: 2 | 4): Case[] {
  const view = load(name);
  expect(view.byteLength).toBe(65536 * outSize);
  return Array.from({ length: 65536 }, (_, i) => ({
    input: i,
    want: outSize === 4 ? view.getUint32(4 * i, true) : view.getUint16(2 * i, true),
  }));
}

describe('dtype reference vs torch', () => {
  it('f32 → f16 matches torch on 8192 chosen and random inputs', () => {
    const cases = f32ToF16Cases();
    expect(cases.length).toBe(8192);
    check(cases, f32ToF16Bits, 8, 4);
  });

  it('f16 → f32 matches torch on all 65536 patterns', () => {
    check(allPatterns('f16-to-f32.bin', 4), f16ToF32Bits, 4, 8);
  });

  it('bf16 → f16 matches torch on all 65536 patterns', () => {
    check(allPatterns('bf16-to-f16.bin', 2), bf16ToF16Bits, 4, 4);
  });

  it('convertArray gives the same bytes as torch', () => {
    const cases = f32ToF16Cases();
    const src = new Uint8Array(cases.length * 4);
    const want = new Uint8Array(cases.length * 2);
    const srcView = new DataView(src.buffer);
    const wantView = new DataView(want.buffer);
    cases.forEach((c, i) => {
      srcView.setUint32(4 * i, c.input, true);
      wantView.setUint16(2 * i, c.want, true);
    });
    expect(Buffer.from(convertArray(src, 'F32', 'F16')).equals(want)).toBe(true);

    const all16 = new Uint8Array(65536 * 2);
    for (let i = 0; i < 65536; i++) new DataView(all16.buffer).setUint16(2 * i, i, true);
    expect(Buffer.from(convertArray(all16, 'F16', 'F32')).equals(readFileSync(join(DIR, 'f16-to-f32.bin')))).toBe(true);
    expect(Buffer.from(convertArray(all16, 'BF16', 'F16')).equals(readFileSync(join(DIR, 'bf16-to-f16.bin')))).toBe(true);
  });
});

describe('dtype reference: hand-computed cases', () => {
  it.each(rows([
    [0x3f800000, 0x3c00, '1.0'],
    [0xbf800000, 0xbc00, '-1.0'],
    [0x80000000, 0x8000, '-0 keeps its sign'],
    [0x477fe000, 0x7bff, '65504, f16 max'],
    [0x477fefff, 0x7bff, '65519.996: below the tie'],
    [0x477ff000, 0x7c00, '65520: tie between 0x7bff (odd) and inf (even) → inf'],
    [0x7f7fffff, 0x7c00, 'f32 max → inf'],
    [0xff800000, 0xfc00, '-inf'],
    [0x38800000, 0x0400, '2^-14, f16 min normal'],
    [0x387fc000, 0x03ff, '1023·2^-24, f16 max subnormal'],
    [0x387fe000, 0x0400, '1023.5·2^-24: tie, even is 1024 = min normal'],
    [0x33800000, 0x0001, '2^-24, f16 min subnormal'],
    [0x33000000, 0x0000, '2^-25 = half a unit: tie, even is 0'],
    [0x33000001, 0x0001, 'just above 2^-25'],
    [0x33400000, 0x0001, '3·2^-26 = 0.75 units → 1'],
    [0x33c00000, 0x0002, '3·2^-25 = 1.5 units: tie → 2'],
    [0x34200000, 0x0002, '5·2^-25 = 2.5 units: tie → 2'],
    [0x3f801000, 0x3c00, '1 + 2^-11: tie → 1.0 (even)'],
    [0x3f803000, 0x3c02, '1 + 3·2^-11: tie → 1 + 2^-9 (even)'],
    [0x3f801001, 0x3c01, '1 + 2^-11 + 2^-23: above the tie'],
    [0x00000001, 0x0000, 'f32 min subnormal → 0'],
    [0x807fffff, 0x8000, 'f32 max subnormal, negative → -0'],
    [0x7f800001, 0x7e00, 'signalling NaN → canonical quiet NaN (torch; IEEE keeps payload)'],
    [0xffc00001, 0xfe00, 'negative NaN keeps its sign, not its payload'],
  ], 8, 4))('f32 %s → f16 %s (%s)', (_a, _b, _why, x, h) => {
    expect(hex(f32ToF16Bits(x), 4)).toBe(hex(h, 4));
  });

  it.each(rows([
    [0x3c00, 0x3f800000, '1.0'],
    [0x0001, 0x33800000, '2^-24, normalised'],
    [0x03ff, 0x387fc000, '1023·2^-24'],
    [0x8200, 0xb8000000, '-2^-15 (subnormal 0x200)'],
    [0x7bff, 0x477fe000, '65504'],
    [0xfc00, 0xff800000, '-inf'],
    [0x7c01, 0x7fc02000, 'signalling NaN: payload kept, quiet bit set (torch)'],
    [0xfe00, 0xffc00000, 'negative quiet NaN'],
  ], 4, 8))('f16 %s → f32 %s (%s)', (_a, _b, _why, h, x) => {
    expect(hex(f16ToF32Bits(h), 8)).toBe(hex(x, 8));
  });

  it.each(rows([
    [0x3f80, 0x3c00, '1.0'],
    [0x477f, 0x7bf8, '65280, exact'],
    [0x4780, 0x7c00, '65536 → inf'],
    [0x7f81, 0x7e00, 'NaN → canonical quiet NaN'],
  ], 4, 4))('bf16 %s → f16 %s (%s)', (_a, _b, _why, b, h) => {
    expect(hex(bf16ToF16Bits(b), 4)).toBe(hex(h, 4));
  });

  it('bf16 → f32 is the top half, NaN payloads included', () => {
    expect(bf16ToF32Bits(0xff81)).toBe(0xff810000);
    expect(bf16ToF32Bits(0x3f80)).toBe(0x3f800000);
  });

  it('convertArray: identity copies, bad lengths throw', () => {
    const src = new Uint8Array([1, 2, 3, 4]);
    const same = convertArray(src, 'F32', 'F32');
    expect(same).toEqual(src);
    expect(same).not.toBe(src);
    expect(() => convertArray(new Uint8Array(3), 'F16', 'F32')).toThrow(RangeError);
  });
});

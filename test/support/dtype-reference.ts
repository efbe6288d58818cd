// Reference float conversions on bit patterns (numbers holding u16 / u32 bits), the oracle
// the GPU conversion kernels are checked against bit for bit. They are validated in turn
// against PyTorch (test/gpu/dtype-reference.test.ts, fixtures from
// test/fixtures/make_dtype_fixtures.py).
//
// Integer arithmetic only, on purpose: letting a Float32Array / Math.fround / DataView
// setFloat32 do the rounding would test the JS engine's conversion rather than spell out the
// algorithm, and Float16Array is not in Node 20. Written out here, each step (implicit bit,
// sticky remainder, ties-to-even, carry into the exponent) can be compared with a WGSL kernel.
//
// Results are unsigned: `>>> 0` wherever bit 31 can be set, since JS bit operators yield
// signed 32-bit ints.

export type SrcDtype = 'F32' | 'F16' | 'BF16';
export type DstDtype = 'F32' | 'F16';

/** f16 → f32: exact (every f16 is an f32). NaNs keep their payload with the quiet bit set. */
export function f16ToF32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  let mant = h & 0x3ff;
  if (exp === 0x1f) {
    // torch sets the f32 quiet bit (0x00400000) for every NaN, so signalling f16 NaNs
    // (0x7c01..0x7dff) come back quiet; IEEE would let the payload through unchanged.
    // c10's fp16_ieee_to_fp32_value gets there by a float multiply, F16C's vcvtph2ps
    // by hardware; the fixtures show the same for every pattern.
    return (mant === 0 ? sign | 0x7f800000 : sign | 0x7fc00000 | (mant << 13)) >>> 0;
  }
  if (exp === 0) {
    if (mant === 0) return sign >>> 0; // ±0
    // Subnormal: mant · 2^-24. Normalise: shift the leading 1 up to the implicit-bit
    // position (bit 10), one exponent step down per shift. 113 is the f32 biased exponent
    // of 2^-14, the weight of bit 10 here.
    let e = 113;
    while ((mant & 0x400) === 0) {
      mant <<= 1;
      e--;
    }
    return (sign | (e << 23) | ((mant & 0x3ff) << 13)) >>> 0;
  }
  // Normal: rebias the exponent (127 - 15 = 112), widen the mantissa (10 → 23 bits).
  return (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0;
}

/** bf16 → f32: bf16 is the top half of an f32, so this is exact, NaN payloads included. */
export function bf16ToF32Bits(b: number): number {
  return ((b & 0xffff) << 16) >>> 0;
}

/**
 * f32 → f16, IEEE round-to-nearest-even: overflow to ±inf, gradual underflow through the f16
 * subnormals down to ±0. NaN → sign | 0x7e00 (PyTorch's c10::Half: a canonical quiet NaN that
 * keeps the sign but drops the payload; IEEE would keep the payload's top bits).
 */
export function f32ToF16Bits(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return mant === 0 ? sign | 0x7c00 : sign | 0x7e00;
  // f16 biased exponent of the value before rounding (127 - 15 = 112).
  const hexp = exp - 112;
  // 2^16 and up: beyond 65504 + half an ulp, so inf whatever the mantissa.
  if (hexp >= 0x1f) return sign | 0x7c00;
  if (hexp >= 1) {
    // Normal f16 result: keep the top 10 mantissa bits, round on the dropped 13.
    // (hexp << 23 | mant) >> 13 is (hexp << 10 | mant >> 13); a round-up that carries out of
    // the mantissa increments the exponent, and 0x7bff + 1 = 0x7c00 is inf: 65520 → inf.
    return sign | roundShift((hexp << 23) | mant, 13);
  }
  // Subnormal or zero f16 result, in units of 2^-24 (the f16 subnormal step). The f32 value
  // is sig · 2^(exp - 150) with sig the 24-bit significand (implicit 1 made explicit), so it
  // is sig >> (126 - exp) units. Below 2^-25 (exp < 102, f32 subnormals included: they are
  // < 2^-126) the shift exceeds 24 and sig < 2^24 is under half a unit: ±0.
  if (exp < 102) return sign;
  const sig = mant | 0x800000;
  // Rounding 1023.5 units up gives 0x400, the smallest normal f16: the carry is right.
  return sign | roundShift(sig, 126 - exp);
}

/** bf16 → f16 as torch does it: through f32 (exact), then one rounding. */
export function bf16ToF16Bits(b: number): number {
  return f32ToF16Bits(bf16ToF32Bits(b));
}

/**
 * v >> shift rounded to nearest, ties to even. `rest` is the dropped bits, compared against
 * half of the unit kept: above rounds up, below down, exactly half rounds to make the
 * result even. 1 ≤ shift ≤ 24 and v < 2^31, so plain 32-bit operators are safe.
 */
function roundShift(v: number, shift: number): number {
  const kept = v >>> shift;
  const rest = v & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  return rest > half || (rest === half && (kept & 1) === 1) ? kept + 1 : kept;
}

const SIZE: Record<SrcDtype, number> = { F32: 4, F16: 2, BF16: 2 };

/**
 * Converts a little-endian array of `from` elements to `to` elements (new bytes, a copy when
 * from === to). Builds the expected output of a GPU conversion kernel.
 */
export function convertArray(src: Uint8Array, from: SrcDtype, to: DstDtype): Uint8Array {
  const inSize = SIZE[from];
  if (src.byteLength % inSize !== 0) {
    throw new RangeError(`convertArray: ${src.byteLength} bytes is not a whole number of ${from} elements`);
  }
  if ((from as string) === to) return src.slice();
  const n = src.byteLength / inSize;
  const out = new Uint8Array(n * SIZE[to]);
  const inView = new DataView(src.buffer, src.byteOffset, src.byteLength);
  const outView = new DataView(out.buffer);
  for (let i = 0; i < n; i++) {
    // Bit patterns only: getUint*/setUint* move integers, never floats.
    const bits = inSize === 4 ? inView.getUint32(i * 4, true) : inView.getUint16(i * 2, true);
    if (to === 'F32') {
      outView.setUint32(i * 4, from === 'F16' ? f16ToF32Bits(bits) : bf16ToF32Bits(bits), true);
    } else {
      outView.setUint16(i * 2, from === 'F32' ? f32ToF16Bits(bits) : bf16ToF16Bits(bits), true);
    }
  }
  return out;
}

// Float bit conversions on the host, bit-exact with the GPU's (shaders/convert.wgsl) and
// torch's `.half()` / `.bfloat16()` / `.float()`: round to nearest even, overflow to ±inf,
// subnormals exact. Browser-safe. Used by convert (CPU dtype conversion) and the quantized
// layout (f16 scales).

/** F32 bits → F16 bits, round to nearest even. */
export function f32ToF16Bits(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | (mant ? 0x7e00 : 0x7c00);
  const e = exp - 112; // F16's biased exponent: (exp − 127) + 15
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // F16 subnormal (or zero): shift the 24-bit significand right by 14 − e.
    if (e < -10) return sign; // below half the smallest subnormal (2^-25)
    const m = mant | 0x800000;
    const shift = 14 - e;
    const rest = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    let h = m >>> shift;
    if (rest > half || (rest === half && h & 1)) h++; // may carry into the smallest normal: right
    return sign | h;
  }
  const rest = mant & 0x1fff;
  let h = (e << 10) | (mant >>> 13);
  if (rest > 0x1000 || (rest === 0x1000 && h & 1)) h++; // may carry to 0x7c00 = inf: right
  return sign | h;
}

/** F32 bits → BF16 bits, round to nearest even. */
export function f32ToBf16Bits(x: number): number {
  if ((x & 0x7fffffff) > 0x7f800000) return (x >>> 16) | 0x40;
  // x < 0xff800000 here, so x + 0x8000 stays below 2^32.
  return (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
}

/** F16 bits → F32 bits (exact). */
export function f16ToF32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0x1f) return (sign | 0x7f800000 | (mant ? 0x400000 | (mant << 13) : 0)) >>> 0;
  if (exp === 0) {
    if (mant === 0) return sign >>> 0;
    // Subnormal mant·2^-24: shift until the implicit bit (0x400) appears.
    let shifts = 0;
    let m = mant;
    while (!(m & 0x400)) {
      m <<= 1;
      shifts++;
    }
    return (sign | ((113 - shifts) << 23) | ((m & 0x3ff) << 13)) >>> 0;
  }
  return (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0;
}

/** BF16 bits → F32 bits (exact, NaNs included). */
export function bf16ToF32Bits(b: number): number {
  return (b << 16) >>> 0;
}

// roundT(v): v rounded to the compute dtype T (common/dtype.wgsl, included first; to
// nearest, ties to even) and back to f32, as a store to a T buffer rounds it: for the values
// HF rounds to f16 that a kernel keeps in a register (a projection, an activation, a normed
// row). Not f32(T(v)), nor unpack2x16float(pack2x16float(v)): shader compilers may drop
// either round trip as an identity (lavapipe does: NIR's inexact f2f32(f2f16(a)) → a; its
// rms_norm left a quarter of f16 outputs an ulp from torch's), and a value rounded here must
// be the very value a kernel storing it would keep. So the rounding is done on
// the bits: f16's normal range keeps 10 of f32's 23 mantissa bits; below it, f16's
// subnormals are the multiples of 2^-24 (round() is exact there); at 65520 and past, inf.
fn roundT(v: f32) -> f32 {
#ifdef F16
  let a = abs(v);
  if (a < 6.103515625e-05) { return round(v * 16777216.0) * 5.9604644775390625e-08; }
  let b = bitcast<u32>(v);
  if (a >= 65520.0) { return bitcast<f32>((b & 0x80000000u) | 0x7f800000u); }
  if (a != a) { return v; } // NaN stays NaN
  return bitcast<f32>((b + 0xfffu + ((b >> 13u) & 1u)) & 0xffffe000u);
#else
  return v;
#endif
}

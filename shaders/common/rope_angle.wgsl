// The rotary angle's range reduction (rope.wgsl, qkv_rope_store.wgsl: one copy, so both
// rotate by the same bits).
// 2π in three parts for Cody–Waite reduction: C1 and C2 have 8 significant bits, so k·C1
// and k·C2 are exact f32 products for |k| < 2^16, i.e. angles below 2^16·2π ≈ 411,000 rad
// (positions below 411,000 at inv_freq 1); C3 carries the rest (C1+C2+C3 = 2π ± 2e-13).
const C1: f32 = 6.28125;
const C2: f32 = 0.00193023681640625;
const C3: f32 = 0.000005070363386039389;
const INV_2PI: f32 = 0.15915494;

// The angle minus the nearest multiple of 2π, in about [−π, π]. Angles reach 1e5 rad at
// long positions; torch's f32 cos/sin reduce them exactly, but WGSL promises sin/cos
// accuracy only inside [−π, π] (fast GPU sines lose digits as |x| grows; lavapipe's
// happens to stay accurate), so reducing here keeps cos(angle) that of HF's f32 angle on
// every GPU. Cost: 3 multiply-subtracts per pair, next to a sin and a cos.
fn reduce_angle(a: f32) -> f32 {
  let n = round(a * INV_2PI);
  return ((a - n * C1) - n * C2) - n * C3;
}

// Rotary position embedding, HF Llama's rotate-half layout, in place on Q and K:
//   for i < rot_half, at position p:  angle = f32(p) * inv_freq[i]   (f32, as HF)
//   x[i]            ← x[i] * cos(angle) − x[i + rot_half] * sin(angle)
//   x[i + rot_half] ← x[i + rot_half] * cos(angle) + x[i] * sin(angle)
// One invocation per (row, head, i): it rotates one pair, of Q (heads < n_heads) or of
// K (the next n_kv_heads). Row r is at position p = step.row[r].position (the pass's
// step, src/gpu/step.ts); rows past step.rows exit. The angle, cos/sin and the rotation are f32; the result is
// stored in the compute dtype. The scaling variants (default, linear, llama3, or any
// table the caller computes) differ only in the inv_freq table (src/ops/rope.ts).
// Partial rotary (Phi-4-mini's partial_rotary_factor): rot_half · 2 < head_dim rotates
// only the first 2·rot_half elements of each head, pairs (i, i + rot_half), and leaves
// the rest as they are (in place: nothing to write), as transformers' `q[..., :rotary_dim]`.
// Variants: F16 (f16 storage), SCALED (cos and sin times attention_factor, as
// transformers' `cos = emb.cos() * self.attention_scaling` for yarn / longrope).
#include "common/dtype.wgsl"

struct Params {
  n_heads: u32,    // Q heads per row
  n_kv_heads: u32, // K heads per row
  head_dim: u32,   // elements per head: the row stride of a head (≥ 2 · rot_half)
  rot_half: u32,   // rotary_dim / 2: pairs rotated per head (inv_freq's length)
  attention_factor: f32, // SCALED: cos and sin are multiplied by it
}

#include "common/step.wgsl" // the pass's rows and their (slot, position)

override WORKGROUP_SIZE: u32;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> step: Step;
@group(0) @binding(2) var<storage, read_write> q: array<T>;   // (rows, n_heads, head_dim) rotated in place
@group(0) @binding(3) var<storage, read_write> k: array<T>;   // (rows, n_kv_heads, head_dim) rotated in place
@group(0) @binding(4) var<storage, read> inv_freq: array<f32>; // (rot_half,) f32

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

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let idx = gid.x + gid.y * groups.x * WORKGROUP_SIZE;
  let half = params.rot_half;
  let heads = params.n_heads + params.n_kv_heads;
  if (idx >= step.rows * heads * half) { return; }
  let i = idx % half;
  let rest = idx / half;
  let head = rest % heads;
  let t = rest / heads;

  // Positions are exact in f32 below 2^24.
  let r = reduce_angle(f32(step.row[t].position) * inv_freq[i]);
#ifdef SCALED
  let c = cos(r) * params.attention_factor;
  let s = sin(r) * params.attention_factor;
#else
  let c = cos(r);
  let s = sin(r);
#endif
  if (head < params.n_heads) {
    let at = (t * params.n_heads + head) * params.head_dim + i;
    let x1 = f32(q[at]);
    let x2 = f32(q[at + half]);
    q[at] = T(x1 * c - x2 * s);
    q[at + half] = T(x2 * c + x1 * s);
  } else {
    let at = (t * params.n_kv_heads + (head - params.n_heads)) * params.head_dim + i;
    let x1 = f32(k[at]);
    let x2 = f32(k[at + half]);
    k[at] = T(x1 * c - x2 * s);
    k[at + half] = T(x2 * c + x1 * s);
  }
}

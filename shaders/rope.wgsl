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

// The pass's step (src/gpu/step.ts): this call's row count and each row's (slot, position).
struct StepRow { slot: u32, position: u32 }
struct Step { rows: u32, row: array<StepRow> }

override WORKGROUP_SIZE: u32;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> step: Step;
@group(0) @binding(2) var<storage, read_write> q: array<T>;   // (rows, n_heads, head_dim) rotated in place
@group(0) @binding(3) var<storage, read_write> k: array<T>;   // (rows, n_kv_heads, head_dim) rotated in place
@group(0) @binding(4) var<storage, read> inv_freq: array<f32>; // (rot_half,) f32

#include "common/rope_angle.wgsl"

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
#include "common/rope_cos_sin.wgsl"
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

// Folds an RMSNorm's weight into the Linear that follows it, in place, once at load:
//   W[n, k] ← round_T(W[n, k] · g[k])   for every row n of W (N, K) and g (K,)
// so a gemv that normalises its input itself (x · rsqrt(mean(x²) + eps), no weight) and
// multiplies by the folded W computes linear(rms_norm(x) · g). One invocation per
// element of one row-chunk of W (rows of K columns each; the launcher dispatches each chunk).
// The product in f32 and one rounding to T: in F16 an f16 · f16 product is exact in f32
// (11 + 11 significant bits), so the result is torch's f16 multiply; in F32 it is the f32
// product. Launcher: src/ops/scale-columns.ts. Variants: F16 (f16 storage).
#include "common/dtype.wgsl"

struct Params {
  count: u32, // rows · K: elements of this chunk
  cols: u32,  // K: in_features, the length of g
}

override WORKGROUP_SIZE: u32;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> w: array<T>; // (rows, K) one chunk of W, scaled in place
@group(0) @binding(2) var<storage, read> g: array<T>;       // (K,) the norm's weight

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let i = gid.x + gid.y * groups.x * WORKGROUP_SIZE;
  if (i >= params.count) { return; }
  w[i] = T(f32(w[i]) * f32(g[i % params.cols]));
}

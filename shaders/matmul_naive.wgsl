// The naive baseline of shaders/matmul.wgsl, on purpose: one thread per output y[m, n], a
// plain loop over k reading x and W straight from storage, no tiling, no vectors. Same
// bindings, Params and variants as matmul.wgsl (F16, BIAS, OUT_F32), so `sluice bench
// kernels` can swap it in and measure what the tiling buys. Launcher: NaiveMatmul in
// src/ops/matmul.ts.
#include "common/linear_dtypes.wgsl"

#include "common/matmul_params.wgsl"

override WORKGROUP_X: u32; // threads along the chunk's columns
override WORKGROUP_Y: u32; // threads along rows

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;       // (M, K)
@group(0) @binding(2) var<storage, read> w: array<T>;       // (rows, K)
#include "common/linear_out.wgsl"

@compute @workgroup_size(WORKGROUP_X, WORKGROUP_Y)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let c = gid.x; // column in the chunk
  let m = gid.y;
  if (c >= params.rows || m >= params.M) { return; }
  let K = params.K;
  let n = params.colOffset + c;
#ifdef BIAS
  var acc = f32(bias[n]);
#else
  var acc = 0.0;
#endif
  for (var k = 0u; k < K; k++) { acc += f32(x[m * K + k]) * f32(w[c * K + k]); }
  y[m * params.N + n] = Y(acc);
}

// Column gather of activation rows: y[r, j] = x[r, perm[j]]. The input of a Linear whose
// weight came from a GPTQ act-order checkpoint: the repack (src/ops/repack.ts) made each
// group's columns contiguous by permuting W's columns, W' = W[:, perm], and W'·x' = W·x with
// x' = x[perm]. Launcher: src/ops/permute.ts. Variant: F16 (f16 rows), else f32.
#include "common/dtype.wgsl"

struct Params {
  rows: u32,  // rows of x and y
  k: u32,     // columns of each
}

override WORKGROUP_SIZE: u32;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> perm: array<u32>;   // (k,) source column of each output column
@group(0) @binding(2) var<storage, read> x: array<T>;        // (rows, k)
@group(0) @binding(3) var<storage, read_write> y: array<T>;  // (rows, k)

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let i = gid.x + gid.y * groups.x * WORKGROUP_SIZE;
  if (i >= params.rows * params.k) { return; }
  let r = i / params.k;
  y[i] = x[r * params.k + perm[i - r * params.k]];
}

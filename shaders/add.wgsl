// Elementwise sum of two activations: the residual connection `x = x + f(x)`.
// Launcher: src/ops/add.ts. Variants: F16 (f16 storage; the sum is rounded once, as
// torch's f16 add is), IN_PLACE (a += b, for the residual stream).
#include "common/dtype.wgsl"

struct Params {
  count: u32, // elements
}

override WORKGROUP_SIZE: u32;

@group(0) @binding(0) var<uniform> params: Params;
#ifdef IN_PLACE
@group(0) @binding(1) var<storage, read_write> a: array<T>; // (count,) in: a, out: a + b
@group(0) @binding(2) var<storage, read> b: array<T>;       // (count,)
#else
@group(0) @binding(1) var<storage, read> a: array<T>;       // (count,)
@group(0) @binding(2) var<storage, read> b: array<T>;       // (count,)
@group(0) @binding(3) var<storage, read_write> out: array<T>; // (count,) a + b
#endif

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let i = gid.x + gid.y * groups.x * WORKGROUP_SIZE;
  if (i >= params.count) { return; }
#ifdef IN_PLACE
  a[i] = a[i] + b[i];
#else
  out[i] = a[i] + b[i];
#endif
}

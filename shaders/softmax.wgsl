// Row softmax: out[r, j] = exp(x[r, j] − max_r) / Σ_j exp(x[r, j] − max_r), in f32.
// Launcher: src/ops/softmax.ts. Variant F16: the input is f16 (the compute dtype); the
// output is always f32, and every reduction runs in f32.
//
// One workgroup per row. Pass 1: each thread keeps an online (max, sum·exp(−max)) pair over
// its strided elements (one exp per element), then a tree reduction combines the pairs.
// Pass 2: each thread writes its elements. Two reads + one write of the row.
//   napkin: a (1, 128256) row: 0.5 MB read twice + 0.5 MB written ≈ 1.5 MB, a few µs on a
//   real GPU; the tree costs log2(WORKGROUP_SIZE) barriers.
// -inf entries get probability 0, and so do NaN entries (a NaN is not ≥ -f32max). A row
// with nothing else (fully masked) has no mass: its output is all 0 (torch gives NaN; 0
// does not poison what reads it).
#include "common/dtype.wgsl"

struct Params {
  rows: u32, // rows of x and out
  cols: u32, // elements per row
}

override WORKGROUP_SIZE: u32; // a power of two (the tree reduction halves it)

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;          // (rows, cols) T
@group(0) @binding(2) var<storage, read_write> out: array<f32>; // (rows, cols) f32

// Below it is -inf (or NaN): no -inf literal, as a const-expression may not overflow.
const F32_MAX: f32 = 0x1.fffffep+127f;

var<workgroup> red: array<vec2f, WORKGROUP_SIZE>; // (WORKGROUP_SIZE,) (max, sum·exp(−max)) per thread

/** Merges two (max, sum·exp(−max)) pairs; any (m, 0) is the identity. */
fn combine(a: vec2f, b: vec2f) -> vec2f {
  let m = max(a.x, b.x);
  if (a.y == 0.0) { return b; }
  if (b.y == 0.0) { return a; }
  return vec2f(m, a.y * exp(a.x - m) + b.y * exp(b.x - m));
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) groups: vec3u, @builtin(local_invocation_index) tid: u32) {
  // Past 65535 rows the launcher spills into y (dispatch.ts); the test is uniform per workgroup.
  let row = wid.x + wid.y * groups.x;
  if (row >= params.rows) { return; }
  let base = row * params.cols;

  // Pass 1: online max and sum over this thread's elements j = tid, tid + WG, ...
  var acc = vec2f(0.0, 0.0);
  for (var j = tid; j < params.cols; j += WORKGROUP_SIZE) {
    let v = f32(x[base + j]);
    if (!(v >= -F32_MAX)) { continue; } // -inf or NaN: probability 0
    if (acc.y == 0.0) {
      acc = vec2f(v, 1.0);
      continue;
    }
    // One exp: rescale the sum when v is a new max, else add exp(v − max).
    let m = max(acc.x, v);
    let e = exp(min(acc.x, v) - m);
    acc = vec2f(m, select(acc.y + e, acc.y * e + 1.0, v > acc.x));
  }
  red[tid] = acc;
  workgroupBarrier();
  for (var stride = WORKGROUP_SIZE / 2u; stride > 0u; stride /= 2u) {
    if (tid < stride) { red[tid] = combine(red[tid], red[tid + stride]); }
    workgroupBarrier();
  }
  let total = red[0];

  // Pass 2: normalise. A fully masked row (sum 0) writes 0 everywhere.
  let inv = select(1.0 / total.y, 0.0, total.y == 0.0);
  for (var j = tid; j < params.cols; j += WORKGROUP_SIZE) {
    let v = f32(x[base + j]);
    out[base + j] = select(0.0, exp(v - total.x) * inv, v >= -F32_MAX);
  }
}

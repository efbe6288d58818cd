// Row argmax of f32 logits: out[r] = the index of the largest x[r, j] (greedy decoding).
// Launcher: src/ops/argmax.ts.
//
// Ties go to the lowest index (torch.argmax's rule for its first occurrence). NaN never
// wins: it is neither > nor == anything. A row of only NaN has no winner and gives
// NO_TOKEN (0xffffffff), which the caller must treat as an error; -inf is an ordinary
// value (a row of only -inf gives index 0). (NaN rules hold where the device keeps IEEE
// comparisons, as Vulkan, Metal and D3D do unless fast-math is forced.)
//
// One workgroup per row: each thread scans its strided elements j = tid, tid + WG, ...
// keeping (value, index), then a tree reduction merges the pairs with the same rule.
//   napkin: (1, 128256) f32 = 0.5 MB read once; on a real GPU one workgroup streams that
//   in a few µs; on lavapipe (one core per workgroup) ~0.1–0.3 ms.
struct Params {
  rows: u32, // rows of x and out
  cols: u32, // elements per row (the vocabulary)
}

override WORKGROUP_SIZE: u32; // a power of two (the tree reduction halves it)

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;        // (rows, cols) f32
@group(0) @binding(2) var<storage, read_write> out: array<u32>; // (rows,) u32 index, or NO_TOKEN

const NO_TOKEN: u32 = 0xffffffffu;

var<workgroup> best_value: array<f32, WORKGROUP_SIZE>; // (WORKGROUP_SIZE,) per-thread best value
var<workgroup> best_index: array<u32, WORKGROUP_SIZE>; // (WORKGROUP_SIZE,) its index, NO_TOKEN if none

/**
 * Does (v, i) beat the best so far (w, k)? Anything not NaN beats no best (k = NO_TOKEN);
 * else a larger value, then a lower index. Never when v is NaN (v == v is false).
 */
fn beats(v: f32, i: u32, w: f32, k: u32) -> bool {
  if (i == NO_TOKEN) { return false; }
  if (k == NO_TOKEN) { return v == v; }
  return v > w || (v == w && i < k);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) groups: vec3u, @builtin(local_invocation_index) tid: u32) {
  // Past 65535 rows the launcher spills into y (dispatch.ts); the test is uniform per workgroup.
  let row = wid.x + wid.y * groups.x;
  if (row >= params.rows) { return; }
  let base = row * params.cols;

  // Starting from no best, the first non-NaN element wins, so NO_TOKEN survives only when
  // every element is NaN.
  var v = 0.0;
  var k = NO_TOKEN;
  for (var j = tid; j < params.cols; j += WORKGROUP_SIZE) {
    let xj = x[base + j];
    if (beats(xj, j, v, k)) {
      v = xj;
      k = j;
    }
  }
  best_value[tid] = v;
  best_index[tid] = k;
  workgroupBarrier();
  for (var stride = WORKGROUP_SIZE / 2u; stride > 0u; stride /= 2u) {
    if (tid < stride && beats(best_value[tid + stride], best_index[tid + stride], best_value[tid], best_index[tid])) {
      best_value[tid] = best_value[tid + stride];
      best_index[tid] = best_index[tid + stride];
    }
    workgroupBarrier();
  }
  if (tid == 0u) { out[row] = best_index[0]; }
}

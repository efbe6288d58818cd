// Per-head q/k RMSNorm (Qwen3: w·x̂; Gemma 3: (1 + w)·x̂), as rms_norm.wgsl computes it, in
// qkv_rope_store.wgsl (NORM) and in gemv.wgsl's ROPE_STORE epilogue (QK_NORM): one copy, so
// both sum a head's squares in the same order and round alike by construction.
//
// rms_norm.wgsl's sum of squares, for a head of head_dim ≤ its workgroup: leaf j is x_j²
// (0 past the head) and a halving tree adds them. Its leaves past norm_width (the next power
// of two ≥ head_dim) are 0, and adding 0 changes nothing, so the tree here runs over those
// norm_width leaves only: the same additions, in fewer rounds (fewer barriers). A head's
// `segment` = norm_width / 2 invocations each add a first-level pair (square_pair), then
// head_square_sum reduces the segment's entries in rounds of 3 levels.
//
// The includer declares T, roundT (common/round_t.wgsl), WORKGROUP_SIZE (≥ the entries of
// all the segments it reduces at once) and leaves binding 9 free.

// The q_norm and k_norm weights, in a uniform: eight storage buffers per stage is WebGPU's
// default limit, and both includers' other bindings take them all. q_norm's at elements
// [0, head_dim), k_norm's at [NORM_MAX_HEAD_DIM, NORM_MAX_HEAD_DIM + head_dim), in the
// compute dtype (f16 packed two to a u32). The launcher's NORM_WEIGHT_SLOT
// (src/ops/qkv-rope-store.ts, qkNormWeights): a smaller buffer there fails binding, a larger
// one puts k_norm elsewhere and fails the bit-exact tests.
const NORM_MAX_HEAD_DIM = 256u;
#ifdef F16
@group(0) @binding(9) var<uniform> norm_weight: array<vec4u, NORM_MAX_HEAD_DIM / 4u>;  // 2·NORM_MAX_HEAD_DIM f16
fn weight_at(i: u32) -> f32 {
  return unpack2x16float(norm_weight[i / 8u][(i / 2u) % 4u])[i % 2u];
}
#else
@group(0) @binding(9) var<uniform> norm_weight: array<vec4f, NORM_MAX_HEAD_DIM / 2u>;  // 2·NORM_MAX_HEAD_DIM f32
fn weight_at(i: u32) -> f32 {
  return norm_weight[i / 4u][i % 4u];
}
#endif

// Per head, a segment of `segment` entries: the partial sums of squares of the tree below
// its first level.
var<workgroup> norm_partial: array<f32, WORKGROUP_SIZE>;

// The tree's first level: leaves a and b (a head's elements u and u + segment, 0 past the head).
fn square_pair(a: f32, b: f32) -> f32 {
  return a * a + b * b;
}

// The halving tree (a[m] += a[m + n/2], then n/4, … as rms_norm.wgsl adds) over the n
// (a power of two ≤ 16) values norm_partial[at + m·spacing]: its order is the pairwise sum
// of the values in bit-reversed order of m, which a stack of partial sums computes in one pass.
fn halving_sum(at: u32, n: u32, spacing: u32) -> f32 {
  if (n == 1u) { return norm_partial[at]; }
  let bits = countTrailingZeros(n);
  var stack: array<f32, 5>;
  for (var m = 0u; m < n; m++) {
    var sum = norm_partial[at + (reverseBits(m) >> (32u - bits)) * spacing];
    var level = 0u;
    for (var carry = m; (carry & 1u) == 1u; carry >>= 1u) {
      sum = stack[level] + sum;
      level++;
    }
    stack[level] = sum;
  }
  return stack[bits];
}

// A head's sum of squares, for every invocation of its segment [base, base + segment):
// invocation base + u (u < segment) gives its first-level pair. Every invocation of the
// workgroup must call it (barriers), with the same segment; u ≥ segment adds nothing.
// The rounds: each invocation u < width / 8 adds its 8 entries u + m·width/8; the last
// ≤ 16 by every invocation.
fn head_square_sum(base: u32, u: u32, segment: u32, first_level: f32) -> f32 {
  if (u < segment) { norm_partial[base + u] = first_level; }
  workgroupBarrier();
  var width = segment;
  for (; width > 16u; width /= 8u) {
    let spread = width / 8u;
    if (u < spread) {
      let sum = halving_sum(base + u, 8u, spread);
      norm_partial[base + u] = sum;
    }
    workgroupBarrier();
  }
  return halving_sum(base, width, 1u);
}

// rms_norm.wgsl's scale of a head of head_dim elements whose squares sum to `total`.
fn qk_norm_scale(total: f32, head_dim: u32, eps: f32) -> f32 {
  return 1.0 / sqrt(total / f32(head_dim) + eps);
}

// Element x of a head normed with weight w, rounded to T as rms_norm stores it (HF's
// `.to(x.dtype)`; ONE_PLUS_WEIGHT: Gemma's (1 + w) in f32, one rounding).
fn qk_norm_value(x: f32, w: f32, scale: f32) -> f32 {
#ifdef ONE_PLUS_WEIGHT
  return roundT((x * scale) * (1.0 + w));
#else
  let hx = roundT(x * scale);
  return roundT(w * hx);
#endif
}

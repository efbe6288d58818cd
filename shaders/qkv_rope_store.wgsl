// The attention block's glue in one dispatch: per-head q/k RMSNorm (Qwen3, Gemma 3), rotary
// embedding, and the KV cache append, for the rows of q, k and v as the projections wrote
// them. Replaces rms_norm (q) + rms_norm (k) + rope + kv_store. Launcher:
// src/ops/qkv-rope-store.ts.
//
// One invocation per unit (row, head, u < head_dim / 2), which writes two elements: a
// rotation pair, or two that pass through. Heads [0, n_heads) are Q heads, written to q_out
// row t (T, n_heads, head_dim); the next n_kv_heads are K heads, written to the cache at the
// row's step slot and position, (slots, n_kv_heads, max_seq, head_dim), with that head's V
// copied beside them into the V cache. Rows past step.rows exit. Without NORM the units are
// numbered flat, as rope.wgsl numbers pairs (no barrier, no idle lane); with NORM a
// workgroup holds whole heads, each in a segment of norm_width / 2 invocations, which
// reduce the head's squares together.
//
// Bit-exact with the unfused ops, by doing their arithmetic in their order:
//  - NORM: the sum of squares is rms_norm.wgsl's: with head_dim ≤ its workgroup size, leaf
//    j is x_j² (0 past the head), and the same halving tree adds them. Its leaves past the
//    next power of two ≥ head_dim are 0, and adding 0 changes nothing, so the tree runs over
//    those norm_width leaves only: the same additions, though fewer barriers separate them
//    (below). Then the same scale and, per element, the same roundings to T (HF's
//    `.to(x.dtype)`; ONE_PLUS_WEIGHT: Gemma's (1 + w) in f32, one rounding), stored in T and
//    read back as rope.wgsl reads it.
//  - rope: rope.wgsl's angle (its range reduction, copied below), cos/sin (× attention_factor
//    in SCALED), and for the pair (i, i + rot_half), i < rot_half, the same expression per
//    element: x[i]·c − x[i + half]·s and x[i + half]·c + x[i]·s. Elements past 2·rot_half
//    pass through (partial rotary); rot_half = 0 is a NoPE layer.
//  - kv_store: a copy (of T values; finite values round-trip exactly).
// Variants: F16 (f16 storage), NORM (+ ONE_PLUS_WEIGHT), SCALED.
#include "common/dtype.wgsl"
#include "common/round_t.wgsl"

struct Params {
  n_heads: u32,    // Q heads per row
  n_kv_heads: u32, // K (and V) heads per row
  head_dim: u32,   // elements per head
  rot_half: u32,   // rotary_dim / 2: pairs rotated per head (inv_freq's length); 0: NoPE
  attention_factor: f32, // SCALED: cos and sin are multiplied by it
  eps: f32,        // NORM: rms_norm_eps
  norm_width: u32, // NORM: leaves the tree adds, the next power of two ≥ head_dim
  max_seq: u32,    // positions per head in the cache
  slots: u32,      // sequences the cache holds
  q_offset: u32,   // q row t, head h starts at q_offset + t·q_stride + h·head_dim (elements)
  q_stride: u32,
  k_offset: u32,   // likewise for k
  k_stride: u32,
  v_offset: u32,   // likewise for v
  v_stride: u32,
}

// The pass's step (src/gpu/step.ts): this call's row count and each row's (slot, position).
struct StepRow { slot: u32, position: u32 }
struct Step { rows: u32, row: array<StepRow> }

override WORKGROUP_SIZE: u32;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> step: Step;
@group(0) @binding(2) var<storage, read> q: array<T>;              // row t at q_offset + t·q_stride: (n_heads, head_dim)
@group(0) @binding(3) var<storage, read> k: array<T>;              // row t at k_offset + t·k_stride: (n_kv_heads, head_dim)
@group(0) @binding(4) var<storage, read> v: array<T>;              // row t at v_offset + t·v_stride: (n_kv_heads, head_dim)
@group(0) @binding(5) var<storage, read_write> q_out: array<T>;    // (rows, n_heads, head_dim)
@group(0) @binding(6) var<storage, read_write> k_cache: array<T>;  // (slots, n_kv_heads, max_seq, head_dim)
@group(0) @binding(7) var<storage, read_write> v_cache: array<T>;  // (slots, n_kv_heads, max_seq, head_dim)
@group(0) @binding(8) var<storage, read> inv_freq: array<f32>;     // (rot_half,) f32; unread when rot_half = 0

#include "common/rope_angle.wgsl"

// Where one head of one row reads and writes.
struct Head {
  is_q: bool,
  src: u32,    // its first element in q or k
  dst: u32,    // its first element in q_out or the caches
  v_src: u32,  // K heads: its V's first element in v
  store: bool, // Q heads, and K heads whose slot and position are in the cache
  position: u32,
}

fn head_of(t: u32, head: u32) -> Head {
  let d = params.head_dim;
  let at = step.row[t];
  if (head < params.n_heads) {
    return Head(true, params.q_offset + t * params.q_stride + head * d, (t * params.n_heads + head) * d, 0u, true, at.position);
  }
  let kv = head - params.n_heads;
  // Step.write refuses both, as kv_store: never write past a head or a slot.
  let store = at.position < params.max_seq && at.slot < params.slots;
  let dst = ((at.slot * params.n_kv_heads + kv) * params.max_seq + at.position) * d;
  return Head(false, params.k_offset + t * params.k_stride + kv * d, dst, params.v_offset + t * params.v_stride + kv * d, store, at.position);
}

fn load_x(h: Head, e: u32) -> f32 {
  if (h.is_q) { return f32(q[h.src + e]); }
  return f32(k[h.src + e]);
}

// The two elements unit u (< head_dim / 2) of a head writes: the rotation pair (u, u + half)
// for u < half, else two of the elements past 2·half, which pass through.
fn elements_of(u: u32) -> vec2u {
  let half = params.rot_half;
  if (u < half) { return vec2u(u, u + half); }
  let e = 2u * half + 2u * (u - half);
  return vec2u(e, e + 1u);
}

// Unit u's outputs from its two elements' values, as rope.wgsl rotates a pair; and V's
// elements 2u, 2u + 1 for a K head.
fn write_unit(h: Head, u: u32, x: vec2f) {
  let at = elements_of(u);
  var y = x;
  if (u < params.rot_half) {
    let r = reduce_angle(f32(h.position) * inv_freq[u]);
#include "common/rope_cos_sin.wgsl"
    y = vec2f(x[0] * c - x[1] * s, x[1] * c + x[0] * s);
  }
  if (h.is_q) {
    q_out[h.dst + at[0]] = T(y[0]);
    q_out[h.dst + at[1]] = T(y[1]);
  } else {
    k_cache[h.dst + at[0]] = T(y[0]);
    k_cache[h.dst + at[1]] = T(y[1]);
    // v = v_proj(x): stored as it is
    v_cache[h.dst + 2u * u] = v[h.v_src + 2u * u];
    v_cache[h.dst + 2u * u + 1u] = v[h.v_src + 2u * u + 1u];
  }
}

#ifdef NORM
// The q_norm and k_norm weights, in a uniform: eight storage buffers per stage is WebGPU's
// default limit, and the bindings above take them all. q_norm's at elements [0, head_dim),
// k_norm's at [NORM_MAX_HEAD_DIM, NORM_MAX_HEAD_DIM + head_dim), in the compute dtype
// (f16 packed two to a u32). The launcher's NORM_WEIGHT_SLOT: a smaller buffer there fails
// binding, a larger one puts k_norm elsewhere and fails the bit-exact tests.
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

// Per head, a segment of `segment` = norm_width / 2 invocations (and entries): the partial
// sums of squares of rms_norm.wgsl's tree below its first level.
var<workgroup> partial: array<f32, WORKGROUP_SIZE>;
// The normed heads, 2·segment ≥ head_dim entries each, in T: through memory, as between
// rms_norm and rope. Kept in a register, lavapipe's compiler drops the rounding of
// f32(T(y)) (measured: rope's results then differ by an ulp in F16); a store to memory and
// a barrier before the load keep it.
var<workgroup> normed: array<T, 2u * WORKGROUP_SIZE>;

// rms_norm.wgsl's leaf j: x_j² (its workgroup ≥ head_dim, so one square per leaf), 0 past the head.
fn leaf(h: Head, j: u32) -> f32 {
  if (j >= params.head_dim) { return 0.0; }
  let x = load_x(h, j);
  return x * x;
}

// The halving tree (a[m] += a[m + n/2], then n/4, … as rms_norm.wgsl adds) over the n
// (a power of two ≤ 16) values partial[at + m·spacing]: its order is the pairwise sum of the
// values in bit-reversed order of m, which a stack of partial sums computes in one pass.
fn halving_sum(at: u32, n: u32, spacing: u32) -> f32 {
  if (n == 1u) { return partial[at]; }
  let bits = countTrailingZeros(n);
  var stack: array<f32, 5>;
  for (var m = 0u; m < n; m++) {
    var sum = partial[at + (reverseBits(m) >> (32u - bits)) * spacing];
    var level = 0u;
    for (var carry = m; (carry & 1u) == 1u; carry >>= 1u) {
      sum = stack[level] + sum;
      level++;
    }
    stack[level] = sum;
  }
  return stack[bits];
}

// Element e of the head normed, rounded to T as rms_norm stores it.
fn norm_element(h: Head, e: u32, scale: f32) -> T {
  let x = load_x(h, e);
  let w = weight_at(select(NORM_MAX_HEAD_DIM, 0u, h.is_q) + e); // k_norm's weights follow q_norm's
#ifdef ONE_PLUS_WEIGHT
  return T((x * scale) * (1.0 + w));
#else
  let hx = roundT(x * scale);
  return T(w * hx);
#endif
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) groups: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let heads = params.n_heads + params.n_kv_heads;
  let segment = params.norm_width / 2u;
  let per_group = WORKGROUP_SIZE / segment;
  let first = (wid.x + wid.y * groups.x) * per_group; // this workgroup's first (row, head)
  // Uniform per workgroup, so the barriers below stay in uniform control flow; heads past
  // the rows in a workgroup that has some go through the barriers and write nothing.
  if (first / heads >= step.rows) { return; }
  let base = (lid / segment) * segment; // this head's segment
  let u = lid - base;
  let item = first + lid / segment;
  let live = item / heads < step.rows;
  let h = head_of(select(0u, item / heads, live), item % heads);
  let unit = live && u < params.head_dim / 2u; // a unit of the head: it writes two elements

  // x = q_norm(x) / k_norm(x). The tree's first level in registers (leaves u and u + half
  // the width; leaves past the head are 0), the rest in rounds of 3 levels, each thread
  // j < width / 8 adding its 8 entries j + m·width/8; the last ≤ 16 by every thread.
  partial[lid] = select(0.0, leaf(h, u) + leaf(h, u + segment), live);
  workgroupBarrier();
  var width = segment;
  for (; width > 16u; width /= 8u) {
    let spread = width / 8u;
    if (u < spread) {
      let sum = halving_sum(base + u, 8u, spread);
      partial[base + u] = sum;
    }
    workgroupBarrier();
  }
  let total = halving_sum(base, width, 1u);
  let scale = 1.0 / sqrt(total / f32(params.head_dim) + params.eps);
  let at = elements_of(u);
  if (unit) {
    normed[2u * base + at[0]] = norm_element(h, at[0], scale);
    normed[2u * base + at[1]] = norm_element(h, at[1], scale);
  }
  workgroupBarrier();

  // x = rope(x), stored
  if (unit && h.store) { write_unit(h, u, vec2f(f32(normed[2u * base + at[0]]), f32(normed[2u * base + at[1]]))); }
}
#else
@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  // One invocation per unit (row, head, u < head_dim / 2), numbered flat.
  let idx = gid.x + gid.y * groups.x * WORKGROUP_SIZE;
  let units = params.head_dim / 2u;
  let heads = params.n_heads + params.n_kv_heads;
  let t = idx / (heads * units);
  if (t >= step.rows) { return; }
  let u = idx % units;
  let h = head_of(t, (idx / units) % heads);
  let at = elements_of(u);
  if (h.store) { write_unit(h, u, vec2f(load_x(h, at[0]), load_x(h, at[1]))); }
}
#endif

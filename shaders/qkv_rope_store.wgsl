// The attention block's glue in one dispatch: per-head q/k RMSNorm (Qwen3, Gemma 3), rotary
// embedding, and the KV cache append, for the rows of q, k and v as the projections wrote
// them. Replaces rms_norm (q) + rms_norm (k) + rope + kv_store. Launcher:
// src/ops/qkv-rope-store.ts.
//
// One workgroup per (row, head): heads [0, n_heads) are Q heads, written to q_out row t
// (T, n_heads, head_dim); the next n_kv_heads are K heads, written to the cache at the
// row's step slot and position, (slots, n_kv_heads, max_seq, head_dim), with that head's V
// copied beside them into the V cache. Rows past step.rows exit.
//
// Bit-exact with the unfused ops, by doing their arithmetic in their order:
//  - NORM: the sum of squares is rms_norm.wgsl's: partial[j] = Σ x[j + m·REDUCE_WIDTH]² (in
//    order, from 0) for j < REDUCE_WIDTH (its workgroup), then the same halving tree. Its
//    partials past the head are 0, and adding 0 changes nothing, so the tree runs over the
//    first norm_width = min(REDUCE_WIDTH, next power of two ≥ head_dim) only. Then the
//    same scale and, per element, the same roundings to T (HF's `.to(x.dtype)`; ONE_PLUS_WEIGHT:
//    Gemma's (1 + w) in f32, one rounding), and the value read back as rope.wgsl reads it.
//  - rope: rope.wgsl's angle (its range reduction, copied below), cos/sin (× attention_factor
//    in SCALED), rotation and rounding; pairs (i, i + rot_half) for i < rot_half, elements
//    past 2·rot_half pass through (partial rotary); rot_half = 0 is a NoPE layer.
//  - kv_store: a copy (of T values; finite values round-trip exactly).
// Variants: F16 (f16 storage), NORM (+ ONE_PLUS_WEIGHT), SCALED.
#ifdef F16
enable f16;
alias T = f16;
#else
alias T = f32;
#endif

struct Params {
  n_heads: u32,    // Q heads per row
  n_kv_heads: u32, // K (and V) heads per row
  head_dim: u32,   // elements per head
  rot_half: u32,   // rotary_dim / 2: pairs rotated per head (inv_freq's length); 0: NoPE
  attention_factor: f32, // SCALED: cos and sin are multiplied by it
  eps: f32,        // NORM: rms_norm_eps
  norm_width: u32, // NORM: partial sums the tree adds, min(REDUCE_WIDTH, next power of two ≥ head_dim)
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
// rms_norm.wgsl's workgroup size (RMS_NORM_WORKGROUP): the number of partial sums it adds.
override REDUCE_WIDTH: u32;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> step: Step;
@group(0) @binding(2) var<storage, read> q: array<T>;              // row t at q_offset + t·q_stride: (n_heads, head_dim)
@group(0) @binding(3) var<storage, read> k: array<T>;              // row t at k_offset + t·k_stride: (n_kv_heads, head_dim)
@group(0) @binding(4) var<storage, read> v: array<T>;              // row t at v_offset + t·v_stride: (n_kv_heads, head_dim)
@group(0) @binding(5) var<storage, read_write> q_out: array<T>;    // (rows, n_heads, head_dim)
@group(0) @binding(6) var<storage, read_write> k_cache: array<T>;  // (slots, n_kv_heads, max_seq, head_dim)
@group(0) @binding(7) var<storage, read_write> v_cache: array<T>;  // (slots, n_kv_heads, max_seq, head_dim)
@group(0) @binding(8) var<storage, read> inv_freq: array<f32>;     // (rot_half,) f32; unread when rot_half = 0

#ifdef NORM
// The q_norm and k_norm weights, in a uniform: eight storage buffers per stage is WebGPU's
// default limit, and the bindings above take them all. q_norm's at elements [0, head_dim),
// k_norm's at [NORM_MAX_HEAD_DIM, NORM_MAX_HEAD_DIM + head_dim), in the compute dtype
// (f16 packed two to a u32). The launcher's QK_NORM_MAX_HEAD_DIM: a smaller buffer fails
// binding, a larger head fails the bit-exact test at head_dim 256.
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

var<workgroup> partial: array<f32, REDUCE_WIDTH>; // rms_norm.wgsl's partial sums of squares
// The normed head, in T: through memory, as between rms_norm and rope. Kept in a register,
// lavapipe's compiler drops the rounding of f32(T(y)) (measured: rope's results then
// differ by an ulp in F16), so the value crosses invocations here and must be stored.
var<workgroup> normed: array<T, NORM_MAX_HEAD_DIM>;
#endif

// rope.wgsl's range reduction of the angle, the same constants and operations (see there).
const C1: f32 = 6.28125;
const C2: f32 = 0.00193023681640625;
const C3: f32 = 0.000005070363386039389;
const INV_2PI: f32 = 0.15915494;

fn reduce_angle(a: f32) -> f32 {
  let n = round(a * INV_2PI);
  return ((a - n * C1) - n * C2) - n * C3;
}

// Element i of this workgroup's source head, from q or from k (is_q is uniform).
fn load_x(is_q: bool, i: u32) -> f32 {
  if (is_q) { return f32(q[i]); }
  return f32(k[i]);
}

fn store_x(is_q: bool, i: u32, x: T) {
  if (is_q) { q_out[i] = x; } else { k_cache[i] = x; }
}

#ifdef NORM
// 1 / sqrt(mean(x²) + eps) of the head at `src`, summed as rms_norm.wgsl sums a row.
// Called in uniform control flow (barriers).
fn rms_scale(is_q: bool, src: u32, lid: u32) -> f32 {
  let d = params.head_dim;
  for (var j = lid; j < params.norm_width; j += WORKGROUP_SIZE) {
    var sum = 0.0;
    for (var m = j; m < d; m += REDUCE_WIDTH) {
      let x = load_x(is_q, src + m);
      sum += x * x;
    }
    partial[j] = sum;
  }
  workgroupBarrier();
  for (var stride = params.norm_width / 2u; stride > 0u; stride /= 2u) {
    for (var j = lid; j < stride; j += WORKGROUP_SIZE) { partial[j] += partial[j + stride]; }
    workgroupBarrier();
  }
  let total = workgroupUniformLoad(&partial[0]);
  return 1.0 / sqrt(total / f32(d) + params.eps);
}
#endif

#ifdef NORM
// Element j of the head normed, rounded to T as rms_norm stores it.
fn norm_element(is_q: bool, src: u32, j: u32, scale: f32, w_base: u32) -> T {
  let x = load_x(is_q, src + j);
#ifdef ONE_PLUS_WEIGHT
  return T((x * scale) * (1.0 + weight_at(w_base + j)));
#else
  let h = T(x * scale);
  return T(weight_at(w_base + j) * f32(h));
#endif
}
#endif

// Element j of the head as the unfused rope reads it: normed (from workgroup memory), or
// as the projection wrote it.
fn value(is_q: bool, src: u32, j: u32) -> f32 {
#ifdef NORM
  return f32(normed[j]);
#else
  return load_x(is_q, src + j);
#endif
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) groups: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  // Items past 65535 spill into y (workgroups1d); every test below is uniform per
  // workgroup, so the norm's barriers stay in uniform control flow.
  let heads = params.n_heads + params.n_kv_heads;
  let item = wid.x + wid.y * groups.x;
  let t = item / heads;
  if (t >= step.rows) { return; }
  let head = item % heads;
  let at = step.row[t];
  let d = params.head_dim;
  let is_q = head < params.n_heads;
  var src: u32;
  var dst: u32;
  if (is_q) {
    src = params.q_offset + t * params.q_stride + head * d;
    dst = (t * params.n_heads + head) * d;
  } else {
    // Step.write refuses both, as kv_store: never write past a head or a slot.
    if (at.position >= params.max_seq || at.slot >= params.slots) { return; }
    let kv = head - params.n_heads;
    src = params.k_offset + t * params.k_stride + kv * d;
    dst = ((at.slot * params.n_kv_heads + kv) * params.max_seq + at.position) * d;
    // v = v_proj(x): stored as it is
    let v_src = params.v_offset + t * params.v_stride + kv * d;
    for (var j = lid; j < d; j += WORKGROUP_SIZE) { v_cache[dst + j] = v[v_src + j]; }
  }
#ifdef NORM
  // x = q_norm(x) / k_norm(x), per head
  let scale = rms_scale(is_q, src, lid);
  let w_base = select(NORM_MAX_HEAD_DIM, 0u, is_q); // k_norm's weights follow q_norm's
  for (var j = lid; j < d; j += WORKGROUP_SIZE) { normed[j] = norm_element(is_q, src, j, scale, w_base); }
  workgroupBarrier();
#endif

  // x = rope(x): pairs (i, i + half) at the row's position, as rope.wgsl
  let half = params.rot_half;
  for (var i = lid; i < half; i += WORKGROUP_SIZE) {
    let r = reduce_angle(f32(at.position) * inv_freq[i]);
#ifdef SCALED
    let c = cos(r) * params.attention_factor;
    let s = sin(r) * params.attention_factor;
#else
    let c = cos(r);
    let s = sin(r);
#endif
    let x1 = value(is_q, src, i);
    let x2 = value(is_q, src, i + half);
    store_x(is_q, dst + i, T(x1 * c - x2 * s));
    store_x(is_q, dst + i + half, T(x2 * c + x1 * s));
  }
  // past the rotary dim (partial rotary, or all of a NoPE head): as normed
  for (var j = 2u * half + lid; j < d; j += WORKGROUP_SIZE) {
    store_x(is_q, dst + j, T(value(is_q, src, j)));
  }
}

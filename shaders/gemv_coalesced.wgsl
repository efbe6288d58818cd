// Decode matrix-vector product for hardware GPUs (the "gpu" kernel family): y = W·x (+ b),
// W in HF Linear layout (N, K). Launcher: src/ops/gemv-coalesced.ts. Same bindings, Params,
// variants and results as gemv.wgsl (the software-GPU design); only the mapping of
// threads to memory differs. One dispatch per row-chunk of W; a chunk writes rows
// [rowOffset, rowOffset + rows) of y. Variants: F16 (f16 storage, f32 accumulation),
// SUBGROUPS (row sums by subgroupAdd, else a workgroup-memory tree), BIAS, OUT_F32, RESIDUAL,
// GLU (with GELU_TANH: GeGLU instead of SwiGLU), RMS_NORM, ROPE_STORE (with SCALED), below.
//
// GLU: the Llama MLP's gate_up_proj and its activation in one dispatch. W is the joined
// (2I, K) [gate; up] weight in one chunk, y is (I,): y[p] = act(gate_p·x) * (up_p·x), with
// common/glu.wgsl's roundings. Each row group takes ROWS_PER_THREAD / 2 pairs p: its first
// half of the accumulators reduces gate rows p, its second half up rows I + p, each exactly
// as the plain variant reduces that row (same lanes, same order), so y holds the bits of
// this gemv writing 2I values in T and then swiglu.wgsl FUSED. Not with BIAS, OUT_F32,
// RESIDUAL.
//
// RMS_NORM: the RMSNorm before a projection folded into it. x is the un-normalised row (the
// residual stream), the norm's weight g is already in W's columns (W·g, at load), and
// y = s·(W·x) (+ b), s = 1 / sqrt(mean(x²) + eps), rms_norm.wgsl's `scale`. Each row group
// sums x_k² in f32 in the loop that reads x (its lanes read every element once), reduces
// it as it reduces its rows, and scales the row sums before the epilogue: the bias after
// the scale, GLU's act(s·gate)·(s·up). Every row group computes the same s. 1 KiB more
// workgroup memory (partialSq). Not with OUT_F32 or RESIDUAL.
//
// ROPE_STORE: the q/k/v projection and qkv_rope_store.wgsl (without qk-norm) in one
// dispatch, as gemv.wgsl's. W is the joined [q; k; v] ((n_heads + 2·n_kv_heads)·head_dim
// rows) in one chunk, rows its row count. A row group's ROWS_PER_THREAD rows are
// ROWS_PER_THREAD / 2 whole units of common/rope_store.wgsl (one at the default 2): the two
// rows rope_store_row names, each reduced exactly as the plain variant reduces that row, and
// the reducing lane hands the unit's two values (scaled, bias added: what the plain variant
// would round and store) to rope_store_unit, which rotates q into y and k, v into the KV
// cache: bit for bit this gemv into [q | k | v] then qkv_rope_store. Units past the last
// recompute it (in bounds, every invocation at the barriers) and write nothing. With BIAS,
// RMS_NORM, SCALED; not with OUT_F32, RESIDUAL or GLU.
//
// Why this shape suits a hardware GPU (and not lavapipe):
// - Coalescing. A row group of THREADS_PER_ROW (32 or more) neighbouring invocations reads
//   one row: lane l loads 16-byte vector l, l + THREADS_PER_ROW, ... so one load
//   instruction of a 32-wide warp fetches 512 contiguous bytes, whole 32-byte sectors and
//   128-byte lines, the pattern DRAM streams at full speed. gemv.wgsl's 4 threads per row
//   make a warp touch 8 rows 64 bytes apart each step: 8 partial lines per load.
// - x in workgroup memory. The workgroup copies x once (coalesced) and its row groups read
//   it from there, so W alone streams from DRAM/L2. x is staged when it fits the
//   X_CACHE vectors (8 KiB: K ≤ 4096 in f16, 2048 in f32), else it is read through L1,
//   which the row groups share as well. 10 KiB of workgroup memory in all (x and the
//   partial sums) per 256 invocations: 8 workgroups, an SM's thread limit, fit in an
//   NVIDIA SM's 228 KiB; an AMD CU's 64 KiB holds 6.
// - Occupancy and loads in flight. 256 invocations, each accumulating ROWS_PER_THREAD (2)
//   rows: two independent 16-byte loads per iteration, and 16 rows per workgroup, so a
//   2048-row projection is 128 workgroups and the LM head ~8000.
// - Row sums: subgroupAdd (one instruction on most GPUs) then, when a subgroup is
//   narrower than the row group (Intel's 8/16, lavapipe's 8), one workgroup-memory step
//   over the subgroups of the group; without subgroups a tree over workgroup memory.
// Peers: llama.cpp's ggml-webgpu mul_mat_vec.wgsl (a workgroup strides K for a few output
// rows, subgroupAdd then workgroup memory), llama.cpp's CUDA mul_mat_vec (a warp or block
// per row, coalesced half2 loads), TVM/WebLLM's decode GEMV schedule (a row per thread
// group, x staged in shared memory). The code here is written from that description.
//
// On lavapipe this is slower than gemv.wgsl (its loads are per-lane scalar loops, so
// coalescing buys nothing, and barriers are coroutine switches): it is compiled and
// tested there, and chosen only on hardware adapters.
#ifdef SUBGROUPS
enable subgroups;
#endif
#ifdef F16
enable f16;
// W and x as vec4<u32> (8 halves, 16 bytes per load) + unpack2x16float: one 128-bit load
// per lane, as vec4<f16> would be, and it needs no f16 arithmetic.
alias T = f16;
alias V = vec4<u32>;
#else
alias T = f32;
alias V = vec4f;
#endif
#ifdef OUT_F32
alias Y = f32;
#else
alias Y = T;
#endif
#ifdef GLU
#include "common/glu.wgsl"
#endif

struct Params {
  rows: u32,       // rows of this chunk of W (≤ N); GLU: I, the pairs (gate rows; W has 2I)
  cols: u32,       // K: elements of x and of each row of W
  rowOffset: u32,  // the chunk's first row: where it writes in y and reads in bias; GLU: 0 (one chunk)
  eps: f32,        // RMS_NORM: the norm's eps (0 otherwise, unread)
#ifdef ROPE_STORE
#include "common/rope_store_params.wgsl"
#endif
}

override WORKGROUP_SIZE: u32;   // a multiple of THREADS_PER_ROW
override THREADS_PER_ROW: u32;  // a power of two ≥ the widest subgroup (SUBGROUPS), ≤ WORKGROUP_SIZE
override ROWS_PER_THREAD: u32;  // ≤ MAX_ROWS_PER_THREAD; GLU: even (gate and up rows of its pairs)
override X_CACHE: u32;          // 16-byte vectors of x the workgroup memory holds
const MAX_ROWS_PER_THREAD = 4u; // capacity of the accumulator arrays (function arrays need a const size)

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> w: array<V>;       // (rows, K): 8 halves or 4 floats per element
@group(0) @binding(2) var<storage, read> x: array<V>;       // (K,)
#include "common/linear_out.wgsl"
#ifdef ROPE_STORE
const ROPE_STORE_FIRST_BINDING: u32 = 5u; // step, inv_freq, k_cache, v_cache: after the bias (4)
#include "common/round_t.wgsl"
#include "common/rope_store.wgsl"
#endif

#ifdef F16
const VEC = 8u; // elements per 16-byte vector
#else
const VEC = 4u;
#endif

var<workgroup> xs: array<V, X_CACHE>;
// Partial row sums, (invocation or subgroup, rows per thread).
var<workgroup> partial: array<f32, WORKGROUP_SIZE * ROWS_PER_THREAD>;
#ifdef RMS_NORM
// Partial sums of x², (invocation or subgroup,): reduced alongside `partial`.
var<workgroup> partialSq: array<f32, WORKGROUP_SIZE>;
#endif

#ifdef F16
// dot of two 16-byte vectors of 8 halves, in f32.
fn dot8(a: V, b: V) -> f32 {
  return dot(vec4f(unpack2x16float(a.x), unpack2x16float(a.y)), vec4f(unpack2x16float(b.x), unpack2x16float(b.y))) +
    dot(vec4f(unpack2x16float(a.z), unpack2x16float(a.w)), vec4f(unpack2x16float(b.z), unpack2x16float(b.w)));
}
// Element e of a packed f16 array (the scalar path).
fn wAt(e: u32) -> f32 { return unpack2x16float(w[e / 8u][(e / 2u) % 4u])[e % 2u]; }
fn xAt(e: u32) -> f32 { return unpack2x16float(x[e / 8u][(e / 2u) % 4u])[e % 2u]; }
#else
fn dot8(a: V, b: V) -> f32 { return dot(a, b); }
fn wAt(e: u32) -> f32 { return w[e / 4u][e % 4u]; }
fn xAt(e: u32) -> f32 { return x[e / 4u][e % 4u]; }
#endif

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wid: vec3u,
  @builtin(num_workgroups) groups: vec3u,
#ifdef SUBGROUPS
  @builtin(subgroup_invocation_id) sgLane: u32,
  @builtin(subgroup_size) sgSize: u32,
#endif
) {
  let lane = lid % THREADS_PER_ROW;          // which vectors of the row
  let rowGroup = lid / THREADS_PER_ROW;      // which ROWS_PER_THREAD rows of the workgroup's
  let workgroup = wid.x + wid.y * groups.x;  // 2-D past 65535 workgroups
  let K = params.cols;

  var base: array<u32, MAX_ROWS_PER_THREAD>; // first element of each row
  var acc: array<f32, MAX_ROWS_PER_THREAD>;
#ifdef GLU
  // Accumulator j < pairs: gate row p = firstPair + j; j ≥ pairs: up row I + p of the same p.
  // Pairs past I recompute the last pair (in bounds, and every invocation reaches the
  // barriers) and are not written.
  let pairs = ROWS_PER_THREAD / 2u;
  let firstPair = (workgroup * (WORKGROUP_SIZE / THREADS_PER_ROW) + rowGroup) * pairs;
  for (var j = 0u; j < ROWS_PER_THREAD; j++) {
    let p = min(firstPair + j % pairs, params.rows - 1u);
    base[j] = select(p, params.rows + p, j >= pairs) * K;
    acc[j] = 0.0;
  }
#else
#ifdef ROPE_STORE
  // Accumulator j: element j % 2 of unit firstUnit + j / 2. Units past the last recompute it
  // (in bounds, and every invocation reaches the barriers) and are not written.
  let units = ROWS_PER_THREAD / 2u;
  let firstUnit = (workgroup * (WORKGROUP_SIZE / THREADS_PER_ROW) + rowGroup) * units;
  for (var j = 0u; j < ROWS_PER_THREAD; j++) {
    base[j] = rope_store_row(min(firstUnit + j / 2u, params.rows / 2u - 1u), j % 2u) * K;
    acc[j] = 0.0;
  }
#else
  let firstRow = (workgroup * (WORKGROUP_SIZE / THREADS_PER_ROW) + rowGroup) * ROWS_PER_THREAD;
  // Rows past the chunk's end recompute its last row (in bounds, and every invocation
  // reaches the barriers) and are not written.
  for (var j = 0u; j < ROWS_PER_THREAD; j++) {
    base[j] = min(firstRow + j, params.rows - 1u) * K;
    acc[j] = 0.0;
  }
#endif
#endif

  // Vector path: rows start on 16-byte boundaries only when K is a multiple of VEC; then it
  // covers every element. Otherwise (never in real models) the scalar loop does the row.
  let vectors = select(0u, K / VEC, K % VEC == 0u);
  let cached = vectors <= X_CACHE; // uniform: from params
  if (cached) {
    for (var i = lid; i < vectors; i += WORKGROUP_SIZE) { xs[i] = x[i]; }
  }
  workgroupBarrier();
#ifdef RMS_NORM
  var sumSq = 0.0; // this lane's share of Σ x², from the x it reads below
#endif
  if (cached) {
    for (var k = lane; k < vectors; k += THREADS_PER_ROW) {
      let xv = xs[k];
      for (var j = 0u; j < ROWS_PER_THREAD; j++) { acc[j] += dot8(w[base[j] / VEC + k], xv); }
#ifdef RMS_NORM
      sumSq += dot8(xv, xv);
#endif
    }
  } else {
    for (var k = lane; k < vectors; k += THREADS_PER_ROW) {
      let xv = x[k];
      for (var j = 0u; j < ROWS_PER_THREAD; j++) { acc[j] += dot8(w[base[j] / VEC + k], xv); }
#ifdef RMS_NORM
      sumSq += dot8(xv, xv);
#endif
    }
  }
  // Scalar path, coalesced too: neighbouring lanes read neighbouring elements.
  for (var e = vectors * VEC + lane; e < K; e += THREADS_PER_ROW) {
    let xe = xAt(e);
    for (var j = 0u; j < ROWS_PER_THREAD; j++) { acc[j] += wAt(base[j] + e) * xe; }
#ifdef RMS_NORM
    sumSq += xe * xe;
#endif
  }

  // Sum each row over its THREADS_PER_ROW lanes.
#ifdef SUBGROUPS
  // Subgroups are runs of consecutive invocation indices starting at multiples of their
  // width (so on every implementation for a 1-D workgroup, as gemv.wgsl assumes too), and
  // the launcher makes THREADS_PER_ROW a multiple of the widest: each subgroup lies inside
  // one row group, which holds THREADS_PER_ROW / sgSize of them.
  for (var j = 0u; j < ROWS_PER_THREAD; j++) {
    let s = subgroupAdd(acc[j]);
    if (sgLane == 0u) { partial[(lid / sgSize) * ROWS_PER_THREAD + j] = s; }
  }
#ifdef RMS_NORM
  let sq = subgroupAdd(sumSq);
  if (sgLane == 0u) { partialSq[lid / sgSize] = sq; }
#endif
  workgroupBarrier();
  if (lane != 0u) { return; }
  let first = lid / sgSize; // lane 0 starts the row group's first subgroup
  for (var j = 0u; j < ROWS_PER_THREAD; j++) {
    var sum = 0.0;
    for (var p = 0u; p < THREADS_PER_ROW / sgSize; p++) { sum += partial[(first + p) * ROWS_PER_THREAD + j]; }
    acc[j] = sum;
  }
#ifdef RMS_NORM
  var totalSq = 0.0;
  for (var p = 0u; p < THREADS_PER_ROW / sgSize; p++) { totalSq += partialSq[first + p]; }
#endif
#else
  // Tree over workgroup memory, halving the active lanes each step. Lane 0 ends with the
  // sum in its own slot, written by itself, so no barrier follows the last step.
  for (var j = 0u; j < ROWS_PER_THREAD; j++) { partial[lid * ROWS_PER_THREAD + j] = acc[j]; }
#ifdef RMS_NORM
  partialSq[lid] = sumSq;
#endif
  for (var o = THREADS_PER_ROW / 2u; o > 0u; o /= 2u) {
    workgroupBarrier();
    if (lane < o) {
      for (var j = 0u; j < ROWS_PER_THREAD; j++) {
        partial[lid * ROWS_PER_THREAD + j] += partial[(lid + o) * ROWS_PER_THREAD + j];
      }
#ifdef RMS_NORM
      partialSq[lid] += partialSq[lid + o];
#endif
    }
  }
  if (lane != 0u) { return; }
  for (var j = 0u; j < ROWS_PER_THREAD; j++) { acc[j] = partial[lid * ROWS_PER_THREAD + j]; }
#ifdef RMS_NORM
  let totalSq = partialSq[lid];
#endif
#endif

#ifdef RMS_NORM
  // The norm's scale, as rms_norm.wgsl's; then every row sum is s·(W·x), before the bias or GLU.
  let scale = 1.0 / sqrt(totalSq / f32(K) + params.eps);
  for (var j = 0u; j < ROWS_PER_THREAD; j++) { acc[j] *= scale; }
#endif

#ifdef GLU
  for (var j = 0u; j < pairs; j++) {
    let p = firstPair + j;
    if (p >= params.rows) { break; }
    y[params.rowOffset + p] = glu(acc[j], acc[j + pairs]); // act(gate) * up, each rounded to T first
  }
#else
#ifdef ROPE_STORE
  for (var p = 0u; p < units; p++) {
    let g = firstUnit + p;
    if (g >= params.rows / 2u) { break; }
    rope_store_unit(0u, g, rope_store_biased(g, vec2f(acc[2u * p], acc[2u * p + 1u]))); // rounded to T there, as the plain variant's store
  }
#else
  for (var j = 0u; j < ROWS_PER_THREAD; j++) {
    let row = firstRow + j;
    if (row >= params.rows) { break; }
#ifdef BIAS
    let r = acc[j] + f32(bias[params.rowOffset + row]);
#else
    let r = acc[j];
#endif
#ifdef RESIDUAL
    // Rounded to T first, then added in T: bit for bit the unfused projection + add.wgsl.
    y[params.rowOffset + row] = y[params.rowOffset + row] + Y(r);
#else
    y[params.rowOffset + row] = Y(r);
#endif
  }
#endif
#endif
}

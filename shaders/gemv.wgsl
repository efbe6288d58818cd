// Decode matrix-vector product, one token: y = W·x (+ b), W in HF Linear layout (N, K).
// Launcher: src/ops/gemv.ts. One dispatch per row-chunk of W; a chunk writes rows
// [rowOffset, rowOffset + rows) of y. Variants: F16 (f16 storage, f32 accumulation),
// SUBGROUPS (row reduction by subgroupShuffleXor, else workgroup memory), BIAS, OUT_F32
// (f32 logits from f16 compute: the LM head), RESIDUAL (y += W·x (+ b): y is the residual
// stream, so o_proj and down_proj need no separate add dispatch), BATCH (TOKENS rows of x at
// once, x (TOKENS, K) and y (TOKENS, N): a batched decode pass, one row per sequence, reads
// each weight once for all of them), GLU (W is an MLP's [gate; up] (2I, K) and y (I,) =
// act(gate·x) · (up·x), common/glu.wgsl's activation and roundings in the epilogue:
// gate_up_proj and the activation in one dispatch; GELU_TANH picks GeGLU), RMS_NORM (x is
// the un-normalised residual stream and the kernel is the RMSNorm too: y = s·(W·x) (+ b),
// s = 1/sqrt(mean(x²) + eps), the norm's weight folded into W's columns at load; the
// squares ride on the loads of x the dot products make anyway, each row's threads covering
// all of K, and reduce with the row sums), ROPE_STORE (W is the joined [q; k; v] and the
// kernel is qkv_rope_store too: a thread's rows are whole rotation units, whose projections
// common/rope_store.wgsl rotates and stores, q into y and k, v into the KV cache, bit for bit
// the projection then qkv_rope_store.wgsl without qk-norm).
//
// Memory-bound: 2 (f16) or 4 (f32) bytes per weight, each read once, 2 flops per weight.
// THREADS_PER_ROW threads split each row's K into 16-byte vectors (4 f32 or 8 f16), and each
// thread accumulates ROWS_PER_THREAD rows at once, so one load of x serves that many rows.
// Why this shape, on lavapipe (the software GPU tests run on): llvmpipe runs 8 invocations
// as one AVX vector and loads from per-invocation addresses one lane and one 32-bit word at
// a time, each with a bounds check (~12 instructions per word). That, not DRAM, sets its
// read limit, so cost = 32-bit loads per weight byte: W needs one per 4 bytes whatever the
// layout, x adds 1/ROWS_PER_THREAD of that. More rows per thread spill registers (8 rows:
// ~400 stack accesses per loop iteration), so 4.
// BATCH: per 16-byte step a thread loads ROWS_PER_THREAD vectors of W (kept in registers)
// and TOKENS vectors of x, so W's loads serve TOKENS rows of y: at TOKENS = 4 the loads per
// weight are (4 + 4)/4 = 2 against (4 + 1)/4 = 1.25 for one token, 1.6x the time for 4x
// the work, where a matmul tile costs far more on lavapipe (src/ops/gemv.ts has figures).
#ifdef SUBGROUPS
enable subgroups;
#endif
// F16: W and x as vec4<u32> (8 halves, 16 bytes per load) + unpack2x16float, not vec4<f16>:
// on llvmpipe a vec4<f16> load moves 8 bytes in 4 lane-by-lane 16-bit loads, twice the load
// instructions per byte (measured 0.55-0.6x of the read limit against 0.7-0.9x), while
// unpack2x16float compiles to vcvtph2ps; bitcast<vec4<f16>> of a u32 pair is a few % more code.
#include "common/linear_dtypes.wgsl"
#ifdef GLU
#include "common/glu.wgsl"
#endif

struct Params {
  rows: u32,       // rows of this chunk of W (≤ N); GLU: I, the gate rows (half of W's)
  cols: u32,       // K: elements of x and of each row of W
  rowOffset: u32,  // the chunk's first row: where it writes in y and reads in bias
  yStride: u32,    // elements between rows of y (BATCH): N; GLU: I; ROPE_STORE: q's n_heads·head_dim
  eps: f32,        // RMS_NORM: the norm's eps
#ifdef ROPE_STORE
#include "common/rope_store_params.wgsl"
#endif
}

override THREADS_PER_ROW: u32; // a power of two ≤ 4 (WebGPU's smallest subgroup)
override ROWS_PER_THREAD: u32; // ≤ MAX_ROWS_PER_THREAD
override WORKGROUP_SIZE: u32;  // row groups per workgroup × THREADS_PER_ROW
const MAX_ROWS_PER_THREAD = 4u; // capacity of the accumulator array (function arrays need a const size)
#ifdef BATCH
override TOKENS: u32;          // rows of x and y, ≤ MAX_TOKENS
const MAX_TOKENS = 8u;
#else
const TOKENS = 1u;
const MAX_TOKENS = 1u;
#endif
const ACC = MAX_ROWS_PER_THREAD * MAX_TOKENS; // accumulators: [row of W][token]
#ifdef RMS_NORM
const SLOTS = ACC + MAX_TOKENS; // what a thread reduces: its accumulators and its sums of x² (a token each)
#else
const SLOTS = ACC;
#endif

@group(0) @binding(0) var<uniform> params: Params;
#ifdef F16
@group(0) @binding(1) var<storage, read> w: array<vec4<u32>>; // (rows, K) f16 as 8 halves per element
@group(0) @binding(2) var<storage, read> x: array<vec4<u32>>; // (K,) f16 as 8 halves per element
#else
@group(0) @binding(1) var<storage, read> w: array<vec4f>;     // (rows, K) f32, 4 per element
@group(0) @binding(2) var<storage, read> x: array<vec4f>;     // (K,) f32, 4 per element
#endif
#include "common/linear_out.wgsl"
#ifdef ROPE_STORE
const ROPE_STORE_FIRST_BINDING: u32 = 5u; // step, inv_freq, k_cache, v_cache: after the bias (4)
#include "common/round_t.wgsl"
#include "common/rope_store.wgsl"
#endif

#ifdef F16
const VEC = 8u; // elements per 16-byte load
#else
const VEC = 4u;
#endif

#ifndef SUBGROUPS
var<workgroup> partial: array<f32, WORKGROUP_SIZE * SLOTS>; // (threads, accumulators (+ squares))
#endif

#ifdef F16
// One 16-byte element of W or x (8 halves) as f32: elements 0..3 and 4..7.
fn widen(v: vec4<u32>) -> array<vec4f, 2> {
  return array(vec4f(unpack2x16float(v.x), unpack2x16float(v.y)), vec4f(unpack2x16float(v.z), unpack2x16float(v.w)));
}
// Element e of a packed f16 array (the scalar path).
fn wAt(e: u32) -> f32 { return unpack2x16float(w[e / 8u][(e / 2u) % 4u])[e % 2u]; }
fn xAt(e: u32) -> f32 { return unpack2x16float(x[e / 8u][(e / 2u) % 4u])[e % 2u]; }
#else
fn wAt(e: u32) -> f32 { return w[e / 4u][e % 4u]; }
fn xAt(e: u32) -> f32 { return x[e / 4u][e % 4u]; }
#endif

// RMS_NORM: rms_norm.wgsl's scale from a row's sum of squares (summed in another order
// here): x·s is the normed row. Else 1, which the compiler folds away.
fn rmsScale(squares: f32) -> f32 {
#ifdef RMS_NORM
  return 1.0 / sqrt(squares / f32(params.cols) + params.eps);
#else
  return 1.0;
#endif
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let lane = lid % THREADS_PER_ROW;          // which slice of K
  let rowGroup = lid / THREADS_PER_ROW;      // which ROWS_PER_THREAD rows
  let rowGroupsPerWorkgroup = WORKGROUP_SIZE / THREADS_PER_ROW;
  let workgroup = wid.x + wid.y * groups.x;  // 2-D past 65535 workgroups
  let K = params.cols;

  // Rows past the chunk's end recompute its last row (no out-of-bounds read, no early
  // return: every invocation must reach the reduction) and are not written.
  var base: array<u32, MAX_ROWS_PER_THREAD>; // first element of each row
  var acc: array<f32, ACC>; // this thread's partial dot products: acc[j * MAX_TOKENS + t], row j, token t
  var squares: array<f32, MAX_TOKENS>; // RMS_NORM: Σ x² over this thread's slice of K, per token (zeros)
#ifdef GLU
  // A thread's rows are `pairs` gate rows and the up rows that go with them (I further on),
  // so the epilogue has both halves of its outputs; each row is summed exactly as the
  // plain variant sums it, so y is bit for bit gemv → [gate | up] → swiglu.wgsl.
  let pairs = ROWS_PER_THREAD / 2u;
  let firstRow = (workgroup * rowGroupsPerWorkgroup + rowGroup) * pairs; // first gate row
  for (var j = 0u; j < ROWS_PER_THREAD; j++) {
    base[j] = (min(firstRow + j % pairs, params.rows - 1u) + select(0u, params.rows, j >= pairs)) * K;
    for (var t = 0u; t < TOKENS; t++) { acc[j * MAX_TOKENS + t] = 0.0; }
  }
#else
#ifdef ROPE_STORE
  // A thread's rows are ROWS_PER_THREAD / 2 whole units (rope_store_row), each summed as the
  // plain variant sums a row.
  let units = ROWS_PER_THREAD / 2u;
  let firstRow = (workgroup * rowGroupsPerWorkgroup + rowGroup) * units; // first unit
  for (var j = 0u; j < ROWS_PER_THREAD; j++) {
    base[j] = rope_store_row(min(firstRow + j / 2u, params.rows / 2u - 1u), j % 2u) * K;
    for (var t = 0u; t < TOKENS; t++) { acc[j * MAX_TOKENS + t] = 0.0; }
  }
#else
  let firstRow = (workgroup * rowGroupsPerWorkgroup + rowGroup) * ROWS_PER_THREAD;
  for (var j = 0u; j < ROWS_PER_THREAD; j++) {
    base[j] = min(firstRow + j, params.rows - 1u) * K;
    for (var t = 0u; t < TOKENS; t++) { acc[j * MAX_TOKENS + t] = 0.0; }
  }
#endif
#endif

  // Vector path: rows start on 16-byte boundaries only when K is a multiple of VEC; then
  // every element of the row is covered here. Otherwise the scalar loop below does the row.
  let vectors = select(0u, K / VEC, K % VEC == 0u);
#ifdef BATCH
  // W's vectors of this step once (in registers), then each token's x against all of them.
  // SHARE_X: lane l and lane l ^ 4 (same slice of K, the neighbouring row group; subgroups
  // of ≥ 8 consecutive invocations) each load half the tokens' x and swap them with one
  // shuffle (a vpermd on lavapipe, where a load is a per-lane loop): 4 + TOKENS/2 loads per
  // step, not 4 + TOKENS. Shuffles need uniform control flow, so the loop runs the
  // workgroup-uniform step count and a lane past its row's end repeats its last vector
  // without adding it.
  let steps = (vectors + THREADS_PER_ROW - 1u) / THREADS_PER_ROW;
#ifdef SHARE_X
  let odd = (lid / THREADS_PER_ROW) % 2u; // which half of each token pair this lane loads
#endif
  for (var i = 0u; i < steps; i++) {
    let kk = i * THREADS_PER_ROW + lane;
    let k = min(kk, vectors - 1u);
    let live = kk < vectors;
#ifdef F16
    var wv: array<array<vec4f, 2>, MAX_ROWS_PER_THREAD>;
    for (var j = 0u; j < ROWS_PER_THREAD; j++) { wv[j] = widen(w[base[j] / VEC + k]); }
#else
    var wv: array<vec4f, MAX_ROWS_PER_THREAD>;
    for (var j = 0u; j < ROWS_PER_THREAD; j++) { wv[j] = w[base[j] / VEC + k]; }
#endif
#ifdef SHARE_X
    for (var t = 0u; t < TOKENS; t += 2u) {
      let own = x[min(t + odd, TOKENS - 1u) * vectors + k];
      let other = subgroupShuffleXor(own, 4u);
      let pair = array(select(own, other, odd == 1u), select(other, own, odd == 1u)); // tokens t, t + 1
      for (var u = 0u; u < 2u; u++) {
        if (t + u >= TOKENS) { break; }
#ifdef F16
        let xv = widen(pair[u]);
#ifdef RMS_NORM
        squares[t + u] += select(0.0, dot(xv[0], xv[0]) + dot(xv[1], xv[1]), live);
#endif
        for (var j = 0u; j < ROWS_PER_THREAD; j++) { acc[j * MAX_TOKENS + t + u] += select(0.0, dot(wv[j][0], xv[0]) + dot(wv[j][1], xv[1]), live); }
#else
        let xv = pair[u];
#ifdef RMS_NORM
        squares[t + u] += select(0.0, dot(xv, xv), live);
#endif
        for (var j = 0u; j < ROWS_PER_THREAD; j++) { acc[j * MAX_TOKENS + t + u] += select(0.0, dot(wv[j], xv), live); }
#endif
      }
    }
#else
    for (var t = 0u; t < TOKENS; t++) {
#ifdef F16
      let xv = widen(x[t * vectors + k]);
#ifdef RMS_NORM
      squares[t] += select(0.0, dot(xv[0], xv[0]) + dot(xv[1], xv[1]), live);
#endif
      for (var j = 0u; j < ROWS_PER_THREAD; j++) { acc[j * MAX_TOKENS + t] += select(0.0, dot(wv[j][0], xv[0]) + dot(wv[j][1], xv[1]), live); }
#else
      let xv = x[t * vectors + k];
#ifdef RMS_NORM
      squares[t] += select(0.0, dot(xv, xv), live);
#endif
      for (var j = 0u; j < ROWS_PER_THREAD; j++) { acc[j * MAX_TOKENS + t] += select(0.0, dot(wv[j], xv), live); }
#endif
    }
#endif
  }
#else
  for (var k = lane; k < vectors; k += THREADS_PER_ROW) {
#ifdef F16
    let xv = widen(x[k]);
#ifdef RMS_NORM
    squares[0] += dot(xv[0], xv[0]) + dot(xv[1], xv[1]);
#endif
    for (var j = 0u; j < ROWS_PER_THREAD; j++) {
      let wv = widen(w[base[j] / VEC + k]);
      acc[j] += dot(wv[0], xv[0]) + dot(wv[1], xv[1]);
    }
#else
    let xv = x[k];
#ifdef RMS_NORM
    squares[0] += dot(xv, xv);
#endif
    for (var j = 0u; j < ROWS_PER_THREAD; j++) { acc[j] += dot(w[base[j] / VEC + k], xv); }
#endif
  }
#endif
  for (var e = vectors * VEC + lane; e < K; e += THREADS_PER_ROW) {
    for (var t = 0u; t < TOKENS; t++) {
      let xe = xAt(t * K + e);
#ifdef RMS_NORM
      squares[t] += xe * xe;
#endif
      for (var j = 0u; j < ROWS_PER_THREAD; j++) { acc[j * MAX_TOKENS + t] += wAt(base[j] + e) * xe; }
    }
  }

  // Sum each row over its THREADS_PER_ROW threads.
#ifdef SUBGROUPS
  // A row's threads are neighbouring invocations of one subgroup: subgroups are at least 4
  // wide in WebGPU and made of consecutive invocation indices on every implementation.
  for (var o = 1u; o < THREADS_PER_ROW; o *= 2u) {
    for (var j = 0u; j < ROWS_PER_THREAD; j++) {
      for (var t = 0u; t < TOKENS; t++) { acc[j * MAX_TOKENS + t] += subgroupShuffleXor(acc[j * MAX_TOKENS + t], o); }
    }
#ifdef RMS_NORM
    for (var t = 0u; t < TOKENS; t++) { squares[t] += subgroupShuffleXor(squares[t], o); }
#endif
  }
#else
  // Tree over workgroup memory, halving the active lanes each step. Lane 0 ends with the
  // sum in its own slot, written by itself, so no barrier follows the last step (on
  // lavapipe every barrier is a coroutine switch per subgroup).
  for (var a = 0u; a < ACC; a++) { partial[lid * SLOTS + a] = acc[a]; }
#ifdef RMS_NORM
  for (var t = 0u; t < TOKENS; t++) { partial[lid * SLOTS + ACC + t] = squares[t]; }
#endif
  for (var o = THREADS_PER_ROW / 2u; o > 0u; o /= 2u) {
    workgroupBarrier();
    if (lane < o) {
      for (var a = 0u; a < SLOTS; a++) { partial[lid * SLOTS + a] += partial[(lid + o) * SLOTS + a]; }
    }
  }
  for (var a = 0u; a < ACC; a++) { acc[a] = partial[lid * SLOTS + a]; }
#ifdef RMS_NORM
  for (var t = 0u; t < TOKENS; t++) { squares[t] = partial[lid * SLOTS + ACC + t]; }
#endif
#endif

  if (lane != 0u) { return; }
#ifdef ROPE_STORE
  for (var p = 0u; p < units; p++) {
    let g = firstRow + p;
    if (g >= params.rows / 2u) { break; }
    for (var t = 0u; t < TOKENS; t++) {
      let s = rmsScale(squares[t]);
      rope_store_unit(t, g, rope_store_biased(g, vec2f(acc[2u * p * MAX_TOKENS + t], acc[(2u * p + 1u) * MAX_TOKENS + t]) * s));
    }
  }
#else
#ifdef GLU
  for (var j = 0u; j < pairs; j++) {
    let row = firstRow + j;
    if (row >= params.rows) { break; }
    for (var t = 0u; t < TOKENS; t++) {
      let s = rmsScale(squares[t]);
      y[t * params.yStride + params.rowOffset + row] = glu(acc[j * MAX_TOKENS + t] * s, acc[(j + pairs) * MAX_TOKENS + t] * s);
    }
  }
#else
  for (var j = 0u; j < ROWS_PER_THREAD; j++) {
    let row = firstRow + j;
    if (row >= params.rows) { break; }
    for (var t = 0u; t < TOKENS; t++) {
      let at = t * params.yStride + params.rowOffset + row;
      let s = rmsScale(squares[t]);
#ifdef BIAS
      let r = acc[j * MAX_TOKENS + t] * s + f32(bias[params.rowOffset + row]);
#else
      let r = acc[j * MAX_TOKENS + t] * s;
#endif
#ifdef RESIDUAL
      // Rounded to T first, then added in T: bit for bit the unfused projection + add.wgsl
      // (an f16 sum through f32 rounds once to f16 exactly as f16 + f16 does, f32 being wide enough).
      y[at] = y[at] + Y(r);
#else
      y[at] = Y(r);
#endif
    }
  }
#endif
#endif
}

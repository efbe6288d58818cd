// Decode matrix-vector product with a quantized weight: y = W·x (+ b), W (N, K) in sluice's
// quantized layout (src/gpu/quantized-tensor.ts), dequantized in registers, f32 accumulation.
// Launcher: src/ops/qgemv.ts. The dense twin is gemv.wgsl; this one keeps its shape (THREADS_PER_ROW
// threads split a row's K, each thread ROWS_PER_THREAD rows, one load of x for all of them, the
// same reductions) and walks K by groups: per group and row it sums q·x over the group's packed
// words, then applies the group's scale and zero once:
//   Σ_i s·(q_i − z)·x_i = s·(Σ q_i·x_i − z·Σ x_i)
// so the inner loop is integer unpack + FMA, and Σ x_i is shared by every row.
// Variants: Q4 (8 nibbles per word; else q8, 4 signed bytes), F16 (x, y, bias f16), SUBGROUPS,
// BIAS, OUT_F32. Scale storage (f16 pairs or f32) and zero points are Params flags, branch-free
// per group (uniform), so they add no variants.
//
// Memory-bound like gemv: q4 reads 0.5 + 2/G (+ 1/G) bytes per weight, q8 1 + 2/G (+ 1/G); x
// adds 4 (f32) or 2 (f16) bytes per element per ROWS_PER_THREAD rows, which for q4 with f32 x
// is as many 32-bit loads as W's (lavapipe's cost is 32-bit loads, see gemv.wgsl).
#ifdef SUBGROUPS
enable subgroups;
#endif
#ifdef F16
enable f16;
alias T = f16;
#else
alias T = f32;
#endif
#ifdef OUT_F32
alias Y = f32;
#else
alias Y = T;
#endif
#ifdef Q4
const EPW = 8u;        // elements per packed word
const DEFAULT_ZERO = 8.0;
#else
const EPW = 4u;
const DEFAULT_ZERO = 0.0;
#endif

struct Params {
  rows: u32,       // rows of this chunk of W (≤ N)
  cols: u32,       // K, a multiple of groupSize
  rowOffset: u32,  // the chunk's first row: where it writes in y and reads in bias
  groupSize: u32,  // G, a multiple of 8
  scalesF16: u32,  // 1: scales are f16 pairs, 0: f32
  hasZeros: u32,   // 1: zero points in `zeros`, 0: DEFAULT_ZERO (zeros is a placeholder)
}

override THREADS_PER_ROW: u32; // a power of two ≤ 4 (WebGPU's smallest subgroup)
override ROWS_PER_THREAD: u32; // ≤ MAX_ROWS_PER_THREAD
override WORKGROUP_SIZE: u32;
const MAX_ROWS_PER_THREAD = 4u;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> data: array<u32>;   // (rows, K / EPW) packed
@group(0) @binding(2) var<storage, read> scales: array<u32>; // (rows, K / G) f16 pairs or f32
@group(0) @binding(3) var<storage, read> zeros: array<u32>;  // (rows, K / G) a byte each
#ifdef F16
@group(0) @binding(4) var<storage, read> x: array<vec2<u32>>; // (K,) f16, 4 per element
#else
@group(0) @binding(4) var<storage, read> x: array<vec4f>;     // (K,) f32, 4 per element
#endif
@group(0) @binding(5) var<storage, read_write> y: array<Y>;   // (N,) whole output
#ifdef BIAS
@group(0) @binding(6) var<storage, read> bias: array<T>;      // (N,)
#endif

#ifndef SUBGROUPS
var<workgroup> partial: array<f32, WORKGROUP_SIZE * MAX_ROWS_PER_THREAD>;
#endif

// Elements 4v..4v+3 of x as f32.
#ifdef F16
fn xVec(v: u32) -> vec4f { let p = x[v]; return vec4f(unpack2x16float(p.x), unpack2x16float(p.y)); }
#else
fn xVec(v: u32) -> vec4f { return x[v]; }
#endif

fn scaleAt(e: u32) -> f32 {
  if (params.scalesF16 == 1u) { return unpack2x16float(scales[e / 2u])[e % 2u]; }
  return bitcast<f32>(scales[e]);
}

fn zeroAt(e: u32) -> f32 {
  if (params.hasZeros == 0u) { return DEFAULT_ZERO; }
  let b = zeros[e / 4u] >> (8u * (e % 4u));
#ifdef Q4
  return f32(b & 0xffu);
#else
  return f32(bitcast<i32>(b << 24u) >> 24u); // a signed byte
#endif
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let lane = lid % THREADS_PER_ROW;
  let rowGroup = lid / THREADS_PER_ROW;
  let workgroup = wid.x + wid.y * groups.x;
  let firstRow = (workgroup * (WORKGROUP_SIZE / THREADS_PER_ROW) + rowGroup) * ROWS_PER_THREAD;
  let G = params.groupSize;
  let groupsPerRow = params.cols / G;
  let wordsPerGroup = G / EPW;

  // Rows past the chunk's end recompute its last row and are not written (as gemv).
  var row: array<u32, MAX_ROWS_PER_THREAD>;
  var acc: array<f32, MAX_ROWS_PER_THREAD>;
  for (var j = 0u; j < ROWS_PER_THREAD; j++) {
    row[j] = min(firstRow + j, params.rows - 1u);
    acc[j] = 0.0;
  }

  for (var g = lane; g < groupsPerRow; g += THREADS_PER_ROW) {
    var dq: array<f32, MAX_ROWS_PER_THREAD>; // Σ q·x over the group, per row
    for (var j = 0u; j < ROWS_PER_THREAD; j++) { dq[j] = 0.0; }
    var xsum = vec4f(0.0);
    for (var w = 0u; w < wordsPerGroup; w++) {
      let word = g * wordsPerGroup + w; // word index inside a row
      let v = word * (EPW / 4u);        // first vec4 of x
#ifdef Q4
      let x0 = xVec(v);
      let x1 = xVec(v + 1u);
      xsum += x0 + x1;
      for (var j = 0u; j < ROWS_PER_THREAD; j++) {
        let p = vec4u(data[row[j] * groupsPerRow * wordsPerGroup + word]);
        let lo = vec4f((p >> vec4u(0u, 4u, 8u, 12u)) & vec4u(15u));
        let hi = vec4f((p >> vec4u(16u, 20u, 24u, 28u)) & vec4u(15u));
        dq[j] += dot(lo, x0) + dot(hi, x1);
      }
#else
      let x0 = xVec(v);
      xsum += x0;
      for (var j = 0u; j < ROWS_PER_THREAD; j++) {
        let p = vec4u(data[row[j] * groupsPerRow * wordsPerGroup + word]);
        let q = vec4f(bitcast<vec4<i32>>(p << vec4u(24u, 16u, 8u, 0u)) >> vec4u(24u));
        dq[j] += dot(q, x0);
      }
#endif
    }
    let xs = xsum.x + xsum.y + xsum.z + xsum.w;
    for (var j = 0u; j < ROWS_PER_THREAD; j++) {
      let e = row[j] * groupsPerRow + g;
      acc[j] += scaleAt(e) * (dq[j] - zeroAt(e) * xs);
    }
  }

#ifdef SUBGROUPS
  for (var o = 1u; o < THREADS_PER_ROW; o *= 2u) {
    for (var j = 0u; j < ROWS_PER_THREAD; j++) { acc[j] += subgroupShuffleXor(acc[j], o); }
  }
#else
  for (var j = 0u; j < ROWS_PER_THREAD; j++) { partial[lid * MAX_ROWS_PER_THREAD + j] = acc[j]; }
  for (var o = THREADS_PER_ROW / 2u; o > 0u; o /= 2u) {
    workgroupBarrier();
    if (lane < o) {
      for (var j = 0u; j < ROWS_PER_THREAD; j++) {
        partial[lid * MAX_ROWS_PER_THREAD + j] += partial[(lid + o) * MAX_ROWS_PER_THREAD + j];
      }
    }
  }
  for (var j = 0u; j < ROWS_PER_THREAD; j++) { acc[j] = partial[lid * MAX_ROWS_PER_THREAD + j]; }
#endif

  if (lane != 0u) { return; }
  for (var j = 0u; j < ROWS_PER_THREAD; j++) {
    let r = firstRow + j;
    if (r >= params.rows) { break; }
#ifdef BIAS
    y[params.rowOffset + r] = Y(acc[j] + f32(bias[params.rowOffset + r]));
#else
    y[params.rowOffset + r] = Y(acc[j]);
#endif
  }
}

// Prefill matrix multiply with a quantized weight: y = x·Wᵀ (+ b), x (M, K), W (N, K) in
// sluice's quantized layout (src/gpu/quantized-tensor.ts), y (M, N). Launcher: src/ops/qmatmul.ts.
// matmul.wgsl with W's loads replaced by wVec (4 elements of a row dequantized in registers:
// one packed word (q8) or half of one (q4), the group's scale and zero); tiling, x sharing and
// f32 accumulation are matmul's, and the FMAs per loaded W word are TILE_M·16 as there, so the
// extra scale/zero loads cost little (prefill is compute-bound). K is a multiple of the group
// size (≥ 8), so matmul's K % 4 ≠ 0 scalar path is gone.
// Variants: Q4 (else q8), F16, SUBGROUPS, BIAS, OUT_F32, RESIDUAL (y += x·Wᵀ (+ b): y is the
// residual stream, so o_proj and down_proj need no add dispatch); scale storage and zero
// points are Params.
#ifdef SUBGROUPS
enable subgroups;
#endif
#include "common/linear_dtypes.wgsl"

#ifdef Q4
const DEFAULT_ZERO = 8.0;
#else
const DEFAULT_ZERO = 0.0;
#endif

struct Params {
  M: u32,         // rows of x and y (tokens)
  K: u32,         // columns of x and of W, a multiple of groupSize
  N: u32,         // columns of y (rows of W, all chunks): y's row stride
  rows: u32,      // rows of this chunk of W = the columns of y it computes
  colOffset: u32, // the chunk's first row of W: its first column of y and of bias
  groupSize: u32, // G, a multiple of 8
  scalesF16: u32, // 1: scales are f16 pairs, 0: f32
  hasZeros: u32,  // 1: zero points in `zeros`, 0: DEFAULT_ZERO
}

override WORKGROUP_SIZE: u32; // threads, 4 columns of y each
override TILE_M: u32;         // rows of y per workgroup, accumulated by every thread; ≤ MAX_TILE_M
override TILE_K: u32;         // vec4s of k per workgroup-memory stage (no subgroups)
const MAX_TILE_M = 32u;       // capacity of the register tile (function arrays need a const size)

@group(0) @binding(0) var<uniform> params: Params;
#ifdef F16
@group(0) @binding(1) var<storage, read> x: array<vec2<u32>>; // (M, K) f16, 4 per element
#else
@group(0) @binding(1) var<storage, read> x: array<vec4f>;     // (M, K) f32, 4 per element
#endif
@group(0) @binding(2) var<storage, read> data: array<u32>;    // (rows, K / EPW) packed
@group(0) @binding(3) var<storage, read> scales: array<u32>;  // (rows, K / G) f16 pairs or f32
@group(0) @binding(4) var<storage, read> zeros: array<u32>;   // (rows, K / G) a byte each
@group(0) @binding(5) var<storage, read_write> y: array<Y>;   // (M, N); this chunk writes its columns (RESIDUAL: reads them first)
#ifdef BIAS
@group(0) @binding(6) var<storage, read> bias: array<T>;      // (N,)
#endif

#ifndef SUBGROUPS
var<workgroup> xs: array<vec4f, TILE_M * TILE_K>; // (TILE_M, TILE_K) vec4s of x: 4 KiB at 16×16
#endif

// Elements 4e..4e+3 of x as f32.
#ifdef F16
fn widen(v: vec2<u32>) -> vec4f { return vec4f(unpack2x16float(v.x), unpack2x16float(v.y)); }
#else
fn widen(v: vec4f) -> vec4f { return v; }
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
  return f32(bitcast<i32>(b << 24u) >> 24u);
#endif
}

// Elements 4v..4v+3 of row `row` of W, dequantized: scale · (q − zero).
fn wVec(row: u32, v: u32) -> vec4f {
  let K = params.K;
  let e = row * (K / params.groupSize) + (v * 4u) / params.groupSize;
#ifdef Q4
  let p = data[(row * K) / 8u + v / 2u] >> (16u * (v % 2u));
  let q = vec4f((vec4u(p) >> vec4u(0u, 4u, 8u, 12u)) & vec4u(15u));
#else
  let p = data[(row * K) / 4u + v];
  let q = vec4f(bitcast<vec4<i32>>(vec4u(p) << vec4u(24u, 16u, 8u, 0u)) >> vec4u(24u));
#endif
  return scaleAt(e) * (q - zeroAt(e));
}

#include "common/matmul_main.wgsl"

  // Loop bounds (as matmul): the FMA loops run to the constant TILE_M, so they unroll and acc stays in
  // registers (rows past M accumulate zeros or clamped duplicates). Loops off the hot path
  // run m from m0 to mEnd, which no compiler unrolls: llvmpipe compiles a variant at its
  // first dispatch, and with those unrolled too that took ~3 s instead of ~0.5 s.
  {
    let kv = K / 4u; // vec4s per row
    // The thread's 4 rows of W (columns past the chunk recompute its last row).
    let w0 = min(c0, last);
    let w1 = min(c0 + 1u, last);
    let w2 = min(c0 + 2u, last);
    let w3 = min(c0 + 3u, last);
#ifdef SUBGROUPS
    // Each pass covers `width` vec4s of k: lane l holds vec4 k0 + l of every row of the tile.
    var xr: array<vec4f, MAX_TILE_M>;
    for (var k0 = 0u; k0 < kv; k0 += width) {
      let kx = min(k0 + lane, kv - 1u);
      for (var m = m0; m < mEnd; m++) { xr[m - m0] = widen(x[m * kv + kx]); }
      let steps = min(width, kv - k0);
      for (var l = 0u; l < steps; l++) {
        let k = k0 + l;
        // Column j of wm is row c0 + j of W, so v * wm = (dot(v, W[c0 + j]))_j.
        let wm = mat4x4f(wVec(w0, k), wVec(w1, k), wVec(w2, k), wVec(w3, k));
        for (var i = 0u; i < TILE_M; i++) { acc[i] += subgroupShuffle(xr[i], l) * wm; }
      }
    }
#else
    for (var k0 = 0u; k0 < kv; k0 += TILE_K) {
      for (var e = lid; e < TILE_M * TILE_K; e += WORKGROUP_SIZE) {
        xs[e] = widen(x[min(m0 + e / TILE_K, M - 1u) * kv + min(k0 + e % TILE_K, kv - 1u)]);
      }
      workgroupBarrier();
      let steps = min(TILE_K, kv - k0);
      for (var l = 0u; l < steps; l++) {
        let k = k0 + l;
        let wm = mat4x4f(wVec(w0, k), wVec(w1, k), wVec(w2, k), wVec(w3, k));
        for (var i = 0u; i < TILE_M; i++) { acc[i] += xs[i * TILE_K + l] * wm; }
      }
      workgroupBarrier();
    }
#endif
  }

#include "common/matmul_store.wgsl"
}

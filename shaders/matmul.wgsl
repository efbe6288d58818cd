// Prefill matrix multiply: y = x·Wᵀ (+ b), x (M, K) activations, W (N, K) a Linear weight in
// HF layout, y (M, N) row-major. Launcher: src/ops/matmul.ts. One dispatch per row-chunk of
// W; a chunk's rows are the output columns [colOffset, colOffset + rows).
// Variants: F16 (f16 storage, f32 accumulation), SUBGROUPS (x shared by subgroup shuffles,
// else through workgroup memory), BIAS, OUT_F32 (f32 y from f16 compute: logits), RESIDUAL
// (y += x·Wᵀ (+ b): y is the residual stream, so o_proj and down_proj need no add dispatch).
//
// Tiling: a workgroup computes TILE_M rows × (WORKGROUP_SIZE·4) columns of y. Every thread
// holds the same TILE_M rows and its own 4 adjacent columns: a register tile of TILE_M vec4
// accumulators. Per step of 4 k (one vec4 of each row): the thread loads its 4 rows of W
// (a 4×4 block), gets TILE_M vec4s of x that the whole workgroup shares, and does
// TILE_M·16 FMAs. x is staged once per workgroup (workgroup memory) or once per subgroup
// (each lane loads a different vec4, subgroupShuffle hands it round).
//
// Why this shape (lavapipe, measured): llvmpipe runs 8 invocations as one AVX vector and
// turns every load inside a loop into a per-lane loop with a bounds check per component,
// whether the address is uniform or not, workgroup memory included; vector FMAs and
// subgroup shuffles (a vpermd) are ~10× cheaper. So the cost is load components per FMA:
// W's 16 per step serve TILE_M·16 FMAs (1/TILE_M), x costs 1/(4·subgroup size) with
// shuffles, 1/4 from workgroup memory. On 2 cores, W 2048×2048, M = 128 or 512: 30-40
// GFLOP/s with subgroups, ~10 with workgroup memory, the naive kernel 2.3. On a GPU the x
// tile is a broadcast read (no bank conflicts) and each thread streams 4 rows of W.
//
// Edges: rows past M and columns past the chunk compute clamped duplicates (or zeros) and
// are not written; the k loop of the last tile stops at K. K % 4 ≠ 0 (rows not vec4
// aligned) takes a scalar loop instead, without staging: correct, slow, never hit by real
// models (hidden sizes are multiples of 64).
#ifdef SUBGROUPS
enable subgroups;
#endif
#include "common/linear_dtypes.wgsl"

#include "common/matmul_params.wgsl"

override WORKGROUP_SIZE: u32; // threads, 4 columns of y each
override TILE_M: u32;         // rows of y per workgroup, accumulated by every thread; ≤ MAX_TILE_M
override TILE_K: u32;         // vec4s of k per workgroup-memory stage (no subgroups)
const MAX_TILE_M = 32u;       // capacity of the register tile (function arrays need a const size)

#include "common/matmul_bindings.wgsl"

#ifndef SUBGROUPS
var<workgroup> xs: array<vec4f, TILE_M * TILE_K>; // (TILE_M, TILE_K) vec4s of x: 4 KiB at 16×16
#endif

#include "common/matmul_widen.wgsl"

#include "common/matmul_main.wgsl"

  // Loop bounds: the FMA loops run to the constant TILE_M, so they unroll and acc stays in
  // registers (rows past M accumulate zeros or clamped duplicates). Loops off the hot path
  // run m from m0 to mEnd, which no compiler unrolls: llvmpipe compiles a variant at its
  // first dispatch, and with those unrolled too that took ~3 s instead of ~0.5 s.
  if (K % 4u == 0u) {
    let kv = K / 4u; // vec4s per row
    // The thread's 4 rows of W (columns past the chunk recompute its last row).
    let w0 = min(c0, last) * kv;
    let w1 = min(c0 + 1u, last) * kv;
    let w2 = min(c0 + 2u, last) * kv;
    let w3 = min(c0 + 3u, last) * kv;
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
        let wm = mat4x4f(widen(w[w0 + k]), widen(w[w1 + k]), widen(w[w2 + k]), widen(w[w3 + k]));
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
        let wm = mat4x4f(widen(w[w0 + k]), widen(w[w1 + k]), widen(w[w2 + k]), widen(w[w3 + k]));
        for (var i = 0u; i < TILE_M; i++) { acc[i] += xs[i * TILE_K + l] * wm; }
      }
      workgroupBarrier();
    }
#endif
  } else {
    let w0 = min(c0, last) * K;
    let w1 = min(c0 + 1u, last) * K;
    let w2 = min(c0 + 2u, last) * K;
    let w3 = min(c0 + 3u, last) * K;
    for (var k = 0u; k < K; k++) {
      let wv = vec4f(wAt(w0 + k), wAt(w1 + k), wAt(w2 + k), wAt(w3 + k));
      for (var m = m0; m < mEnd; m++) { acc[m - m0] += xAt(m * K + k) * wv; }
    }
  }

#include "common/matmul_store.wgsl"
}

// Prefill matrix multiply for hardware GPUs (the "gpu" kernel family): y = x·Wᵀ (+ b),
// x (M, K) activations, W (N, K) a Linear weight in HF layout, y (M, N) row-major.
// Launcher: src/ops/matmul-tiled.ts. Same bindings, Params, variants and results as
// matmul.wgsl (the software-GPU design). One dispatch per row-chunk of W; a chunk's rows are
// the output columns [colOffset, colOffset + rows). Variants: F16 (f16 storage, f32
// workgroup tiles and accumulation), BIAS, OUT_F32, RESIDUAL (y += x·Wᵀ (+ b)).
//
// Classic two-level tiling, as in CUTLASS-style SGEMMs and the WebGPU matmuls of TVM/WebLLM,
// ONNX Runtime Web and llama.cpp's ggml-webgpu mul_mat_reg_tile.wgsl (written here from
// that description):
// - Workgroup tile: TILE_M rows × TILE_N (64) columns of y. Per stage of TILE_K (16) k, the
//   workgroup copies a TILE_M × 16 block of x and a 64 × 16 block of W into workgroup
//   memory (one 16-byte load per invocation each at TILE_M = 64, four neighbouring lanes
//   covering 64 contiguous bytes of a row), then every element staged is read by 16
//   invocations from on-chip memory: W's DRAM/L2 traffic is divided by TILE_M, x's by 64.
// - Register tile: each of the (TILE_N / 4) × (TILE_M / 4) invocations accumulates 4 rows ×
//   4 columns: per 4 k it reads 4 vec4s of x and 4 of W from workgroup memory for 64 FMAs.
//   Its columns are tx, tx + 16, tx + 32, tx + 48, so the 16 lanes of a row read 16
//   different rows of the W tile at a stride of KV + 1 vec4s (the padding): distinct
//   banks, no conflicts; the lanes reading x share its rows (broadcast).
// - Occupancy: 10 KiB of workgroup memory and 256 invocations at TILE_M = 64, so several
//   workgroups share an SM/CU and hide each other's barrier and load latency.
// - Workgroups go (row tile, column tile) with x fastest, so neighbouring workgroups read
//   the same W tile while it is in L2.
// Edges: tiles are loaded with zeros past M, past the chunk's rows and past K, and only
// in-range outputs are written, so M, N and K need not be multiples of anything. K % 4 ≠ 0
// (rows not 16-byte aligned) loads element by element: correct, slow, never hit by models.
//
// On lavapipe this is slower than matmul.wgsl (every workgroup-memory load is a per-lane
// loop there, and barriers are coroutine switches); it is compiled and tested there, and
// chosen only on hardware adapters.
#include "common/linear_dtypes.wgsl"

#include "common/matmul_params.wgsl"

override WORKGROUP_SIZE: u32; // (TILE_N / 4) × (TILE_M / 4) invocations
override TILE_M: u32;         // rows of y per workgroup, a multiple of 4
const TILE_N = 64u;           // columns of y per workgroup
const TILE_K = 16u;           // k per workgroup-memory stage
const KV = TILE_K / 4u;       // vec4s of k per tile row
const STRIDE = KV + 1u;       // tile row stride in vec4s: one vec4 of padding against bank conflicts
const LANES_N = TILE_N / 4u;  // invocations across the columns (16)

#include "common/matmul_bindings.wgsl"

var<workgroup> xs: array<vec4f, TILE_M * STRIDE>; // (TILE_M, KV) vec4s of x, padded rows
var<workgroup> ws: array<vec4f, TILE_N * STRIDE>; // (TILE_N, KV) vec4s of W, padded rows

#include "common/matmul_widen.wgsl"

// Elements k..k+3 of row `row` of x, zeros past M and K. (Zeros past K in x or in W alone
// would cancel the products of finite values; both keep an Inf in a neighbouring row out.)
fn loadX(row: u32, k: u32) -> vec4f {
  let K = params.K;
  if (row >= params.M || k >= K) { return vec4f(0.0); }
  if (K % 4u == 0u) { return widen(x[(row * K + k) / 4u]); }
  var v = vec4f(0.0);
  for (var i = 0u; i < 4u && k + i < K; i++) { v[i] = xAt(row * K + k + i); }
  return v;
}

// Elements k..k+3 of row `row` of this chunk of W, zeros past its rows and K.
fn loadW(row: u32, k: u32) -> vec4f {
  let K = params.K;
  if (row >= params.rows || k >= K) { return vec4f(0.0); }
  if (K % 4u == 0u) { return widen(w[(row * K + k) / 4u]); }
  var v = vec4f(0.0);
  for (var i = 0u; i < 4u && k + i < K; i++) { v[i] = wAt(row * K + k + i); }
  return v;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let m0 = wid.x * TILE_M;      // the tile's first row of y
  let c0 = wid.y * TILE_N;      // the tile's first column, in the chunk
  let tx = lid % LANES_N;       // columns c0 + tx + 16j
  let ty = lid / LANES_N;       // rows m0 + 4ty + i
  var acc: array<vec4f, 4>;     // acc[i][j] = y[m0 + 4ty + i, colOffset + c0 + tx + 16j]

  for (var k0 = 0u; k0 < params.K; k0 += TILE_K) {
    // Stage: element e of a tile is vec4 e % KV of its row e / KV, so neighbouring lanes
    // load neighbouring 16 bytes of one row.
    for (var e = lid; e < TILE_M * KV; e += WORKGROUP_SIZE) {
      xs[(e / KV) * STRIDE + e % KV] = loadX(m0 + e / KV, k0 + 4u * (e % KV));
    }
    for (var e = lid; e < TILE_N * KV; e += WORKGROUP_SIZE) {
      ws[(e / KV) * STRIDE + e % KV] = loadW(c0 + e / KV, k0 + 4u * (e % KV));
    }
    workgroupBarrier();
    for (var kv = 0u; kv < KV; kv++) {
      // Column j of wm is row tx + 16j of the W tile: v * wm = (dot(v, W[tx + 16j]))_j.
      let wm = mat4x4f(
        ws[tx * STRIDE + kv],
        ws[(tx + LANES_N) * STRIDE + kv],
        ws[(tx + 2u * LANES_N) * STRIDE + kv],
        ws[(tx + 3u * LANES_N) * STRIDE + kv],
      );
      for (var i = 0u; i < 4u; i++) { acc[i] += xs[(4u * ty + i) * STRIDE + kv] * wm; }
    }
    workgroupBarrier();
  }

  for (var i = 0u; i < 4u; i++) {
    let m = m0 + 4u * ty + i;
    if (m >= params.M) { break; }
    for (var j = 0u; j < 4u; j++) {
      let c = c0 + tx + j * LANES_N;
      if (c >= params.rows) { break; }
      let n = params.colOffset + c;
#ifdef BIAS
      let v = acc[i][j] + f32(bias[n]);
#else
      let v = acc[i][j];
#endif
#ifdef RESIDUAL
      // Rounded to T first, then added in T: bit for bit the unfused projection + add.wgsl.
      y[m * params.N + n] = y[m * params.N + n] + Y(v);
#else
      y[m * params.N + n] = Y(v);
#endif
    }
  }
}

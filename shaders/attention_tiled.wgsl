// Causal grouped-query attention over the KV cache for real GPUs (the "gpu" kernel family),
// flash-attention with K/V tiles staged in workgroup memory:
//   O = softmax(Q Kᵀ · scale + causal mask) V          (scale: 1 / sqrt(headDim) by default)
// for query row r at position p_r = step.row[r].position against positions 0 ..= p_r of its
// own cache slot s_r = step.row[r].slot. Same semantics, bindings, Params meaning and
// partial layout as shaders/attention.wgsl (the software-GPU family); launcher:
// src/ops/attention-tiled.ts. Variants: F16 (f16 storage, f32 math), SPLIT (flash-decoding
// pass 1, partials (max, sum, unnormalised O) in f32; entry point `combine` is pass 2),
// SOFTCAP, WINDOW (as attention.wgsl), SUBGROUPS (the 4-lane reductions by
// subgroupShuffleXor, else through workgroup memory).
//
// A workgroup owns `block_rows` query rows of one kv head: row = (token, head of the group),
// token major, so the heads sharing a kv head share every K/V tile (prefill: a block spans
// tokens; decode: a block per token, its group padded, its keys bounded by its position).
// Its tokens are taken in runs of one slot (a block may straddle sequences), each over the
// keys from the window start of its smallest position to its largest. Per tile of
// `tile_keys` keys:
//   stage    K and V tiles (keys × headDim, contiguous in the cache) → workgroup memory, f32:
//            coalesced vec4 loads, both issued before one barrier; key rows padded to
//            4 (mod 8) vec4s, so the two teams of a quarter-warp (8 lanes, one 128-bit
//            access phase), each reading 4 neighbouring vec4s of its key, hit all 32 banks;
//   scores   a team of 4 lanes per (key, 4 rows) splits headDim; each step 1 K + 4 query
//            vec4 reads from workgroup memory feed 4 dot4s; the team's partial vec4 are
//            summed by 2 subgroup shuffles; lane i writes row i's score;
//   softmax  a team per row keeps its running max and sum in registers (online softmax),
//            tile max and Σ by the same 4-lane reductions; probabilities in place;
//   P·V      lane = (4 rows, vec4 of headDim, a share of the keys), accumulated in
//            registers: one V read and 4 probabilities feed 4 vec4 FMAs; few rows (decode)
//            leave lanes free, which take shares of the keys (flashinfer's bdz), folded at
//            the end through workgroup memory.
//
// Why this suits a real GPU (and not lavapipe, whose family is attention.wgsl): on a GPU a
// workgroup-memory read costs a few cycles and a global one hundreds, so staging a K/V tile
// once and reading it `block_rows` times (16–32 rows prefill, the whole GQA group decode)
// divides global traffic by that; lavapipe issues every load lane by lane either way and
// pays for the staging copy and each barrier. Splitting headDim over 4 lanes keeps all 128
// invocations busy when a block has few rows (decode: group 4 → 1 row group), and subgroup
// shuffles make the split nearly free. Tile sizes are runtime (Params), one pipeline per
// variant for every head size; workgroup memory ≤ ATTENTION_TILED_WORKGROUP_BYTES (32 KiB:
// desktop GPUs' limit and lavapipe's; the launcher refuses a device with less). Measured on
// lavapipe (F16, 32 heads, 8 kv heads, headDim 64; 2 busy cores, medians of 3): prefill of
// 512 tokens 1.23 s against attention.wgsl's 0.70 s; decode at 512 10.0 ms against 1.9 ms,
// at 2048 28 ms against 7.8 ms. Not yet timed on a real GPU.
//
// Peers read (design only): llama.cpp ggml/src/ggml-webgpu/wgsl-shaders/flash_attn.wgsl
// (Q tile and K/V tile in workgroup memory shared by a tile of query rows, online softmax
// per row by subgroup reductions), flashinfer include/flashinfer/attention/decode.cuh and
// apache/tvm python/tvm/relax/frontend/nn/llm/kv_cache.py `_attention_decode` (WebLLM's
// decode: the heads of a GQA group in one block share K/V tiles staged in shared memory,
// lanes split headDim and reduce dots by warp shuffles), onnxruntime
// contrib_ops/webgpu/bert/flash_attention.cc (WebGPU flash-decoding: split-K partials then a
// reduce pass).
//
// Napkin math, Llama-8B shape (32 heads, 8 kv heads, headDim 128), prefill T = 512: blocks
// of 16 rows = 4 tokens × 4 heads: 128 blocks × 8 kv heads; each reads ~256 keys · 2 · 256 B
// = 128 KiB of K/V once into workgroup memory → 0.13 GB from L2 (the software family's 8-row
// blocks read 0.27 GB), 2.1 GFLOP from workgroup memory at 5 reads per 4 dot4s. Decode at
// 2048: 8 MiB of f16 K/V read once per kv head (not per query head), 16 splits × 8 kv heads
// = 128 workgroups to cover the SMs.

#ifdef SUBGROUPS
enable subgroups;
#endif

#include "common/attention_packed.wgsl"

struct Params {
  n_heads: u32,    // query heads
  group: u32,      // query heads per kv head
  head_vecs: u32,  // headDim / 4
  max_seq: u32,    // positions per head in the cache
  n_kv_heads: u32, // kv heads: a slot's stride is n_kv_heads · max_seq rows
  block_rows: u32, // query rows per workgroup: a multiple of 4, ≤ MAX_ROWS, (rows / 4) · head_vecs ≤ WORKGROUP_SIZE
  token_rows: u32, // block rows per token: group (packed), or group padded to whole blocks (a block per token)
  split_keys: u32, // keys per split (workgroup z); ≥ max_seq when unsplit
  tile_keys: u32,  // keys per K/V tile: ≤ PROBS_STRIDE − 4, tile_keys · tile_stride ≤ TILE_VECS
  tile_stride: u32, // vec4s per key row of a staged tile: head_vecs + padding, ≡ 4 (mod 8)
  scale: f32,      // 1 / sqrt(headDim), or the model's
  softcap: f32,    // SOFTCAP: attn_logit_softcapping (> 0)
  window: u32,     // WINDOW: sliding window (≥ 1, < max_seq)
}

// The pass's step (src/gpu/step.ts): this call's row count T and each row's (slot, position).
struct StepRow { slot: u32, position: u32 }
struct Step { rows: u32, row: array<StepRow> }

override WORKGROUP_SIZE: u32; // invocations: 32 teams of LANES
override MAX_ROWS: u32;       // query rows per block, at most (one team per row)
// Row stride of `probs`: the most keys per tile + 4, ≡ 4 (mod 32), so the 8 teams of a warp
// reading their rows' keys lane, lane + 4, … hit 32 different banks.
override PROBS_STRIDE: u32;
override TILE_VECS: u32;      // vec4s of one staged K or V tile, padding included
override Q_VECS: u32;         // vec4s of the query tile: rows · head_vecs at most
// Lanes of a team: a score's slice of headDim, a row's slice of the tile. 4 = WebGPU's
// smallest subgroup, so a team never straddles subgroups (as gemv.wgsl's rows).
const LANES = 4u;
override TEAMS: u32 = WORKGROUP_SIZE / LANES;

// A masked score (causal, window, another run, past the range): finite, so max() and the
// subtraction stay NaN-free; its probability is set to 0 explicitly.
const MASKED = -3.0e38;
// row_token of a block row that is no query (past T, or a token's padding rows).
const NO_TOKEN = 0xffffffffu;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> step: Step;
#include "common/attention_bindings.wgsl"

var<workgroup> q_tile: array<vec4f, Q_VECS>;                 // (rows, head_vecs) queries · scale
var<workgroup> k_tile: array<vec4f, TILE_VECS>;              // (tile_keys, tile_stride) f32
var<workgroup> v_tile: array<vec4f, TILE_VECS>;              // (tile_keys, tile_stride) f32
var<workgroup> probs: array<f32, MAX_ROWS * PROBS_STRIDE>;   // (rows, PROBS_STRIDE): scores, then probabilities
var<workgroup> row_alpha: array<f32, MAX_ROWS>;              // (rows,) this tile's exp(old max − new max); at the end, the final max
var<workgroup> row_sum: array<f32, MAX_ROWS>;                // (rows,) final Σ exp(s − max)
var<workgroup> row_pos: array<u32, MAX_ROWS>;                // (rows,) each row's position: its last key
var<workgroup> row_token: array<u32, MAX_ROWS>;              // (rows,) each row's step row, NO_TOKEN if none
#ifndef SUBGROUPS
var<workgroup> lane_red: array<vec4f, WORKGROUP_SIZE>;       // one vec4 per invocation: a team's partials
#endif

#ifdef SUBGROUPS
// The sum of `v` over this invocation's team (lanes 4·⌊tid/4⌋ … +3), in every lane. Lanes
// of a team are neighbouring invocations of one subgroup (subgroups are ≥ 4 wide).
fn team_sum(v: vec4f, tid: u32) -> vec4f {
  let s = v + subgroupShuffleXor(v, 1u);
  return s + subgroupShuffleXor(s, 2u);
}
fn team_max(v: f32, tid: u32) -> f32 {
  let m = max(v, subgroupShuffleXor(v, 1u));
  return max(m, subgroupShuffleXor(m, 2u));
}
#else
// The same through workgroup memory: every invocation must call it (two barriers).
fn team_sum(v: vec4f, tid: u32) -> vec4f {
  lane_red[tid] = v;
  workgroupBarrier();
  let b = tid - tid % LANES;
  let s = (lane_red[b] + lane_red[b + 1u]) + (lane_red[b + 2u] + lane_red[b + 3u]);
  workgroupBarrier();
  return s;
}
fn team_max(v: f32, tid: u32) -> f32 {
  lane_red[tid] = vec4f(v);
  workgroupBarrier();
  let b = tid - tid % LANES;
  let m = max(max(lane_red[b].x, lane_red[b + 1u].x), max(lane_red[b + 2u].x, lane_red[b + 3u].x));
  workgroupBarrier();
  return m;
}
#endif

#ifdef WINDOW
// The first key a query at position `pos` sees: pos + 1 − window, or 0.
fn window_first(pos: u32) -> u32 {
  return select(0u, pos + 1u - params.window, pos + 1u > params.window);
}
#endif

// Row r's score against key position `key` of the run [run_first, run_last] (tokens).
fn masked_score(s: f32, r: u32, key: u32, run_first: u32, run_last: u32) -> f32 {
  let token = row_token[r];
  let pos = row_pos[r];
#ifdef SOFTCAP
  // cap · tanh(s / cap), tanh's argument clamped to ±10 (tanh(10) = 1 in f32): WGSL's tanh
  // may be sinh/cosh, which overflows to NaN past |x| ≈ 44 on some implementations.
  let v = params.softcap * tanh(clamp(s / params.softcap, -10.0, 10.0));
#else
  let v = s;
#endif
#ifdef WINDOW
  let visible = token >= run_first && token <= run_last && key <= pos && key + params.window > pos;
#else
  let visible = token >= run_first && token <= run_last && key <= pos;
#endif
  return select(MASKED, v, visible);
}

#include "common/attention_main.wgsl"

  // Queries · scale; rows past T and padding rows are zero.
  for (var i = tid; i < rows * hv; i += WORKGROUP_SIZE) {
    let row = first_row + i / hv;
    var qv = vec4f(0.0);
    if (row < row_count && row % tr < group) {
      qv = unpack(q[((row / tr) * params.n_heads + wg.y * group + row % tr) * hv + i % hv]) * params.scale;
    }
    q_tile[i] = qv;
  }
  if (tid < rows) {
    let row = first_row + tid;
    let valid = row < row_count && row % tr < group;
    row_token[tid] = select(NO_TOKEN, row / tr, valid); // never in a run: always masked
    row_pos[tid] = step.row[min(row, row_count - 1u) / tr].position;
  }
  workgroupBarrier();

  let team = tid / LANES;
  let lane = tid % LANES;
  // Team `team` owns row `team` in the softmax: its running max and sum, in registers.
  let own_row = team < rows;
  var m = MASKED;
  var l = 0.0;
  // P·V lanes: vec4 c of headDim for rows r0 … r0 + 3, over keys kl, kl + key_lanes, …: a
  // block of few rows (decode: one token's group) spreads each tile's keys over the lanes
  // its rows leave idle, and folds their partial O at the end.
  let pv_threads = (rows / 4u) * hv;
  let key_lanes = WORKGROUP_SIZE / pv_threads;
  let kl = tid / pv_threads;
  let c = tid % hv;
  let r0 = 4u * ((tid % pv_threads) / hv);
  let pv_lane = kl < key_lanes;
  var o0 = vec4f(0.0);
  var o1 = vec4f(0.0);
  var o2 = vec4f(0.0);
  var o3 = vec4f(0.0);

  let tk = params.tile_keys;
  let stride = params.tile_stride;
  let items = (rows / 4u) * tk; // (row group, key) dot products per tile

  // Runs of consecutive tokens in one slot (the run loop); rows of other runs see none of its keys.
#include "common/attention_runs.wgsl"
#include "common/attention_keys.wgsl"

    for (var k0 = key_begin; k0 < split_end; k0 += tk) {
      let keys = min(tk, split_end - k0);
      // Stage: the tile's keys · head_vecs vec4s are contiguous in both caches.
      let src = cache_base + k0 * hv;
      for (var i = tid; i < keys * hv; i += WORKGROUP_SIZE) {
        let at = (i / hv) * stride + i % hv;
        k_tile[at] = unpack(k_cache[src + i]);
        v_tile[at] = unpack(v_cache[src + i]);
      }
      workgroupBarrier();

      // Scores: team → item (key j, row group g), lanes over headDim. Every team runs the
      // same number of rounds (the reductions need all lanes); items past the tile are
      // computed on clamped indices and not written.
      for (var n0 = 0u; n0 < items; n0 += TEAMS) {
        let n = n0 + team;
        let j = n % tk;
        let g = min(n / tk, rows / 4u - 1u);
        let kb = j * stride;
        let qb = 4u * g * hv;
        var acc = vec4f(0.0);
        for (var cc = lane; cc < hv; cc += LANES) {
          let kv = k_tile[kb + cc];
          acc += vec4f(dot(q_tile[qb + cc], kv), dot(q_tile[qb + hv + cc], kv), dot(q_tile[qb + 2u * hv + cc], kv), dot(q_tile[qb + 3u * hv + cc], kv));
        }
        let d = team_sum(acc, tid);
        if (n < items && j < keys) {
          let r = 4u * g + lane;
          probs[r * PROBS_STRIDE + j] = masked_score(d[lane], r, k0 + j, run_first, run_last);
        }
      }
      workgroupBarrier();

      // Online softmax: team = row; each lane over keys lane, lane + 4, …; teams without a
      // row reduce nothing but still take part in the reductions.
      let own_keys = select(0u, keys, own_row);
      let pr = team * PROBS_STRIDE;
      var tile_m = MASKED;
      for (var j = lane; j < own_keys; j += LANES) { tile_m = max(tile_m, probs[pr + j]); }
      let m_new = max(m, team_max(tile_m, tid));
      var sum = 0.0;
      for (var j = lane; j < own_keys; j += LANES) {
        let s = probs[pr + j];
        let p = select(exp(s - m_new), 0.0, s <= MASKED);
        probs[pr + j] = p;
        sum += p;
      }
      let alpha = select(exp(m - m_new), 0.0, m <= MASKED);
      l = l * alpha + team_sum(vec4f(sum, 0.0, 0.0, 0.0), tid).x;
      m = m_new;
      if (own_row && lane == 0u) { row_alpha[team] = alpha; }
      workgroupBarrier();

      // o = o · alpha + P · V: each V read feeds the lane's 4 rows.
      if (pv_lane) {
        o0 *= row_alpha[r0];
        o1 *= row_alpha[r0 + 1u];
        o2 *= row_alpha[r0 + 2u];
        o3 *= row_alpha[r0 + 3u];
        let p0 = r0 * PROBS_STRIDE;
        for (var j = kl; j < keys; j += key_lanes) {
          let v = v_tile[j * stride + c];
          let pj = p0 + j;
          o0 += probs[pj] * v;
          o1 += probs[pj + PROBS_STRIDE] * v;
          o2 += probs[pj + 2u * PROBS_STRIDE] * v;
          o3 += probs[pj + 3u * PROBS_STRIDE] * v;
        }
      }
      workgroupBarrier(); // the next tile overwrites the tiles, probs and row_alpha
    }
  }

  if (own_row && lane == 0u) {
    row_alpha[team] = m; // no tile reads it any more
    row_sum[team] = l;
  }
  // Key lanes past the first hand their partial O over through k_tile (free now: 4 vec4 per
  // invocation ≤ TILE_VECS).
  if (pv_lane && kl > 0u) {
    k_tile[4u * tid] = o0;
    k_tile[4u * tid + 1u] = o1;
    k_tile[4u * tid + 2u] = o2;
    k_tile[4u * tid + 3u] = o3;
  }
  workgroupBarrier();
  if (!pv_lane || kl > 0u) { return; }
  for (var k = 1u; k < key_lanes; k++) {
    let at = 4u * (tid + k * pv_threads);
    o0 += k_tile[at];
    o1 += k_tile[at + 1u];
    o2 += k_tile[at + 2u];
    o3 += k_tile[at + 3u];
  }
  let acc = array<vec4f, 4>(o0, o1, o2, o3);
  for (var i = 0u; i < 4u; i++) {
    let r = r0 + i;
    let t = row_token[r];
    if (t == NO_TOKEN) { continue; }
    let head = wg.y * group + (first_row + r) % tr;
#ifdef SPLIT
    // Rows whose position precedes this split hold (MASKED, 0, 0): combine never reads them.
    let part = (wg.z * step.rows + t) * params.n_heads + head;
    part_o[part * hv + c] = acc[i];
    if (c == 0u) { part_ml[part] = vec2f(row_alpha[r], row_sum[r]); }
#else
    out[(t * params.n_heads + head) * hv + c] = pack(acc[i] / row_sum[r]);
#endif
  }
}

#ifdef SPLIT
// Pass 2 of flash-decoding: one invocation per output vec4 folds in the splits its row's
// position reaches, one at a time with a running max (each partial read once):
// O = Σ e^(mₛ−M) Oₛ / Σ e^(mₛ−M) lₛ.
@compute @workgroup_size(WORKGROUP_SIZE)
fn combine(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let i = gid.x + gid.y * groups.x * WORKGROUP_SIZE;
  let hv = params.head_vecs;
  if (i >= step.rows * params.n_heads * hv) { return; }
  let part0 = i / hv; // t · nHeads + head
  let pos = step.row[part0 / params.n_heads].position;
  // Every split from the window's to the position's was written (the row's block covered it).
#ifdef WINDOW
  let first = window_first(pos) / params.split_keys;
#else
  let first = 0u;
#endif
  let stride = step.rows * params.n_heads; // parts per split
  var m = MASKED;
  var l = 0.0;
  var o = vec4f(0.0);
  for (var s = first; s <= pos / params.split_keys; s++) {
    let part = s * stride + part0;
    let ml = part_ml[part];
    let m_new = max(m, ml.x);
    let a = exp(m - m_new);
    let b = exp(ml.x - m_new);
    o = o * a + part_o[part * hv + i % hv] * b;
    l = l * a + ml.y * b;
    m = m_new;
  }
  out[i] = pack(o / l);
}
#endif

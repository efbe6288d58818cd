// Causal grouped-query attention over the KV cache, flash-attention style:
//   O = softmax(Q Kᵀ · scale + causal mask) V          (scale: 1 / sqrt(headDim) by default)
// for query row r at position p_r = step.row[r].position against positions 0 ..= p_r of its
// own cache slot s_r = step.row[r].slot (rows in any order, at any positions, in any slots:
// a prompt's consecutive positions in one slot, one decode row per sequence, or both).
// Launcher: src/ops/attention.ts. Variants: F16 (f16 storage, f32 math), SPLIT (flash-
// decoding pass 1: each workgroup covers one split of the keys and writes its partial
// (max, sum, unnormalised O) in f32; entry point `combine` is pass 2), SOFTCAP (Gemma 2:
// scores = tanh(scores / softcap) · softcap after the scale, before mask and softmax, as
// transformers' eager_attention_forward), WINDOW (sliding window: the query at position p
// sees keys p − window < k ≤ p, transformers' sliding_window_overlay `kv_idx > q_idx −
// sliding_window`; key tiles and splits wholly before a block's window are skipped), RUNS
// (a block's tokens may be in several slots: it takes them in runs of one slot, below).
//
// A workgroup owns `block_rows` query rows of one kv head: row = (token, head of the group),
// token major, so the heads sharing a kv head share every K/V read; `token_rows` rows per
// token: the group packed (prefill: a block spans tokens that share keys), or padded to
// whole blocks (decode: a block per token, its work bounded by that token's position). Its
// keys, in its tokens' slot, run from the window start of its smallest position to its
// largest position (RUNS: per run of tokens in one slot); each row masks its own.
// Per tile of TILE_KEYS keys:
//   scores   lane = 4 keys, 4 rows at a time: 4 K + 4 query vec4 reads feed 16 dot4s;
//   softmax  ROW_LANES lanes per row: max, probabilities in place, partial sums;
//   P·V      lane = (4 rows, vec4 of headDim), accumulated in registers: one V read and
//            4 probabilities feed 4 vec4 FMAs.
// Workgroup memory holds the scaled queries and one tile of scores (online softmax: the T×T
// matrix never exists). K and V are read straight from the cache, each read feeding 4 rows
// from registers, rather than staged in workgroup memory: a staged tile would be reused by
// only `rows` (≤ 8) rows, and lavapipe issues every load in a loop lane by lane, even at a
// uniform address, so loads rather than FLOPs set its time. A first version that staged
// 16–32-key K/V tiles with a thread per (row, vec4) took 4.2 s for the prefill below on
// lavapipe; this one takes 0.4 s.
//
// Napkin math, Llama-8B shape (32 heads, 8 kv heads, headDim 128), prefill T = 512:
// 2 · 2 · 32 · 128 · 512²/2 ≈ 2.1 GFLOP (causal half); K/V read once per workgroup of 8
// rows: 2 · 2 B · 128 · ~256 keys ≈ 128 KiB, 2048 workgroups → 0.27 GB, from L2 — compute-
// bound. Decode at context 2048: K and V are 2 · 8 · 2048 · 128 · 2 B = 8 MiB — memory-bound.

#include "common/attention_packed.wgsl"

struct Params {
  n_heads: u32,    // query heads
  group: u32,      // query heads per kv head
  head_vecs: u32,  // headDim / 4, ≤ WORKGROUP_SIZE
  max_seq: u32,    // positions per head in the cache (its row stride in rows)
  n_kv_heads: u32, // kv heads: a slot's stride in the cache is n_kv_heads · max_seq rows
  block_rows: u32, // query rows per workgroup: a multiple of 4, ≤ MAX_ROWS, ≤ 4 · (WORKGROUP_SIZE / head_vecs)
  token_rows: u32, // block rows per token: group (packed), or group padded to whole blocks (a block per token)
  split_keys: u32, // keys per split (workgroup z), best a multiple of TILE_KEYS; ≥ max_seq when unsplit
  scale: f32,      // 1 / sqrt(headDim), or the model's (Gemma: query_pre_attn_scalar^-0.5)
  softcap: f32,    // SOFTCAP: attn_logit_softcapping (> 0); unused otherwise
  window: u32,     // WINDOW: sliding window (≥ 1, < max_seq); unused otherwise
}

// The pass's step (src/gpu/step.ts): this call's row count T and each row's (slot, position).
struct StepRow { slot: u32, position: u32 }
struct Step { rows: u32, row: array<StepRow> }

override WORKGROUP_SIZE: u32; // threads per workgroup
override MAX_ROWS: u32;       // query rows per workgroup, at most
// Keys per tile: each thread scores 4 (four K reads share the 4 query reads of a step).
override TILE_KEYS: u32 = 4u * WORKGROUP_SIZE;

// Lanes per row in the softmax steps.
override ROW_LANES: u32 = WORKGROUP_SIZE / MAX_ROWS;

// A masked score (causal, window, another run, past the range): finite, so max() and the
// subtraction stay NaN-free; its probability is set to 0 explicitly.
const MASKED = -3.0e38;
// row_token of a block row that is no query (past T, or a token's padding rows).
const NO_TOKEN = 0xffffffffu;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> step: Step;
#include "common/attention_bindings.wgsl"

var<workgroup> q_tile: array<vec4f, 4u * WORKGROUP_SIZE>;     // (rows, headVecs) queries · scale
var<workgroup> scores: array<f32, MAX_ROWS * TILE_KEYS>;       // (rows, TILE_KEYS): scores, then probabilities
var<workgroup> red_max: array<f32, WORKGROUP_SIZE>;            // (rows, ROW_LANES) partial maxima of a tile
var<workgroup> red_sum: array<f32, WORKGROUP_SIZE>;            // (rows, ROW_LANES) partial Σ p of a tile
var<workgroup> row_max: array<f32, MAX_ROWS>;                  // (rows,) running max of each row
var<workgroup> row_sum: array<f32, MAX_ROWS>;                  // (rows,) running Σ exp(s − max)
var<workgroup> row_alpha: array<f32, MAX_ROWS>;                // (rows,) this tile's exp(old max − new max)
var<workgroup> row_pos: array<u32, MAX_ROWS>;                  // (rows,) each row's position: its last key
var<workgroup> row_token: array<u32, MAX_ROWS>;                // (rows,) each row's step row, NO_TOKEN past T or on padding

#ifdef SOFTCAP
// cap · tanh(s / cap). tanh's argument is clamped to ±10 (tanh(10) = 1 in f32): WGSL's tanh
// may be sinh/cosh, which overflows to NaN past |x| ≈ 44 on some implementations.
fn softcap4(s: vec4f) -> vec4f {
  return params.softcap * tanh(clamp(s / params.softcap, vec4f(-10.0), vec4f(10.0)));
}
#endif

#ifdef WINDOW
// The first key a query at position `pos` sees: pos + 1 − window, or 0.
fn window_first(pos: u32) -> u32 {
  return select(0u, pos + 1u - params.window, pos + 1u > params.window);
}
#endif

// The max of row r over the tile (its ROW_LANES partial maxima) and `m`.
fn tile_max(r: u32, m: f32) -> f32 {
  var out = m;
  for (var i = 0u; i < ROW_LANES; i++) { out = max(out, red_max[r * ROW_LANES + i]); }
  return out;
}

#include "common/attention_main.wgsl"

  // Queries · scale; rows past T (and a token's padding rows) are zero.
  for (var i = tid; i < rows * hv; i += WORKGROUP_SIZE) {
    let row = first_row + i / hv;
    var qv = vec4f(0.0);
    if (row < row_count && row % tr < group) {
      let head = wg.y * group + row % tr;
      qv = unpack(q[((row / tr) * params.n_heads + head) * hv + i % hv]) * params.scale;
    }
    q_tile[i] = qv;
  }
  if (tid < rows) {
    let row = first_row + tid;
    let valid = row < row_count && row % tr < group;
    row_max[tid] = MASKED;
    row_sum[tid] = 0.0;
    row_token[tid] = select(NO_TOKEN, row / tr, valid); // never in a run: masked below
    row_pos[tid] = step.row[min(row, row_count - 1u) / tr].position; // any, where not valid
  }
  workgroupBarrier();

  // Softmax lanes: ROW_LANES per row.
  let sr = tid / ROW_LANES;
  let sl = tid % ROW_LANES;
  let soft_lane = sr < rows;
  // P·V lanes: vec4 c of headDim for rows r0 .. r0 + 3, accumulated in registers across
  // tiles (rows ≤ 4 · (WORKGROUP_SIZE / hv): every chunk of 4 rows has its lanes).
  let c = tid % hv;
  let r0 = 4u * (tid / hv);
  let pv_lane = r0 < rows;
  var o0 = vec4f(0.0);
  var o1 = vec4f(0.0);
  var o2 = vec4f(0.0);
  var o3 = vec4f(0.0);

#ifdef RUNS
  // Runs of consecutive tokens in one cache slot (a block straddling sequences), each with
  // its own keys: the run loop.
#include "common/attention_runs.wgsl"
#else
  // Every token of the block is in one slot (one slot in all, or a block per token): one
  // run, no run loop around the tiles.
  {
    let run_first = first_token;
    let run_last = last_token;
    let slot = step.row[first_token].slot;
    let lo = pos_min;
    let hi = pos_max;
#endif
#include "common/attention_keys.wgsl"

    for (var k0 = key_begin; k0 < split_end; k0 += TILE_KEYS) {
      let keys = min(TILE_KEYS, split_end - k0);
      // Scores, lane = keys tid + n · WORKGROUP_SIZE (n < 4), 4 rows at a time: per step 4 K
      // reads + 4 query reads → 16 dot4s. Lanes past the range re-read the last key; masked.
      let kl = keys - 1u;
      let ka = cache_base + (k0 + min(tid, kl)) * hv;
      let kb = cache_base + (k0 + min(tid + WORKGROUP_SIZE, kl)) * hv;
      let kc = cache_base + (k0 + min(tid + 2u * WORKGROUP_SIZE, kl)) * hv;
      let kd = cache_base + (k0 + min(tid + 3u * WORKGROUP_SIZE, kl)) * hv;
      for (var rc = 0u; rc < rows; rc += 4u) {
        var da = vec4f(0.0); // rows rc .. rc + 3 against key a
        var db = vec4f(0.0);
        var dc = vec4f(0.0);
        var dd = vec4f(0.0);
        for (var cc = 0u; cc < hv; cc++) {
          let qi = rc * hv + cc;
          let q0 = q_tile[qi];
          let q1 = q_tile[qi + hv];
          let q2 = q_tile[qi + 2u * hv];
          let q3 = q_tile[qi + 3u * hv];
          let k_a = unpack(k_cache[ka + cc]);
          da += vec4f(dot(q0, k_a), dot(q1, k_a), dot(q2, k_a), dot(q3, k_a));
          // Key groups wholly past the range (a short last tile) are skipped, uniformly.
          if (keys > WORKGROUP_SIZE) {
            let k_b = unpack(k_cache[kb + cc]);
            db += vec4f(dot(q0, k_b), dot(q1, k_b), dot(q2, k_b), dot(q3, k_b));
          }
          if (keys > 2u * WORKGROUP_SIZE) {
            let k_c = unpack(k_cache[kc + cc]);
            dc += vec4f(dot(q0, k_c), dot(q1, k_c), dot(q2, k_c), dot(q3, k_c));
          }
          if (keys > 3u * WORKGROUP_SIZE) {
            let k_d = unpack(k_cache[kd + cc]);
            dd += vec4f(dot(q0, k_d), dot(q1, k_d), dot(q2, k_d), dot(q3, k_d));
          }
        }
#ifdef SOFTCAP
        let d = array<vec4f, 4>(softcap4(da), softcap4(db), softcap4(dc), softcap4(dd));
#else
        let d = array<vec4f, 4>(da, db, dc, dd);
#endif
        for (var i = 0u; i < 4u; i++) {
          let token = row_token[rc + i];
          let last_key = row_pos[rc + i]; // the row's own position
          let in_run = token >= run_first && token <= run_last; // false past T and on padding
          let at = (rc + i) * TILE_KEYS + tid;
          for (var n = 0u; n < 4u; n++) {
            let j = tid + n * WORKGROUP_SIZE;
#ifdef WINDOW
            // window < max_seq, so k0 + j + window does not overflow.
            let visible = in_run && j < keys && k0 + j <= last_key && k0 + j + params.window > last_key;
#else
            let visible = in_run && j < keys && k0 + j <= last_key;
#endif
            scores[at + n * WORKGROUP_SIZE] = select(MASKED, d[n][i], visible);
          }
        }
      }
      workgroupBarrier();

      // Online softmax, ROW_LANES lanes per row, each over keys sl, sl + ROW_LANES, …:
      // partial maxima; then the row max, probabilities in place, partial sums and the
      // rescale alpha; the row state itself is folded in during P·V (nobody reads it then).
      if (soft_lane) {
        var m = MASKED;
        for (var j = sl; j < keys; j += ROW_LANES) { m = max(m, scores[sr * TILE_KEYS + j]); }
        red_max[tid] = m;
      }
      workgroupBarrier();
      if (soft_lane) {
        let m_old = row_max[sr];
        let m = tile_max(sr, m_old);
        var sum = 0.0;
        for (var j = sl; j < keys; j += ROW_LANES) {
          let at = sr * TILE_KEYS + j;
          let s = scores[at];
          let p = select(exp(s - m), 0.0, s <= MASKED);
          scores[at] = p;
          sum += p;
        }
        red_sum[tid] = sum;
        if (sl == 0u) { row_alpha[sr] = select(exp(m_old - m), 0.0, m_old <= MASKED); }
      }
      workgroupBarrier();

      // o = o · alpha + P · V: each V read feeds the lane's 4 rows.
      if (pv_lane) {
        o0 *= row_alpha[r0];
        o1 *= row_alpha[r0 + 1u];
        o2 *= row_alpha[r0 + 2u];
        o3 *= row_alpha[r0 + 3u];
        let v_base = cache_base + k0 * hv + c;
        let p0 = r0 * TILE_KEYS;
        for (var j = 0u; j < keys; j++) {
          let v = unpack(v_cache[v_base + j * hv]);
          let pj = p0 + j;
          o0 += scores[pj] * v;
          o1 += scores[pj + TILE_KEYS] * v;
          o2 += scores[pj + 2u * TILE_KEYS] * v;
          o3 += scores[pj + 3u * TILE_KEYS] * v;
        }
      }
      if (soft_lane && sl == 0u) {
        var sum = 0.0;
        for (var i = 0u; i < ROW_LANES; i++) { sum += red_sum[sr * ROW_LANES + i]; }
        row_sum[sr] = row_sum[sr] * row_alpha[sr] + sum;
        row_max[sr] = tile_max(sr, row_max[sr]);
      }
      workgroupBarrier(); // the next tile overwrites scores and row_alpha
    }
  }

  if (!pv_lane) { return; }
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
    if (c == 0u) { part_ml[part] = vec2f(row_max[r], row_sum[r]); }
#else
    out[(t * params.n_heads + head) * hv + c] = pack(acc[i] / row_sum[r]);
#endif
  }
}

#ifdef SPLIT
// Pass 2 of flash-decoding: one thread per output vec4 merges the splits its row's
// position reaches: O = Σ e^(mₛ−M) Oₛ / Σ e^(mₛ−M) lₛ, M = max mₛ.
@compute @workgroup_size(WORKGROUP_SIZE)
fn combine(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let i = gid.x + gid.y * groups.x * WORKGROUP_SIZE;
  let hv = params.head_vecs;
  if (i >= step.rows * params.n_heads * hv) { return; }
  let part0 = i / hv; // t · nHeads + head
  let c = i % hv;
  let t = part0 / params.n_heads;
  let pos = step.row[t].position;
  // Every split from the window's to the position's was written: its block's keys reach
  // them (a block's range spans its rows' positions and windows).
  let splits = pos / params.split_keys + 1u;
#ifdef WINDOW
  let first = window_first(pos) / params.split_keys; // earlier splits may have exited unwritten
#else
  let first = 0u;
#endif
  let stride = step.rows * params.n_heads; // parts per split
  var m = MASKED;
  for (var s = first; s < splits; s++) { m = max(m, part_ml[s * stride + part0].x); }
  var o = vec4f(0.0);
  var l = 0.0;
  for (var s = first; s < splits; s++) {
    let ml = part_ml[s * stride + part0];
    let w = exp(ml.x - m);
    o += w * part_o[(s * stride + part0) * hv + c];
    l += w * ml.y;
  }
  out[i] = pack(o / l);
}
#endif

// Samples one token id per logits row on the GPU, so a decode step reads back 4 bytes a
// row. One workgroup per row (rows = the sequences of a batched decode step), each row with
// its own parameters, history, bias and RNG stream. Launcher: src/ops/sample.ts.
// Order and semantics, per row (vLLM's for the OpenAI parameters, HF transformers' else):
//   allowed-token mask (constrained decoding; only rows with `masked` set read it): an id
//     whose bit is clear is out before everything else — never the argmax, probability
//     exactly 0, untouched by bias and penalties — so it is never drawn at any temperature;
//     no allowed id → out = NONE (0xffffffff), for the host to report
//   → logit bias (z += bias[id], before everything else; vLLM's LogitBiasLogitsProcessor)
//   → repetition penalty (ids in the history [prompt and generated]: z > 0 → z / penalty,
//     else z · penalty; HF's RepetitionPenaltyLogitsProcessor, vLLM's apply_penalties)
//   → frequency and presence penalties (z −= c · frequency + (c > 0) · presence, c = count
//     of the id in the history from generated_from on: this request's generated ids, as
//     vLLM's apply_penalties counts output_tokens only)
//   → temperature (z / T; T = 0 → argmax of the adjusted logits, exactly, ties → lowest id)
//   → top-k → top-p (of the top-k renormalised) → min-p (p ≥ min_p · p_max)
//   → one draw from the renormalised kept distribution, u = hash(seed, step)
//   → the id to out[out_base + r] and, for a row that appends, to its history at history_len.
// (vLLM applies min-p before top-k/top-p; we keep HF's order, which sluice always had.)
// NaN logits count as -inf; ±inf are clamped to ±f32 max. Ties at a threshold are all kept
// (top_k = 1 with two equal maxima keeps both): thresholds are values, not ranks.
// Log-probabilities are a separate kernel (logprobs.wgsl), on the raw logits (unmasked).
//
// Design: one workgroup of WORKGROUP_SIZE threads per row, no sort. Each "pass" is every
// thread reading its strided elements j = tid, tid + WG, ... of the row's scratch copy, then
// a tree reduction in workgroup memory.
//   A  scratch = clamp(adjust(logits) / T); max M and its index   (3 passes)
//      adjust touches only the ids in the history or the bias list: marks (a u32 per id)
//      are cleared at those ids, then counted (atomicAdd) and flagged, then each such id's
//      z is rewritten from the caller's logits: 3 short passes over history + bias, never
//      a pass over the vocabulary. An id twice in the history is adjusted once.
//   B  scratch = e = exp(z − M) ∈ [0, 1] (p = e / Σe), S = Σe           (1 pass)
//      e ≥ 0, so e's bits order as its value: a threshold is a u32 key < 2^30 (1.0 is
//      0x3f800000), found bit by bit, from bit 29 down, as the largest key t with
//   C  top-k: count(e ≥ t) ≥ k                                      (≤ 30 passes)
//   D  top-p: mass(e ≥ t) ≥ p · (mass of the top-k set)             (≤ 30 passes)
//      (D's set is a prefix of C's, so D's largest t is ≥ C's: one threshold serves both;
//      each search stops as soon as its kept set can no longer change, typically after
//      the exponent and the first mantissa bits: ~10–20 passes on real logits)
//   E  min-p: e ≥ min_p (p_max is e = 1), no search. Keep e ≥ thr = max(C, D, min_p).
//   F  draw: each thread sums the kept e of its own contiguous block of indices; a
//      Hillis–Steele scan over the WG block sums gives W = Σ kept e; r = u · W; the thread
//      whose block holds r walks it in index order and picks the id where the running
//      sum passes r (atomicMin settles float ties; no pick → the argmax)       (1 pass)
// Exact: the searches end on data values, so the kept set is the one a sort would give
// (up to ties and f32 sums). Deterministic: same order of every sum on every run.
//   napkin, n = 128256, WG = 256: 501 elements per thread per pass. On a real GPU the
//   0.5 MB scratch stays in L2 and one workgroup streams a pass in ~3–5 µs, so
//   top-k + top-p ≤ 65 passes ≈ 0.3 ms worst case, ~0.1–0.15 ms typical; greedy (3
//   passes) ≈ 15 µs (estimates; not measured on a real GPU). Next to a 1B model's
//   ~2.5 GB of f16 weights per token (~1 ms at 2.5 TB/s) that is 10–30 %; next to an 8B
//   model's 16 GB, ≤ 5 %. A radix-select histogram would cut C and D to 4 passes
//   each, at the price of contended workgroup atomics (and emulated f32 atomics for
//   mass). Measured on lavapipe: see sample.ts.
struct Params {
  n: u32,        // logits per row (the vocabulary)
  out_base: u32, // element of out that receives row 0's id
}

// One row's parameters; mirrored by writeRow() in src/ops/sample-params.ts (16 scalars, 64 B).
struct Row {
  temperature: f32,        // 0 → argmax
  top_k: u32,              // 0 or ≥ n → off
  top_p: f32,              // ≥ 1 → off
  min_p: f32,              // 0 → off
  repetition_penalty: f32, // 1 → off
  frequency_penalty: f32,  // 0 → off
  presence_penalty: f32,   // 0 → off
  seed: u32,               // RNG stream
  step: u32,               // RNG counter (per token)
  history_base: u32,       // first id of this row's history in `history`
  history_len: u32,        // ids of history to penalise (per token)
  generated_from: u32,     // history[history_base + generated_from ..] are this request's generated ids
  bias_base: u32,          // first entry of this row's logit bias in `bias`
  bias_len: u32,           // bias entries (0 → none)
  masked: u32,             // 1 → only ids whose bit is set in mask row r may be drawn
  append: u32,             // 1 → the drawn id also lands at history[history_base + history_len]
}

struct Rows {
  count: u32,         // rows of this step; workgroups past it exit at once
  row: array<Row>,    // (≥ count,)
}

override WORKGROUP_SIZE: u32; // a power of two (the tree reduction halves it)

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> rows: Rows;
@group(0) @binding(2) var<storage, read> logits: array<f32>;           // (rows, n) f32, never written
@group(0) @binding(3) var<storage, read_write> history: array<u32>;    // u32 token ids; row r's at history_base (appended to, never read past history_len)
@group(0) @binding(4) var<storage, read> bias: array<vec2u>;           // (id, f32 bits of its bias); row r's at bias_base
@group(0) @binding(5) var<storage, read_write> scratch: array<f32>;    // (rows, n) f32 z, then e
@group(0) @binding(6) var<storage, read_write> marks: array<atomic<u32>>; // (rows, n) u32, meaningful only at touched ids
@group(0) @binding(7) var<storage, read_write> out: array<u32>;        // (≥ out_base + rows,) u32 sampled ids
@group(0) @binding(8) var<storage, read> mask: array<u32>;             // (rows, ceil(n / 32)) u32: bit j & 31 of word j >> 5 = id j allowed

const NONE: u32 = 0xffffffffu;
const F32_MAX: f32 = 0x1.fffffep+127f;
const IN_HISTORY: u32 = 0x80000000u; // marks: the id is in the history (repetition penalty)
const HAS_BIAS: u32 = 0x40000000u;   // marks: the id has a bias entry (the bias pass writes it)
const COUNT: u32 = 0x3fffffffu;      // marks: how often the id was generated (history < 2^30)

var<workgroup> red: array<vec4f, WORKGROUP_SIZE>;      // (WG,) (count, mass, least e, 0) partials; scan of block masses
var<workgroup> red_value: array<f32, WORKGROUP_SIZE>;  // (WG,) argmax: best value per thread
var<workgroup> red_index: array<u32, WORKGROUP_SIZE>;  // (WG,) argmax: its index
var<workgroup> pick: atomic<u32>;                      // the drawn id, NONE until a thread picks

/** NaN → -f32max, ±inf → ±f32max: keeps every later exp and compare finite. */
fn sanitize(z: f32) -> f32 {
  return select(-F32_MAX, clamp(z, -F32_MAX, F32_MAX), z == z);
}

/**
 * One touched id's z from its raw logit (bias already added) and its marks: HF's
 * RepetitionPenaltyLogitsProcessor if in the history, then vLLM's frequency and presence
 * penalties, then the temperature. Every step is exact when off (· 1, − 0), so a row without
 * bias or penalties gets the bits it always got.
 */
fn adjusted(x: f32, m: u32, p: Row, temperature: f32) -> f32 {
  var z = x;
  if ((m & IN_HISTORY) != 0u) { z = select(z * p.repetition_penalty, z / p.repetition_penalty, z > 0.0); }
  let count = f32(m & COUNT);
  z = z - count * p.frequency_penalty - select(0.0, p.presence_penalty, count > 0.0);
  return sanitize(z / temperature);
}

/** True when the row is masked and id j's bit is clear (the mask is never read otherwise). */
fn disallowed(masked: bool, mask_base: u32, j: u32) -> bool {
  return masked && (mask[mask_base + (j >> 5u)] & (1u << (j & 31u))) == 0u;
}

/**
 * The row's result: its id in out and, when the row appends, in its history right after
 * the ids it penalised (the position the id is fed at next), so the host writes no id per
 * token. This row never reads that element; the caller keeps other rows of the dispatch
 * from reading it (a decode step's rows are distinct sequences, each its own history).
 */
fn emit(r: u32, p: Row, id: u32) {
  out[params.out_base + r] = id;
  if (p.append != 0u) { history[p.history_base + p.history_len] = id; }
}

/** PCG hash (Jarzynski & Olano 2020): a full-avalanche u32 → u32 bijection. */
fn pcg(v: u32) -> u32 {
  let state = v * 747796405u + 2891336453u;
  let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
  return (word >> 22u) ^ word;
}

/**
 * (Σ count, Σ mass, min e) over the workgroup, returned to every thread as a uniform value
 * (workgroupUniformLoad), so a search may branch or stop on it.
 */
fn reduce_stats(tid: u32, v: vec4f) -> vec4f {
  red[tid] = v;
  workgroupBarrier();
  for (var stride = WORKGROUP_SIZE / 2u; stride > 0u; stride /= 2u) {
    if (tid < stride) {
      let a = red[tid];
      let b = red[tid + stride];
      red[tid] = vec4f(a.xy + b.xy, min(a.z, b.z), 0.0);
    }
    workgroupBarrier();
  }
  let total = workgroupUniformLoad(&red[0]);
  workgroupBarrier(); // all have read red[0] before the next reduction writes it
  return total;
}

/** (count, mass, least e) of the e in the row's scratch whose key is ≥ t (least = 2 when none). */
fn stats_at_least(tid: u32, base: u32, n: u32, t: u32) -> vec4f {
  var acc = vec4f(0.0, 0.0, 2.0, 0.0);
  for (var j = tid; j < n; j += WORKGROUP_SIZE) {
    let e = scratch[base + j];
    if (bitcast<u32>(e) >= t) { acc = vec4f(acc.xy + vec2f(1.0, e), min(acc.z, e), 0.0); }
  }
  return reduce_stats(tid, acc);
}

/**
 * Rewrites the z of every id in the row's history (when a penalty is on) or bias list, from
 * the caller's logits: clear their marks, count and flag, then write each once-computed z.
 * Threads writing one id race only with the same value.
 */
fn adjust(tid: u32, base: u32, n: u32, p: Row, temperature: f32, masked: bool, mask_base: u32) {
  let penalties = p.repetition_penalty != 1.0 || p.frequency_penalty != 0.0 || p.presence_penalty != 0.0;
  let h0 = p.history_base;
  let h1 = h0 + select(0u, p.history_len, penalties);
  let generated = h0 + p.generated_from;
  let b0 = p.bias_base;
  let b1 = b0 + p.bias_len;
  for (var h = h0 + tid; h < h1; h += WORKGROUP_SIZE) {
    let id = history[h];
    if (id < n) { atomicStore(&marks[base + id], 0u); }
  }
  for (var b = b0 + tid; b < b1; b += WORKGROUP_SIZE) {
    let id = bias[b].x;
    if (id < n) { atomicStore(&marks[base + id], 0u); }
  }
  storageBarrier();
  for (var h = h0 + tid; h < h1; h += WORKGROUP_SIZE) {
    let id = history[h];
    if (id < n) {
      atomicOr(&marks[base + id], IN_HISTORY);
      if (h >= generated) { atomicAdd(&marks[base + id], 1u); }
    }
  }
  for (var b = b0 + tid; b < b1; b += WORKGROUP_SIZE) {
    let id = bias[b].x;
    if (id < n) { atomicOr(&marks[base + id], HAS_BIAS); }
  }
  storageBarrier();
  for (var h = h0 + tid; h < h1; h += WORKGROUP_SIZE) {
    let id = history[h];
    if (id < n) {
      let m = atomicLoad(&marks[base + id]);
      if ((m & HAS_BIAS) == 0u && !disallowed(masked, mask_base, id)) { scratch[base + id] = adjusted(logits[base + id], m, p, temperature); }
    }
  }
  for (var b = b0 + tid; b < b1; b += WORKGROUP_SIZE) {
    let entry = bias[b];
    if (entry.x < n && !disallowed(masked, mask_base, entry.x)) {
      let m = atomicLoad(&marks[base + entry.x]);
      scratch[base + entry.x] = adjusted(logits[base + entry.x] + bitcast<f32>(entry.y), m, p, temperature);
    }
  }
  storageBarrier();
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3u) {
  let r = wid.x;
  if (r >= rows.count) { return; }
  let p = rows.row[r];
  let n = params.n;
  let base = r * n; // the row's logits, scratch and marks
  let greedy = p.temperature <= 0.0;
  let temperature = select(p.temperature, 1.0, greedy);
  let masked = p.masked != 0u; // uniform over the workgroup: an unmasked row runs as before
  let mask_base = r * ((n + 31u) / 32u);

  // ── A: z = clamp(adjust(logit) / T) into scratch (a disallowed id: the lowest z, never
  //    adjusted), then its max and argmax over the allowed ids ──
  for (var j = tid; j < n; j += WORKGROUP_SIZE) {
    scratch[base + j] = select(sanitize(logits[base + j] / temperature), -F32_MAX, disallowed(masked, mask_base, j));
  }
  storageBarrier();
  adjust(tid, base, n, p, temperature, masked, mask_base);
  var best = -F32_MAX;
  var best_at = NONE;
  for (var j = tid; j < n; j += WORKGROUP_SIZE) {
    // An allowed id may also sit at -f32max (a NaN logit): the tie must not go to a disallowed one.
    if (disallowed(masked, mask_base, j)) { continue; }
    let z = scratch[base + j];
    if (z > best || (z == best && j < best_at)) { best = z; best_at = j; } // ties → lowest id
  }
  red_value[tid] = best;
  red_index[tid] = best_at;
  workgroupBarrier();
  for (var stride = WORKGROUP_SIZE / 2u; stride > 0u; stride /= 2u) {
    if (tid < stride) {
      let v = red_value[tid + stride];
      let k = red_index[tid + stride];
      if (v > red_value[tid] || (v == red_value[tid] && k < red_index[tid])) {
        red_value[tid] = v;
        red_index[tid] = k;
      }
    }
    workgroupBarrier();
  }
  let m = red_value[0];
  let argmax = red_index[0];
  if (greedy) {
    if (tid == 0u) { emit(r, p, argmax); }
    return;
  }

  // ── B: e = exp(z − M) in place (exactly 0 for a disallowed id, even when M is -f32max
  //    too); S = Σe. Every later step keeps e ≥ a key ≥ 1 or e > 0, so a 0 is never drawn ──
  var s = vec4f(0.0, 0.0, 2.0, 0.0);
  for (var j = tid; j < n; j += WORKGROUP_SIZE) {
    let e = select(exp(scratch[base + j] - m), 0.0, disallowed(masked, mask_base, j));
    scratch[base + j] = e;
    s.y += e;
  }
  storageBarrier();
  var kept_mass = reduce_stats(tid, s).y;

  // ── C: top-k threshold: the largest key t with count(e ≥ t) ≥ k ──
  // Any t that keeps the same set will do: once exactly k are kept, later bits only move t
  // between the k-th and (k+1)-th values, so the search stops (about half the passes).
  var t = 0u;
  if (p.top_k > 0u && p.top_k < n) {
    let k = f32(p.top_k);
    for (var bit = 29i; bit >= 0i; bit--) {
      let cand = t | (1u << u32(bit));
      let st = stats_at_least(tid, base, n, cand);
      if (st.x >= k) {
        t = cand;
        kept_mass = st.y;
        if (st.x == k) { break; }
      }
    }
  }

  // ── D: top-p threshold: the largest key t with mass(e ≥ t) ≥ p · mass(top-k set) ──
  // Stops likewise once dropping the least kept e would fall short of the goal.
  if (p.top_p < 1.0) {
    let goal = max(p.top_p, 0.0) * kept_mass;
    var tp = 0u;
    for (var bit = 29i; bit >= 0i; bit--) {
      let cand = tp | (1u << u32(bit));
      let st = stats_at_least(tid, base, n, cand);
      if (st.y >= goal && st.x > 0.0) { // > 0: top_p = 0 still keeps the max
        tp = cand;
        if (st.y - st.z < goal) { break; }
      }
    }
    t = max(t, tp);
  }

  // ── E: min-p, and the max always stays ──
  let thr = min(max(bitcast<f32>(t), p.min_p), 1.0);

  // ── F: draw r = u · W and find it in index order ──
  let block = (n + WORKGROUP_SIZE - 1u) / WORKGROUP_SIZE;
  let lo = min(tid * block, n);
  let hi = min(lo + block, n);
  var own = 0.0;
  for (var j = lo; j < hi; j++) {
    let e = scratch[base + j];
    if (e >= thr) { own += e; }
  }
  if (tid == 0u) { atomicStore(&pick, NONE); }
  red[tid] = vec4f(own, 0.0, 0.0, 0.0);
  workgroupBarrier();
  for (var offset = 1u; offset < WORKGROUP_SIZE; offset *= 2u) { // inclusive scan
    let add = select(0.0, red[max(tid, offset) - offset].x, tid >= offset);
    workgroupBarrier();
    red[tid].x += add;
    workgroupBarrier();
  }
  let incl = red[tid].x;
  let excl = select(0.0, red[max(tid, 1u) - 1u].x, tid > 0u);
  let total = red[WORKGROUP_SIZE - 1u].x;
  // 23 random bits: u ≤ 1 − 2^-23, so u · W < W in f32.
  let u = f32(pcg(p.seed ^ pcg(p.step)) >> 9u) * (1.0 / 8388608.0);
  let goal_mass = u * total;
  if (excl <= goal_mass && goal_mass < incl) {
    var acc = excl;
    var chosen = NONE;
    var last = NONE;
    for (var j = lo; j < hi; j++) {
      let e = scratch[base + j];
      if (e >= thr && e > 0.0) {
        last = j;
        acc += e;
        if (acc > goal_mass) { chosen = j; break; }
      }
    }
    // The walk's sum can fall an ulp short of the scan's: then the goal is in the last kept id.
    if (chosen == NONE) { chosen = last; }
    if (chosen != NONE) { atomicMin(&pick, chosen); }
  }
  workgroupBarrier();
  if (tid == 0u) {
    let id = atomicLoad(&pick);
    emit(r, p, select(id, argmax, id == NONE));
  }
}

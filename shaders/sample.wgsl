// Samples one token id from f32 logits on the GPU, so a decode step reads back 4 bytes.
// Launcher: src/ops/sample.ts. HF transformers' order and semantics:
//   repetition penalty (ids in history: z > 0 → z / penalty, else z · penalty)
//   → temperature (z / T; T = 0 → argmax of the penalised logits, exactly, ties → lowest id)
//   → top-k → top-p (of the top-k renormalised) → min-p (p ≥ min_p · p_max)
//   → one draw from the renormalised kept distribution, u = hash(seed, step).
// NaN logits count as -inf; ±inf are clamped to ±f32 max. Ties at a threshold are all kept
// (top_k = 1 with two equal maxima keeps both): thresholds are values, not ranks.
//
// Design: one workgroup of WORKGROUP_SIZE threads, no sort. Each "pass" is every thread
// reading its strided elements j = tid, tid + WG, ... of a scratch copy, then a tree
// reduction in workgroup memory.
//   A  scratch = clamp(penalise(logits) / T); max M and its index   (3 passes)
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
  n: u32,                  // logits (the vocabulary)
  history_len: u32,        // ids of history to penalise (per token)
  temperature: f32,        // 0 → argmax
  top_k: u32,              // 0 or ≥ n → off
  top_p: f32,              // ≥ 1 → off
  min_p: f32,              // 0 → off
  repetition_penalty: f32, // 1 → off
  seed: u32,               // RNG stream
  step: u32,               // RNG counter (per token)
  out_index: u32,          // element of out that receives the id
}

override WORKGROUP_SIZE: u32; // a power of two (the tree reduction halves it)

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;        // (n,) f32, never written
@group(0) @binding(2) var<storage, read> history: array<u32>;       // (≥ history_len,) u32 token ids
@group(0) @binding(3) var<storage, read_write> scratch: array<f32>; // (n,) f32 z, then e
@group(0) @binding(4) var<storage, read_write> out: array<u32>;     // (> out_index,) u32 sampled id

const NONE: u32 = 0xffffffffu;
const F32_MAX: f32 = 0x1.fffffep+127f;

var<workgroup> red: array<vec4f, WORKGROUP_SIZE>;      // (WG,) (count, mass, least e, 0) partials; scan of block masses
var<workgroup> red_value: array<f32, WORKGROUP_SIZE>;  // (WG,) argmax: best value per thread
var<workgroup> red_index: array<u32, WORKGROUP_SIZE>;  // (WG,) argmax: its index
var<workgroup> pick: atomic<u32>;                      // the drawn id, NONE until a thread picks

/** NaN → -f32max, ±inf → ±f32max: keeps every later exp and compare finite. */
fn sanitize(z: f32) -> f32 {
  return select(-F32_MAX, clamp(z, -F32_MAX, F32_MAX), z == z);
}

/** HF's RepetitionPenaltyLogitsProcessor for one logit of a token in the history. */
fn penalise(z: f32) -> f32 {
  return select(z * params.repetition_penalty, z / params.repetition_penalty, z > 0.0);
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

/** (count, mass, least e) of the e in scratch whose key is ≥ t (least = 2 when none). */
fn stats_at_least(tid: u32, t: u32) -> vec4f {
  var acc = vec4f(0.0, 0.0, 2.0, 0.0);
  for (var j = tid; j < params.n; j += WORKGROUP_SIZE) {
    let e = scratch[j];
    if (bitcast<u32>(e) >= t) { acc = vec4f(acc.xy + vec2f(1.0, e), min(acc.z, e), 0.0); }
  }
  return reduce_stats(tid, acc);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(local_invocation_index) tid: u32) {
  let n = params.n;
  let greedy = params.temperature <= 0.0;
  let temperature = select(params.temperature, 1.0, greedy);

  // ── A: z = clamp(penalise(logit) / T) into scratch, then its max and argmax ──
  for (var j = tid; j < n; j += WORKGROUP_SIZE) { scratch[j] = sanitize(logits[j] / temperature); }
  storageBarrier();
  if (params.repetition_penalty != 1.0 && params.history_len > 0u) {
    // From the caller's logits, not scratch: an id twice in the history is penalised once,
    // and threads writing it race only with the same value.
    for (var h = tid; h < params.history_len; h += WORKGROUP_SIZE) {
      let id = history[h];
      if (id < n) { scratch[id] = sanitize(penalise(logits[id]) / temperature); }
    }
    storageBarrier();
  }
  var best = -F32_MAX;
  var best_at = NONE;
  for (var j = tid; j < n; j += WORKGROUP_SIZE) {
    let z = scratch[j];
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
    if (tid == 0u) { out[params.out_index] = argmax; }
    return;
  }

  // ── B: e = exp(z − M) in place; S = Σe ──
  var s = vec4f(0.0, 0.0, 2.0, 0.0);
  for (var j = tid; j < n; j += WORKGROUP_SIZE) {
    let e = exp(scratch[j] - m);
    scratch[j] = e;
    s.y += e;
  }
  storageBarrier();
  var kept_mass = reduce_stats(tid, s).y;

  // ── C: top-k threshold: the largest key t with count(e ≥ t) ≥ k ──
  // Any t that keeps the same set will do: once exactly k are kept, later bits only move t
  // between the k-th and (k+1)-th values, so the search stops (about half the passes).
  var t = 0u;
  if (params.top_k > 0u && params.top_k < n) {
    let k = f32(params.top_k);
    for (var bit = 29i; bit >= 0i; bit--) {
      let cand = t | (1u << u32(bit));
      let st = stats_at_least(tid, cand);
      if (st.x >= k) {
        t = cand;
        kept_mass = st.y;
        if (st.x == k) { break; }
      }
    }
  }

  // ── D: top-p threshold: the largest key t with mass(e ≥ t) ≥ p · mass(top-k set) ──
  // Stops likewise once dropping the least kept e would fall short of the goal.
  if (params.top_p < 1.0) {
    let goal = max(params.top_p, 0.0) * kept_mass;
    var tp = 0u;
    for (var bit = 29i; bit >= 0i; bit--) {
      let cand = tp | (1u << u32(bit));
      let st = stats_at_least(tid, cand);
      if (st.y >= goal && st.x > 0.0) { // > 0: top_p = 0 still keeps the max
        tp = cand;
        if (st.y - st.z < goal) { break; }
      }
    }
    t = max(t, tp);
  }

  // ── E: min-p, and the max always stays ──
  let thr = min(max(bitcast<f32>(t), params.min_p), 1.0);

  // ── F: draw r = u · W and find it in index order ──
  let block = (n + WORKGROUP_SIZE - 1u) / WORKGROUP_SIZE;
  let lo = min(tid * block, n);
  let hi = min(lo + block, n);
  var own = 0.0;
  for (var j = lo; j < hi; j++) {
    let e = scratch[j];
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
  let u = f32(pcg(params.seed ^ pcg(params.step)) >> 9u) * (1.0 / 8388608.0);
  let r = u * total;
  if (excl <= r && r < incl) {
    var acc = excl;
    var chosen = NONE;
    var last = NONE;
    for (var j = lo; j < hi; j++) {
      let e = scratch[j];
      if (e >= thr && e > 0.0) {
        last = j;
        acc += e;
        if (acc > r) { chosen = j; break; }
      }
    }
    // The walk's sum can fall an ulp short of the scan's: then r is in the last kept id.
    if (chosen == NONE) { chosen = last; }
    if (chosen != NONE) { atomicMin(&pick, chosen); }
  }
  workgroupBarrier();
  if (tid == 0u) {
    let id = atomicLoad(&pick);
    out[params.out_index] = select(id, argmax, id == NONE);
  }
}

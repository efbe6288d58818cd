// Log-probabilities of the sampled ids, and the top alternatives, under the RAW logits of
// each row (before bias, penalties and temperature: vLLM's default logprobs_mode
// "raw_logprobs", vllm-project/vllm vllm/v1/sample/sampler.py Sampler.forward), so a client
// sees what the model thought, not what the sampler did. Launcher: src/ops/logprobs.ts.
//   logprob(id) = z_id − (M + log Σ exp(z − M)),   z = logits sanitized as in sample.wgsl
//   (NaN → −f32max, ±inf → ±f32max: an impossible id gets about −3.4e38, never −inf or NaN;
//   a logprob is clamped to ≥ −f32max, where −f32max − M would overflow).
// Per row: record[0] = (sampled id, its logprob); record[1 + i] = the i-th most likely id
// and its logprob, i < top (ties → the lower id first); rows whose top is NONE are skipped.
//
// Design: one workgroup of WORKGROUP_SIZE threads per row, one pass over the row: each
// thread keeps an online (max, Σ exp) pair (Milakov & Gimelshein's online softmax) and its
// own sorted list of its `top` largest (value, id), in workgroup memory (16 KB allows
// WG · TOP_CAPACITY · 8 B; 64 · 20 · 8 = 10 KB). A tree merges the pairs; `top` rounds of a
// tree argmax over the threads' list heads merge the lists (each round pops one head).
//   napkin, n = 151936, WG = 64: 2374 elements and exps per thread; 20 rounds × 6 barrier
//   levels. Only dispatched when a row asks; the sampling kernel never pays for it.
struct Params {
  n: u32,      // logits per row (the vocabulary)
  id_base: u32, // element of ids holding row 0's sampled id
}

struct Tops {
  count: u32,          // rows of this step; workgroups past it exit at once
  top: array<u32>,     // (≥ count,) alternatives per row ≤ TOP_CAPACITY, or NONE: no logprobs for the row
}

override WORKGROUP_SIZE: u32;  // a power of two (the tree reductions halve it)
override TOP_CAPACITY: u32;    // most alternatives a row may ask for
override LIST_SLOTS: u32 = WORKGROUP_SIZE * TOP_CAPACITY;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> tops: Tops;
@group(0) @binding(2) var<storage, read> logits: array<f32>;       // (rows, n) f32
@group(0) @binding(3) var<storage, read> ids: array<u32>;          // (≥ id_base + rows,) sampled ids
@group(0) @binding(4) var<storage, read_write> out: array<vec2u>;  // (rows, 1 + TOP_CAPACITY) (id, f32 bits of logprob)

const NONE: u32 = 0xffffffffu;
const F32_MAX: f32 = 0x1.fffffep+127f;

var<workgroup> list_value: array<f32, LIST_SLOTS>; // (WG, TOP_CAPACITY) each thread's largest z, descending
var<workgroup> list_id: array<u32, LIST_SLOTS>;    // (WG, TOP_CAPACITY) their ids
var<workgroup> red_value: array<f32, WORKGROUP_SIZE>; // (WG,) running max, then candidate value
var<workgroup> red_sum: array<f32, WORKGROUP_SIZE>;   // (WG,) Σ exp(z − running max)
var<workgroup> red_id: array<u32, WORKGROUP_SIZE>;    // (WG,) candidate id

/** z − M − log Σ, kept ≥ −f32max (−f32max − M would overflow to −inf when M > 0). */
fn logprob(z: f32, max_z: f32, log_sum: f32) -> f32 {
  return max((z - max_z) - log_sum, -F32_MAX);
}

fn sanitize(z: f32) -> f32 {
  return select(-F32_MAX, clamp(z, -F32_MAX, F32_MAX), z == z);
}

/** (a, ia) ranks before (b, ib): larger value, ties → lower id (NONE ranks last). */
fn before(a: f32, ia: u32, b: f32, ib: u32) -> bool {
  return a > b || (a == b && ia < ib);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3u) {
  let r = wid.x;
  if (r >= tops.count) { return; }
  let want = tops.top[r];
  if (want == NONE) { return; }
  let k = min(want, TOP_CAPACITY);
  let n = params.n;
  let base = r * n;
  let slot0 = tid * TOP_CAPACITY;

  // ── one pass: online (max, Σ exp) and this thread's top-k list (its ids ascend, so an
  //    equal value goes after the ones it has: ties → lower id) ──
  var m = -F32_MAX;
  var s = 0.0;
  var len = 0u;
  for (var j = tid; j < n; j += WORKGROUP_SIZE) {
    let z = sanitize(logits[base + j]);
    if (z > m) {
      s = s * exp(m - z) + 1.0;
      m = z;
    } else {
      s += exp(z - m);
    }
    if (k > 0u && (len < k || z > list_value[slot0 + len - 1u])) {
      var at = min(len, k - 1u); // the last kept slot is overwritten when full
      while (at > 0u && z > list_value[slot0 + at - 1u]) {
        list_value[slot0 + at] = list_value[slot0 + at - 1u];
        list_id[slot0 + at] = list_id[slot0 + at - 1u];
        at--;
      }
      list_value[slot0 + at] = z;
      list_id[slot0 + at] = j;
      len = min(len + 1u, k);
    }
  }

  // ── merge (max, Σ) over the workgroup: log Σ exp(z − M) ──
  red_value[tid] = m;
  red_sum[tid] = s;
  workgroupBarrier();
  for (var stride = WORKGROUP_SIZE / 2u; stride > 0u; stride /= 2u) {
    if (tid < stride) {
      let ma = red_value[tid];
      let mb = red_value[tid + stride];
      let mm = max(ma, mb);
      red_sum[tid] = red_sum[tid] * exp(ma - mm) + red_sum[tid + stride] * exp(mb - mm);
      red_value[tid] = mm;
    }
    workgroupBarrier();
  }
  let max_z = red_value[0];
  let log_sum = log(red_sum[0]);
  let record = r * (1u + TOP_CAPACITY);
  if (tid == 0u) {
    let id = ids[params.id_base + r];
    let z = select(-F32_MAX, sanitize(logits[base + min(id, n - 1u)]), id < n);
    out[record] = vec2u(id, bitcast<u32>(logprob(z, max_z, log_sum)));
  }
  workgroupBarrier(); // all have read red_value[0] before the rounds reuse it

  // ── k rounds: the best list head of all threads, popped ──
  var head = 0u;
  for (var i = 0u; i < k; i++) {
    let has = head < len;
    red_value[tid] = select(-F32_MAX, list_value[slot0 + min(head, TOP_CAPACITY - 1u)], has);
    red_id[tid] = select(NONE, list_id[slot0 + min(head, TOP_CAPACITY - 1u)], has);
    workgroupBarrier();
    for (var stride = WORKGROUP_SIZE / 2u; stride > 0u; stride /= 2u) {
      if (tid < stride && before(red_value[tid + stride], red_id[tid + stride], red_value[tid], red_id[tid])) {
        red_value[tid] = red_value[tid + stride];
        red_id[tid] = red_id[tid + stride];
      }
      workgroupBarrier();
    }
    let best = red_id[0];
    if (tid == 0u) { out[record + 1u + i] = vec2u(best, bitcast<u32>(logprob(red_value[0], max_z, log_sum))); }
    if (has && best == list_id[slot0 + min(head, TOP_CAPACITY - 1u)]) { head++; } // ids are unique: one thread pops
    workgroupBarrier(); // all have read red_*[0] before the next round writes them
  }
}

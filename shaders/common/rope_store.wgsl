// A q/k/v projection's epilogue that is qkv_rope_store.wgsl (without qk-norm) too: the
// rotary embedding and the KV cache append, so a decode layer's attention glue needs no
// dispatch of its own (gemv.wgsl's ROPE_STORE). W is the joined [q; k; v] weight, one row
// per element of the nH + 2·nKV heads; a thread sums the rows of whole units and hands each
// unit's two projections to rope_store_unit, which writes them where qkv_rope_store would:
//   q heads → y, row t (n_heads, head_dim), rotated
//   k heads → k_cache[slot, head, position, :], rotated
//   v heads → v_cache[slot, head, position, :]
// A unit is qkv_rope_store's: the two elements of a head that rotate together (u, u + half),
// or two past the rotary dim (pass through), or for a V head elements 2u, 2u + 1.
//
// Bit-exact with the projection stored to T and qkv_rope_store run over it: each value is
// rounded to T on the bits (roundT: lavapipe drops f32(T(v)) as an identity) before the
// rope's arithmetic, which is write_unit's expression for expression (common/rope_angle.wgsl,
// common/rope_cos_sin.wgsl). The includer declares T, roundT, `params` with the fields below
// (after its own), `y` (array<T>), and ROPE_STORE_FIRST_BINDING: the first of the four
// bindings below, after its own (gemv's end at 4, qgemv's at 7).

struct StepRow { slot: u32, position: u32 }
struct Step { rows: u32, row: array<StepRow> }

@group(0) @binding(ROPE_STORE_FIRST_BINDING) var<storage, read> step: Step;                  // this call's rows: slot and position of each
@group(0) @binding(ROPE_STORE_FIRST_BINDING + 1u) var<storage, read> inv_freq: array<f32>;   // (rot_half,) f32; unread when rot_half = 0
@group(0) @binding(ROPE_STORE_FIRST_BINDING + 2u) var<storage, read_write> k_cache: array<T>; // (slots, n_kv_heads, max_seq, head_dim)
@group(0) @binding(ROPE_STORE_FIRST_BINDING + 3u) var<storage, read_write> v_cache: array<T>; // (slots, n_kv_heads, max_seq, head_dim)

#include "common/rope_angle.wgsl"

// The row of W (an element of one of the nH + 2·nKV heads) that element `which` (0 or 1)
// of unit g (of the heads' head_dim / 2 each, numbered head by head) projects.
fn rope_store_row(g: u32, which: u32) -> u32 {
  let units = params.head_dim / 2u;
  let head = g / units;
  let u = g % units;
  let half = params.rot_half;
  var e = 2u * u + which;                             // a V head's, or past the rotary dim
  if (head < params.n_heads + params.n_kv_heads) {
    if (u < half) { e = u + which * half; }             // a rotation pair (u, u + half)
    else { e = 2u * half + 2u * (u - half) + which; }
  }
  return head * params.head_dim + e;
}

// Unit g's two projections with the bias added (BIAS: the includer's `bias`, (N,) in T), as
// the plain variant adds it before its store.
fn rope_store_biased(g: u32, v: vec2f) -> vec2f {
#ifdef BIAS
  return v + vec2f(f32(bias[rope_store_row(g, 0u)]), f32(bias[rope_store_row(g, 1u)]));
#else
  return v;
#endif
}

// Unit g of row t of this call: its two projections (bias added, not yet rounded) rotated
// and stored. Rows past step.rows write nothing (their step entries are stale), nor do K
// and V past the cache (Step.write refuses them, as kv_store).
fn rope_store_unit(t: u32, g: u32, projected: vec2f) {
  if (t >= step.rows) { return; }
  let d = params.head_dim;
  let head = g / (d / 2u);
  let u = g % (d / 2u);
  let at = step.row[t];
  let qk = params.n_heads + params.n_kv_heads; // the q and k heads; v's follow
  if (head >= params.n_heads && !(at.position < params.max_seq && at.slot < params.slots)) { return; }
  let x = vec2f(roundT(projected[0]), roundT(projected[1])); // as stored to T and read back
  if (head >= qk) {
    let cached = ((at.slot * params.n_kv_heads + head - qk) * params.max_seq + at.position) * d;
    v_cache[cached + 2u * u] = T(x[0]);
    v_cache[cached + 2u * u + 1u] = T(x[1]);
    return;
  }
  var y2 = x;
  let half = params.rot_half;
  if (u < half) {
    let r = reduce_angle(f32(at.position) * inv_freq[u]);
#include "common/rope_cos_sin.wgsl"
    y2 = vec2f(x[0] * c - x[1] * s, x[1] * c + x[0] * s);
  }
  let e = select(vec2u(2u * half + 2u * (u - half), 2u * half + 2u * (u - half) + 1u), vec2u(u, u + half), u < half);
  if (head < params.n_heads) {
    let dst = (t * params.n_heads + head) * d;
    y[dst + e[0]] = T(y2[0]);
    y[dst + e[1]] = T(y2[1]);
  } else {
    let cached = ((at.slot * params.n_kv_heads + head - params.n_heads) * params.max_seq + at.position) * d;
    k_cache[cached + e[0]] = T(y2[0]);
    k_cache[cached + e[1]] = T(y2[1]);
  }
}

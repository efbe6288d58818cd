// Gemma's sandwich-norm residual in one dispatch, per row of a (rows, hidden) activation:
//   x = x + post_norm(y)          (post_attention_layernorm / post_feedforward_layernorm)
//   out = next_norm(x)            (NEXT: pre_feedforward_layernorm, the next layer's
//                                  input_layernorm, or the final norm)
// as transformers' Gemma2DecoderLayer.forward / Gemma3DecoderLayer.forward write it:
//   hidden_states = self.post_attention_layernorm(hidden_states)
//   hidden_states = residual + hidden_states
//   hidden_states = self.pre_feedforward_layernorm(hidden_states) ...
// Launcher: src/ops/norm-add-norm.ts.
//
// Bit for bit what rms_norm.wgsl (y → tmp), add.wgsl IN_PLACE (x += tmp) and rms_norm.wgsl
// (x → out) give as three dispatches: one workgroup per row of the same WORKGROUP_SIZE,
// invocation `lid` owns elements lid, lid + WORKGROUP_SIZE, … of both sums in the same
// order, the same f32 tree, and the same rounding points (the post-norm's output rounded
// to T, then added in T; the new x stored as T and squared from that stored value).
// Variants: F16, ONE_PLUS_WEIGHT (Gemma's (1 + w), both norms), NEXT (also write out).
#include "common/dtype.wgsl"
#include "common/round_t.wgsl"

struct Params {
  rows: u32,   // T: rows of the residual stream
  hidden: u32, // elements per row
  eps: f32,    // rms_norm_eps (both norms)
  zero: u32,   // always 0: see pinned()
}

// A power of two (the tree halves it), the launcher's NORM_ADD_NORM_WORKGROUP, which is
// RMS_NORM_WORKGROUP: the tree's shape decides the sum's bits.
override WORKGROUP_SIZE: u32;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> y: array<T>;            // (rows, hidden) the block's output (o_proj, down_proj)
@group(0) @binding(2) var<storage, read> w1: array<T>;           // (hidden,) post-norm weight
@group(0) @binding(3) var<storage, read_write> x: array<T>;      // (rows, hidden) residual stream, in: x, out: x + post_norm(y)
#ifdef NEXT
@group(0) @binding(4) var<storage, read> w2: array<T>;           // (hidden,) next norm's weight
@group(0) @binding(5) var<storage, read_write> out: array<T>;    // (rows, hidden) next_norm(new x)
#endif

var<workgroup> partial: array<f32, WORKGROUP_SIZE>; // (WORKGROUP_SIZE,) sums of squares

// Each invocation's sum of squares in `partial`, reduced by rms_norm.wgsl's tree (shared); returns
// 1 / sqrt(mean + eps) to every invocation.
fn rowScale(sum: f32, lid: u32) -> f32 {
#include "common/rms_sum_tree.wgsl"
  let total = workgroupUniformLoad(&partial[0]);
  // No invocation may overwrite partial (the next norm's sums) before all have read it.
  workgroupBarrier();
  return 1.0 / sqrt(total / f32(params.hidden) + params.eps);
}

// rms_norm.wgsl's per-element step: v · scale times the weight, rounded where it rounds.
fn normed(v: T, scale: f32, w: T) -> T {
#ifdef ONE_PLUS_WEIGHT
  return T((f32(v) * scale) * (1.0 + f32(w)));
#else
  let h = roundT(f32(v) * scale);
  return T(f32(w) * h);
#endif
}

// The post-norm's value as RmsNorm stores it. In F32 its last step is a multiply that a
// GPU compiler may fuse with the residual add into one FMA (one rounding, where RmsNorm's
// store then add.wgsl round twice); OR-ing in the bits of params.zero, 0 but unknown to
// the compiler, pins the product's rounding (lavapipe does not fuse; WGSL lets a
// compiler contract, and native GPU compilers commonly do). In F16 the conversion to T
// already rounds it.
#ifdef F16
fn pinned(v: T) -> T { return v; }
#else
fn pinned(v: T) -> T { return bitcast<f32>(bitcast<u32>(v) | params.zero); }
#endif

#include "common/rms_norm_main.wgsl"

  // post_norm(y): the sum of squares of y's row.
  var sumY = 0.0;
  for (var i = lid; i < params.hidden; i += WORKGROUP_SIZE) {
    let v = f32(y[base + i]);
    sumY += v * v;
  }
  let scaleY = rowScale(sumY, lid);

  // x += post_norm(y), and the new x's squares, over the same elements in the same order.
#ifdef NEXT
  var sumX = 0.0;
#endif
  for (var i = lid; i < params.hidden; i += WORKGROUP_SIZE) {
    let xNew = x[base + i] + pinned(normed(y[base + i], scaleY, w1[i]));
    x[base + i] = xNew;
#ifdef NEXT
    let v = f32(xNew);
    sumX += v * v;
#endif
  }

#ifdef NEXT
  // out = next_norm(x): each invocation reads back only the elements it wrote.
  let scaleX = rowScale(sumX, lid);
  for (var i = lid; i < params.hidden; i += WORKGROUP_SIZE) {
    out[base + i] = normed(x[base + i], scaleX, w2[i]);
  }
#endif
}

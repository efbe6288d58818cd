// Embedding gather from a quantized table: out[t] = dequantized row ids[t] (· scale), the table
// in sluice's quantized layout (src/gpu/quantized-tensor.ts), row-chunked. Launcher:
// src/ops/qembedding.ts; the dense twin is embedding.wgsl, whose structure this keeps: one
// dispatch per chunk, one workgroup per token striding over the row (here by packed words),
// a chunk that does not hold the id skipping the workgroup at once, and an id ≥ vocab getting
// a row of zeros from the last chunk's dispatch (zero_past = 1), so no read leaves the table.
//
// Rounding: s·(q − z) is exact in f32 (an f16 scale, 11 significant bits, times an integer of
// at most 9 bits), so the dequantized value is the f32 value a dense f32 table would hold; then
// the dense shader's arithmetic on it: × scale in f32 (the embedding scale, already rounded to
// the compute dtype by the launcher; 1 when none, an exact multiply), one conversion to T.
// Variants: Q4 (8 nibbles per word; else q8, 4 signed bytes), F16 (out f16). Scale storage and
// zero points are Params flags, uniform per dispatch, so they add no variants.
#include "common/dtype.wgsl"
#ifdef Q4
const EPW = 8u; // elements per packed word
const DEFAULT_ZERO = 8.0;
#else
const EPW = 4u;
const DEFAULT_ZERO = 0.0;
#endif

struct Params {
  tokens: u32,     // T
  hidden: u32,     // K: elements per row, a multiple of group_size (so of 8)
  first_row: u32,  // vocab id of the chunk's row 0
  rows: u32,       // rows in this chunk
  zero_past: u32,  // 1: ids ≥ first_row + rows (past the vocab) get zeros; 0: skipped
  group_size: u32, // G, a multiple of 8
  scales_f16: u32, // 1: scales are f16 pairs, 0: f32
  has_zeros: u32,  // 1: zero points in `zeros`, 0: DEFAULT_ZERO (zeros is a placeholder)
  scale: f32,      // the embedding scale as a value of the compute dtype; 1 for none
}

override WORKGROUP_SIZE: u32;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> ids: array<u32>;          // (tokens,) token ids
@group(0) @binding(2) var<storage, read> data: array<u32>;         // (rows, K / EPW) packed
@group(0) @binding(3) var<storage, read> scales: array<u32>;       // (rows, K / G) f16 pairs or f32
@group(0) @binding(4) var<storage, read> zeros: array<u32>;        // (rows, K / G) a byte each
@group(0) @binding(5) var<storage, read_write> out: array<vec4<T>>; // (tokens, K / 4)

fn scaleAt(e: u32) -> f32 {
  if (params.scales_f16 == 1u) { return unpack2x16float(scales[e / 2u])[e % 2u]; }
  return bitcast<f32>(scales[e]);
}

fn zeroAt(e: u32) -> f32 {
  if (params.has_zeros == 0u) { return DEFAULT_ZERO; }
  let b = zeros[e / 4u] >> (8u * (e % 4u));
#ifdef Q4
  return f32(b & 0xffu);
#else
  return f32(bitcast<i32>(b << 24u) >> 24u); // a signed byte
#endif
}

// s·(q − z) exact, then × the embedding scale rounded once in f32, then to T (see the header).
fn dequant(q: vec4f, s: f32, z: f32) -> vec4<T> {
  return vec4<T>((s * (q - z)) * params.scale);
}

#include "common/embedding_main.wgsl"
  let wordsPerRow = params.hidden / EPW;
  let dst = t * (params.hidden / 4u); // K is a multiple of 8: rows start on a vec4
  if (row < params.rows) {
    let wordsPerGroup = params.group_size / EPW;
    let firstGroup = row * (params.hidden / params.group_size);
    for (var w = lid; w < wordsPerRow; w += WORKGROUP_SIZE) {
      let e = firstGroup + w / wordsPerGroup; // a word never straddles two groups
      let s = scaleAt(e);
      let z = zeroAt(e);
      let p = vec4u(data[row * wordsPerRow + w]);
#ifdef Q4
      out[dst + 2u * w] = dequant(vec4f((p >> vec4u(0u, 4u, 8u, 12u)) & vec4u(15u)), s, z);
      out[dst + 2u * w + 1u] = dequant(vec4f((p >> vec4u(16u, 20u, 24u, 28u)) & vec4u(15u)), s, z);
#else
      out[dst + w] = dequant(vec4f(bitcast<vec4<i32>>(p << vec4u(24u, 16u, 8u, 0u)) >> vec4u(24u)), s, z);
#endif
    }
  } else if (params.zero_past != 0u) {
    for (var v = lid; v < params.hidden / 4u; v += WORKGROUP_SIZE) { out[dst + v] = vec4<T>(0.0); }
  }
}

// Embedding gather: out[t] = table[ids[t]], for a table stored in row-chunks. One dispatch
// per chunk; each copies the rows of the ids inside its chunk and skips the others. One
// workgroup per token, striding over the row, so a chunk that does not hold the id skips
// the whole workgroup at once (few workgroups to skip). An id ≥ vocab gets a row of zeros,
// written by the last chunk's dispatch (zero_past = 1), so no read leaves the table.
// Launcher: src/ops/embedding.ts. Variants: F16 (f16 storage; a copy either way), SCALE
// (out = table row · scale, Gemma's `inputs_embeds * normalizer`: the product in f32, rounded
// once to the compute dtype; the launcher passes scale already rounded to that dtype).
#include "common/dtype.wgsl"

struct Params {
  tokens: u32,    // T
  hidden: u32,    // elements per row
  first_row: u32, // vocab id of the chunk's row 0
  rows: u32,      // rows in this chunk
  zero_past: u32, // 1: ids ≥ first_row + rows (past the vocab) get zeros; 0: skipped
  scale: f32,     // SCALE: the multiplier, a value of the compute dtype; unused otherwise
}

override WORKGROUP_SIZE: u32;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> ids: array<u32>;        // (tokens,) token ids
@group(0) @binding(2) var<storage, read> table: array<T>;        // (rows, hidden): this chunk
@group(0) @binding(3) var<storage, read_write> out: array<T>;    // (tokens, hidden)

#include "common/embedding_main.wgsl"
  let dst = t * params.hidden;
  if (row < params.rows) {
    let src = row * params.hidden;
#ifdef SCALE
    // An f16 × f16 product is exact in f32: one rounding, as torch's f16 multiply.
    for (var col = lid; col < params.hidden; col += WORKGROUP_SIZE) { out[dst + col] = T(f32(table[src + col]) * params.scale); }
#else
    for (var col = lid; col < params.hidden; col += WORKGROUP_SIZE) { out[dst + col] = table[src + col]; }
#endif
  } else if (params.zero_past != 0u) {
    for (var col = lid; col < params.hidden; col += WORKGROUP_SIZE) { out[dst + col] = T(0.0); }
  }
}

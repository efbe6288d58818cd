// KV cache append: the new rows' K and V, as k_proj/v_proj produce them (row-major,
// (T, nKvHeads, headDim)), copied into the head-major cache (slots, nKvHeads, maxSeq,
// headDim), row r at its step slot and position (step.row[r]). Launcher: src/ops/kv-store.ts.
//
// A plain copy, so it moves 8-byte units whatever the compute dtype: headDim is a multiple
// of 4, so one head row is a whole number of units in f16 (4 per unit) and f32 (2 per unit),
// and one pipeline serves both dtypes bit for bit.

struct Params {
  n_kv_heads: u32, // heads per row
  row_units: u32,  // 8-byte units in one head row: headDim · bytes / 8
  max_seq: u32,    // positions per head in the cache (its row stride in rows)
  slots: u32,      // sequences the cache holds
}

// The pass's step (src/gpu/step.ts): this call's row count and each row's (slot, position).
struct StepRow { slot: u32, position: u32 }
struct Step { rows: u32, row: array<StepRow> }

override WORKGROUP_SIZE: u32;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> step: Step;
@group(0) @binding(2) var<storage, read> k_new: array<vec2u>;         // (T, nKvHeads, headDim) compute dtype
@group(0) @binding(3) var<storage, read> v_new: array<vec2u>;         // (T, nKvHeads, headDim) compute dtype
@group(0) @binding(4) var<storage, read_write> k_cache: array<vec2u>; // (slots, nKvHeads, maxSeq, headDim) compute dtype
@group(0) @binding(5) var<storage, read_write> v_cache: array<vec2u>; // (slots, nKvHeads, maxSeq, headDim) compute dtype

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  // The dispatch covers the prepared rows; units past this call's rows exit.
  let i = gid.x + gid.y * groups.x * WORKGROUP_SIZE;
  let per_row = params.n_kv_heads * params.row_units;
  if (i >= step.rows * per_row) { return; }
  let r = i / per_row;
  let head = (i / params.row_units) % params.n_kv_heads;
  let at = step.row[r];
  // Step.write refuses both; never write past a head or a slot.
  if (at.position >= params.max_seq || at.slot >= params.slots) { return; }
  let head_row = (at.slot * params.n_kv_heads + head) * params.max_seq + at.position;
  let dst = head_row * params.row_units + i % params.row_units;
  k_cache[dst] = k_new[i];
  v_cache[dst] = v_new[i];
}

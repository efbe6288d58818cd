// The opening of both attention kernels' entry point (attention.wgsl, attention_tiled.wgsl):
// the block's rows, its tokens and their position range. It opens `fn main`: the includer
// writes the rest of the body and closes it.
@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wg: vec3u) {
  let hv = params.head_vecs;
  let rows = params.block_rows;
  let group = params.group;
  let tr = params.token_rows;
  // Workgroup-uniform ranges: blocks past this call's T (the dispatch covers the prepared
  // maximum) and splits past the keys the block sees leave before any barrier.
  let row_count = step.rows * tr;
  let first_row = wg.x * rows;
  if (first_row >= row_count) { return; }
  let last_row = min(first_row + rows, row_count) - 1u;
  let first_token = first_row / tr;
  let last_token = last_row / tr;
  // The block's tokens (≤ MAX_ROWS) bound its keys: the largest position sees the most
  // (causal), the smallest the earliest (window). Consecutive rows: first and last.
  var pos_min = step.row[first_token].position;
  var pos_max = pos_min;
  for (var t = first_token + 1u; t <= last_token; t++) {
    let p = step.row[t].position;
    pos_min = min(pos_min, p);
    pos_max = max(pos_max, p);
  }
  let split_begin = wg.z * params.split_keys;
  if (split_begin > pos_max) { return; }
#ifdef WINDOW
  // A split that ends before the window of the block's smallest position exits (combine
  // does not read its partials).
  if (split_begin + params.split_keys <= window_first(pos_min)) { return; }
#endif

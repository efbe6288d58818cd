// The opening of the embedding gathers' entry point (embedding.wgsl, qembedding.wgsl): one
// workgroup per token t, whose id's row in this chunk is `row` (an earlier chunk's id exits
// here; a later one is past rows). It opens `fn main`: the includer writes the rest of the
// body and closes it.
@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) groups: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let t = wid.x + wid.y * groups.x; // tokens past 65535 spill into y (workgroups1d)
  if (t >= params.tokens) { return; }
  let id = ids[t];
  if (id < params.first_row) { return; } // an earlier chunk's row
  let row = id - params.first_row;

// The opening of the RMSNorm kernels' entry point (rms_norm.wgsl, norm_add_norm.wgsl): one
// workgroup per row, `base` its first element. It opens `fn main`: the includer writes the
// rest of the body and closes it.
@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) groups: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  // Rows past 65535 spill into y (workgroups1d); the test is uniform per workgroup, so
  // the barriers below stay in uniform control flow.
  let row = wid.x + wid.y * groups.x;
  if (row >= params.rows) { return; }
  let base = row * params.hidden;

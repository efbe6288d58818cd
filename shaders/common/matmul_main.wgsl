// The opening of a register-tiled matmul's entry point (matmul.wgsl, qmatmul.wgsl): the
// signature (SUBGROUPS: the lane and subgroup width too) and the tile's bounds, up to the
// accumulators. It opens `fn main`: the includer writes the k loop and the store, and closes it.
@compute @workgroup_size(WORKGROUP_SIZE)
fn main(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(local_invocation_index) lid: u32,
#ifdef SUBGROUPS
  @builtin(subgroup_invocation_id) lane: u32,
  @builtin(subgroup_size) width: u32,
#endif
) {
  let M = params.M;
  let K = params.K;
  let m0 = wid.x * TILE_M;                      // first row of the tile
  let mEnd = min(m0 + TILE_M, M);               // end of the tile's rows inside y
  let c0 = (wid.y * WORKGROUP_SIZE + lid) * 4u; // this thread's first column in the chunk
  let last = params.rows - 1u;
  var acc: array<vec4f, MAX_TILE_M>;            // acc[i][j] = y[m0 + i, colOffset + c0 + j]

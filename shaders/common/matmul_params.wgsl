// The Params of the dense matmuls y = x·Wᵀ (+ b) over one row-chunk of W (matmul.wgsl,
// matmul_tiled.wgsl, matmul_naive.wgsl; their launchers write it).
struct Params {
  M: u32,         // rows of x and y (tokens)
  K: u32,         // columns of x and of W
  N: u32,         // columns of y (rows of W, all chunks): y's row stride
  rows: u32,      // rows of this chunk of W = the columns of y it computes
  colOffset: u32, // the chunk's first row of W: its first column of y and of bias
}

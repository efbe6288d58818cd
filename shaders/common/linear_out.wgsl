// The output bindings of the dense Linear kernels (gemv, gemv_coalesced, matmul, matmul_tiled,
// matmul_naive): y, the whole output ((N,) or (M, N)), of which a chunk writes its rows of W
// (RESIDUAL: reads them first), and BIAS's (N,) bias. T and Y: common/linear_dtypes.wgsl.
@group(0) @binding(3) var<storage, read_write> y: array<Y>;
#ifdef BIAS
@group(0) @binding(4) var<storage, read> bias: array<T>;
#endif

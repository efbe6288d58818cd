// The bindings of the dense matmuls (matmul.wgsl, matmul_tiled.wgsl; Params from
// common/matmul_params.wgsl, T and Y from common/linear_dtypes.wgsl).
@group(0) @binding(0) var<uniform> params: Params;
#ifdef F16
// 4 halves per element as 2 u32 + unpack2x16float: llvmpipe loads 32-bit lanes, 16-bit
// ones element by element; rows of K % 4 == 0 halves start on 8-byte boundaries.
@group(0) @binding(1) var<storage, read> x: array<vec2<u32>>; // (M, K) f16, 4 per element
@group(0) @binding(2) var<storage, read> w: array<vec2<u32>>; // (rows, K) f16, 4 per element
#else
@group(0) @binding(1) var<storage, read> x: array<vec4f>;     // (M, K) f32, 4 per element
@group(0) @binding(2) var<storage, read> w: array<vec4f>;     // (rows, K) f32, 4 per element
#endif
#include "common/linear_out.wgsl"

// The dtypes of a Linear kernel (gemv, matmul and their quantized twins): T, the compute
// dtype of x, W, bias (common/dtype.wgsl), and Y, the dtype of y: OUT_F32 → f32 (logits
// from f16 compute: the LM head), else T.
#include "common/dtype.wgsl"
#ifdef OUT_F32
alias Y = f32;
#else
alias Y = T;
#endif

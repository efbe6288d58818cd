// The gated activation of the Llama MLP, act(gate) * up, as HF's
// `act_fn(gate_proj(x)) * up_proj(x)` in the compute dtype T (common/dtype.wgsl, included
// first): each projection rounded to T (as torch stores it), the activation in f32 rounded
// to T (torch's f16 silu rounds its f32 result), then the product rounded once more.
// GELU_TANH: GeGLU (Gemma's gelu_pytorch_tanh) instead of silu. Used by swiglu.wgsl and by
// the linear kernels whose GLU variant computes gate and up rows and applies this in their
// epilogue (one dispatch for gate_up_proj + act).
#include "common/round_t.wgsl"

// x · sigmoid(x). For x → −∞, exp(−x) overflows to +inf and the quotient is −0, as
// torch's; for x → +∞ it is x.
fn silu(x: f32) -> f32 {
  return x / (1.0 + exp(-x));
}

#ifdef GELU_TANH
// torch's gelu(approximate='tanh'): 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), in f32.
// 1 + tanh(y) = 2·sigmoid(2y), so this is x / (1 + exp(−2y)): the same value without a
// tanh (which some WGSL implementations compute as sinh/cosh, NaN past |y| ≈ 44) and
// without the cancellation of 1 + tanh(y) at large negative x. Saturates as silu does:
// exp overflowing to +inf gives −0 for x → −∞; x for x → +∞.
const SQRT_2_OVER_PI: f32 = 0.7978845608028654;
fn gluAct(x: f32) -> f32 {
  let y = SQRT_2_OVER_PI * (x + 0.044715 * x * x * x);
  return x / (1.0 + exp(-2.0 * y));
}
#else
fn gluAct(x: f32) -> f32 { return silu(x); }
#endif

// act(gate) * up from the two projections' values (f32 sums, or values already in T).
fn glu(gate: f32, up: f32) -> T {
  let g = roundT(gate);
  let u = roundT(up);
  // An f16 × f16 product is exact in f32: one rounding, as torch's f16 multiply.
  return T(roundT(gluAct(g)) * u);
}

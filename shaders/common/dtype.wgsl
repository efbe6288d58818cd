// The compute dtype T of a shader with f16 and f32 variants: F16 → f16 storage (and the
// `enable f16` it needs, which must precede every declaration, so include this first, after
// other `enable`s), else f32.
#ifdef F16
enable f16;
alias T = f16;
#else
alias T = f32;
#endif

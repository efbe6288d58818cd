// Packed: how the attention kernels (attention.wgsl, attention_tiled.wgsl) store q, the KV
// cache and out; unpack/pack convert 4 values to and from vec4f, the math being f32 either way.
#ifdef F16
// f16 storage read and written as packed u32 pairs (4 halves), converted with
// unpack2x16float / pack2x16float: one 32-bit access per 2 values, half the loads of f16
// element access on lavapipe (which loads each component on its own); free on GPUs. No
// `enable f16` is needed (D3D12 reads f16 arrays this way anyway), and the math stays f32.
alias Packed = vec2u;
fn unpack(w: vec2u) -> vec4f { return vec4f(unpack2x16float(w.x), unpack2x16float(w.y)); }
fn pack(v: vec4f) -> vec2u { return vec2u(pack2x16float(v.xy), pack2x16float(v.zw)); }
#else
alias Packed = vec4f;
fn unpack(w: vec4f) -> vec4f { return w; }
fn pack(v: vec4f) -> vec4f { return v; }
#endif

// x and W as f32 for the dense matmuls (matmul.wgsl, matmul_tiled.wgsl): widen(v) is elements
// 4e..4e+3 of x or W (F16: 4 halves as 2 u32 + unpack2x16float), xAt/wAt single elements (the
// scalar path for K % 4 ≠ 0).
#ifdef F16
fn widen(v: vec2<u32>) -> vec4f { return vec4f(unpack2x16float(v.x), unpack2x16float(v.y)); }
fn xAt(e: u32) -> f32 { return unpack2x16float(x[e / 4u][(e / 2u) % 2u])[e % 2u]; }
fn wAt(e: u32) -> f32 { return unpack2x16float(w[e / 4u][(e / 2u) % 2u])[e % 2u]; }
#else
fn widen(v: vec4f) -> vec4f { return v; }
fn xAt(e: u32) -> f32 { return x[e / 4u][e % 4u]; }
fn wAt(e: u32) -> f32 { return w[e / 4u][e % 4u]; }
#endif

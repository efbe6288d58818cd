// SwiGLU gate of the Llama MLP: out = silu(gate) * up, elementwise over (rows, cols),
// as HF's `act_fn(gate_proj(x)) * up_proj(x)`: silu in f32, rounded to the compute dtype
// (torch's f16 silu rounds its f32 result), then the product rounded once more: the
// activation and its roundings are common/glu.wgsl's. Launcher: src/ops/swiglu.ts.
// Variants: F16 (f16 storage), FUSED (one (rows, 2·cols) input holding [gate | up] per
// row, the output of a fused gate_up projection), GELU_TANH (GeGLU, Gemma's
// gelu_pytorch_tanh instead of silu: out = gelu_tanh(gate) * up).
#include "common/dtype.wgsl"
#include "common/glu.wgsl"

struct Params {
  rows: u32, // T
  cols: u32, // intermediate_size
}

override WORKGROUP_SIZE: u32;

@group(0) @binding(0) var<uniform> params: Params;
#ifdef FUSED
@group(0) @binding(1) var<storage, read> gate_up: array<T>;    // (rows, 2 * cols): [gate | up] per row
@group(0) @binding(2) var<storage, read_write> out: array<T>;  // (rows, cols)
#else
@group(0) @binding(1) var<storage, read> gate: array<T>;       // (rows, cols)
@group(0) @binding(2) var<storage, read> up: array<T>;         // (rows, cols)
@group(0) @binding(3) var<storage, read_write> out: array<T>;  // (rows, cols)
#endif

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let i = gid.x + gid.y * groups.x * WORKGROUP_SIZE;
  if (i >= params.rows * params.cols) { return; }
#ifdef FUSED
  let row = i / params.cols;
  let at = i + row * params.cols; // row · 2·cols + col
  let g = f32(gate_up[at]);
  let u = f32(gate_up[at + params.cols]);
#else
  let g = f32(gate[i]);
  let u = f32(up[i]);
#endif
  out[i] = glu(g, u);
}

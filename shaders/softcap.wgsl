// Logit soft-capping in place on f32 values (Gemma 2's final_logit_softcapping):
//   x ← tanh(x / cap) · cap
// as transformers' Gemma2ForCausalLM: `logits = logits / cap; logits = torch.tanh(logits);
// logits = logits * cap`, on the f32 logits the LM head writes. One invocation per value.
// Launcher: src/ops/softcap.ts. No variants.

struct Params {
  count: u32, // n: values
  cap: f32,   // the cap (> 0)
}

override WORKGROUP_SIZE: u32;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> values: array<f32>; // (n,) f32, capped in place

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let i = gid.x + gid.y * groups.x * WORKGROUP_SIZE;
  if (i >= params.count) { return; }
  // tanh's argument clamped to ±10 (tanh(10) = 1 in f32): WGSL's tanh may be sinh/cosh,
  // which overflows to NaN past |x| ≈ 44 on some implementations.
  values[i] = tanh(clamp(values[i] / params.cap, -10.0, 10.0)) * params.cap;
}

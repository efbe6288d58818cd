// The q, cache and output bindings both attention kernels share (attention.wgsl,
// attention_tiled.wgsl): the same layouts and partials (SPLIT). Bindings 0 (params) and 1
// (step) stand in the shaders, where test/gpu/step.test.ts checks the step's.
@group(0) @binding(2) var<storage, read> q: array<Packed>;       // (T, nHeads, headDim)
@group(0) @binding(3) var<storage, read> k_cache: array<Packed>; // (slots, nKvHeads, maxSeq, headDim)
@group(0) @binding(4) var<storage, read> v_cache: array<Packed>; // (slots, nKvHeads, maxSeq, headDim)
#ifdef SPLIT
@group(0) @binding(5) var<storage, read_write> part_o: array<vec4f>;  // (splits, T, nHeads, headDim) f32, unnormalised
@group(0) @binding(6) var<storage, read_write> part_ml: array<vec2f>; // (splits, T, nHeads) f32: (row max, row sum)
@group(0) @binding(7) var<storage, read_write> out: array<Packed>;    // (T, nHeads, headDim), written by combine
#else
@group(0) @binding(5) var<storage, read_write> out: array<Packed>;    // (T, nHeads, headDim)
#endif

// The constants and bindings both attention kernels share (attention.wgsl,
// attention_tiled.wgsl): the same Params meaning, step, cache layout and partials (SPLIT).
// A masked score (causal, window, another run, past the range): finite, so max() and the
// subtraction stay NaN-free; its probability is set to 0 explicitly.
const MASKED = -3.0e38;
// row_token of a block row that is no query (past T, or a token's padding rows).
const NO_TOKEN = 0xffffffffu;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> step: Step;
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

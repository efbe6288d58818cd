// Dispatches per decode token, per layer, for each family of step 12 (issue 21's goal: ≤ 10
// a layer). A dense Llama layer: qkv_proj_rope_store (q/k/v joined at load, input_norm
// folded into it: the RMS_NORM gemv normalises x; rope + the K/V store in its epilogue),
// attention, o_proj (+ the residual add), gate_up_act (gate/up joined at load, or stored
// fused, pre_mlp_norm folded in, the activation in the epilogue), down_proj (+ the residual
// add): 5. Qwen3's per-head q/k norms need a head's sums from several workgroups, so its
// projection stays apart from qkv_rope_store (q/k norms + rope + the K/V store): 6; so do
// quantized q/k/v projections. Quantized linears keep their norms here (a norm's weight cannot fold into
// quantized columns, and on this adapter the software family's qgemv applying it costs
// what the dispatch does): 8; in the gpu family the qgemvs apply them (6: kernel-family.test.ts). Gemma's (1 + w) norms do not fold either, and its sandwich norms normalise
// o_proj's and down_proj's outputs before the add, so those two project into a buffer and
// one norm_add_norm each adds post_norm(projection) into x and writes the next pre-norm
// (pre_mlp_norm; the next layer's input_norm): 8 too (Gemma 2, without q/k norms, 7: its
// projection rotates and stores), and the first layer's own input_norm once. Quantized q/k/v and gate/up join as the dense ones do, and qgemv adds into the
// residual stream and has the GLU epilogue too.

import { describe, expect, it } from 'vitest';
import { loadReferenceModel } from '../support/model-reference.js';
import { useGpuTestDevice } from '../support/gpu-helpers.js';

const gpu = useGpuTestDevice('test.dispatches');

// [per layer dense, quantized, once more]
const PER_LAYER: Record<string, [number, number, number]> = {
  'llama-gqa': [5, 8, 0],
  'mistral-window': [5, 8, 0],
  qwen3: [6, 8, 0],
  phi3: [5, 8, 0],
  gemma2: [7, 8, 1],
  gemma3: [8, 8, 1],
};

// Quantized on load the same, where the parts join: q4 of a 64-wide model has 2 groups a
// row, so zero-point rows of 2 bytes, which word copies cannot join at every part's start
// (concat-quantized.ts): q/k/v and gate/up stay apart there, 4 dispatches more (q, k, v
// apart; gate, up and the activation apart). Real widths (≥ 576) join; q8 (no zero points)
// joins here too.
const CASES = Object.entries(PER_LAYER).flatMap(([name, [dense, quantized, once]]) => [
  [name, 'dense', dense, once],
  [name, 'q8', quantized, once],
  [name, 'q4', ['llama-gqa', 'mistral-window', 'qwen3'].includes(name) ? quantized + 4 : quantized, once],
] as const);

describe.each(CASES)('%s %s', (name, weights, perLayer, once) => {
  const quantize = weights === 'dense' ? undefined : weights;
  it(`decodes a token in ${perLayer} dispatches a layer (+ ${once} once, the embedding and the head)`, async () => {
    const { model } = await loadReferenceModel(gpu.device, name, 'f32', 64, { quantize });
    if (quantize) expect(model.weights.quantized.size, 'quantized linears').toBeGreaterThan(0);
    try {
      const layers = model.config.numLayers;
      const head = model.config.features.finalSoftcap !== null ? 3 : 2; // norm, lm_head (, soft-cap)
      expect(model.decodeDispatches - 1 - head - once).toBe(perLayer * layers);
    } finally {
      model.dispose();
    }
  });
});

// The gpu family's dense kernels have the same epilogues (GemvCoalesced: RMS_NORM, GLU,
// ROPE_STORE, RESIDUAL), so its decode takes as few dispatches.
describe.each(['llama-gqa', 'qwen3', 'gemma2'])('%s dense on the gpu kernels', (name) => {
  it(`decodes a token in ${PER_LAYER[name][0]} dispatches a layer, as the software kernels do`, async () => {
    const { model } = await loadReferenceModel(gpu.device, name, 'f32', 64, { kernels: 'gpu' });
    try {
      expect(model.kernelFamily).toBe('gpu');
      const head = model.config.features.finalSoftcap !== null ? 3 : 2;
      expect(model.decodeDispatches - 1 - head - PER_LAYER[name][2]).toBe(PER_LAYER[name][0] * model.config.numLayers);
    } finally {
      model.dispose();
    }
  });
});

// A batched decode pass (continuous batching) of the software kernels has the one row's
// epilogues in its BATCH gemvs: as few dispatches a layer for all its rows.
describe.each(['llama-gqa', 'qwen3', 'phi3'])('%s dense, a batched decode pass of 2 and of 3 rows', (name) => {
  it(`takes ${PER_LAYER[name][0]} dispatches a layer, as one row does`, async () => {
    const { model } = await loadReferenceModel(gpu.device, name, 'f32', 32, { parallel: 3 }); // 32: Phi-3's longrope switches tables past it
    try {
      const perToken = model.decodeDispatches;
      for (const rows of [2, 3]) expect(model.decodeRowsDispatches(rows), `${rows} rows`).toBe(perToken);
    } finally {
      model.dispose();
    }
  });
});

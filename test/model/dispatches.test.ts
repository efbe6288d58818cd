// Dispatches per decode token, per layer, for each family of step 12 (issue 21's goal: ≤ 10
// a layer). A Llama layer: input_norm, qkv_proj (q/k/v joined at load), qkv_rope_store
// (q/k norms + rope + the K/V store), attention, o_proj (+ the residual add), pre_mlp_norm,
// gate_up_proj (joined at load), the activation, down_proj (+ the residual add): 9. Gemma's
// sandwich norms normalise o_proj's and down_proj's outputs before the add, so those two
// projections cannot add in their epilogue: + 2 norms + 2 adds.

import { describe, expect, it } from 'vitest';
import { loadReferenceModel } from '../support/model-reference.js';
import { useGpuTestDevice } from '../support/gpu-helpers.js';

const gpu = useGpuTestDevice('test.dispatches');

const PER_LAYER: Record<string, number> = {
  'llama-gqa': 9,
  'mistral-window': 9,
  qwen3: 9,
  phi3: 9,
  gemma2: 13,
  gemma3: 13,
};

describe.each(Object.entries(PER_LAYER))('%s', (name, perLayer) => {
  it(`decodes a token in ${perLayer} dispatches a layer (+ embedding and head)`, async () => {
    const { model } = await loadReferenceModel(gpu.device, name, 'f32', 64);
    try {
      const layers = model.config.numLayers;
      const head = model.config.features.finalSoftcap !== null ? 3 : 2; // norm, lm_head (, soft-cap)
      expect((model.decodeDispatches - 1 - head) / layers).toBe(perLayer);
    } finally {
      model.dispose();
    }
  });
});

// Dispatches per decode token, per layer, for each family of step 12 (issue 21's goal: ≤ 10
// a layer). A Llama layer: input_norm, qkv_proj (q/k/v joined at load), qkv_rope_store
// (q/k norms + rope + the K/V store), attention, o_proj (+ the residual add), pre_mlp_norm,
// gate_up_proj (joined at load), the activation, down_proj (+ the residual add): 9. Gemma's
// sandwich norms normalise o_proj's and down_proj's outputs before the add, so those two
// project into a buffer and one norm_add_norm each adds post_norm(projection) into x and
// writes the next pre-norm (pre_mlp_norm; the next layer's input_norm): 9 too, and the
// first layer's own input_norm once.

import { describe, expect, it } from 'vitest';
import { loadReferenceModel } from '../support/model-reference.js';
import { useGpuTestDevice } from '../support/gpu-helpers.js';

const gpu = useGpuTestDevice('test.dispatches');

// [per layer, once more]
const PER_LAYER: Record<string, [number, number]> = {
  'llama-gqa': [9, 0],
  'mistral-window': [9, 0],
  qwen3: [9, 0],
  phi3: [9, 0],
  gemma2: [9, 1],
  gemma3: [9, 1],
};

describe.each(Object.entries(PER_LAYER))('%s', (name, [perLayer, once]) => {
  it(`decodes a token in ${perLayer} dispatches a layer (+ ${once} once, the embedding and the head)`, async () => {
    const { model } = await loadReferenceModel(gpu.device, name, 'f32', 64);
    try {
      const layers = model.config.numLayers;
      const head = model.config.features.finalSoftcap !== null ? 3 : 2; // norm, lm_head (, soft-cap)
      expect(model.decodeDispatches - 1 - head - once).toBe(perLayer * layers);
    } finally {
      model.dispose();
    }
  });
});

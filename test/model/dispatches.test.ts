// Dispatches per decode token, per layer, for each family of step 12 (issue 21's goal: ≤ 10
// a layer). A dense Llama layer: qkv_proj_rope_store (q/k/v joined at load, input_norm
// folded into it: the RMS_NORM gemv normalises x; rope + the K/V store in its epilogue),
// attention, o_proj (+ the residual add), gate_up_act (gate/up joined at load, or stored
// fused, pre_mlp_norm folded in, the activation in the epilogue), down_proj (+ the residual
// add): 5. Qwen3's per-head q/k norms need a head's sums from several workgroups, so its
// projection stays apart from qkv_rope_store (q/k norms + rope + the K/V store): 6.
// Quantized linears keep their norms here (a norm's weight cannot fold into quantized
// columns, and on this adapter the software family's qgemv applying it costs what the
// dispatch does), and the quantized q/k/v projection rotates and stores as the dense one
// does (the ROPE_STORE qgemv, where the device binds its storage buffers): 7, Qwen3 8; in
// the gpu family the qgemvs apply the norms (2 fewer: kernel-family.test.ts). Gemma's
// (1 + w) norms do not fold either, and its sandwich norms normalise o_proj's and
// down_proj's outputs before the add, so those two project into a buffer and one
// norm_add_norm each adds post_norm(projection) into x and writes the next pre-norm
// (pre_mlp_norm; the next layer's input_norm): 8 (Gemma 2, without q/k norms, 7: its
// projection rotates and stores), and the first layer's own input_norm once. Quantized
// q/k/v and gate/up join as the dense ones do, and qgemv adds into the residual stream and
// has the GLU epilogue too.

import { describe, expect, it } from 'vitest';
import { greedy, loadReferenceModel } from '../support/model-reference.js';
import { useGpuTestDevice, withStorageLimit } from '../support/gpu-helpers.js';

const gpu = useGpuTestDevice('test.dispatches');

// Per layer: dense, q8, q4 weights; and once more. Quantized on load as the test models
// allow: q4 of a 64-wide model has 2 groups a row, so zero-point rows of 2 bytes, which word
// copies cannot join at every part's start (concat-quantized.ts): Llama's, Mistral's and
// Qwen3's q/k/v and gate/up stay apart there, so q/k/v keep qkv_rope_store and gate/up their
// activation (q, k, v apart; gate, up and the activation apart: 12). Real widths (≥ 576)
// join; q8 (no zero points) joins here too. The Phi-3 and Gemma test models' q/k/v stay dense
// under quantize on load (their shapes), and rotate and store in the dense gemv.
const PER_LAYER: Record<string, { dense: number; q8: number; q4: number; once: number }> = {
  'llama-gqa': { dense: 5, q8: 7, q4: 12, once: 0 },
  'mistral-window': { dense: 5, q8: 7, q4: 12, once: 0 },
  qwen3: { dense: 6, q8: 8, q4: 12, once: 0 },
  phi3: { dense: 5, q8: 7, q4: 7, once: 0 },
  gemma2: { dense: 7, q8: 7, q4: 7, once: 1 },
  gemma3: { dense: 8, q8: 8, q4: 8, once: 1 },
};

const CASES = Object.entries(PER_LAYER).flatMap(([name, counts]) => (['dense', 'q8', 'q4'] as const).map((weights) => [name, weights, counts[weights], counts.once] as const));

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
  it(`decodes a token in ${PER_LAYER[name].dense} dispatches a layer, as the software kernels do`, async () => {
    const { model } = await loadReferenceModel(gpu.device, name, 'f32', 64, { kernels: 'gpu' });
    try {
      expect(model.kernelFamily).toBe('gpu');
      const head = model.config.features.finalSoftcap !== null ? 3 : 2;
      expect(model.decodeDispatches - 1 - head - PER_LAYER[name].once).toBe(PER_LAYER[name].dense * model.config.numLayers);
    } finally {
      model.dispose();
    }
  });
});

// A batched decode pass (continuous batching) of the software kernels has the one row's
// epilogues in its BATCH gemvs: as few dispatches a layer for all its rows.
describe.each(['llama-gqa', 'qwen3', 'phi3'])('%s dense, a batched decode pass of 2 and of 3 rows', (name) => {
  it(`takes ${PER_LAYER[name].dense} dispatches a layer, as one row does`, async () => {
    const { model } = await loadReferenceModel(gpu.device, name, 'f32', 32, { parallel: 3 }); // 32: Phi-3's longrope switches tables past it
    try {
      const perToken = model.decodeDispatches;
      for (const rows of [2, 3]) expect(model.decodeRowsDispatches(rows), `${rows} rows`).toBe(perToken);
    } finally {
      model.dispose();
    }
  });
});

// A device that binds only WebGPU's default 8 storage buffers a stage (a browser's, on many
// GPUs) cannot take the ROPE_STORE qgemv (up to 11): the quantized q/k/v projection then
// keeps qkv_rope_store, a dispatch more, and decodes the same ids.
describe('llama-gqa q8 on a device of 8 storage buffers a stage', () => {
  it('8 dispatches a layer, not 7, and the same greedy ids', async () => {
    const { device } = gpu;
    const narrow = withStorageLimit(device, 8);
    const [wide, few] = [await loadReferenceModel(device, 'llama-gqa', 'f32', 64, { quantize: 'q8' }), await loadReferenceModel(narrow, 'llama-gqa', 'f32', 64, { quantize: 'q8' })];
    try {
      const layers = wide.model.config.numLayers;
      expect(wide.model.decodeDispatches - few.model.decodeDispatches).toBe(-layers);
      const prompt = wide.reference.prompt_ids;
      expect(await greedy(few.model, prompt, 0, 8)).toEqual(await greedy(wide.model, prompt, 0, 8));
    } finally {
      wide.model.dispose();
      few.model.dispose();
    }
  });
});

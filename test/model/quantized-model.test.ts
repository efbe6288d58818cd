// Quantize on load (step 13): the tiny reference models with every projection quantized on
// the GPU as it streams in. These are random-weight models of width 48–64, the hardest case
// for group quantization (no outlier structure, few groups per row), so the bounds are
// measured ones, not a quality claim (quality is measured on the trained tiny-chat model):
// q8 (symmetric, group 32; the embedding table quantized too) moves the logits by NMSE
// < 2e-3 (measured 6e-5 to 1.05e-3 over these five) and keeps the first 6 greedy ids (later
// ones may flip where the reference's margin is small); q4 (asymmetric, group 32) moves
// them by NMSE ≈ 0.007–0.15.

import { describe, expect, it } from 'vitest';
import { useGpuTestDevice } from '../support/gpu-helpers.js';
import { greedy, loadReferenceModel } from '../support/model-reference.js';
import { nmse } from '../support/op-helpers.js';
import { openCheckpoint } from '../../src/checkpoint/open-path.js';
import { parseModelConfig } from '../../src/model/config.js';
import { LlamaModel } from '../../src/model/llama.js';
import { readFileSync } from 'node:fs';

const gpu = useGpuTestDevice('test.quantized-model');

async function load(name: string, dtype: 'f32' | 'f16', quantize?: 'q8' | 'q4') {
  const dir = `test/fixtures/models/${name}`;
  const config = parseModelConfig(readFileSync(`${dir}/config.json`, 'utf8'));
  const checkpoint = await openCheckpoint(`${dir}/model.safetensors`);
  try {
    return await LlamaModel.load(checkpoint, config, gpu.device, { dtype, contextLength: 128, quantize });
  } finally {
    await checkpoint.close();
  }
}

describe.each(['llama-gqa', 'qwen2-bias', 'qwen3', 'gemma3', 'phi4-mini'])('%s quantized on load', (name) => {
  it.each(['f32', 'f16'] as const)('%s compute: q8 keeps the greedy ids; q4 stays close; fewer device bytes', async (dtype) => {
    if (dtype === 'f16' && !gpu.device.features.has('shader-f16')) return; // no F16 compute on this adapter
    const { model: dense, reference } = await loadReferenceModel(gpu.device, name, dtype);
    const denseBytes = dense.weights.deviceBytes;
    dense.dispose();
    const q8 = await load(name, dtype, 'q8');
    try {
      expect(q8.weights.quantized.size).toBeGreaterThan(0);
      expect(q8.weights.deviceBytes).toBeLessThan(denseBytes);
      await q8.forward(reference.prompt_ids, 0);
      const q8Nmse = nmse(await q8.readLogits(), reference.logits_last);
      expect(q8Nmse, 'q8 logits NMSE').toBeLessThan(2e-3);
      expect(await greedy(q8, reference.prompt_ids, 0, 6)).toEqual(reference.greedy_ids.slice(0, 6));
    } finally {
      q8.dispose();
    }
    const q4 = await load(name, dtype, 'q4');
    try {
      expect(q4.weights.deviceBytes).toBeLessThan(denseBytes);
      await q4.forward(reference.prompt_ids, 0);
      // q4's weight error is ~16× q8's: the logits move visibly but stay the same function.
      const q4Nmse = nmse(await q4.readLogits(), reference.logits_last);
      expect(q4Nmse, 'q4 logits NMSE').toBeLessThan(0.2);
    } finally {
      q4.dispose();
    }
  });
});

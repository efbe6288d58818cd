// Every family of step 12 against its independent float32 PyTorch reference
// (test/fixtures/make_family_references.py, written from transformers' modeling files):
// the prompt's last logits, greedy decoding through the KV cache, and a second turn
// appended to the cache. Each tiny model is built so that its feature matters: windows
// shorter than the prompt, NoPE layers, longrope's switch to the long factors, yarn's
// attention factor, dynamic NTK past the original length, a prompt > 256 tokens (the split
// flash-decoding path).

import { readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { greedy, loadReferenceModel } from '../support/model-reference.js';
import { useGpuTestDevice } from '../support/gpu-helpers.js';
import { nmse } from '../support/op-helpers.js';

const gpu = useGpuTestDevice('test.families');

// The step 1–10 models have their own file (llama.test.ts).
const FAMILIES = readdirSync('test/fixtures/models').filter((n) => !['llama-gqa', 'llama3-scaled', 'qwen2-bias'].includes(n)).sort();

describe.each(FAMILIES)('%s against the PyTorch reference', (name) => {
  it.each(['f32', 'f16'] as const)('%s: last-position logits, greedy decode, multi-turn', async (dtype) => {
    if (dtype === 'f16' && !gpu.device.features.has('shader-f16')) return; // no F16 compute on this adapter
    const { model, reference } = await loadReferenceModel(gpu.device, name, dtype, 512);
    try {
      await model.forward(reference.prompt_ids, 0);
      // F32: the same math on the same bf16 weights, only summation order differs.
      // F16: every op rounds to f16 (~1e-3 relative), the references keep margins ≥ 0.1.
      expect(nmse(await model.readLogits(), reference.logits_last), 'logits NMSE').toBeLessThan(dtype === 'f32' ? 1e-9 : 1e-4);
      expect(await greedy(model, reference.prompt_ids, 0, reference.greedy_ids.length)).toEqual(reference.greedy_ids);
      // As generate() runs a second turn: the reply's tokens go through the cache one call
      // each, except the last, which is fed with the new turn in one call (that matters
      // for dynamic NTK, whose table follows each call's length).
      const { first_ids, first_greedy_ids, second_ids, greedy_after_both } = reference.multi_turn;
      await model.forward(first_ids, 0);
      const fed = first_greedy_ids.slice(0, -1);
      for (let i = 0; i < fed.length; i++) await model.forward([fed[i]], first_ids.length + i);
      const turn = [...first_greedy_ids.slice(-1), ...second_ids];
      expect(await greedy(model, turn, first_ids.length + fed.length, greedy_after_both.length)).toEqual(greedy_after_both);
    } finally {
      model.dispose();
    }
  });
});

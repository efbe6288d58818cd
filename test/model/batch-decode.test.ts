// Continuous batching on the GPU: several sequences in their own KV slots, decoded in
// shared passes (gemvs over the rows, per-row rope/kv_store/attention, per-row
// sampling), must each give exactly the ids they give alone (F32, temperature 0), and the
// reference prompt's ids must be the PyTorch reference's. Families whose features act per
// row: a sliding window shorter than the prompts, Gemma 2's soft-caps and sandwich norms,
// Qwen3's q/k norms.

import { describe, expect, it } from 'vitest';
import { BatchScheduler } from '../../src/generate/batch-scheduler.js';
import type { GenerationDelta } from '../../src/generate/generate.js';
import { ModelBatchBackend } from '../../src/generate/model-backend.js';
import { loadReferenceModel } from '../support/model-reference.js';
import { useGpuTestDevice } from '../support/gpu-helpers.js';

const gpu = useGpuTestDevice('test.batch-decode');

async function ids(run: AsyncGenerator<GenerationDelta, unknown>): Promise<number[]> {
  const out: number[] = [];
  for await (const d of run) out.push(...d.ids);
  return out;
}

describe.each(['mistral-window', 'gemma2', 'qwen3', 'llama-gqa'])('%s, 4 slots', (name) => {
  it('decodes 4 concurrent sequences in shared passes, each exactly as alone and as the reference', async () => {
    const { model, reference } = await loadReferenceModel(gpu.device, name, 'f32', 320, { parallel: 4 });
    const backend = await ModelBatchBackend.create(model);
    try {
      const rows: number[] = [];
      const decode = backend.decode.bind(backend);
      backend.decode = (r) => (rows.push(r.length), decode(r));
      const s = new BatchScheduler(backend);
      const p = reference.prompt_ids;
      // Different lengths and contents; one past a prefill chunk (64), one of a single id.
      const prompts = [p, [...p, ...p, ...p].slice(0, 70), p.slice(0, 1), [...p].reverse()];
      // 24 tokens: mistral-window's reversed prompt meets a near-tie (margin 1e-6) at its
      // 21st, which the small matmuls' summation order once flipped; the batched gemvs sum
      // each row exactly as the one-row gemv does (test/ops/gemv-batch.test.ts).
      const n = Math.min(24, reference.greedy_ids.length);
      const greedy = { temperature: 0, maxTokens: n, eosIds: [] };
      const together = await Promise.all(prompts.map((prompt) => ids(s.submit(prompt, greedy))));
      expect(Math.max(...rows), 'rows of the widest decode pass').toBe(4);
      rows.length = 0;
      for (let i = 0; i < prompts.length; i++) expect(together[i], `prompt ${i}`).toEqual(await ids(s.submit(prompts[i], greedy)));
      expect(Math.max(...rows), 'alone: one row per pass').toBe(1);
      expect(together[0]).toEqual(reference.greedy_ids.slice(0, n));
    } finally {
      backend.destroy();
      model.dispose();
    }
  });
});

it('refuses parallel > 1 where a rope table would switch within the context, not below it', async () => {
  await expect(loadReferenceModel(gpu.device, 'llama-dynamic', 'f32', 128, { parallel: 2 })).rejects.toThrow(/dynamic switches tables past 32 positions, and the context is 128: .*parallel 1, not 2.*≤ 32/);
  const { model } = await loadReferenceModel(gpu.device, 'llama-dynamic', 'f32', 32, { parallel: 2 });
  expect(model.slots).toBe(2);
  model.dispose();
});

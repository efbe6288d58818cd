// The batch scheduler's decode ahead (a lone sequence's next pass submitted before its
// current one is read, fed on the GPU the id it draws) changes nothing but when the GPU
// works: every request draws the same ids as with decodeAhead off, through sampling with
// every penalty, a second request joining mid-decode (the pass ahead dropped), a request
// reusing a slot whose last pass ahead was dropped, and a grammar-free request's end.

import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { openCheckpoint } from '../../src/checkpoint/open-path.js';
import { BatchScheduler } from '../../src/generate/batch-scheduler.js';
import type { GenerateOptions } from '../../src/generate/generate.js';
import { ModelBatchBackend } from '../../src/generate/model-backend.js';
import { parseModelConfig } from '../../src/model/config.js';
import { LlamaModel } from '../../src/model/llama.js';
import { DEFAULT_SAMPLING } from '../../src/ops/sample.js';
import { useGpuTestDevice } from '../support/gpu-helpers.js';

const gpu = useGpuTestDevice('test.engine-ahead');
const dir = 'test/fixtures/models/llama-gqa';
const PROMPT = (JSON.parse(readFileSync(`${dir}/reference.json`, 'utf8')) as { prompt_ids: number[] }).prompt_ids;
const SAMPLED: GenerateOptions = { ...DEFAULT_SAMPLING, temperature: 0.9, topK: 40, repetitionPenalty: 1.3, frequencyPenalty: 0.4, presencePenalty: 0.2 };

let models: LlamaModel[] = [];
beforeAll(async () => {
  const config = parseModelConfig(readFileSync(`${dir}/config.json`, 'utf8'));
  for (let i = 0; i < 2; i++) {
    const checkpoint = await openCheckpoint(`${dir}/model.safetensors`);
    try {
      models.push(await LlamaModel.load(checkpoint, config, gpu.device, { dtype: 'f32', contextLength: 96, parallel: 2 }));
    } finally {
      await checkpoint.close();
    }
  }
});
afterAll(() => {
  for (const m of models) m.dispose();
  models = [];
});

/** The ids of each request of the script, on a fresh scheduler over model `m`. */
async function script(m: number, decodeAhead: boolean): Promise<number[][]> {
  const backend = await ModelBatchBackend.create(models[m]);
  const scheduler = new BatchScheduler(backend, { decodeAhead });
  const ids = async (run: AsyncGenerator<{ ids: readonly number[] }>, onDelta?: (n: number) => void) => {
    const out: number[] = [];
    for await (const d of run) {
      out.push(...d.ids);
      onDelta?.(out.length);
    }
    return out;
  };
  try {
    // 1: alone, sampled with every penalty; a second request joins after its 6th token.
    let joined: Promise<number[]> | null = null;
    const first = await ids(scheduler.submit(PROMPT, { ...SAMPLED, seed: 5, maxTokens: 16 }), (n) => {
      if (n === 6) joined = ids(scheduler.submit(PROMPT.slice(0, 3), { ...SAMPLED, seed: 9, maxTokens: 12 }));
    });
    const second = await joined!;
    // 2: the slot's next request shares its prefix (the dropped pass's rows lie past it).
    const third = await ids(scheduler.submit([...PROMPT, ...first.slice(0, 4)], { ...SAMPLED, seed: 5, maxTokens: 10 }));
    // 3: greedy to the end of its tokens, alone.
    const fourth = await ids(scheduler.submit(PROMPT.slice(2), { ...DEFAULT_SAMPLING, temperature: 0, maxTokens: 20 }));
    return [first, second, third, fourth];
  } finally {
    backend.destroy();
  }
}

it('decoding ahead draws the same ids as not', async () => {
  // Count the passes submitted ahead: most steps of a lone sequence go ahead.
  let fed = 0;
  const forwardFed = models[0].forwardFed.bind(models[0]);
  models[0].forwardFed = (...args) => (fed++, forwardFed(...args));
  const [ahead, plain] = await Promise.all([script(0, true), script(1, false)]);
  expect(fed).toBeGreaterThan(20);
  expect(ahead).toEqual(plain);
  expect(ahead.map((r) => r.length)).toEqual([16, 12, 10, 20]);
  expect(new Set(ahead[0]).size).toBeGreaterThan(3); // sampled, not one id over and over
});

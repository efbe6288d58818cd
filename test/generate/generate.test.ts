// The generation loop on a tiny reference model: greedy sampling on the GPU reproduces the
// PyTorch reference's greedy ids; seeded sampling is reproducible; the limits (max tokens,
// eos, abort, a full context) end generation with the right reason, never a crash.

import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openCheckpoint } from '../../src/checkpoint/open-path.js';
import { generate, type GenerateOptions, type GenerationStats } from '../../src/generate/generate.js';
import { GpuSampler } from '../../src/generate/sampler.js';
import { parseModelConfig } from '../../src/model/config.js';
import { LlamaModel } from '../../src/model/llama.js';
import { DEFAULT_SAMPLING } from '../../src/ops/sample.js';
import { useGpuTestDevice } from '../support/gpu-helpers.js';

const gpu = useGpuTestDevice('test.generate');
const dir = 'test/fixtures/models/llama-gqa';
const reference = JSON.parse(readFileSync(`${dir}/reference.json`, 'utf8')) as { prompt_ids: number[]; greedy_ids: number[] };
let model: LlamaModel;
let sampler: GpuSampler;

beforeAll(async () => {
  const config = parseModelConfig(readFileSync(`${dir}/config.json`, 'utf8'));
  const checkpoint = await openCheckpoint(`${dir}/model.safetensors`);
  model = await LlamaModel.load(checkpoint, config, gpu.device, { dtype: 'f32', contextLength: 48 });
  await checkpoint.close();
  sampler = await GpuSampler.create(model, DEFAULT_SAMPLING);
});
afterAll(() => {
  sampler?.destroy();
  model?.dispose();
});

async function run(options: GenerateOptions, prompt = reference.prompt_ids, start = 0): Promise<{ ids: number[]; stats: GenerationStats }> {
  const ids: number[] = [];
  const it = generate({ model, sampler }, prompt, start, options);
  for (;;) {
    const r = await it.next();
    if (r.done) return { ids, stats: r.value };
    ids.push(...r.value.ids);
  }
}

describe('generate', () => {
  it('temperature 0 on the GPU = the reference greedy ids; stats add up', async () => {
    const { ids, stats } = await run({ temperature: 0, maxTokens: 24 });
    expect(ids).toEqual(reference.greedy_ids);
    expect(stats).toMatchObject({ promptTokens: 12, generatedTokens: 24, stopReason: 'length', position: 12 + 23 });
    expect(stats.ttftMs).toBeGreaterThan(0);
    expect(stats.decodeTokensPerSecond).toBeGreaterThan(0);
  });

  it('seeded sampling: same seed, same ids; another seed, other ids', async () => {
    const a = await run({ temperature: 1, seed: 7, maxTokens: 16 });
    const b = await run({ temperature: 1, seed: 7, maxTokens: 16 });
    const c = await run({ temperature: 1, seed: 8, maxTokens: 16 });
    expect(a.ids).toEqual(b.ids);
    expect(c.ids).not.toEqual(a.ids);
  });

  it('an eos id ends generation without being counted as text', async () => {
    const eos = reference.greedy_ids[3];
    const { ids, stats } = await run({ temperature: 0, maxTokens: 24, eosIds: [eos] });
    expect(ids).toEqual(reference.greedy_ids.slice(0, 3));
    expect(stats.stopReason).toBe('eos');
  });

  it('a full context stops with reason "context"; a prompt too long is refused', async () => {
    const { ids, stats } = await run({ temperature: 0, maxTokens: 100 });
    expect(stats.stopReason).toBe('context');
    expect(ids.slice(0, 24)).toEqual(reference.greedy_ids);
    expect(stats.position).toBe(48);
    await expect(run({ maxTokens: 1 }, Array.from({ length: 49 }, () => 3))).rejects.toThrow(/does not fit the context of 48 tokens/);
  });

  it('abort ends generation with reason "abort"', async () => {
    const controller = new AbortController();
    const ids: number[] = [];
    const it = generate({ model, sampler }, reference.prompt_ids, 0, { temperature: 0, maxTokens: 24, signal: controller.signal });
    for (;;) {
      const r = await it.next();
      if (r.done) {
        expect(r.value.stopReason).toBe('abort');
        break;
      }
      ids.push(...r.value.ids);
      if (ids.length === 5) controller.abort();
    }
    expect(ids).toEqual(reference.greedy_ids.slice(0, 5));
  });
});

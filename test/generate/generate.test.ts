// The generation loop on a tiny reference model: greedy sampling on the GPU reproduces the
// PyTorch reference's greedy ids; seeded sampling is reproducible; the limits (max tokens,
// eos, abort, a full context) end generation with the right reason, never a crash; the
// OpenAI options (frequency/presence penalties over the generated ids, logit bias,
// logprobs of the raw logits) match a host reference on the model's own logits.

import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openCheckpoint } from '../../src/checkpoint/open-path.js';
import { generate, type GenerateOptions, type GenerationDelta, type GenerationStats } from '../../src/generate/generate.js';
import { GpuSampler } from '../../src/generate/sampler.js';
import { parseModelConfig } from '../../src/model/config.js';
import { LlamaModel } from '../../src/model/llama.js';
import { SluiceError } from '../../src/errors.js';
import { DEFAULT_SAMPLING } from '../../src/ops/sample.js';
import { greedyReference, logSoftmax } from '../ops/sample-reference.js';
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

async function run(options: GenerateOptions, prompt = reference.prompt_ids, start = 0): Promise<{ ids: number[]; stats: GenerationStats; deltas: GenerationDelta[] }> {
  const ids: number[] = [];
  const deltas: GenerationDelta[] = [];
  const it = generate({ model, sampler }, prompt, start, options);
  for (;;) {
    const r = await it.next();
    if (r.done) return { ids, stats: r.value, deltas };
    ids.push(...r.value.ids);
    deltas.push(r.value);
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

  it('logprobs: one entry per id, the raw log-softmax of the chosen id and its top alternatives', async () => {
    const { ids, deltas } = await run({ temperature: 0, maxTokens: 6, logprobs: 5 });
    expect(ids).toEqual(reference.greedy_ids.slice(0, 6)); // asking changes nothing sampled
    for (const d of deltas) {
      expect(d.logprobs?.map((l) => l.id)).toEqual(d.ids);
      const [lp] = d.logprobs!;
      expect(lp.top).toHaveLength(5);
      expect(lp.top[0]).toEqual({ id: lp.id, logprob: lp.logprob }); // greedy without penalties: the top one
      for (let i = 1; i < 5; i++) expect(lp.top[i].logprob).toBeLessThanOrEqual(lp.top[i - 1].logprob);
    }
    // The last step's logits are still the model's: the values are their log-softmax.
    const want = logSoftmax(await model.readLogits());
    for (const t of deltas[5].logprobs![0].top) expect(Math.abs(t.logprob - want[t.id])).toBeLessThan(2e-5 + 1e-6 * Math.abs(want[t.id]));
    const plain = await run({ temperature: 0, maxTokens: 2 });
    expect(plain.deltas.every((d) => !('logprobs' in d))).toBe(true); // nothing when not asked
    const zero = await run({ temperature: 0, maxTokens: 2, logprobs: 0 });
    expect(zero.deltas.map((d) => d.logprobs![0].top)).toEqual([[], []]);
  });

  it('frequency and presence penalties: each id = the host reference on the same logits, prompt ids not counted', async () => {
    const params = { ...DEFAULT_SAMPLING, temperature: 0, frequencyPenalty: 0.9, presencePenalty: 0.4 };
    // A prompt that ends where the greedy run is about to repeat 220 (margin 0.45): counting
    // the prompt's 220 (0.9 + 0.4) would change the very first id.
    const prompt = [...reference.prompt_ids, ...reference.greedy_ids.slice(0, 8)];
    // The host reference runs the model step by step as generate does, and picks each id
    // from the logits read back, with the history of this request.
    const history = [...prompt];
    const want: number[] = [];
    let pending = history.slice();
    let position = 0;
    for (let t = 0; t < 12; t++) {
      await model.forward(pending, position);
      position += pending.length;
      const logits = await model.readLogits();
      const pick = greedyReference(logits, params, { history, generatedFrom: prompt.length });
      expect(pick.margin, `step ${t}: not a near-tie`).toBeGreaterThan(1e-4);
      if (t === 0) expect(greedyReference(logits, params, { history, generatedFrom: 0 }).id, 'the test tells counted prompts apart').not.toBe(pick.id);
      want.push(pick.id);
      history.push(pick.id);
      pending = [pick.id];
    }
    const { ids } = await run({ ...params, maxTokens: 12 }, prompt);
    expect(ids).toEqual(want);
    expect(ids).not.toEqual(reference.greedy_ids.slice(8, 20)); // the penalties move the greedy run
  });

  it('logitBias +100 forces a token, greedy or sampled', async () => {
    const forced = 77;
    expect((await run({ temperature: 0, maxTokens: 5, logitBias: new Map([[forced, 100]]) })).ids).toEqual(Array(5).fill(forced));
    expect((await run({ temperature: 1, seed: 3, maxTokens: 5, logitBias: new Map([[forced, 100]]) })).ids).toEqual(Array(5).fill(forced));
    const banned = reference.greedy_ids[0];
    expect((await run({ temperature: 0, maxTokens: 1, logitBias: new Map([[banned, -100]]) })).ids[0]).not.toBe(banned);
  });

  it('options out of range are refused with USAGE naming the option', async () => {
    const refuse = async (options: GenerateOptions, pattern: RegExp) => {
      const error = await run({ maxTokens: 1, ...options }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(SluiceError);
      expect((error as SluiceError).code).toBe('USAGE');
      expect((error as Error).message).toMatch(pattern);
    };
    await refuse({ frequencyPenalty: 2.01 }, /frequencyPenalty/);
    await refuse({ presencePenalty: Number.NaN }, /presencePenalty/);
    await refuse({ logprobs: 21 }, /logprobs/);
    await refuse({ logitBias: new Map([[256, 1]]) }, /logitBias: token id 256/);
    await refuse({ logitBias: new Map([[3, -100.5]]) }, /logitBias: the bias of token 3/);
  });
});

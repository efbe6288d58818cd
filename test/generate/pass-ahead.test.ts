// GpuSampler.next(…, ahead): the next decode pass is submitted, fed on the GPU the id this
// call draws, before that id is read back. It must change nothing but when the GPU works:
// the same ids as a sampler that never goes ahead, through sampling with every penalty
// (each step reads its RNG step and its whole history), a forced id that drops the pass
// ahead, a new request, a remembered id, a grammar mask and the end of the context.

import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openCheckpoint } from '../../src/checkpoint/open-path.js';
import { GpuSampler } from '../../src/generate/sampler.js';
import { parseModelConfig } from '../../src/model/config.js';
import { LlamaModel } from '../../src/model/llama.js';
import { DEFAULT_SAMPLING } from '../../src/ops/sample.js';
import { useGpuTestDevice } from '../support/gpu-helpers.js';

const gpu = useGpuTestDevice('test.pass-ahead');
const dir = 'test/fixtures/models/llama-gqa';
const PROMPT = (JSON.parse(readFileSync(`${dir}/reference.json`, 'utf8')) as { prompt_ids: number[] }).prompt_ids;
const CONTEXT = 32;
const SAMPLED = { ...DEFAULT_SAMPLING, temperature: 0.9, topK: 40, repetitionPenalty: 1.3, frequencyPenalty: 0.4, presencePenalty: 0.2, seed: 7 };

/** One call of a script: feed `ids` at `start` (null: the id the last call drew), going ahead or not. */
type Call = { ids: number[] | null; start: number; ahead: boolean; mask?: boolean; configure?: boolean; remember?: [number[], number] };

describe('GpuSampler.next ahead', () => {
  // Two models, so the two samplers never share a KV cache or a step.
  let models: [LlamaModel, LlamaModel];
  beforeAll(async () => {
    const config = parseModelConfig(readFileSync(`${dir}/config.json`, 'utf8'));
    const load = async () => {
      const checkpoint = await openCheckpoint(`${dir}/model.safetensors`);
      try {
        return await LlamaModel.load(checkpoint, config, gpu.device, { dtype: 'f32', contextLength: CONTEXT });
      } finally {
        await checkpoint.close();
      }
    };
    models = [await load(), await load()];
  });
  afterAll(() => models?.forEach((m) => m.dispose()));

  /** Runs `calls` on a fresh sampler of model `m`, ahead as the script says (or never): the ids drawn. */
  async function run(m: number, calls: readonly Call[], honourAhead: boolean): Promise<number[]> {
    const model = models[m];
    const sampler = await GpuSampler.create(model, SAMPLED);
    const vocab = model.config.vocabSize;
    const allowOdd = new Uint32Array(Math.ceil(vocab / 32)).fill(0xaaaaaaaa); // odd ids only
    try {
      const drawn: number[] = [];
      for (const call of calls) {
        if (call.configure) sampler.configure({ ...SAMPLED, seed: 11 });
        if (call.remember) sampler.remember(...call.remember);
        const ids = call.ids ?? [drawn[drawn.length - 1]];
        drawn.push(await sampler.next(ids, call.start, call.mask ? () => allowOdd : undefined, honourAhead && call.ahead));
      }
      return drawn;
    } finally {
      sampler.destroy();
    }
  }

  /** A prompt then `n` decode calls each feeding the last draw, all going ahead but the last. */
  function decode(from: number, n: number): Call[] {
    return Array.from({ length: n }, (_, i) => ({ ids: null, start: from + i, ahead: i + 1 < n }));
  }

  it('draws the same ids as a sampler that never goes ahead', async () => {
    const calls: Call[] = [{ ids: PROMPT, start: 0, ahead: true }, ...decode(PROMPT.length, 10)];
    const [ahead, plain] = await Promise.all([run(0, calls, true), run(1, calls, false)]);
    expect(ahead).toEqual(plain);
    expect(new Set(ahead).size).toBeGreaterThan(3); // sampled, not one id over and over
  });

  it('a forced id, a remembered id, a mask, a new request and the context end drop the pass ahead cleanly', async () => {
    const p = PROMPT.length;
    const calls: Call[] = [
      { ids: PROMPT, start: 0, ahead: true },
      { ids: null, start: p, ahead: true },
      { ids: [3], start: p + 1, ahead: true }, // forced: not what the pass ahead was fed
      { ids: null, start: p + 2, ahead: true },
      { ids: null, start: p + 3, ahead: true, remember: [[9], p + 1] }, // rewrites history the pass ahead penalised
      { ids: null, start: p + 4, ahead: true, mask: true }, // a mask needs this id on the host first
      { ids: null, start: p + 5, ahead: true },
      { ids: null, start: p + 6, ahead: true, configure: true }, // a new request: other parameters
      ...Array.from({ length: CONTEXT - (p + 7) }, (_, i) => ({ ids: null, start: p + 7 + i, ahead: true })), // to the last position
    ];
    const [ahead, plain] = await Promise.all([run(0, calls, true), run(1, calls, false)]);
    expect(ahead).toEqual(plain);
    expect(ahead[5] % 2).toBe(1); // the mask held
  });
});

// The engine on the batch scheduler (its own tests: batch-scheduler.test.ts): one slot
// serves requests one by one, each as if alone, with a bounded queue (BUSY beyond it); two
// slots serve two at once; a slot's cached prefix is reused by the next turn; prompt ids
// checked against the vocabulary, a random seed when none is given, and completion tokens
// without the eos.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isSluiceError } from '../../src/errors.js';
import { Engine } from '../../src/generate/engine.js';
import { ModelBatchBackend } from '../../src/generate/model-backend.js';
import { openModel, type OpenedModel } from '../../src/model/open-model.js';
import { writeChatModel } from '../support/byte-tokenizer.js';
import { useGpuTestDevice } from '../support/gpu-helpers.js';

describe('Engine', () => {
  const gpu = useGpuTestDevice('test.engine');
  const dir = mkdtempSync(join(tmpdir(), 'sluice-engine-'));
  let opened: OpenedModel;
  let engine: Engine;
  let backend: ModelBatchBackend;
  beforeAll(async () => {
    writeChatModel('test/fixtures/models/llama-gqa', dir);
    opened = await openModel(dir, gpu.device, { dtype: 'f32', contextLength: 128 });
    backend = await ModelBatchBackend.create(opened.model);
    const { model, tokenizer, chatTemplate: template, eosIds, defaults } = opened;
    engine = new Engine({ model, backend, tokenizer, template, eosIds, defaults }, { maxQueue: 3 });
  });
  afterAll(() => {
    backend?.destroy();
    opened?.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  async function collect<S>(run: AsyncGenerator<{ text: string; ids: number[] }, S>) {
    let text = '';
    let r = await run.next();
    while (!r.done) {
      text += r.value.text;
      r = await run.next();
    }
    return { text, stats: r.value };
  }

  it('concurrent requests are served one by one, each as if alone', async () => {
    const messages = [{ role: 'user' as const, content: 'Hi' }];
    const alone = await collect(engine.chat(messages, { temperature: 0, maxTokens: 6 }));
    const together = await Promise.all([0, 1, 2].map(() => collect(engine.chat(messages, { temperature: 0, maxTokens: 6 }))));
    for (const t of together) expect(t.text).toBe(alone.text);
  });

  it('a request that extends the previous one reuses its cached prefix', async () => {
    const first = [{ role: 'user' as const, content: 'One' }];
    const a = await collect(engine.chat(first, { temperature: 0, maxTokens: 4 }));
    const b = await collect(engine.chat([...first, { role: 'assistant', content: a.text }, { role: 'user', content: 'Two' }], { temperature: 0, maxTokens: 4 }));
    expect(b.stats.reusedTokens).toBeGreaterThan(8);
  });

  it('too many waiting: BUSY; a prompt longer than the context: a clear error', async () => {
    const runs = [0, 1, 2, 3, 4].map(() => collect(engine.generate([1, 2, 3], { maxTokens: 3 })));
    const results = await Promise.allSettled(runs);
    expect(results.filter((r) => r.status === 'rejected' && isSluiceError(r.reason, 'BUSY'))).toHaveLength(1);
    await expect(collect(engine.generate(Array.from({ length: 200 }, () => 5)))).rejects.toThrow(/the prompt is 200 tokens; the context holds 128/);
  });

  it('a prompt id outside the vocabulary is refused, naming it, before taking the model', async () => {
    await expect(collect(engine.generate([1, 256, 3]))).rejects.toMatchObject({ code: 'USAGE', message: 'prompt token id 256 (at index 1) is not in the vocabulary [0, 256)' });
    await expect(collect(engine.generate([1, -1]))).rejects.toThrow(/token id -1 \(at index 1\)/);
    await expect(collect(engine.generate([1.5]))).rejects.toThrow(/token id 1.5 \(at index 0\)/);
    expect(engine.pending).toBe(0);
  });

  it('no seed: a random one (temperature 1 does not repeat itself); a given seed repeats', async () => {
    const ids = async (options: { seed?: number }) => {
      const run = engine.generate([1, 72, 105], { temperature: 1, maxTokens: 12, eosIds: [], ...options });
      const out: number[] = [];
      let r = await run.next();
      while (!r.done) {
        out.push(...r.value.ids);
        r = await run.next();
      }
      return { out, seed: r.value.seed };
    };
    const [a, b] = [await ids({}), await ids({})];
    // The tiny model is random weights: at temperature 1 its 256-way distribution is wide,
    // so two random seeds give the same 12 ids with negligible probability.
    expect(a.seed).not.toBe(b.seed);
    expect(a.out).not.toEqual(b.out);
    const seeded = await ids({ seed: 7 });
    expect(seeded.seed).toBe(7);
    expect((await ids({ seed: 7 })).out).toEqual(seeded.out);
    expect((await ids({ seed: a.seed })).out).toEqual(a.out); // stats.seed repeats an unseeded reply
  });

  it('completionTokens counts the reply, not the eos that ended it', async () => {
    const first = await collect(engine.generate([1, 72, 105], { temperature: 0, maxTokens: 1, eosIds: [] }));
    expect(first.stats).toMatchObject({ generatedTokens: 1, completionTokens: 1 });
    const eos = (await firstId([1, 72, 105]))!;
    const ended = await collect(engine.generate([1, 72, 105], { temperature: 0, maxTokens: 5, eosIds: [eos] }));
    expect(ended.stats).toMatchObject({ stopReason: 'eos', generatedTokens: 1, completionTokens: 0 });
  });

  it('with two slots, serves two requests at once, each as if alone, and a next turn finds its own slot', async () => {
    const two = await openModel(dir, gpu.device, { dtype: 'f32', contextLength: 128, parallel: 2 });
    const twoBackend = await ModelBatchBackend.create(two.model);
    try {
      const { model, tokenizer, chatTemplate: template, eosIds, defaults } = two;
      const parallel = new Engine({ model, backend: twoBackend, tokenizer, template, eosIds, defaults });
      expect(parallel.parallel).toBe(2);
      const chats = [[{ role: 'user' as const, content: 'Hi' }], [{ role: 'user' as const, content: 'Two plus two?' }]];
      const greedy = { temperature: 0, maxTokens: 6, eosIds: [] };
      const alone = [await collect(engine.chat(chats[0], greedy)), await collect(engine.chat(chats[1], greedy))];
      const together = await Promise.all(chats.map((m) => collect(parallel.chat(m, greedy))));
      expect(together.map((t) => t.text)).toEqual(alone.map((a) => a.text));
      expect(new Set(together.map((t) => t.stats.slot))).toEqual(new Set([0, 1]));
      // each conversation's next turn lands in the slot that holds it
      for (const [i, m] of chats.entries()) {
        const next = await collect(parallel.chat([...m, { role: 'assistant', content: together[i].text }, { role: 'user', content: 'And?' }], greedy));
        expect(next.stats.slot).toBe(together[i].stats.slot);
        expect(next.stats.reusedTokens).toBeGreaterThan(8);
      }
    } finally {
      twoBackend.destroy();
      two.dispose();
    }
  });

  async function firstId(prompt: number[]): Promise<number | undefined> {
    for await (const d of engine.generate(prompt, { temperature: 0, maxTokens: 1, eosIds: [] })) return d.ids[0];
  }
});

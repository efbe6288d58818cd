// The engine: one generation at a time in FIFO order, a bounded queue (BUSY beyond it),
// cancellation while waiting, a turn released however its consumer ends it, the KV cache
// shared by consecutive requests, prompt ids checked against the vocabulary, a random seed
// when none is given, and completion tokens without the eos.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isSluiceError } from '../../src/errors.js';
import { Engine } from '../../src/generate/engine.js';
import { RequestQueue } from '../../src/generate/queue.js';
import { GpuSampler } from '../../src/generate/sampler.js';
import { openModel, type OpenedModel } from '../../src/model/open-model.js';
import { DEFAULT_SAMPLING } from '../../src/ops/sample.js';
import { writeChatModel } from '../support/byte-tokenizer.js';
import { useGpuTestDevice } from '../support/gpu-helpers.js';

describe('RequestQueue', () => {
  it('runs one at a time in order, refuses past the limit, drops a cancelled waiter', async () => {
    const queue = new RequestQueue(2);
    const order: string[] = [];
    const first = await queue.acquire();
    const b = queue.acquire().then((release) => (order.push('b'), release));
    const cancel = new AbortController();
    const c = queue.acquire(cancel.signal);
    await expect(queue.acquire()).rejects.toSatisfy((e) => isSluiceError(e, 'BUSY'));
    cancel.abort();
    await expect(c).rejects.toSatisfy((e) => isSluiceError(e, 'ABORTED'));
    const d = queue.acquire().then((release) => (order.push('d'), release));
    expect(queue.size).toBe(3);
    first();
    (await b)();
    (await d)();
    expect(order).toEqual(['b', 'd']);
    expect(queue.size).toBe(0);
  });

  it('hold() releases the turn when the body throws, or its consumer stops early or throws into it', async () => {
    const queue = new RequestQueue(4);
    let cleanedUp = 0;
    async function* body(fail: boolean) {
      try {
        yield 1;
        if (fail) throw new Error('the body failed');
        yield 2;
        return 'done';
      } finally {
        cleanedUp++;
      }
    }
    // The body throws.
    await expect(drain(queue.hold(undefined, () => body(true)))).rejects.toThrow('the body failed');
    expect(queue.size).toBe(0);
    // A consumer that breaks out of for-await (return()).
    for await (const _ of queue.hold(undefined, () => body(false))) break;
    expect(queue.size).toBe(0);
    // A consumer that throws inside for-await.
    await expect(
      (async () => {
        for await (const _ of queue.hold(undefined, () => body(false))) throw new Error('the consumer failed');
      })(),
    ).rejects.toThrow('the consumer failed');
    expect(queue.size).toBe(0);
    // throw() into it, as a manual consumer does.
    const run = queue.hold(undefined, () => body(false));
    await run.next();
    await expect(run.throw(new Error('into it'))).rejects.toThrow('into it');
    expect(queue.size).toBe(0);
    expect(cleanedUp).toBe(4); // each body ran its own finally: return()/throw() reached it
    expect(await drain(queue.hold(undefined, () => body(false)))).toBe('done');
  });
});

async function drain<T, R>(run: AsyncGenerator<T, R>): Promise<R> {
  let r = await run.next();
  while (!r.done) r = await run.next();
  return r.value;
}

describe('Engine', () => {
  const gpu = useGpuTestDevice('test.engine');
  const dir = mkdtempSync(join(tmpdir(), 'sluice-engine-'));
  let opened: OpenedModel;
  let engine: Engine;
  beforeAll(async () => {
    writeChatModel('test/fixtures/models/llama-gqa', dir);
    opened = await openModel(dir, gpu.device, { dtype: 'f32', contextLength: 128 });
    const sampler = await GpuSampler.create(opened.model, DEFAULT_SAMPLING);
    const { model, tokenizer, chatTemplate: template, eosIds, defaults } = opened;
    engine = new Engine({ model, sampler, tokenizer, template, eosIds, defaults }, { maxQueue: 3 });
  });
  afterAll(() => {
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

  async function firstId(prompt: number[]): Promise<number | undefined> {
    for await (const d of engine.generate(prompt, { temperature: 0, maxTokens: 1, eosIds: [] })) return d.ids[0];
  }
});

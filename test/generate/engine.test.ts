// The engine: one generation at a time in FIFO order, a bounded queue (BUSY beyond it),
// cancellation while waiting, and the KV cache shared by consecutive requests.

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
});

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

  async function collect(run: AsyncGenerator<{ text: string; ids: number[] }, { reusedTokens: number }>) {
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
});

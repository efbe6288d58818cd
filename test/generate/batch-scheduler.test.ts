// The continuous-batching loop on a fake backend: a deterministic "model" whose next id is
// a hash of the slot's whole cache, which also checks that every prefill and decode row
// writes the position the scheduler claims is next (a wrong reuse or an off-by-one would
// change the hash and so the ids).

import { describe, expect, it } from 'vitest';
import { type BatchBackend, type BatchRow, BatchScheduler } from '../../src/generate/batch-scheduler.js';
import type { GenerationDelta } from '../../src/generate/generate.js';
import type { SamplerConfig } from '../../src/generate/row-sampler.js';

const VOCAB = 97;

class FakeBackend implements BatchBackend {
  readonly caches: number[][];
  readonly calls: string[] = [];
  readonly rowCounts: number[] = [];

  constructor(
    readonly slots: number,
    readonly contextLength = 256,
    readonly prefillChunk = 8,
  ) {
    this.caches = Array.from({ length: slots }, () => []);
  }

  readonly configs = new Map<number, SamplerConfig>();

  begin(slot: number, config: SamplerConfig): void {
    this.configs.set(slot, config);
  }

  logprobsOf(): null {
    return null;
  }

  async prefill(slot: number, ids: readonly number[], start: number): Promise<void> {
    this.calls.push(`prefill ${slot} ${start}+${ids.length}`);
    const cache = this.caches[slot];
    if (start > cache.length) throw new Error(`prefill of slot ${slot} at ${start} leaves a gap after ${cache.length}`);
    cache.length = start;
    cache.push(...ids);
  }

  async decode(rows: readonly BatchRow[]): Promise<number[]> {
    this.calls.push(`decode ${rows.map((r) => r.slot).join(',')}`);
    this.rowCounts.push(rows.length);
    if (new Set(rows.map((r) => r.slot)).size !== rows.length) throw new Error('two rows in one slot');
    await new Promise((r) => setTimeout(r, 0)); // a real pass yields to the event loop
    return rows.map((r) => {
      const cache = this.caches[r.slot];
      if (r.position > cache.length) throw new Error(`decode of slot ${r.slot} at ${r.position} leaves a gap after ${cache.length}`);
      cache.length = r.position;
      cache.push(r.id);
      return nextId(cache);
    });
  }
}

/** The fake model: a function of every cached id and its position. */
function nextId(cache: readonly number[]): number {
  let h = 7;
  cache.forEach((id, i) => (h = (h * 31 + id * (i + 1)) % 1_000_003));
  return h % VOCAB;
}

async function collect(run: AsyncGenerator<GenerationDelta, unknown>): Promise<{ ids: number[]; stats: unknown }> {
  const ids: number[] = [];
  let r = await run.next();
  while (!r.done) {
    ids.push(...r.value.ids);
    r = await run.next();
  }
  return { ids, stats: r.value };
}

/** What the fake model generates after `prompt` alone, greedy, `n` tokens. */
function solo(prompt: number[], n: number): number[] {
  const cache = [...prompt];
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const id = nextId(cache);
    out.push(id);
    cache.push(id);
  }
  return out;
}

const prompt = (seed: number, n: number) => Array.from({ length: n }, (_, i) => (seed * 13 + i * 7) % VOCAB);

describe('BatchScheduler', () => {
  it('gives each of several concurrent sequences exactly its solo ids, decoding them in shared passes', async () => {
    const backend = new FakeBackend(4);
    const s = new BatchScheduler(backend);
    const prompts = [prompt(1, 5), prompt(2, 19), prompt(3, 1), prompt(4, 30)];
    const runs = await Promise.all(prompts.map((p, i) => collect(s.submit(p, { maxTokens: 12 + i }))));
    runs.forEach((r, i) => expect(r.ids).toEqual(solo(prompts[i], 12 + i)));
    expect(Math.max(...backend.rowCounts)).toBe(4);
  });

  it('interleaves a long prompt one chunk per step with the others decoding', async () => {
    const backend = new FakeBackend(2, 256, 8);
    const s = new BatchScheduler(backend);
    const run = s.submit(prompt(5, 3), { maxTokens: 12 });
    const head = await run.next(); // the first sequence is decoding
    const first = collect(run).then((r) => ({ ...r, ids: [...(head.done ? [] : head.value.ids), ...r.ids] }));
    const second = collect(s.submit(prompt(6, 33), { maxTokens: 2 }));
    const [a, b] = await Promise.all([first, second]);
    expect(a.ids).toEqual(solo(prompt(5, 3), 12));
    expect(b.ids).toEqual(solo(prompt(6, 33), 2));
    // the 32 ids before the last prompt id go in 4 chunks, each followed by a decode of the first
    const chunks = backend.calls.map((c, i) => [c, backend.calls[i + 1]]).filter(([c]) => c.startsWith('prefill 1'));
    expect(chunks.map(([c]) => c)).toEqual(['prefill 1 0+8', 'prefill 1 8+8', 'prefill 1 16+8', 'prefill 1 24+8']);
    for (const [, after] of chunks) expect(after).toMatch(/^decode 0/);
  });

  it("reuses a slot's cached prefix for the next turn and reports it", async () => {
    const backend = new FakeBackend(2);
    const s = new BatchScheduler(backend);
    const turn1 = prompt(7, 10);
    const r1 = await collect(s.submit(turn1, { maxTokens: 4 }));
    const other = await collect(s.submit(prompt(8, 6), { maxTokens: 3 })); // takes the other (empty, LRU) slot
    const turn2 = [...turn1, ...r1.ids, 5, 6, 7];
    const r2 = await collect(s.submit(turn2, { maxTokens: 5 }));
    expect(r2.ids).toEqual(solo(turn2, 5));
    expect(r2.stats).toMatchObject({ reusedTokens: turn1.length + 3, slot: (r1.stats as { slot: number }).slot });
    expect((other.stats as { slot: number }).slot).not.toBe((r1.stats as { slot: number }).slot);
  });

  it('queues beyond the slots, refuses beyond maxQueue, and serves the queue in order', async () => {
    const backend = new FakeBackend(1);
    const s = new BatchScheduler(backend, { maxQueue: 1 });
    const a = collect(s.submit(prompt(1, 4), { maxTokens: 3 }));
    const b = collect(s.submit(prompt(2, 4), { maxTokens: 3 }));
    await expect(s.submit(prompt(3, 4)).next()).rejects.toMatchObject({ code: 'BUSY' });
    expect((await a).ids).toEqual(solo(prompt(1, 4), 3));
    expect((await b).ids).toEqual(solo(prompt(2, 4), 3));
  });

  it('ends on eos (not emitted) and at maxTokens, and keeps what the cache holds', async () => {
    const p = prompt(9, 4);
    const expected = solo(p, 8);
    const s = new BatchScheduler(new FakeBackend(1), { eosIds: [expected[3]] });
    const r = await collect(s.submit(p, { maxTokens: 8 }));
    const cut = expected.indexOf(expected[3]);
    expect(r.ids).toEqual(expected.slice(0, cut));
    expect(r.stats).toMatchObject({ stopReason: 'eos', generatedTokens: cut + 1, position: p.length + cut });
    const zero = await collect(s.submit(p, { maxTokens: 0, eosIds: [] }));
    expect(zero).toMatchObject({ ids: [], stats: { stopReason: 'length', generatedTokens: 0 } });
  });

  it('stops at the context end', async () => {
    const s = new BatchScheduler(new FakeBackend(1, 12));
    const r = await collect(s.submit(prompt(2, 9), { maxTokens: 50 }));
    expect(r.stats).toMatchObject({ stopReason: 'context', position: 12 });
    expect(r.ids).toEqual(solo(prompt(2, 9), 4)); // positions 8…11 fed: 4 sampled, the last never fed
  });

  it('cancels on abort (waiting: ABORTED; running: stopReason abort) and when the consumer stops early', async () => {
    const backend = new FakeBackend(1);
    const s = new BatchScheduler(backend);
    const running = new AbortController();
    const first = s.submit(prompt(1, 3), { maxTokens: 100, signal: running.signal });
    await first.next();
    const waiting = new AbortController();
    const queued = s.submit(prompt(2, 3), { signal: waiting.signal });
    const queuedResult = queued.next();
    waiting.abort();
    await expect(queuedResult).rejects.toMatchObject({ code: 'ABORTED' });
    running.abort();
    const r = await collect(first);
    expect(r.stats).toMatchObject({ stopReason: 'abort' });
    // a consumer that breaks frees its slot for the next request
    for await (const _ of s.submit(prompt(3, 3), { maxTokens: 100 })) break;
    expect((await collect(s.submit(prompt(4, 3), { maxTokens: 2 }))).ids).toEqual(solo(prompt(4, 3), 2));
    expect(s.pending).toBe(0);
  });

  it("fails the pass's sequences with the backend's error and goes on serving", async () => {
    const backend = new FakeBackend(2);
    const s = new BatchScheduler(backend);
    // The first pass with both sequences as rows fails (the second joins in the step of its prefill).
    const decode = backend.decode.bind(backend);
    let failed = false;
    backend.decode = (rows) => (rows.length === 2 && !failed ? ((failed = true), Promise.reject(new Error('device lost'))) : decode(rows));
    const runs = [collect(s.submit(prompt(1, 3), { maxTokens: 3 })), collect(s.submit(prompt(2, 3), { maxTokens: 3 }))];
    for (const r of runs) await expect(r).rejects.toThrow('device lost');
    expect((await collect(s.submit(prompt(3, 5), { maxTokens: 3 }))).ids).toEqual(solo(prompt(3, 5), 3));
  });

  it('gives requests without a seed different random seeds, and keeps a given one', async () => {
    const seen: number[] = [];
    const backend = new FakeBackend(2);
    const decode = backend.decode.bind(backend);
    backend.decode = (rows) => (rows.forEach((r) => seen.push(backend.configs.get(r.slot)!.seed)), decode(rows));
    const s = new BatchScheduler(backend);
    await collect(s.submit(prompt(1, 2), { maxTokens: 1 }));
    await collect(s.submit(prompt(1, 2), { maxTokens: 1 }));
    await collect(s.submit(prompt(1, 2), { maxTokens: 1, seed: 42 }));
    expect(seen[0]).not.toBe(seen[1]);
    expect(seen[2]).toBe(42);
  });
});

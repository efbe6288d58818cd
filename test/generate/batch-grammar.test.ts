// Constrained decoding in the batch scheduler, on a fake backend whose "model" draws a
// pseudo-random id among those its row's mask allows (the contract the GPU sampler keeps):
// replies match their grammar and end as soon as it is complete; constrained and free
// sequences share a pass; each slot's mask is one array reused every step; a backend that
// ignores the mask is caught as an internal error of that sequence alone; bad requests are
// refused with USAGE before any pass.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { isSluiceError } from '../../src/errors.js';
import { type BatchBackend, type BatchRow, BatchScheduler } from '../../src/generate/batch-scheduler.js';
import type { GenerateOptions, GenerationDelta, GenerationStats } from '../../src/generate/generate.js';
import { compileGrammar, TokenVocabulary } from '../../src/grammar/index.js';
import { loadTokenizer, type Tokenizer } from '../../src/text/tokenizer.js';
import { writeChatModel } from '../support/byte-tokenizer.js';
import { mulberry32 } from '../support/safetensors-bytes.js';
import { makeAjv } from '../grammar/support.js';
import { readerFor } from '../text/fixtures.js';

const VOCAB = 256 + 27; // the byte tokenizer's 256 ids, then padding rows it lacks
const EOS = 2; // <|im_end|>
const dir = mkdtempSync(join(tmpdir(), 'sluice-grammar-'));
let tokenizer: Tokenizer;
beforeAll(async () => {
  writeChatModel('test/fixtures/models/llama-gqa', dir);
  tokenizer = await loadTokenizer(readerFor(dir), dir);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Draws among the allowed ids of each row's mask (or any id), seeded per slot and step. */
class MaskBackend implements BatchBackend {
  readonly contextLength = 512;
  readonly prefillChunk = 16;
  readonly lastMaskMs = 0.01;
  readonly masksSeen: (Uint32Array | undefined)[][] = [];
  ignoreMasks = false;

  readonly vocabSize: number | undefined;

  /** `vocabSize` null: a backend that applies no masks. */
  constructor(
    readonly slots: number,
    vocabSize: number | null = VOCAB,
  ) {
    this.vocabSize = vocabSize ?? undefined;
  }

  begin(): void {}
  logprobsOf(): null {
    return null;
  }
  async prefill(): Promise<void> {}

  async decode(rows: readonly BatchRow[]): Promise<number[]> {
    await new Promise((r) => setTimeout(r, 0)); // the pass, during which the masks are filled
    const masks = rows.map((r) => r.mask?.());
    this.masksSeen.push(masks);
    return rows.map((r, row) => {
      const mask = masks[row];
      const rng = mulberry32(r.slot * 7919 + r.step * 104729 + 1);
      const allowed: number[] = [];
      for (let i = 0; i < VOCAB; i++) if (!mask || this.ignoreMasks || (mask[i >>> 5] >>> (i & 31)) & 1) allowed.push(i);
      return allowed[Math.floor(rng() * allowed.length)];
    });
  }
}

async function run(s: BatchScheduler, options: GenerateOptions): Promise<{ text: string; ids: number[]; stats: GenerationStats }> {
  const stream = s.submit([1, 72, 105], { eosIds: [EOS], maxTokens: 400, ...options });
  let text = '';
  const ids: number[] = [];
  let r: IteratorResult<GenerationDelta, GenerationStats> = await stream.next();
  while (!r.done) {
    text += r.value.text;
    ids.push(...r.value.ids);
    r = await stream.next();
  }
  return { text, ids, stats: r.value };
}

const PERSON = {
  type: 'object',
  properties: { name: { type: 'string', maxLength: 4 }, age: { type: 'integer', minimum: 0, maximum: 120 }, tags: { type: 'array', items: { enum: ['a', 'b'] }, maxItems: 2 } },
  required: ['name', 'age', 'tags'],
  additionalProperties: false,
};

it('replies match their grammar and end (eos) as soon as it is complete', async () => {
  const s = new BatchScheduler(new MaskBackend(3), { tokenizer });
  const regex = await run(s, { grammar: { regex: '[a-c]{3}-(yes|no)' } });
  expect(regex.text).toMatch(/^[a-c]{3}-(yes|no)$/);
  expect(regex.stats.stopReason).toBe('eos');
  expect(regex.ids).not.toContain(EOS); // ended by the grammar: no pass spent drawing eos
  expect(regex.stats.grammar).toMatchObject({ masks: regex.ids.length });
  expect(regex.stats.grammar!.compileMs).toBeGreaterThan(0);
  expect(regex.stats.grammar!.maskMs).toBeGreaterThan(0);
  const validate = makeAjv().compile(PERSON);
  for (let seed = 0; seed < 4; seed++) {
    const json = await run(s, { grammar: { jsonSchema: PERSON }, seed });
    expect(validate(JSON.parse(json.text)), json.text).toBe(true);
    expect(json.stats.stopReason).toBe('eos');
  }
  // Where the grammar may end or go on, eos is drawn like any allowed id and ends the reply.
  const digits = await run(s, { grammar: { regex: '[0-9]{1,40}' } });
  expect(digits.text).toMatch(/^[0-9]{1,40}$/);
  expect(digits.stats.stopReason).toBe('eos');
  const cut = await run(s, { grammar: { regex: '[a-z]{50}' }, maxTokens: 5 });
  expect(cut.stats.stopReason).toBe('length');
  expect(cut.text).toMatch(/^[a-z]{5}$/);
});

it('two constrained and one free sequence share each pass; each slot reuses one mask array', async () => {
  const backend = new MaskBackend(3);
  const s = new BatchScheduler(backend, { tokenizer });
  const [a, b, free] = await Promise.all([
    run(s, { grammar: { regex: 'x{30}' } }),
    run(s, { grammar: { jsonSchema: { type: 'object', properties: { ok: { type: 'boolean' } }, required: ['ok'], additionalProperties: false } } }),
    run(s, { maxTokens: 20 }),
  ]);
  expect(a.text).toBe('x'.repeat(30));
  expect(JSON.parse(b.text)).toEqual({ ok: expect.any(Boolean) });
  expect(free.ids).toHaveLength(20);
  const shared = backend.masksSeen.filter((rows) => rows.length === 3);
  expect(shared.length).toBeGreaterThan(3);
  for (const rows of shared) expect(rows.filter((m) => m !== undefined)).toHaveLength(2); // the free row has none
  const firstOf = (row: number) => shared[0][row];
  for (const rows of shared) rows.forEach((m, row) => m && expect(m).toBe(firstOf(row))); // the same array, refilled
  expect(firstOf(0)!.length).toBe(Math.ceil(VOCAB / 32));
  // Padding rows past the tokenizer are never allowed.
  for (const rows of backend.masksSeen) for (const m of rows) if (m) for (let id = 256; id < VOCAB; id++) expect((m[id >>> 5] >>> (id & 31)) & 1).toBe(0);
});

it('a backend that ignores the mask is an internal error of that sequence alone', async () => {
  const backend = new MaskBackend(2);
  backend.ignoreMasks = true;
  const s = new BatchScheduler(backend, { tokenizer });
  const [constrained, free] = await Promise.allSettled([run(s, { grammar: { regex: 'q{40}' } }), run(s, { maxTokens: 12 })]);
  expect(constrained.status).toBe('rejected');
  expect(String((constrained as PromiseRejectedResult).reason)).toMatch(/internal error: constrained decoding drew token \d+, which the grammar does not allow/);
  expect(free.status === 'fulfilled' && free.value.ids.length).toBe(12);
});

it('a grammar no token can continue ends its sequence alone with USAGE, after the step', async () => {
  const backend = new MaskBackend(2);
  const s = new BatchScheduler(backend, { tokenizer });
  // Byte 0x01 is no token of the byte tokenizer (id 1 is the special <|im_start|>).
  const [stuck, free] = await Promise.allSettled([run(s, { grammar: { regex: 'a\\x01' } }), run(s, { maxTokens: 6 })]);
  const e = (stuck as PromiseRejectedResult).reason;
  expect(isSluiceError(e, 'USAGE'), String(e)).toBe(true);
  expect(String(e)).toMatch(/no token of the vocabulary can continue the output here/);
  expect(free.status === 'fulfilled' && free.value.ids.length).toBe(6);
});

it('refuses with USAGE: no tokenizer, a backend without masks, a bad schema, a foreign CompiledGrammar, no eos', async () => {
  const usage = async (s: BatchScheduler, options: GenerateOptions, message: RegExp) => {
    const e = await run(s, options).then(() => null, (err: unknown) => err);
    expect(isSluiceError(e, 'USAGE'), String(e)).toBe(true);
    expect(String(e)).toMatch(message);
  };
  const backend = new MaskBackend(1);
  await usage(new BatchScheduler(backend), { grammar: { jsonObject: true } }, /needs the model's tokenizer/);
  await usage(new BatchScheduler(new MaskBackend(1, null), { tokenizer }), { grammar: { jsonObject: true } }, /cannot constrain output/);
  const s = new BatchScheduler(backend, { tokenizer });
  await usage(s, { grammar: { jsonSchema: { type: 'object', properties: { a: { type: 'array', uniqueItems: true } } } } }, /uniqueItems/);
  await usage(s, { grammar: { jsonObject: true }, eosIds: [] }, /needs an eos id/);
  const other = TokenVocabulary.fromTokenizer(tokenizer, { vocabSize: 300, eosIds: [EOS] });
  await usage(s, { grammar: compileGrammar({ jsonObject: true }, other) }, /compiled for 300 token ids; the model has 283/);
  const otherEos = TokenVocabulary.fromTokenizer(tokenizer, { vocabSize: VOCAB, eosIds: [1] });
  await usage(s, { grammar: compileGrammar({ jsonObject: true }, otherEos) }, /eos id 1 is not one of the request's eos ids \(2\)/);
  expect(backend.masksSeen).toHaveLength(0); // refused before any pass
  // A CompiledGrammar made for this model is used as is (no compile time).
  const mine = compileGrammar({ regex: 'ok' }, TokenVocabulary.fromTokenizer(tokenizer, { vocabSize: VOCAB, eosIds: [EOS] }));
  const ok = await run(s, { grammar: mine });
  expect(ok.text).toBe('ok');
  expect(ok.stats.grammar!.compileMs).toBe(0);
});

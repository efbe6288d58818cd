// sample over rows: one dispatch, one workgroup per logits row, each row with its own
// parameters, history, logit bias and RNG stream. Against the float64 reference in
// sample-reference.ts: every row gives the id it gives alone; the frequency and presence
// penalties (generated ids only) and the logit bias move the argmax as vLLM's do; seeded
// draws land where the reference's u falls; rows past the uploaded count do nothing.

import { expect, it } from 'vitest';
import { DEFAULT_SAMPLING, NO_PENALTIES, Sample, type SampleRowConfig } from '../../src/ops/sample.js';
import { useGpuTestDevice } from '../support/gpu-helpers.js';
import { runOps } from '../../src/ops/op.js';
import { outputBuffer, readU32, uploadArray } from '../support/op-helpers.js';
import { mulberry32 } from '../support/safetensors-bytes.js';
import { drawCandidates, greedyReference, keptSet, type ReferenceParams, type RowContext } from './sample-reference.js';
import { randomLogits as randomLogitsOf, randomRow as randomRowOf, type RowCase, sampleRows as sampleRowsOn, SENTINEL } from './sample-rows-support.js';

const gpu = useGpuTestDevice('test.sample-rows');
const rng = mulberry32(0x7013);
const int = (lo: number, hi: number) => lo + Math.floor(rng() * (hi - lo + 1));
const randomLogits = (n: number) => randomLogitsOf(rng, n);
const sampleRows = (vocab: number, cases: readonly RowCase[], count?: number) => sampleRowsOn(gpu.device, vocab, cases, count);

const randomRow = (vocab: number, greedy: boolean) => randomRowOf(rng, vocab, greedy);

it('every row gives the id it gives alone; rows past the uploaded count are left alone', async () => {
  for (const vocab of [257, 1000 + int(0, 3000), 32000 + int(1, 255)]) {
    const cases = Array.from({ length: 7 }, (_, r) => randomRow(vocab, r % 3 === 0));
    const together = await sampleRows(vocab, cases);
    const alone: number[] = [];
    for (const c of cases) alone.push(...(await sampleRows(vocab, [c])));
    expect(together, `vocab ${vocab}`).toEqual(alone);
    expect(together.every((id) => id < vocab)).toBe(true);
    const some = await sampleRows(vocab, cases, 4);
    expect(some).toEqual([...alone.slice(0, 4), SENTINEL, SENTINEL, SENTINEL]);
  }
});

it('frequency and presence penalties count generated ids only, as vLLM does', async () => {
  const logits = new Float32Array(300).fill(-1);
  logits[0] = 5;
  logits[1] = 4.5;
  const greedy = (params: Partial<ReferenceParams>, ctx: RowContext) =>
    sampleRows(300, [{ logits, params: { ...DEFAULT_SAMPLING, temperature: 0, ...params }, ctx, step: 0 }]).then((ids) => ids[0]);
  const generated = { history: [7, 0, 0, 0], generatedFrom: 1 }; // id 0 generated three times
  expect(await greedy({ frequencyPenalty: 0.2 }, generated)).toBe(1); // 5 − 3 · 0.2 = 4.4 < 4.5
  expect(await greedy({ frequencyPenalty: 0.1 }, generated)).toBe(0); // 4.7
  expect(await greedy({ presencePenalty: 0.6 }, generated)).toBe(1); // once: 4.4
  expect(await greedy({ presencePenalty: 0.4 }, generated)).toBe(0); // 4.6
  expect(await greedy({ frequencyPenalty: 0.2 }, { history: [0, 0, 0, 7], generatedFrom: 3 })).toBe(0); // prompt ids do not count
  expect(await greedy({ frequencyPenalty: -2 }, { history: [1], generatedFrom: 0 })).toBe(1); // negative: favours repeats (6.5)
  // Repetition counts the prompt too, and stacks before frequency: 5 / 1.1 − 0.1 = 4.45 < 4.5.
  expect(await greedy({ repetitionPenalty: 1.1, frequencyPenalty: 0.1 }, { history: [0, 0], generatedFrom: 1 })).toBe(1);
});

it('seeded greedy rows with random penalties and bias = the reference argmax', async () => {
  let checked = 0;
  for (let i = 0; i < 16; i++) {
    const vocab = int(2, 5000);
    const c = randomRow(vocab, true);
    const want = greedyReference(c.logits, c.params, c.ctx);
    if (want.margin < 1e-3) continue; // a near-tie: f32 may order it either way
    checked++;
    expect(await sampleRows(vocab, [c]), `case ${i}, vocab ${vocab}`).toEqual([want.id]);
  }
  expect(checked).toBeGreaterThanOrEqual(12);
});

it('logit bias: +100 forces a token, −100 bans the favourite, and it adds before the penalties', async () => {
  const vocab = 1000 + int(0, 999);
  const logits = randomLogits(vocab);
  const favourite = greedyReference(logits, DEFAULT_SAMPLING).id;
  const row = (params: Partial<ReferenceParams>, bias: [number, number][], step = 0, history: number[] = []): RowCase => ({
    logits,
    params: { ...DEFAULT_SAMPLING, ...params },
    ctx: { bias: new Map(bias), history, generatedFrom: 0 },
    step,
  });
  const forced = (favourite + 17) % vocab;
  const sampled = Array.from({ length: 16 }, (_, s) => row({ temperature: 1, topP: 0.95, seed: 5 }, [[forced, 100]], s));
  expect(await sampleRows(vocab, sampled)).toEqual(Array(16).fill(forced));
  const banned = await sampleRows(vocab, [row({ temperature: 0 }, [[favourite, -100]])]);
  expect(banned).toEqual([greedyReference(logits, DEFAULT_SAMPLING, { bias: new Map([[favourite, -100]]) }).id]);
  expect(banned[0]).not.toBe(favourite);
  // Bias then repetition penalty on the same id (the bias pass writes it, not the history
  // pass): z = (x + 30) / 8, so the id is kept out of first place only by the penalty.
  const x = logits[forced];
  const top = logits[favourite];
  const penalty = (x + 30) / (top - 0.5); // lands the biased id 0.5 below the favourite
  const both = await sampleRows(vocab, [row({ temperature: 0, repetitionPenalty: penalty }, [[forced, 30]], 0, [forced, forced])]);
  expect(x + 30 > 0 && penalty > 0).toBe(true);
  expect(both).toEqual([favourite]);
  const lessPenalty = await sampleRows(vocab, [row({ temperature: 0, repetitionPenalty: penalty * 0.9 }, [[forced, 30]], 0, [forced])]);
  expect(lessPenalty).toEqual([forced]);
});

it('seeded draws with penalties and bias land where the reference u falls', async () => {
  let checked = 0;
  for (let i = 0; i < 12; i++) {
    const vocab = int(50, 3000);
    const c = randomRow(vocab, false);
    c.params.temperature = 1 + rng(); // flatter: several likely ids
    const kept = keptSet(c.logits, c.params, c.ctx);
    if (keptSet(c.logits, c.params, c.ctx, 1e-4).size !== kept.size) continue; // an id near a threshold
    const steps = Array.from({ length: 24 }, (_, s) => ({ ...c, step: c.step + s }));
    const ids = await sampleRows(vocab, steps);
    ids.forEach((id, s) => expect(drawCandidates(kept, c.params.seed, c.step + s), `case ${i} step ${s}`).toContain(id));
    checked++;
  }
  expect(checked).toBeGreaterThanOrEqual(8);
});

it('a row staged as appending writes its id after the ids it read; nothing else of the history changes', async () => {
  for (let i = 0; i < 4; i++) {
    const vocab = int(2, 3000);
    const cases = Array.from({ length: 3 }, (_, r) => randomRow(vocab, r === 1));
    // Each row's history at a base of its own, with a gap after it for the appended id.
    const bases: number[] = [];
    let size = 0;
    for (const c of cases) {
      bases.push(size);
      size += (c.ctx.history?.length ?? 0) + 1 + int(0, 3);
    }
    const history = Uint32Array.from({ length: size }, () => 0xfeed0000 + int(0, 999)); // not ids: an unread place shows
    cases.forEach((c, r) => history.set(c.ctx.history ?? [], bases[r]));
    const logits = new Float32Array(cases.length * vocab);
    cases.forEach((c, r) => logits.set(c.logits, r * vocab));
    const buffers = {
      logits: uploadArray(gpu.device, logits, 'F32'),
      history: uploadArray(gpu.device, history, 'U32'),
      out: outputBuffer(gpu.device, cases.length, 4),
    };
    const op = (await Sample.create(gpu.device)).prepareRows('test.rows.append', vocab, cases.length, buffers);
    const appends = [true, i % 2 === 0, true];
    cases.forEach((c, r) => {
      const config = { ...NO_PENALTIES, ...c.params, historyBase: bases[r], generatedFrom: c.ctx.generatedFrom ?? 0, biasBase: 0, biasCount: 0 };
      op.setRow(r, config, c.step, c.ctx.history?.length ?? 0, false, appends[r]);
    });
    op.upload(cases.length);
    await runOps(gpu.device, [op]);
    const ids = await readU32(gpu.device, buffers.out, cases.length);
    const want = history.slice();
    cases.forEach((c, r) => appends[r] && (want[bases[r] + (c.ctx.history?.length ?? 0)] = ids[r]));
    expect(await readU32(gpu.device, buffers.history, size), `case ${i}, vocab ${vocab}`).toEqual(want);
    // The ids are those the rows draw without appending (bias aside: none bound here).
    const alone = await sampleRows(vocab, cases.map((c) => ({ ...c, ctx: { ...c.ctx, bias: undefined } })));
    expect([...ids], `case ${i}`).toEqual(alone);
    for (const b of [op, ...Object.values(buffers)]) b.destroy();
  }
});

it('setRow, upload and prepareRows refuse what the shader would misread', async () => {
  const sample = await Sample.create(gpu.device);
  const buf = outputBuffer(gpu.device, 64, 4);
  const ok: SampleRowConfig = { ...DEFAULT_SAMPLING, ...NO_PENALTIES, historyBase: 0, generatedFrom: 0, biasBase: 0, biasCount: 0 };
  expect(() => sample.prepareRows('x', 32, 3, { logits: buf, out: buf })).toThrow(/logits hold 256 B < 3 × 32/);
  expect(() => sample.prepareRows('x', 8, 2, { logits: buf, out: buf, outIndex: 63 })).toThrow(/no u32 at indices 63..64/);
  const op = sample.prepareRows('x', 8, 2, { logits: buf, out: buf, history: buf, bias: buf });
  expect(() => op.setRow(2, ok, 0, 0)).toThrow(/row 2 is not in \[0, 2\)/);
  expect(() => op.setRow(0, { ...ok, frequencyPenalty: 2.5 }, 0, 0)).toThrow(/frequencyPenalty/);
  expect(() => op.setRow(0, { ...ok, presencePenalty: Number.NaN }, 0, 0)).toThrow(/presencePenalty/);
  expect(() => op.setRow(0, { ...ok, historyBase: 60 }, 0, 5)).toThrow(/historyLength 5 at 60 .* 64 ids/);
  expect(() => op.setRow(0, { ...ok, biasBase: 30, biasCount: 3 }, 0, 0)).toThrow(/bias entries \[30, \+3\) .* 32/);
  expect(() => op.setRow(1, { ...ok, historyBase: 60 }, 0, 4, false, true)).toThrow(/row 1 appends at history id 64, past the history buffer's 64 ids/);
  op.setRow(1, { ...ok, historyBase: 60 }, 0, 3, false, true); // the last id of the buffer: room for one
  expect(() => op.upload(3)).toThrow(/3 rows/);
  op.destroy();
  buf.destroy();
});

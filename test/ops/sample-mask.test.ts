// sample with an allowed-token mask (constrained decoding): a masked row draws only ids
// whose bit is set, at any temperature, whatever bias, penalties or NaN logits say; greedy
// is the argmax over the allowed ids; seeded draws land where the float64 reference (the
// distribution renormalised over the allowed ids) puts u; an empty mask answers NONE; an
// unmasked row next to masked ones gives exactly the id it gives without a mask buffer.
// Vocabularies are not multiples of 32 (a mask word) or 256 (the workgroup).

import { expect, it } from 'vitest';
import { DEFAULT_SAMPLING, maskWords, NO_PENALTIES, Sample, type SampleRowConfig } from '../../src/ops/sample.js';
import { useGpuTestDevice } from '../support/gpu-helpers.js';
import { outputBuffer } from '../support/op-helpers.js';
import { mulberry32 } from '../support/safetensors-bytes.js';
import { allowedBy, drawCandidates, greedyReference, keptSet } from './sample-reference.js';
import { randomLogits, randomRow, type RowCase, sampleRows } from './sample-rows-support.js';

const gpu = useGpuTestDevice('test.sample-mask');
const rng = mulberry32(0x3a5c);
const int = (lo: number, hi: number) => lo + Math.floor(rng() * (hi - lo + 1));
const NONE = 0xffffffff;
const run = (vocab: number, cases: readonly RowCase[]) => sampleRows(gpu.device, vocab, cases);

/** A mask of `vocab` ids allowing exactly `ids`. */
function maskOf(vocab: number, ids: Iterable<number>): Uint32Array {
  const mask = new Uint32Array(maskWords(vocab));
  for (const id of ids) mask[id >>> 5] |= 1 << (id & 31);
  return mask;
}

/** A seeded mask: each id allowed with probability `density` (at least one allowed). */
function randomMask(vocab: number, density: number): Uint32Array {
  const ids = Array.from({ length: vocab }, (_, i) => i).filter(() => rng() < density);
  return maskOf(vocab, ids.length ? ids : [int(0, vocab - 1)]);
}

const allowedIds = (vocab: number, mask: Uint32Array) => Array.from({ length: vocab }, (_, i) => i).filter((i) => allowedBy({ mask }, i));

/** A random row (filters, penalties, history, bias), hotter, with +100 biases on a few ids (most of them disallowed) and `mask`. */
function randomMaskedRow(vocab: number, greedy: boolean, mask: Uint32Array): RowCase {
  const c = randomRow(rng, vocab, greedy);
  if (!greedy) c.params.temperature += rng();
  const bias = new Map(c.ctx.bias);
  for (let i = int(1, 4); i > 0; i--) bias.set(int(0, vocab - 1), 100);
  return { ...c, ctx: { ...c.ctx, bias, mask } };
}

it('seeded greedy masked rows = the reference argmax over the allowed ids', async () => {
  let checked = 0;
  for (let i = 0; i < 14; i++) {
    const vocab = [31, 33, 257, int(300, 5000)][i % 4];
    const mask = randomMask(vocab, [0.002, 0.05, 0.5, 0.97][i % 4]);
    const c = randomMaskedRow(vocab, true, mask);
    const want = greedyReference(c.logits, c.params, c.ctx);
    if (want.margin < 1e-3) continue; // a near-tie: f32 may order it either way
    checked++;
    expect(await run(vocab, [c]), `case ${i}, vocab ${vocab}`).toEqual([want.id]);
  }
  expect(checked).toBeGreaterThanOrEqual(10);
});

it('seeded masked draws stay allowed and land where the reference u falls', async () => {
  let checked = 0;
  for (let i = 0; i < 10; i++) {
    const vocab = int(40, 3000);
    const mask = randomMask(vocab, [0.01, 0.3, 0.9][i % 3]);
    const c = randomMaskedRow(vocab, false, mask);
    const kept = keptSet(c.logits, c.params, c.ctx);
    const steps = Array.from({ length: 16 }, (_, s) => ({ ...c, step: c.step + s }));
    const ids = await run(vocab, steps);
    for (const id of ids) expect(allowedBy(c.ctx, id), `case ${i}: id ${id} is disallowed`).toBe(true);
    if (keptSet(c.logits, c.params, c.ctx, 1e-4).size !== kept.size) continue; // an id near a threshold
    ids.forEach((id, s) => expect(drawCandidates(kept, c.params.seed, c.step + s), `case ${i} step ${s}`).toContain(id));
    checked++;
  }
  expect(checked).toBeGreaterThanOrEqual(6);
});

it('one allowed id is drawn at every temperature, against bias, penalties and a NaN logit', async () => {
  const vocab = 1000 + int(1, 31) * 32 + 7;
  const only = int(0, vocab - 1);
  const logits = randomLogits(rng, vocab);
  logits[only] = Number.NaN; // the only allowed id has the worst logit there is
  const bias = new Map([[(only + 1) % vocab, 100], [only, -100]]);
  const cases: RowCase[] = [0, 0.3, 1, 5, 1e6].flatMap((temperature, t) =>
    Array.from({ length: 3 }, (_, s) => ({
      logits,
      params: { ...DEFAULT_SAMPLING, temperature, topK: s === 1 ? 1 : 0, topP: s === 2 ? 0.1 : 1, minP: s === 2 ? 0.5 : 0, repetitionPenalty: 2, seed: 77 + t },
      ctx: { mask: maskOf(vocab, [only]), bias, history: [only, only], generatedFrom: 0 },
      step: s,
    })),
  );
  expect(await run(vocab, cases)).toEqual(cases.map(() => only));
});

it('all but eos: eos is never drawn even with the largest logit and +100 bias', async () => {
  const vocab = 2 * 256 + 3;
  const eos = vocab - 2;
  const logits = randomLogits(rng, vocab);
  logits[eos] = 50;
  const allButEos = maskOf(vocab, Array.from({ length: vocab }, (_, i) => i).filter((i) => i !== eos));
  const cases: RowCase[] = Array.from({ length: 24 }, (_, s) => ({
    logits,
    params: { ...DEFAULT_SAMPLING, temperature: s % 4 === 0 ? 0 : 1 + s, seed: 9 },
    ctx: { mask: allButEos, bias: new Map([[eos, 100]]) },
    step: s,
  }));
  const ids = await run(vocab, cases);
  expect(ids.every((id) => id !== eos && id < vocab)).toBe(true);
  expect(ids[0]).toBe(greedyReference(logits, { ...DEFAULT_SAMPLING, temperature: 0 }, { mask: allButEos }).id);
  // Unmasked, the same rows draw eos: the mask is what keeps it out.
  expect(await run(vocab, cases.slice(0, 4).map((c) => ({ ...c, ctx: { bias: c.ctx.bias } })))).toEqual([eos, eos, eos, eos]);
});

it('an empty mask answers NONE; every allowed id is reachable at a high temperature', async () => {
  const vocab = 100;
  const empty: RowCase = { logits: randomLogits(rng, vocab), params: { ...DEFAULT_SAMPLING, temperature: 0 }, ctx: { mask: maskOf(vocab, []) }, step: 0 };
  expect(await run(vocab, [empty, { ...empty, params: { ...DEFAULT_SAMPLING, temperature: 1 } }])).toEqual([NONE, NONE]);
  const few = [3, 31, 32, 63, 64, 99]; // word edges
  const flat: RowCase[] = Array.from({ length: 48 }, (_, s) => ({
    logits: new Float32Array(vocab),
    params: { ...DEFAULT_SAMPLING, temperature: 1, seed: 5 },
    ctx: { mask: maskOf(vocab, few) },
    step: s,
  }));
  const ids = await run(vocab, flat);
  expect(new Set(ids)).toEqual(new Set(few)); // 48 uniform draws over 6 ids: each misses with p ≈ 6 · (5/6)^48 ≈ 1e-3 (fixed seed)
});

it('unmasked rows beside masked ones draw exactly what they draw with no mask buffer', async () => {
  const vocab = 4099;
  const rows = Array.from({ length: 6 }, (_, r) => randomMaskedRow(vocab, r % 2 === 0, randomMask(vocab, 0.3)));
  const unmasked = rows.map((c) => ({ ...c, ctx: { ...c.ctx, mask: undefined } }));
  const alone = await run(vocab, unmasked); // no mask buffer bound at all
  const mixed = await run(vocab, rows.map((c, r) => (r % 3 === 0 ? c : unmasked[r])));
  mixed.forEach((id, r) => {
    if (r % 3 === 0) expect(allowedBy(rows[r].ctx, id)).toBe(true);
    else expect(id, `row ${r}`).toBe(alone[r]);
  });
  expect(allowedIds(vocab, rows[0].ctx.mask!).length).toBeGreaterThan(0);
});

it('a masked row needs a mask buffer of rows × ceil(vocab / 32) words', async () => {
  const sample = await Sample.create(gpu.device);
  const buf = outputBuffer(gpu.device, 64, 4);
  const ok: SampleRowConfig = { ...DEFAULT_SAMPLING, ...NO_PENALTIES, historyBase: 0, generatedFrom: 0, biasBase: 0, biasCount: 0 };
  const op = sample.prepareRows('x', 8, 2, { logits: buf, out: buf });
  expect(() => op.setRow(0, ok, 0, 0, true)).toThrow(/row 0 is masked but the op has no mask buffer/);
  op.destroy();
  const small = outputBuffer(gpu.device, 4, 4); // 16 B: 4 words
  expect(() => sample.prepareRows('x', 40, 3, { logits: outputBuffer(gpu.device, 120, 4), out: buf, mask: small })).toThrow(/mask holds 16 B < 3 × 2 u32/);
  buf.destroy();
  small.destroy();
});

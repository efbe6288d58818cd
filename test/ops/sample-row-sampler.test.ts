// RowSampler, the multi-sequence API the batched decode step uses: a logits buffer filled
// here stands for the model's (rows, vocab) output. Each row samples for its own slot
// (request parameters, logit bias, history, RNG step) and gives the id and logprobs its
// request gets alone; only rows that ask read logprobs back; the id a row draws lands in its
// slot's history where it is fed next (penalties step after step = the reference, and no
// write for it); misuse is refused; a failed create frees every buffer it made.

import { expect, it } from 'vitest';
import { SluiceError } from '../../src/errors.js';
import { type RowRequest, RowSampler, type SamplerConfig } from '../../src/generate/row-sampler.js';
import { DEFAULT_SAMPLING } from '../../src/ops/sample.js';
import { spyDevice, useGpuTestDevice } from '../support/gpu-helpers.js';
import { uploadArray } from '../support/op-helpers.js';
import { mulberry32 } from '../support/safetensors-bytes.js';
import { drawCandidates, greedyReference, keptSet, logSoftmax } from './sample-reference.js';

const gpu = useGpuTestDevice('test.row-sampler');
const rng = mulberry32(0x50a7);
const VOCAB = 3001;
const CONTEXT = 64;

const spread = (n: number) => Float32Array.from({ length: n }, () => 8 * (rng() + rng() + rng() - 1.5));

/** Six requests: greedy and sampled, penalties, bias, logprobs or not. */
const CONFIGS: SamplerConfig[] = [
  { ...DEFAULT_SAMPLING, temperature: 0, logprobs: 3 },
  { ...DEFAULT_SAMPLING, temperature: 0.9, topP: 0.9, seed: 11, frequencyPenalty: 1.5, presencePenalty: -0.5 },
  { ...DEFAULT_SAMPLING, temperature: 1.2, topK: 40, seed: 12, logitBias: new Map([[5, 8], [7, -100]]), logprobs: 0 },
  { ...DEFAULT_SAMPLING, temperature: 0, repetitionPenalty: 1.3, frequencyPenalty: 0.7, logitBias: new Map([[100, 3]]) },
  { ...DEFAULT_SAMPLING, temperature: 0.7, minP: 0.05, seed: 14, presencePenalty: 2, logprobs: 20 },
  { ...DEFAULT_SAMPLING, temperature: 1, seed: 15 },
];

/** A slot's prompt and generated ids (generated from `prompt` on), with repeats. */
const histories = CONFIGS.map(() => Array.from({ length: 10 + Math.floor(rng() * 40) }, () => Math.floor(rng() * 30)));
const PROMPT = 8;

async function sampler(rows: number, slots: number, logits: Float32Array): Promise<{ s: RowSampler; logits: GPUBuffer }> {
  const buf = uploadArray(gpu.device, logits, 'F32');
  const s = await RowSampler.create(gpu.device, { logits: buf, vocab: VOCAB, rows, slots, contextLength: CONTEXT, label: 'test.rows' });
  return { s, logits: buf };
}

/** One step: encode, submit, read; ids and logprobs of each row. */
async function step(s: RowSampler, rows: readonly RowRequest[]) {
  const encoder = gpu.device.createCommandEncoder();
  s.sampleRows(encoder, rows);
  gpu.device.queue.submit([encoder.finish()]);
  const ids = [...(await s.readRows()).slice(0, rows.length)];
  return ids.map((id, i) => ({ id, logprobs: s.logprobsOf(i) }));
}

it('each row samples for its own slot and gets what its request gets alone', async () => {
  const order = [3, 0, 5, 1, 4]; // slots of the rows: not in slot order, slot 2 idle
  const logits = spread(order.length * VOCAB);
  const { s, logits: buf } = await sampler(order.length, CONFIGS.length, logits);
  CONFIGS.forEach((c, slot) => {
    s.configure(slot, c, PROMPT);
    s.remember(slot, histories[slot], 0);
  });
  const solos = await Promise.all(order.map((_, r) => sampler(1, 1, logits.slice(r * VOCAB, (r + 1) * VOCAB))));
  order.forEach((slot, r) => {
    solos[r].s.configure(0, CONFIGS[slot], PROMPT);
    solos[r].s.remember(0, histories[slot], 0);
  });
  for (let t = 0; t < 3; t++) {
    const together = await step(
      s,
      order.map((slot) => ({ slot, step: t, historyLength: histories[slot].length })),
    );
    for (const [r, slot] of order.entries()) {
      const [alone] = await step(solos[r].s, [{ slot: 0, step: t, historyLength: histories[slot].length }]);
      expect(together[r], `step ${t}, row ${r} (slot ${slot})`).toEqual(alone);
      const asked = CONFIGS[slot].logprobs;
      if (asked === undefined) expect(together[r].logprobs).toBeNull();
      else {
        const lp = logSoftmax(logits.subarray(r * VOCAB, (r + 1) * VOCAB));
        expect(together[r].logprobs!.id).toBe(together[r].id);
        expect(Math.abs(together[r].logprobs!.logprob - lp[together[r].id])).toBeLessThan(2e-5 + 1e-6 * Math.abs(lp[together[r].id]));
        expect(together[r].logprobs!.top).toHaveLength(asked);
      }
    }
  }
  // A step with fewer rows, slots in another order: row i still samples logits row i.
  const [a, b] = await step(s, [
    { slot: 0, step: 9, historyLength: 20 },
    { slot: 3, step: 9, historyLength: 20 },
  ]);
  expect(a.logprobs!.id).toBe(a.id);
  expect(b.logprobs).toBeNull();
  for (const x of [s, buf, ...solos.flatMap((o) => [o.s, o.logits])]) x.destroy();
});

it('the logit bias is the request’s: a slot reconfigured without bias loses it', async () => {
  const logits = spread(VOCAB);
  const { s, logits: buf } = await sampler(1, 2, logits);
  const forced = 1234;
  s.configure(1, { ...DEFAULT_SAMPLING, temperature: 0, logitBias: new Map([[forced, 100]]) }, 0);
  expect((await step(s, [{ slot: 1, step: 0, historyLength: 0 }]))[0].id).toBe(forced);
  s.configure(1, { ...DEFAULT_SAMPLING, temperature: 0 }, 0);
  const argmax = logits.indexOf(Math.max(...logits));
  expect((await step(s, [{ slot: 1, step: 0, historyLength: 0 }]))[0].id).toBe(argmax);
  s.destroy();
  buf.destroy();
});

it('each drawn id lands in its slot’s history where it is fed next: penalties step by step = the reference, no write for it', async () => {
  // A few hot ids close together: repetition and frequency penalties over the generated
  // ids move the greedy pick every step, so one id missing or misplaced in the history
  // changes the next pick.
  const hot = [11, 222, 1500, 2999, 7, 640];
  const logits = Float32Array.from(spread(2 * VOCAB), (v) => 0.3 * v);
  for (const row of [0, 1]) hot.forEach((id, k) => (logits[row * VOCAB + id] = 6 + 0.1 * k));
  const { s, logits: buf } = await sampler(2, 3, logits);
  const greedy: SamplerConfig = { ...DEFAULT_SAMPLING, temperature: 0, repetitionPenalty: 1.5, frequencyPenalty: 0.5 };
  const sampled: SamplerConfig = { ...DEFAULT_SAMPLING, temperature: 1, seed: 99, frequencyPenalty: 1.5, presencePenalty: 0.5 };
  const prompt = [3, 11, 5, 222]; // hot ids in the prompt: the repetition penalty counts them, frequency does not
  const slots = [2, 0]; // row r samples for slots[r], with rows[r]'s logits
  const configs = [greedy, sampled];
  const histories = slots.map(() => [...prompt]);
  const fed = slots.map(() => prompt[prompt.length - 1]);
  slots.forEach((slot, r) => {
    s.configure(slot, configs[r], prompt.length);
    s.remember(slot, prompt.slice(0, -1), 0); // the prompt's last id is fed by the first step
  });
  const historyWrites: number[] = [];
  const queue = gpu.device.queue;
  const write = queue.writeBuffer;
  queue.writeBuffer = function (this: GPUQueue, buffer: GPUBuffer, ...rest: [number, GPUAllowSharedBufferSource, number?, number?]) {
    if (buffer.label === 'test.rows.history') historyWrites[historyWrites.length - 1]++;
    return write.call(this, buffer, ...rest);
  };
  try {
    const FORCED = 6; // the step that feeds an id of the caller's, not the one drawn
    for (let t = 0; t < 12; t++) {
      historyWrites.push(0);
      const position = prompt.length - 1 + t;
      slots.forEach((slot, r) => s.remember(slot, [fed[r]], position)); // as the batch backend does, every step
      const ids = await step(
        s,
        slots.map((slot) => ({ slot, step: t, historyLength: position + 1 })),
      );
      const row = (r: number) => logits.subarray(r * VOCAB, (r + 1) * VOCAB);
      const want = greedyReference(row(0), greedy as never, { history: histories[0], generatedFrom: prompt.length });
      expect(want.margin, `step ${t}: not a near-tie`).toBeGreaterThan(1e-3);
      expect(ids[0].id, `step ${t}, greedy row`).toBe(want.id);
      const kept = keptSet(row(1), sampled as never, { history: histories[1], generatedFrom: prompt.length });
      expect(drawCandidates(kept, sampled.seed, t), `step ${t}, sampled row`).toContain(ids[1].id);
      slots.forEach((_, r) => (fed[r] = t === FORCED ? hot[(hot.indexOf(ids[r].id) + 1) % hot.length] : ids[r].id));
      slots.forEach((_, r) => histories[r].push(fed[r]));
    }
    // A write per slot for its prompt's last id and for its forced id; none for the ids drawn.
    expect(historyWrites).toEqual([2, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0]);
    expect(new Set(histories[0].slice(prompt.length)).size, 'the greedy row moved between hot ids').toBeGreaterThanOrEqual(4);
  } finally {
    delete (queue as Partial<GPUQueue>).writeBuffer;
    s.destroy();
    buf.destroy();
  }
});

it('masked rows draw only allowed ids; unmasked ones beside them as before; submitRows runs a step alone', async () => {
  const rows = 3;
  const logits = spread(rows * VOCAB);
  const { s, logits: buf } = await sampler(rows, rows, logits);
  const hot = { ...DEFAULT_SAMPLING, temperature: 1.5, seed: 21 };
  for (let slot = 0; slot < rows; slot++) s.configure(slot, slot === 1 ? { ...DEFAULT_SAMPLING, temperature: 0, logprobs: 2 } : hot, 0);
  const words = Math.ceil(VOCAB / 32);
  const allowed = [5, 31, 32, VOCAB - 1]; // word edges and the last id (VOCAB is not a multiple of 32)
  const mask = new Uint32Array(words + 3); // longer than needed: the first `words` count
  for (const id of allowed) mask[id >>> 5] |= 1 << (id & 31);
  const free = await step(s, [0, 1, 2].map((slot) => ({ slot, step: 0, historyLength: 0 })));
  expect(s.lastMaskMs).toBe(0);
  for (let t = 0; t < 12; t++) {
    const request = (slot: number) => ({ slot, step: t, historyLength: 0, ...(slot !== 1 && { mask }) });
    s.submitRows([0, 1, 2].map(request));
    const ids = await s.readRows();
    expect(allowed, `step ${t}`).toContain(ids[0]);
    expect(allowed, `step ${t}`).toContain(ids[2]);
    expect(ids[1]).toBe(free[1].id); // the greedy unmasked row between two masked ones
    expect(s.logprobsOf(1)!.id).toBe(ids[1]);
  }
  expect(s.lastMaskMs).toBeGreaterThan(0);
  const encoder = gpu.device.createCommandEncoder();
  expect(() => s.sampleRows(encoder, [{ slot: 0, step: 0, historyLength: 0, mask: new Uint32Array(words - 1) }])).toThrow(`the mask of row 0 has ${words - 1} words; 3001 ids need ${words}`);
  encoder.finish();
  s.destroy();
  buf.destroy();
});

it('refuses misuse: unconfigured slot, too many rows, one slot twice, history past the context, options out of range (USAGE, named)', async () => {
  const { s, logits } = await sampler(2, 2, spread(2 * VOCAB));
  const encoder = gpu.device.createCommandEncoder();
  expect(() => s.sampleRows(encoder, [{ slot: 1, step: 0, historyLength: 0 }])).toThrow(/slot 1 has no request/);
  s.configure(0, DEFAULT_SAMPLING, 0);
  expect(() => s.sampleRows(encoder, [])).toThrow(/0 rows/);
  expect(() => s.sampleRows(encoder, Array(3).fill({ slot: 0, step: 0, historyLength: 0 }))).toThrow(/3 rows, this sampler takes 1 to 2/);
  expect(() => s.sampleRows(encoder, [{ slot: 2, step: 0, historyLength: 0 }])).toThrow(/slot 2 is not in \[0, 2\)/);
  expect(() => s.sampleRows(encoder, [{ slot: 0, step: 0, historyLength: CONTEXT + 1 }])).toThrow(/history length 65/);
  expect(() => s.sampleRows(encoder, [0, 1].map(() => ({ slot: 0, step: 0, historyLength: 3 })))).toThrow(/rows 0 and 1 both sample for slot 0/);
  expect(() => s.remember(0, [1, 2, 3], CONTEXT - 2)).toThrow(/do not fit the history of 64/);
  const usage = (config: Partial<SamplerConfig>, pattern: RegExp) => {
    const call = () => s.configure(1, { ...DEFAULT_SAMPLING, ...config }, 0);
    expect(call).toThrow(SluiceError);
    expect(call).toThrow(pattern);
  };
  usage({ frequencyPenalty: 2.5 }, /frequencyPenalty must be a number in \[-2, 2\]/);
  usage({ presencePenalty: -3 }, /presencePenalty/);
  usage({ logprobs: 21 }, /logprobs must be a whole number in \[0, 20\]/);
  usage({ logprobs: 1.5 }, /logprobs/);
  usage({ logitBias: new Map([[VOCAB, 1]]) }, /logitBias: token id 3001 is not in the vocabulary/);
  usage({ logitBias: new Map([[3, 101]]) }, /logitBias: the bias of token 3 must be a number in \[-100, 100\]/);
  usage({ logitBias: new Map(Array.from({ length: 1025 }, (_, i) => [i, 0])) }, /logitBias has 1025 entries; at most 1024/);
  expect(() => s.configure(1, { ...DEFAULT_SAMPLING, topK: -1 }, 0)).toThrow(/topK/); // the kernel's own checks, at configure time
  encoder.finish();
  s.destroy();
  logits.destroy();
});

it('a failed create frees every buffer it made', async () => {
  const spy = spyDevice(gpu.device);
  const tooSmall = gpu.device.createBuffer({ size: 16, usage: GPUBufferUsage.STORAGE });
  await expect(RowSampler.create(spy.device, { logits: tooSmall, vocab: VOCAB, rows: 2, contextLength: CONTEXT })).rejects.toThrow(/logits hold 16 B < 2 × 3001/);
  expect(spy.created.length).toBeGreaterThan(3);
  expect(spy.live()).toEqual([]);
  tooSmall.destroy();
});

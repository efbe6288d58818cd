// logprobs: the sampled id's log-probability and the top alternatives under the raw logits,
// per row, on the GPU. Against a float64 log-softmax (sample-reference.ts): values within
// a stated tolerance, alternatives in the reference's order (ties → lower id) exactly, rows
// that do not ask left alone, odd vocabularies (1, not multiples of the workgroup, a
// Qwen-sized 151936), -inf and NaN logits, a top larger than the vocabulary.

import { expect, it } from 'vitest';
import { decodeLogprobs, Logprobs, LOGPROBS_RECORD_WORDS, LOGPROBS_TOP_MAX, logprobsVariants } from '../../src/ops/logprobs.js';
import { runOps } from '../../src/ops/op.js';
import { pipelineCache } from '../../src/gpu/pipeline-cache.js';
import { useGpuTestDevice } from '../support/gpu-helpers.js';
import { readU32, uploadArray } from '../support/op-helpers.js';
import { mulberry32 } from '../support/safetensors-bytes.js';
import { logSoftmax, topLogprobs } from './sample-reference.js';

const gpu = useGpuTestDevice('test.logprobs');
const rng = mulberry32(0x109b);
const SENTINEL = 0xdeadbeef;

/**
 * Tolerance on a logprob: |got − want| ≤ 2e-5 + 1e-6 · |want|. The GPU sums up to 152k
 * exps in f32 (per-thread runs of ~2400, then a 64-way tree): a relative error of ~1e-6
 * on Σ, i.e. ~1e-6 absolute on log Σ, plus f32 rounding of z − M (relative 6e-8 of |lp|)
 * and WGSL's exp/log accuracy; 2e-5 leaves a margin over the worst we measured on these cases (2.1e-6).
 */
const close = (got: number, want: number) => Math.abs(got - want) <= 2e-5 + 1e-6 * Math.abs(want);

interface Row {
  logits: Float32Array;
  /** The "sampled" id the op reads from ids. */
  id: number;
  /** Alternatives asked for; null: the row wants no logprobs. */
  top: number | null;
}

/** The records of rows run in one dispatch (null for rows that did not ask). */
async function run(vocab: number, rows: readonly Row[]) {
  const device = gpu.device;
  const logits = new Float32Array(rows.length * vocab);
  rows.forEach((r, i) => logits.set(r.logits, i * vocab));
  const logitsBuf = uploadArray(device, logits, 'F32');
  const ids = uploadArray(device, Uint32Array.from([SENTINEL, ...rows.map((r) => r.id)]), 'U32'); // idIndex 1
  const out = uploadArray(device, new Uint32Array(rows.length * LOGPROBS_RECORD_WORDS).fill(SENTINEL), 'U32');
  const op = (await Logprobs.create(device)).prepare('test.logprobs', vocab, rows.length, { logits: logitsBuf, ids, idIndex: 1, out });
  rows.forEach((r, i) => op.setRow(i, r.top));
  op.upload(rows.length);
  await runOps(device, [op]);
  const words = (await readU32(device, out, rows.length * LOGPROBS_RECORD_WORDS)).slice();
  for (const b of [op, logitsBuf, ids, out]) b.destroy();
  return rows.map((r, i) => {
    const at = i * LOGPROBS_RECORD_WORDS;
    if (r.top === null) {
      expect(words.slice(at, at + LOGPROBS_RECORD_WORDS).every((w) => w === SENTINEL), `row ${i} without logprobs is left alone`).toBe(true);
      return null;
    }
    return decodeLogprobs(words, at, r.top);
  });
}

/** Checks a record against the reference: the id's value, then the alternatives' order exactly. */
function expectReference(got: ReturnType<typeof decodeLogprobs> | null, row: Row, what: string): void {
  expect(got, what).not.toBeNull();
  const lp = logSoftmax(row.logits);
  expect(got!.id, what).toBe(row.id);
  expect(close(got!.logprob, lp[row.id]), `${what}: id ${row.id} got ${got!.logprob}, want ${lp[row.id]}`).toBe(true);
  const want = topLogprobs(row.logits, row.top!);
  expect(got!.top.map((t) => t.id), what).toEqual(want.map((t) => t.id));
  got!.top.forEach((t, i) => expect(close(t.logprob, want[i].logprob), `${what}: top ${i} got ${t.logprob}, want ${want[i].logprob}`).toBe(true));
}

const spread = (n: number, scale = 4) => Float32Array.from({ length: n }, () => scale * (rng() + rng() + rng() - 1.5) * 2);

it('the one variant compiles without messages', async () => {
  for (const { key, spec } of logprobsVariants(['F32'], gpu.device.features as ReadonlySet<string>)) {
    const info = await pipelineCache(gpu.device).module(spec.shader, spec.flags).getCompilationInfo();
    expect(info.messages.map((m) => m.message), key).toEqual([]);
  }
});

it('matches a float64 log-softmax on seeded vocabularies, rows with and without logprobs', async () => {
  for (const vocab of [1, 63, 65, 1000 + Math.floor(rng() * 3000), 32000, 151936]) {
    const rows: Row[] = [0, LOGPROBS_TOP_MAX, null, 5, 1].map((top) => ({ logits: spread(vocab), id: Math.floor(rng() * vocab), top }));
    const got = await run(vocab, rows);
    rows.forEach((row, i) => {
      if (row.top !== null) expectReference(got[i], { ...row, top: Math.min(row.top, vocab) }, `vocab ${vocab} row ${i}`);
    });
  }
});

it('ties are ordered by id, exactly; a top larger than the vocabulary gives the whole vocabulary', async () => {
  // Three values only: the top 20 are all ties, spread over every thread's list.
  const vocab = 700;
  const logits = Float32Array.from({ length: vocab }, () => Math.floor(rng() * 3));
  const [tied] = await run(vocab, [{ logits, id: 3, top: 20 }]);
  expectReference(tied, { logits, id: 3, top: 20 }, 'ties');
  const twos = [...logits.keys()].filter((i) => logits[i] === 2).slice(0, 20);
  expect(tied!.top.map((t) => t.id)).toEqual(twos);
  const small = Float32Array.of(0.5, 2, 2, -1, 7, 0, 2);
  const [all] = await run(7, [{ logits: small, id: 6, top: 20 }]);
  expect(all!.top.map((t) => t.id)).toEqual([4, 1, 2, 6, 0, 5, 3]);
  expectReference(all, { logits: small, id: 6, top: 7 }, 'small');
});

it('-inf and NaN logits get a finite, hugely negative logprob; the others are unchanged', async () => {
  const logits = spread(300);
  logits[10] = -Infinity;
  logits[11] = Number.NaN;
  logits[12] = Infinity; // clamped to f32 max: it takes all the mass
  const [got] = await run(300, [{ logits, id: 10, top: 2 }]);
  expect(got!.logprob).toBeLessThan(-3e38);
  expect(Number.isFinite(got!.logprob)).toBe(true);
  expect(got!.top[0]).toEqual({ id: 12, logprob: 0 });
  const [nan] = await run(300, [{ logits, id: 11, top: 0 }]);
  expect(nan!.logprob).toBeLessThan(-3e38);
  expect(nan!.top).toEqual([]);
});

it('prepare and setRow refuse sizes and counts the shader would misread', async () => {
  const op = await Logprobs.create(gpu.device);
  const buf = uploadArray(gpu.device, new Uint32Array(64), 'U32');
  expect(() => op.prepare('x', 100, 1, { logits: buf, ids: buf, out: buf })).toThrow(/logits hold 256 B < 1 × 100/);
  expect(() => op.prepare('x', 8, 2, { logits: buf, ids: buf, idIndex: 63, out: buf })).toThrow(/ids .* 63..64/);
  const p = op.prepare('x', 8, 1, { logits: buf, ids: buf, out: buf });
  expect(() => p.setRow(0, LOGPROBS_TOP_MAX + 1)).toThrow(/top must be in \[0, 20\]/);
  expect(() => p.setRow(1, 3)).toThrow(/row 1/);
  expect(() => p.upload(2)).toThrow(/2 rows/);
  p.destroy();
  buf.destroy();
});

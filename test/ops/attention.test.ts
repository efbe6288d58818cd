// Attention (prefill and flash-decoding), with kv_store feeding it, F32 and F16, against a
// float64 reference (test/support/attention-reference.ts) on seeded shapes: GQA ratios,
// head sizes that are and are not powers of two, contexts that are not multiples of the KV
// tile, later turns (start > 0), and a cache poisoned with NaN past the context, so a
// kernel that reads a key it must not see fails loudly. The score options (scale, softcap,
// sliding window) on seeded shapes, prefill and decode, the cache also NaN before the
// window. Rows at positions that are not consecutive nor in order ([5, 9, 10], …), as a
// step may give them. kv_store alone: kv-store.test.ts.

import { describe, expect, it } from 'vitest';
import { pipelineCache } from '../../src/gpu/pipeline-cache.js';
import {
  Attention,
  ATTENTION_MAX_ROWS,
  ATTENTION_WORKGROUP,
  attentionRows,
  type AttentionShape,
  attentionVariants,
  DECODE_SPLIT_KEYS,
  ROWS_PER_THREAD,
} from '../../src/ops/attention.js';
import { Step } from '../../src/gpu/step.js';
import { KvStore, kvStoreVariants } from '../../src/ops/kv-store.js';
import { type ComputeDtype, runOps } from '../../src/ops/op.js';
import { noNaN, storeAndAttend } from '../support/attention-pass.js';
import { attentionReference, positionRange } from '../support/attention-reference.js';
import { useGpuTestDevice } from '../support/gpu-helpers.js';
import { asDtype, encode, nmse, outputBuffer, randomValues, readArray, uploadArray } from '../support/op-helpers.js';
import { mulberry32 } from '../support/safetensors-bytes.js';
import { windowFirst } from '../support/slot-reference.js';

const gpu = useGpuTestDevice('test.attention');

interface Case extends AttentionShape {
  tokens: number;
  start: number;
  /** The op's prepared maximum (≥ tokens): blocks past T must exit. */
  maxTokens: number;
}

const HEADS = [[4, 4], [8, 2], [6, 3], [9, 1]] as const;
const rng = mulberry32(0xa77e);
const pick = <X>(xs: readonly X[]): X => xs[Math.floor(rng() * xs.length)];

// Named cases first (the corners), then seeded random shapes.
const PREFILL: Case[] = [
  { tokens: 1, start: 0, nHeads: 4, nKvHeads: 4, headDim: 64, maxSeq: 8, maxTokens: 1 }, // one key
  { tokens: 300, start: 0, nHeads: 4, nKvHeads: 4, headDim: 32, maxSeq: 300, maxTokens: 300 }, // first turn, 2 KV tiles
  { tokens: 33, start: 500, nHeads: 8, nKvHeads: 2, headDim: 64, maxSeq: 540, maxTokens: 33 }, // 3 tiles, a 21-key last one
  { tokens: 33, start: 70, nHeads: 9, nKvHeads: 1, headDim: 80, maxSeq: 120, maxTokens: 40 }, // MQA, odd head size, 2nd turn
  { tokens: 7, start: 5, nHeads: 6, nKvHeads: 3, headDim: 256, maxSeq: 16, maxTokens: 7 }, // largest head size
  { tokens: 5, start: 3, nHeads: 2, nKvHeads: 1, headDim: 12, maxSeq: 9, maxTokens: 8 }, // tiny head, rows capped
  ...Array.from({ length: 10 }, (): Case => {
    const [nHeads, nKvHeads] = pick(HEADS);
    const tokens = pick([1, 2, 7, 33, 100]);
    const start = rng() < 0.25 ? 0 : 1 + Math.floor(rng() * 90);
    const maxTokens = tokens + (rng() < 0.5 ? 0 : Math.floor(rng() * 9));
    const maxSeq = start + maxTokens + Math.floor(rng() * 5);
    return { tokens, start, nHeads, nKvHeads, headDim: pick([64, 128, 32, 80]), maxSeq, maxTokens };
  }),
];

// Decode contexts (a single query at position context − 1); maxSeq 1000 or 1024 → 4
// splits, the last one short or not; context 1000 fills the 1000-position cache.
const CONTEXTS = [1, 17, 300, 1000];
const DECODE_SHAPES: AttentionShape[] = HEADS.map(([nHeads, nKvHeads], i) => {
  return { nHeads, nKvHeads, headDim: [64, 128, 32, 80][i], maxSeq: i % 2 ? 1000 : 1024 };
});

// Tolerances. The reference gets exactly the stored (rounded) inputs, so the error is the
// kernel's own. F32: f32 dots and sums (relative ~1e-7) and WGSL's exp (3 + 2|x| ulp) give
// NMSE ~1e-13 here; 1e-11 leaves 100×. F16 adds rounding the output to f16: an error uniform
// in ±ulp/2, relative² 2^-20/12 · E[1/m²] ≈ 4e-8 on average (measured 2e-8 … 5e-8); 1e-7
// bounds that over thousands of elements, while a skipped rescale measured 1e-4 and a
// mask one key off 4e-2.
const TOLERANCE: Record<ComputeDtype, number> = { F32: 1e-11, F16: 1e-7 };

const nanCache = (count: number): Float32Array => new Float32Array(count).fill(Number.NaN);

/** A cache (nKv, maxSeq, d) holding random values at positions < filled and NaN after. */
function cacheArray(nKv: number, maxSeq: number, d: number, filled: number, dtype: ComputeDtype): Float32Array {
  const cache = nanCache(nKv * maxSeq * d);
  for (let h = 0; h < nKv; h++) cache.set(asDtype(randomValues(rng, filled * d), dtype), h * maxSeq * d);
  return cache;
}

const label = (c: Case | AttentionShape): string => JSON.stringify(c);

function write(buffer: GPUBuffer, offset: number, values: Float32Array, dtype: ComputeDtype): void {
  gpu.device.queue.writeBuffer(buffer, offset, encode(values, dtype) as Uint8Array<ArrayBuffer>);
}

/**
 * One prefill case: earlier turns in the cache (NaN from `start + tokens` on, and before
 * the window of `start`: positions a kernel must never read), this turn's K/V stored by
 * kv_store in the same pass (step.writeRange), then attention. Returns what the GPU wrote,
 * the reference and the attention pipeline.
 */
async function prefillCase(attention: Attention, store: KvStore, c: Case, dtype: ComputeDtype, name: string) {
  const rows = positionRange(c.start, c.tokens).map((position) => ({ slot: 0, position }));
  const pass = { ...c, rows, maxRows: c.maxTokens };
  const { got, want, pipelines } = await storeAndAttend(gpu.device, { attention, store }, pass, dtype, rng, name, (step) => step.writeRange(c.start, c.tokens));
  return { got, want, pipeline: pipelines[0] };
}

describe.each(['F32', 'F16'] as const)('%s', (dtype) => {
  const skip = (): boolean => dtype === 'F16' && !gpu.device.features.has('shader-f16');
  const bytes = dtype === 'F16' ? 2 : 4;

  it(`prefill: ${PREFILL.length} shapes, new tokens stored by kv_store in the same pass`, async () => {
    if (skip()) return expect(skip()).toBe(true);
    const [attention, store] = await Promise.all([Attention.create(gpu.device, dtype), KvStore.create(gpu.device, dtype)]);
    for (const c of PREFILL) {
      const { got, want } = await prefillCase(attention, store, c, dtype, 'test.attention');
      expect(noNaN(got), label(c)).toBeNull();
      expect(nmse(got, want), label(c)).toBeLessThan(TOLERANCE[dtype]);
    }
  });

  it(`decode at contexts ${CONTEXTS.join(', ')} (several splits), one prepared op per shape`, async () => {
    if (skip()) return expect(skip()).toBe(true);
    const attention = await Attention.create(gpu.device, dtype);
    const shared = attention.decodeScratch('test.scratch', { nHeads: 9, nKvHeads: 1, headDim: 128, maxSeq: 1024 }); // fits every shape
    for (const [i, shape] of DECODE_SHAPES.entries()) {
      const { nHeads, nKvHeads: nKv, headDim: d, maxSeq } = shape;
      const kHost = nanCache(nKv * maxSeq * d);
      const vHost = nanCache(nKv * maxSeq * d);
      const kCache = uploadArray(gpu.device, kHost, dtype);
      const vCache = uploadArray(gpu.device, vHost, dtype);
      const qBuf = outputBuffer(gpu.device, nHeads * d, bytes);
      const out = outputBuffer(gpu.device, nHeads * d, bytes);
      const step = new Step(gpu.device, 'test.step', { rows: 1, positions: maxSeq });
      const op = attention.prepareDecode('test.decode', shape, { step, q: qBuf, kCache, vCache, out }, i % 2 ? shared : undefined);
      expect(op.dispatches.length).toBe(2); // split + combine
      let filled = 0;
      for (const context of CONTEXTS) {
        // Grow the cache to `context` positions per head (the rest stays NaN).
        for (let h = 0; h < nKv; h++) {
          for (const [host, buffer] of [[kHost, kCache], [vHost, vCache]] as const) {
            const from = (h * maxSeq + filled) * d;
            host.set(asDtype(randomValues(rng, (context - filled) * d), dtype), from);
            write(buffer, from * bytes, host.subarray(from, from + (context - filled) * d), dtype);
          }
        }
        filled = context;
        const q = asDtype(randomValues(rng, nHeads * d, -5, 5), dtype);
        write(qBuf, 0, q, dtype);
        step.write([context - 1]);
        await runOps(gpu.device, [op]);
        const got = await readArray(gpu.device, out, nHeads * d, dtype);
        const want = attentionReference(q, kHost, vHost, shape, [context - 1]);
        const what = `${label(shape)} context ${context}`;
        expect(noNaN(got), what).toBeNull();
        expect(nmse(got, want), what).toBeLessThan(TOLERANCE[dtype]);
      }
      op.destroy();
      step.destroy();
      for (const b of [kCache, vCache, qBuf, out]) b.destroy();
    }
    shared.destroy();
  });

  it('decode with a cache of one split: one plain dispatch', async () => {
    if (skip()) return expect(skip()).toBe(true);
    const attention = await Attention.create(gpu.device, dtype);
    const shape = { nHeads: 8, nKvHeads: 2, headDim: 64, maxSeq: DECODE_SPLIT_KEYS };
    const kHost = cacheArray(2, shape.maxSeq, 64, 200, dtype);
    const vHost = cacheArray(2, shape.maxSeq, 64, 200, dtype);
    const q = asDtype(randomValues(rng, 8 * 64, -5, 5), dtype);
    const bufs = {
      q: uploadArray(gpu.device, q, dtype),
      kCache: uploadArray(gpu.device, kHost, dtype),
      vCache: uploadArray(gpu.device, vHost, dtype),
      out: outputBuffer(gpu.device, 8 * 64, bytes),
    };
    const step = new Step(gpu.device, 'test.step', { rows: 1, positions: shape.maxSeq });
    const op = attention.prepareDecode('test.decode', shape, { ...bufs, step });
    expect(op.dispatches.length).toBe(1);
    step.write([199]);
    await runOps(gpu.device, [op]);
    const got = await readArray(gpu.device, bufs.out, 8 * 64, dtype);
    expect(nmse(got, attentionReference(q, kHost, vHost, shape, [199]))).toBeLessThan(TOLERANCE[dtype]);
    op.destroy();
    step.destroy();
    for (const b of Object.values(bufs)) b.destroy();
  });
});

// Rows at positions a step may give: not consecutive, not in order, far apart (across
// tiles, splits and windows), several tokens sharing a workgroup block (group 1, 2).
interface RowsCase extends AttentionShape {
  positions: number[];
  /** The step's rows (≥ positions.length): blocks past them must exit. */
  maxRows: number;
  decode?: boolean;
}
const ROWS_CASES: RowsCase[] = [
  { positions: [5, 9, 10], nHeads: 4, nKvHeads: 2, headDim: 64, maxSeq: 16, maxRows: 4 }, // the example
  { positions: [10, 5, 9], nHeads: 4, nKvHeads: 4, headDim: 32, maxSeq: 12, maxRows: 3 }, // one block, out of order
  { positions: [300, 7, 299, 0, 520], nHeads: 8, nKvHeads: 2, headDim: 64, maxSeq: 540, maxRows: 8, window: 37, softcap: 5 },
  { positions: [40, 3, 17, 90, 91, 5, 60, 2, 33], nHeads: 4, nKvHeads: 4, headDim: 32, maxSeq: 95, maxRows: 9, window: 20 },
  { positions: [1100, 2, 600, 1050], nHeads: 6, nKvHeads: 3, headDim: 80, maxSeq: 1200, maxRows: 5 }, // 3 KV tiles
  { positions: [5, 600, 999], nHeads: 8, nKvHeads: 2, headDim: 64, maxSeq: 1000, maxRows: 3, decode: true }, // 4 splits
  { positions: [999, 5, 600, 256], nHeads: 9, nKvHeads: 1, headDim: 80, maxSeq: 1000, maxRows: 4, decode: true, window: 300, softcap: 5 },
  { positions: [255, 256, 0], nHeads: 4, nKvHeads: 4, headDim: 128, maxSeq: 1024, maxRows: 3, decode: true, window: 1 },
];

describe.each(['F32', 'F16'] as const)('rows at any positions, %s', (dtype) => {
  const skip = (): boolean => dtype === 'F16' && !gpu.device.features.has('shader-f16');

  it(`${ROWS_CASES.length} steps of non-consecutive positions, prefill and flash-decoding, stored by kv_store`, async () => {
    if (skip()) return expect(skip()).toBe(true);
    const [attention, store] = await Promise.all([Attention.create(gpu.device, dtype, { softcap: true, window: true }), KvStore.create(gpu.device, dtype)]);
    for (const c of ROWS_CASES) {
      // Earlier keys up to the highest position; NaN past it and before the window of the
      // lowest one (no row may read those).
      const rows = c.positions.map((position) => ({ slot: 0, position }));
      const { got, want, pipelines } = await storeAndAttend(gpu.device, { attention, store }, { ...c, rows }, dtype, rng, c.decode ? 'test.decode.rows' : 'test.attention.rows');
      expect(pipelines.length, label(c)).toBe(c.decode ? 2 : 1);
      expect(noNaN(got), label(c)).toBeNull();
      expect(nmse(got, want), label(c)).toBeLessThan(TOLERANCE[dtype]);
    }
  });
});

// Score options. Softcaps that bite (scores here reach ~±10; Gemma 2's 50 and a cap of 2),
// windows from 1 (the diagonal only) past the context, and scales other than headDim^-0.5.
interface OptionCase extends Case {
  scale?: number;
  softcap?: number | null;
  window?: number | null;
}
const SOFTCAPS = [null, 50, 5, 2];
const OPTION_CASES: OptionCase[] = [
  { tokens: 33, start: 500, nHeads: 8, nKvHeads: 2, headDim: 64, maxSeq: 540, maxTokens: 33, softcap: 5, window: 37 }, // window inside one tile
  { tokens: 300, start: 0, nHeads: 4, nKvHeads: 4, headDim: 32, maxSeq: 300, maxTokens: 300, window: 1 }, // the diagonal only
  { tokens: 300, start: 0, nHeads: 4, nKvHeads: 2, headDim: 32, maxSeq: 301, maxTokens: 300, window: 260, softcap: 2 }, // window across tiles
  { tokens: 7, start: 5, nHeads: 6, nKvHeads: 3, headDim: 256, maxSeq: 16, maxTokens: 7, scale: 256 ** -0.5 / 2, softcap: 50 }, // Gemma-ish head, scale
  { tokens: 5, start: 3, nHeads: 2, nKvHeads: 1, headDim: 12, maxSeq: 9, maxTokens: 8, window: 9 }, // window ≥ maxSeq: the plain variant
  { tokens: 9, start: 40, nHeads: 9, nKvHeads: 1, headDim: 80, maxSeq: 60, maxTokens: 12, window: 4096, softcap: 2, scale: 0.3 }, // Gemma 2's window, short cache
  ...Array.from({ length: 10 }, (): OptionCase => {
    const [nHeads, nKvHeads] = pick(HEADS);
    const tokens = pick([1, 2, 7, 33, 100]);
    const start = rng() < 0.25 ? 0 : 1 + Math.floor(rng() * 300);
    const maxTokens = tokens + (rng() < 0.5 ? 0 : Math.floor(rng() * 9));
    const maxSeq = start + maxTokens + Math.floor(rng() * 5);
    const headDim = pick([64, 128, 32, 80]);
    return {
      tokens, start, nHeads, nKvHeads, headDim, maxSeq, maxTokens,
      scale: rng() < 0.5 ? undefined : (0.5 + rng()) / Math.sqrt(headDim),
      softcap: pick(SOFTCAPS),
      window: rng() < 0.25 ? null : 1 + Math.floor(rng() * (start + tokens + 20)),
    };
  }),
];

/** NaN at positions [0, lo) of every head of a (nKv, maxSeq, d) cache, on the host array and the GPU buffer. */
function poisonBefore(host: Float32Array, buffer: GPUBuffer, nKv: number, maxSeq: number, d: number, lo: number, dtype: ComputeDtype): void {
  if (lo === 0) return;
  for (let h = 0; h < nKv; h++) {
    const from = h * maxSeq * d;
    host.fill(Number.NaN, from, from + lo * d);
    write(buffer, from * (dtype === 'F16' ? 2 : 4), host.subarray(from, from + lo * d), dtype);
  }
}

describe.each(['F32', 'F16'] as const)('score options, %s', (dtype) => {
  const skip = (): boolean => dtype === 'F16' && !gpu.device.features.has('shader-f16');
  const bytes = dtype === 'F16' ? 2 : 4;

  it(`prefill: ${OPTION_CASES.length} shapes with scale / softcap / window, NaN before the window`, async () => {
    if (skip()) return expect(skip()).toBe(true);
    // Softcap variants compiled ahead; the window ones built by prepare on first use.
    const [attention, store] = await Promise.all([Attention.create(gpu.device, dtype, { softcap: true }), KvStore.create(gpu.device, dtype)]);
    for (const c of OPTION_CASES) {
      // Keys before the first query's window are never read: poisoned (prefillCase).
      const { got, want, pipeline } = await prefillCase(attention, store, c, dtype, 'test.attention.options');
      const windowed = c.window != null && c.window < c.maxSeq;
      expect(pipeline, label(c)).toBe(`attention_${dtype.toLowerCase()}${c.softcap ? '_softcap' : ''}${windowed ? '_window' : ''}_wg${ATTENTION_WORKGROUP}`);
      expect(noNaN(got), label(c)).toBeNull();
      // As TOLERANCE: the softcap's derivative is ≤ 1; WGSL's tanh is accurate only in absolute
      // terms (lavapipe ≤ 2^-22.4 · cap, see softcap.test.ts), a score error of ≤ 1e-5 at cap 50
      // that moves probabilities by as much relatively, uncorrelated: NMSE well below 1e-11.
      expect(nmse(got, want), label(c)).toBeLessThan(TOLERANCE[dtype]);
    }
  });

  it(`decode with softcap and windows at contexts ${CONTEXTS.join(', ')}: splits before the window skipped (NaN there)`, async () => {
    if (skip()) return expect(skip()).toBe(true);
    const attention = await Attention.create(gpu.device, dtype, { softcap: true, window: true });
    const options = [
      { window: 300, softcap: 5 },
      { window: 1 },
      { window: 700, scale: 0.05 },
      { window: 256, softcap: 50 },
    ];
    for (const [i, base] of DECODE_SHAPES.entries()) {
      const shape = { ...base, ...options[i] };
      const { nHeads, nKvHeads: nKv, headDim: d, maxSeq } = shape;
      const kHost = nanCache(nKv * maxSeq * d);
      const vHost = nanCache(nKv * maxSeq * d);
      const kCache = uploadArray(gpu.device, kHost, dtype);
      const vCache = uploadArray(gpu.device, vHost, dtype);
      const qBuf = outputBuffer(gpu.device, nHeads * d, bytes);
      const out = outputBuffer(gpu.device, nHeads * d, bytes);
      const step = new Step(gpu.device, 'test.step', { rows: 1, positions: maxSeq });
      const op = attention.prepareDecode('test.decode.options', shape, { step, q: qBuf, kCache, vCache, out });
      expect(op.dispatches.map((x) => x.pipeline.label)).toEqual([
        `attention_split_${dtype.toLowerCase()}${shape.softcap ? '_softcap' : ''}_window_wg${ATTENTION_WORKGROUP}`,
        `attention_combine_${dtype.toLowerCase()}_window_wg${ATTENTION_WORKGROUP}`,
      ]);
      let filled = 0;
      for (const context of CONTEXTS) {
        for (let h = 0; h < nKv; h++) {
          for (const [host, buffer] of [[kHost, kCache], [vHost, vCache]] as const) {
            const from = (h * maxSeq + filled) * d;
            host.set(asDtype(randomValues(rng, (context - filled) * d), dtype), from);
            write(buffer, from * bytes, host.subarray(from, from + (context - filled) * d), dtype);
          }
        }
        filled = context;
        // Everything before this query's window is poisoned: a kernel reading it fails.
        const lo = windowFirst(context - 1, shape.window);
        poisonBefore(kHost, kCache, nKv, maxSeq, d, lo, dtype);
        poisonBefore(vHost, vCache, nKv, maxSeq, d, lo, dtype);
        const q = asDtype(randomValues(rng, nHeads * d, -5, 5), dtype);
        write(qBuf, 0, q, dtype);
        step.write([context - 1]);
        await runOps(gpu.device, [op]);
        const got = await readArray(gpu.device, out, nHeads * d, dtype);
        const want = attentionReference(q, kHost, vHost, shape, [context - 1]);
        const what = `${label(shape)} context ${context}`;
        expect(noNaN(got), what).toBeNull();
        expect(nmse(got, want), what).toBeLessThan(TOLERANCE[dtype]);
      }
      op.destroy();
      step.destroy();
      for (const b of [kCache, vCache, qBuf, out]) b.destroy();
    }
  });

  it('softcap keeps huge scores finite (tanh clamped), where the plain softmax is one-hot', async () => {
    if (skip()) return expect(skip()).toBe(true);
    const attention = await Attention.create(gpu.device, dtype);
    // scale 1, |q| ≤ 50, d 64: scores up to ~±1000, 200× the cap of 5.
    const shape = { nHeads: 4, nKvHeads: 2, headDim: 64, maxSeq: 40, scale: 1, softcap: 5 };
    const [tokens, start] = [9, 20];
    const kHost = cacheArray(2, 40, 64, start + tokens, dtype);
    const vHost = cacheArray(2, 40, 64, start + tokens, dtype);
    const q = asDtype(randomValues(rng, tokens * 4 * 64, -50, 50), dtype);
    const bufs = {
      q: uploadArray(gpu.device, q, dtype),
      kCache: uploadArray(gpu.device, kHost, dtype),
      vCache: uploadArray(gpu.device, vHost, dtype),
      out: outputBuffer(gpu.device, tokens * 4 * 64, bytes),
    };
    const step = new Step(gpu.device, 'test.step', { rows: tokens, positions: shape.maxSeq });
    const op = attention.prepare('test.attention.softcap_big', shape, { ...bufs, step });
    step.writeRange(start, tokens);
    await runOps(gpu.device, [op]);
    const got = await readArray(gpu.device, bufs.out, tokens * 4 * 64, dtype);
    expect(noNaN(got)).toBeNull();
    expect(nmse(got, attentionReference(q, kHost, vHost, shape, positionRange(start, tokens)))).toBeLessThan(TOLERANCE[dtype]);
    op.destroy();
    step.destroy();
    for (const b of Object.values(bufs)) b.destroy();
  });
});

it('refuses bad score options by name', async () => {
  const attention = await Attention.create(gpu.device, 'F32');
  const buf = outputBuffer(gpu.device, 4096, 4);
  const step = new Step(gpu.device, 'test.step', { rows: 1, positions: 8 });
  const bufs = { step, q: buf, kCache: buf, vCache: buf, out: buf };
  const shape = { nHeads: 4, nKvHeads: 2, headDim: 64, maxSeq: 8 };
  expect(() => attention.prepare('x', { ...shape, softcap: 0 }, bufs)).toThrow(/softcap must be a positive number or null, got 0/);
  expect(() => attention.prepare('x', { ...shape, window: 0 }, bufs)).toThrow(/window must be an integer ≥ 1 or null, got 0/);
  expect(() => attention.prepareDecode('x', { ...shape, window: 2.5 }, bufs)).toThrow(/window must be an integer/);
  expect(() => attention.prepare('x', { ...shape, scale: Number.NaN }, bufs)).toThrow(/scale must be a positive number/);
  attention.prepare('x', { ...shape, softcap: null, window: null }, bufs).destroy(); // null: off
  step.destroy();
  buf.destroy();
});

it('every attention and kv_store variant compiles without a message', async () => {
  const features = gpu.device.features as ReadonlySet<string>;
  const variants = [...attentionVariants(['F32', 'F16'], features), ...kvStoreVariants(['F32', 'F16'], features)];
  // Per dtype: plain, runs and split × {none, softcap, window, both} + combine × {none, window}; kv_store: 1.
  expect(variants.length).toBe(features.has('shader-f16') ? 29 : 15);
  expect(variants.map((v) => v.key)).toEqual(
    expect.arrayContaining([
      'attention_f32_wg64',
      'attention_split_f32_softcap_window_wg64',
      'attention_combine_f32_window_wg64',
      'attention_f32_softcap_wg64',
      'attention_runs_f16_window_wg64',
    ]),
  );
  for (const { key, spec } of variants) {
    const info = await pipelineCache(gpu.device).module(spec.shader, spec.flags).getCompilationInfo();
    expect(info.messages.map((m) => `${m.type} ${spec.shader}.wgsl:${m.lineNum}: ${m.message}`), key).toEqual([]);
    expect((await pipelineCache(gpu.device).get(key, spec)).label).toBe(key);
  }
});

it('rows per workgroup fit the workgroup arrays for every supported head size', () => {
  for (let d = 4; d <= 4 * ATTENTION_WORKGROUP; d += 4) {
    for (const rowCount of [1, 4, 9, 1000]) {
      const rows = attentionRows(d, rowCount);
      expect(rows % ROWS_PER_THREAD === 0 && rows >= ROWS_PER_THREAD && rows <= ATTENTION_MAX_ROWS, `d=${d}`).toBe(true);
      expect((rows / ROWS_PER_THREAD) * (d / 4), `d=${d}: a P·V thread per (4 rows, vec4)`).toBeLessThanOrEqual(ATTENTION_WORKGROUP);
    }
  }
});

it('refuses unsupported shapes, steps and positions by name', async () => {
  const attention = await Attention.create(gpu.device, 'F32');
  const store = await KvStore.create(gpu.device, 'F32');
  const buf = outputBuffer(gpu.device, 4096, 4);
  const step1 = new Step(gpu.device, 'test.step1', { rows: 1, positions: 8 });
  const step4 = new Step(gpu.device, 'test.step4', { rows: 4, positions: 8 });
  const bufs = { step: step1, q: buf, kCache: buf, vCache: buf, out: buf, k: buf, v: buf };
  const shape = { nHeads: 4, nKvHeads: 2, headDim: 64, maxSeq: 8 };
  expect(() => attention.prepare('x', { ...shape, headDim: 66 }, bufs)).toThrow(/headDim a multiple of 4 up to 256, got 66/);
  expect(() => attention.prepare('x', { ...shape, headDim: 260 }, bufs)).toThrow(/up to 256/);
  expect(() => attention.prepare('x', { ...shape, nKvHeads: 3 }, bufs)).toThrow(/multiple of nKvHeads/);
  expect(() => attention.prepare('x', { ...shape, maxSeq: 100 }, bufs)).toThrow(/kCache holds 16384 bytes, needs 51200/);
  expect(() => store.prepare('x', { ...shape, headDim: 6 }, bufs)).toThrow(/headDim a multiple of 4/);
  // A step whose positions pass the cache's end, or whose rows pass the buffers'.
  expect(() => attention.prepare('x', { ...shape, maxSeq: 4 }, bufs)).toThrow(/step test.step1 allows positions up to 8, the cache holds 4/);
  expect(() => store.prepare('x', { ...shape, maxSeq: 4 }, bufs)).toThrow(/allows positions up to 8, the cache holds 4/);
  const big = new Step(gpu.device, 'test.big', { rows: 40, positions: 8 });
  expect(() => attention.prepare('x', shape, { ...bufs, step: big })).toThrow(/q holds 16384 bytes, needs 40960/);
  big.destroy();
  attention.prepare('x', shape, { ...bufs, step: step4 }).destroy();
  expect(() => step4.writeRange(0, 5)).toThrow(/test.step4: step rows = 5, prepared for 1..4/);
  expect(() => step4.writeRange(6, 4)).toThrow(/positions \[6, 10\) exceed the cache \(8\)/);
  expect(() => step4.write([1, 8])).toThrow(/row 1: position 8 is outside the cache \(8\)/);
  expect(() => step4.write([])).toThrow(/rows = 0/);
  expect(() => step4.write([0, 1], [0, 1])).toThrow(/slot 1 is not one of the 1 slots/);
  expect(() => step4.writeRange(0, 1, 1)).toThrow(/slot 1/);
  expect(() => new Step(gpu.device, 'bad', { rows: 0, positions: 8 })).toThrow(/step rows = 0 is not a positive integer/);
  step1.destroy();
  step4.destroy();
  buf.destroy();
});

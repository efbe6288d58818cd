// Attention and kv_store over a KV cache in slots (step 14, continuous batching), F32 and
// F16, against the per-slot reference (test/support/slot-reference.ts): decode passes of R
// rows in R different slots at unrelated positions (flash-decoding across the
// DECODE_SPLIT_KEYS split, and one plain dispatch for a short cache), prefill chunks of
// one slot, and passes mixing a chunk with decode rows of other slots; windows, softcap
// and scale per row. Each cache is NaN wherever no row may read (other slots, positions
// past a slot's rows, before their windows), so a kernel reading another slot's keys, or
// past its row's position, writes NaN and fails.

import { describe, expect, it } from 'vitest';
import { Step } from '../../src/gpu/step.js';
import { Attention, DECODE_SPLIT_KEYS } from '../../src/ops/attention.js';
import { KvStore } from '../../src/ops/kv-store.js';
import type { ComputeDtype } from '../../src/ops/op.js';
import { noNaN, type PassCase, storeAndAttend } from '../support/attention-pass.js';
import { useGpuTestDevice } from '../support/gpu-helpers.js';
import { nmse, outputBuffer } from '../support/op-helpers.js';
import { mulberry32 } from '../support/safetensors-bytes.js';
import type { SlotRow } from '../support/slot-reference.js';

const gpu = useGpuTestDevice('test.attention_slots');
const rng = mulberry32(0x5107);
const pick = <X>(xs: readonly X[]): X => xs[Math.floor(rng() * xs.length)];

interface SlotCase extends PassCase {
  slots: number;
  rows: SlotRow[];
  /** prepareDecode (a block per row, flash-decoding past one split) or prepare (prefill blocks). */
  decode: boolean;
}

const at = (slots: readonly number[], positions: readonly number[]): SlotRow[] => slots.map((slot, r) => ({ slot, position: positions[r] }));
/** A prompt chunk: `count` rows of `slot` at start, start + 1, … */
const chunk = (slot: number, start: number, count: number): SlotRow[] => Array.from({ length: count }, (_, i) => ({ slot, position: start + i }));

// Named cases first (the corners), then seeded random ones. Head shapes: Qwen2.5-0.5B's
// group of 7 (14 heads, 2 kv, 64), Llama-3.2-1B's 4 (reduced), MQA with a group of 9 (a
// token's heads fill 2 blocks, the second padded), MHA (a block of one token's 1 head).
const CASES: SlotCase[] = [
  // Decode.
  { rows: at([2], [130]), slots: 3, nHeads: 8, nKvHeads: 2, headDim: 64, maxSeq: 300, maxRows: 1, decode: true },
  { rows: at([0, 2, 1], [5, 130, 17]), slots: 3, nHeads: 14, nKvHeads: 2, headDim: 64, maxSeq: 200, maxRows: 3, decode: true }, // one split: plain dispatch
  { rows: at([0, 2, 1], [5, 130, 17]), slots: 4, nHeads: 14, nKvHeads: 2, headDim: 64, maxSeq: 600, maxRows: 4, decode: true },
  { rows: at([4, 1, 0, 3, 2], [300, 5, 17, 999, 256]), slots: 5, nHeads: 9, nKvHeads: 1, headDim: 80, maxSeq: 1000, maxRows: 5, decode: true },
  { rows: at([1, 3, 0], [5, 600, 255]), slots: 4, nHeads: 8, nKvHeads: 2, headDim: 64, maxSeq: 700, maxRows: 3, decode: true, window: 100, softcap: 5 },
  { rows: at([3, 0, 2, 1], [40, 257, 0, 511]), slots: 4, nHeads: 4, nKvHeads: 4, headDim: 32, maxSeq: 520, maxRows: 6, decode: true, window: 1 },
  { rows: at([1, 0, 1], [40, 7, 300]), slots: 2, nHeads: 6, nKvHeads: 3, headDim: 128, maxSeq: 400, maxRows: 3, decode: true, scale: 0.05 }, // two rows of one slot
  // Prefill chunks of one slot, other slots untouched (NaN).
  { rows: chunk(1, 70, 33), slots: 3, nHeads: 8, nKvHeads: 2, headDim: 64, maxSeq: 120, maxRows: 40, decode: false },
  { rows: chunk(2, 250, 50), slots: 3, nHeads: 4, nKvHeads: 4, headDim: 32, maxSeq: 320, maxRows: 50, decode: false, window: 20, softcap: 2 },
  // A chunk and decode rows of other slots in one pass; one slot's rows not adjacent.
  { rows: [...chunk(0, 10, 20), ...at([1, 2], [130, 5])], slots: 3, nHeads: 8, nKvHeads: 4, headDim: 64, maxSeq: 140, maxRows: 24, decode: false },
  { rows: at([0, 1, 0, 2, 1], [5, 9, 10, 60, 3]), slots: 3, nHeads: 4, nKvHeads: 4, headDim: 80, maxSeq: 64, maxRows: 5, decode: false, window: 8 },
  ...Array.from({ length: 6 }, (): SlotCase => {
    const [nHeads, nKvHeads] = pick([[4, 4], [8, 2], [14, 2], [9, 1], [6, 3]] as const);
    const slots = 1 + Math.floor(rng() * 6);
    const maxSeq = pick([90, 256, 300, 777]);
    // Rows in distinct slots (a decode pass), or a chunk of one slot and decode rows after it.
    const order = Array.from({ length: slots }, (_, s) => s).sort(() => rng() - 0.5);
    const decode = rng() < 0.6;
    const count = 1 + Math.floor(rng() * slots);
    const singles = order.slice(decode ? 0 : 1, count).map((slot) => ({ slot, position: Math.floor(rng() * maxSeq) }));
    const length = 1 + Math.floor(rng() * 20);
    const rows = decode ? singles : [...chunk(order[0], Math.floor(rng() * (maxSeq - length)), length), ...singles];
    return {
      rows, slots, nHeads, nKvHeads, headDim: pick([32, 64, 80, 128]), maxSeq, decode,
      maxRows: rows.length + Math.floor(rng() * 3),
      window: rng() < 0.5 ? null : 1 + Math.floor(rng() * maxSeq),
      softcap: rng() < 0.5 ? null : pick([2, 5, 50]),
    };
  }),
];

// As attention.test.ts: the reference gets exactly the stored (rounded) inputs; F32's
// error is f32 dots, sums and exp (NMSE ~1e-13), F16's the rounding of the output to f16.
const TOLERANCE: Record<ComputeDtype, number> = { F32: 1e-11, F16: 1e-7 };

const label = (c: SlotCase): string => JSON.stringify({ ...c, rows: c.rows.map((r) => `${r.slot}@${r.position}`).join(' ') });

describe.each(['F32', 'F16'] as const)('%s', (dtype) => {
  const skip = (): boolean => dtype === 'F16' && !gpu.device.features.has('shader-f16');

  it(`${CASES.length} passes over slots: decode rows, prefill chunks, both; stored by kv_store in the same pass`, async () => {
    if (skip()) return expect(skip()).toBe(true);
    const [attention, store] = await Promise.all([Attention.create(gpu.device, dtype, { softcap: true, window: true, slots: true }), KvStore.create(gpu.device, dtype)]);
    for (const c of CASES) {
      const { got, want, pipelines } = await storeAndAttend(gpu.device, { attention, store }, c, dtype, rng, c.decode ? 'test.decode.slots' : 'test.attention.slots');
      // Prefill blocks may straddle slots: the RUNS variant; decode has a block per row.
      const kinds = c.decode ? (c.maxSeq > DECODE_SPLIT_KEYS ? ['split_', 'combine_'] : ['']) : [c.slots > 1 ? 'runs_' : ''];
      const dt = `${dtype.toLowerCase()}_`;
      expect(pipelines.map((p) => p.slice(0, p.indexOf(dt) + dt.length)), label(c)).toEqual(kinds.map((k) => `attention_${k}${dt}`));
      expect(noNaN(got), label(c)).toBeNull();
      expect(nmse(got, want), label(c)).toBeLessThan(TOLERANCE[dtype]);
    }
  });
});

it('refuses a step with more slots than the cache, and a cache too small for its slots, by name', async () => {
  const attention = await Attention.create(gpu.device, 'F32');
  const store = await KvStore.create(gpu.device, 'F32');
  const buf = outputBuffer(gpu.device, 3 * 2 * 8 * 64, 4); // 3 slots of (2, 8, 64) f32
  const step = new Step(gpu.device, 'test.step4', { rows: 2, positions: 8, slots: 4 });
  const shape = { nHeads: 4, nKvHeads: 2, headDim: 64, maxSeq: 8, slots: 3 };
  const bufs = { step, q: buf, kCache: buf, vCache: buf, out: buf, k: buf, v: buf };
  expect(() => attention.prepare('x', shape, bufs)).toThrow(/x: attention step test.step4 allows slots up to 4, the cache holds 3/);
  expect(() => attention.prepareDecode('x', shape, bufs)).toThrow(/allows slots up to 4, the cache holds 3/);
  expect(() => store.prepare('x', shape, bufs)).toThrow(/x: kv_store step test.step4 allows slots up to 4, the cache holds 3/);
  expect(() => attention.prepare('x', { ...shape, slots: 4 }, bufs)).toThrow(/kCache holds 12288 bytes, needs 16384/);
  expect(() => store.prepare('x', { ...shape, slots: 4 }, bufs)).toThrow(/kCache holds 12288 bytes, needs 16384/);
  expect(() => attention.prepare('x', { ...shape, slots: 0 }, bufs)).toThrow(/slots = 0 is not a positive integer/);
  expect(() => store.prepare('x', { ...shape, slots: 1.5 }, bufs)).toThrow(/slots = 1.5 is not a positive integer/);
  const fits = new Step(gpu.device, 'test.step3', { rows: 2, positions: 8, slots: 3 });
  attention.prepareDecode('x', shape, { ...bufs, step: fits }).destroy();
  store.prepare('x', shape, { ...bufs, step: fits }).destroy();
  expect(() => fits.write([1, 2], [0, 3])).toThrow(/test.step3: step slot 3 is not one of the 3 slots/);
  fits.destroy();
  step.destroy();
  buf.destroy();
});

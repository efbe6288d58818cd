// AttentionTiled (the real-GPU family, attention-tiled.ts) against the same float64
// reference as Attention (test/support/slot-reference.ts), F32 and F16, with the team
// reductions by subgroup shuffles and, on a device stripped of 'subgroups', through
// workgroup memory: prefill chunks (token counts, head sizes and key ranges that are not
// multiples of the blocks or tiles), decode rows of several slots at unrelated positions
// past one split (128 keys), GQA, MQA and MHA, window, softcap and scale, a pass mixing a
// chunk with rows of other slots. Each cache is NaN wherever no row may read
// (poisonedSlotCache), so a kernel reading another slot's keys, past a row's position or
// before its window writes NaN and fails. kv_store writes this pass's K/V in the same pass.

import { expect, it } from 'vitest';
import { Step, STEP_WGSL } from '../../src/gpu/step.js';
import { pipelineCache } from '../../src/gpu/pipeline-cache.js';
import {
  ATTENTION_TILED_WORKGROUP,
  ATTENTION_TILED_WORKGROUP_BYTES,
  AttentionTiled,
  attentionTiledVariants,
  attentionTiledWorkgroupBytes,
  TILED_DECODE_SPLIT_KEYS,
  tiledRows,
  tiledTileKeys,
  tiledTileStride,
} from '../../src/ops/attention-tiled.js';
import { KvStore } from '../../src/ops/kv-store.js';
import type { ComputeDtype } from '../../src/ops/op.js';
import { noNaN, type PassCase, storeAndAttend } from '../support/attention-pass.js';
import { spyDevice, useGpuTestDevice } from '../support/gpu-helpers.js';
import { nmse, outputBuffer } from '../support/op-helpers.js';
import { mulberry32 } from '../support/safetensors-bytes.js';
import type { SlotRow } from '../support/slot-reference.js';
import { readFileSync } from 'node:fs';

const gpu = useGpuTestDevice('test.attention_tiled');
const rng = mulberry32(0x711ed);
const pick = <X>(xs: readonly X[]): X => xs[Math.floor(rng() * xs.length)];

interface TiledCase extends PassCase {
  rows: SlotRow[];
  decode: boolean;
}
const at = (slots: readonly number[], positions: readonly number[]): SlotRow[] => slots.map((slot, r) => ({ slot, position: positions[r] }));
const chunk = (slot: number, start: number, count: number): SlotRow[] => Array.from({ length: count }, (_, i) => ({ slot, position: start + i }));

// Blocks: 32 rows at headDim ≤ 64, 24 at 80, 16 at 128, 8 at 256; tiles of 32 keys at ≤ 32,
// 27 at 64, 19 at 80, 15 at 128, 8 at 256. Named corners first, then seeded random passes.
const CASES: TiledCase[] = [
  // Prefill chunks of one slot.
  { rows: chunk(0, 0, 45), nHeads: 8, nKvHeads: 2, headDim: 64, maxSeq: 50, maxRows: 45, decode: false }, // first turn, 6 blocks, 2 tiles
  { rows: chunk(0, 70, 33), nHeads: 9, nKvHeads: 1, headDim: 80, maxSeq: 120, maxRows: 40, decode: false }, // MQA, 19-key tiles, blocks past T
  { rows: chunk(1, 5, 7), slots: 2, nHeads: 6, nKvHeads: 3, headDim: 256, maxSeq: 16, maxRows: 7, decode: false, scale: 256 ** -0.5 / 2, softcap: 50 },
  { rows: chunk(0, 3, 5), nHeads: 2, nKvHeads: 1, headDim: 12, maxSeq: 9, maxRows: 8, decode: false, window: 9 }, // tiny head; window ≥ maxSeq: plain
  { rows: chunk(0, 0, 100), nHeads: 6, nKvHeads: 3, headDim: 32, maxSeq: 101, maxRows: 100, decode: false, window: 40, softcap: 5 },
  { rows: chunk(0, 0, 60), nHeads: 4, nKvHeads: 4, headDim: 128, maxSeq: 60, maxRows: 60, decode: false, window: 1 }, // MHA, the diagonal only
  // A chunk and rows of other slots in one prefill pass; one slot's rows not adjacent.
  { rows: [...chunk(0, 10, 20), ...at([1, 2], [130, 5])], slots: 3, nHeads: 8, nKvHeads: 4, headDim: 64, maxSeq: 140, maxRows: 24, decode: false },
  { rows: at([0, 1, 0, 2, 1], [5, 9, 10, 60, 3]), slots: 3, nHeads: 4, nKvHeads: 4, headDim: 80, maxSeq: 64, maxRows: 5, decode: false, window: 8 },
  // Decode: a row per slot at unrelated positions, across split boundaries (127 | 128).
  { rows: at([0, 2, 1, 4, 3], [5, 130, 517, 128, 127]), slots: 5, nHeads: 14, nKvHeads: 2, headDim: 64, maxSeq: 600, maxRows: 6, decode: true },
  { rows: at([1, 3, 0], [300, 40, 255]), slots: 4, nHeads: 4, nKvHeads: 4, headDim: 128, maxSeq: 400, maxRows: 3, decode: true, window: 100, softcap: 5 },
  { rows: at([2, 0, 1], [999, 0, 600]), slots: 3, nHeads: 9, nKvHeads: 1, headDim: 80, maxSeq: 1000, maxRows: 3, decode: true, window: 300, scale: 0.05 },
  { rows: at([1, 0, 1], [40, 7, 100]), slots: 2, nHeads: 8, nKvHeads: 2, headDim: 64, maxSeq: TILED_DECODE_SPLIT_KEYS, maxRows: 3, decode: true }, // one split: plain
  { rows: at([0, 1], [290, 3]), slots: 2, nHeads: 16, nKvHeads: 1, headDim: 256, maxSeq: 300, maxRows: 2, decode: true, window: 1 }, // 2 blocks per row
  ...Array.from({ length: 6 }, (): TiledCase => {
    const [nHeads, nKvHeads] = pick([[4, 4], [8, 2], [14, 2], [9, 1], [6, 3]] as const);
    const slots = 1 + Math.floor(rng() * 4);
    const maxSeq = pick([90, 200, 333]);
    const order = Array.from({ length: slots }, (_, s) => s).sort(() => rng() - 0.5);
    const decode = rng() < 0.5;
    const singles = order.slice(decode ? 0 : 1).map((slot) => ({ slot, position: Math.floor(rng() * maxSeq) }));
    const length = 1 + Math.floor(rng() * 40);
    const rows = decode ? singles : [...chunk(order[0], Math.floor(rng() * (maxSeq - length)), length), ...singles];
    return {
      rows, slots, nHeads, nKvHeads, headDim: pick([32, 64, 80, 128, 20]), maxSeq, decode,
      maxRows: rows.length + Math.floor(rng() * 3),
      window: rng() < 0.5 ? null : 1 + Math.floor(rng() * maxSeq),
      softcap: rng() < 0.5 ? null : pick([2, 5, 50]),
    };
  }),
];

// As attention.test.ts: the reference gets exactly the stored (rounded) inputs; F32's error
// is f32 dots, sums and exp (NMSE ~1e-13), F16's the rounding of the output to f16 (~4e-8).
const TOLERANCE: Record<ComputeDtype, number> = { F32: 1e-11, F16: 1e-7 };

const label = (c: TiledCase): string => JSON.stringify({ ...c, rows: c.rows.map((r) => `${r.slot}@${r.position}`).join(' ') });

/** The labels the op's dispatches must have: split + combine past one split, else one plain. */
function expectedPipelines(c: TiledCase, dtype: ComputeDtype, subgroups: boolean): string[] {
  const windowed = c.window != null && c.window < c.maxSeq;
  const tail = `${dtype.toLowerCase()}${subgroups ? '_sg' : ''}${c.softcap ? '_softcap' : ''}${windowed ? '_window' : ''}_wg${ATTENTION_TILED_WORKGROUP}`;
  if (!c.decode || c.maxSeq <= TILED_DECODE_SPLIT_KEYS) return [`attention_tiled_${tail}`];
  return [`attention_tiled_split_${tail}`, `attention_tiled_combine_${dtype.toLowerCase()}${windowed ? '_window' : ''}_wg${ATTENTION_TILED_WORKGROUP}`];
}

async function runCases(device: GPUDevice, dtype: ComputeDtype, cases: readonly TiledCase[]): Promise<void> {
  const [tiled, store] = await Promise.all([AttentionTiled.create(device, dtype, { softcap: true, window: true, slots: true }), KvStore.create(device, dtype)]);
  const ops = { attention: tiled, store };
  for (const c of cases) {
    const { got, want, pipelines } = await storeAndAttend(device, ops, c, dtype, rng, c.decode ? 'test.tiled.decode' : 'test.tiled.prefill');
    expect(pipelines, label(c)).toEqual(expectedPipelines(c, dtype, tiled.subgroups));
    expect(noNaN(got), label(c)).toBeNull();
    expect(nmse(got, want), label(c)).toBeLessThan(TOLERANCE[dtype]);
  }
}

// On a cold shader cache lavapipe compiles each variant at its first dispatch (seconds each
// on a busy machine), so F32 runs every pass in four tests (prefill or decode, with or
// without score options) that each stay well inside the timeout, and F16 and the
// workgroup-memory reductions run the passes that need the fewest variants yet cover
// prefill, slots, GQA/MQA/MHA, head sizes 12 to 256, splits, and (F16) a window and softcap:
// what those variants change (unpack, team reductions) does not depend on the score
// options, which F32 covers.
const F16_CASES = [0, 4, 6, 8, 10, 12].map((i) => CASES[i]); // plain (+softcap +window), split and combine (+window)
const WGRED_CASES = [0, 3, 6, 8].map((i) => CASES[i]); // plain, split, combine

const withOptions = (c: TiledCase): boolean => c.softcap != null || (c.window != null && c.window < c.maxSeq);
it.each([
  [false, false],
  [false, true],
  [true, false],
  [true, true],
])('F32, decode %s, softcap or window %s: every such pass against the reference', async (decode, options) => {
  expect(gpu.device.features.has('subgroups'), 'lavapipe has subgroups: this runs the SUBGROUPS variants').toBe(true);
  const cases = CASES.filter((c) => c.decode === decode && withOptions(c) === options);
  expect(cases.length).toBeGreaterThan(1);
  await runCases(gpu.device, 'F32', cases);
});

it(`F16: ${F16_CASES.length} passes against the reference`, async () => {
  if (!gpu.device.features.has('shader-f16')) return expect(gpu.device.features.has('shader-f16')).toBe(false);
  await runCases(gpu.device, 'F16', F16_CASES);
});

it(`without subgroups (workgroup-memory reductions): ${WGRED_CASES.length} passes against the reference`, async () => {
  const features = new Set([...gpu.device.features].filter((f) => f !== 'subgroups'));
  const { device } = spyDevice(gpu.device, { features });
  await runCases(device, 'F32', WGRED_CASES);
});

it('every variant compiles without a message', async () => {
  const features = gpu.device.features as ReadonlySet<string>;
  const variants = attentionTiledVariants(['F32', 'F16'], features);
  // Per dtype and subgroup choice: plain and split × {none, softcap, window, both}; combine × {none, window}.
  const subgroupChoices = features.has('subgroups') ? 2 : 1;
  expect(variants.length).toBe((features.has('shader-f16') ? 2 : 1) * (subgroupChoices * 8 + 2));
  expect(variants.map((v) => v.key)).toEqual(
    expect.arrayContaining(['attention_tiled_f32_wg128', 'attention_tiled_split_f32_softcap_window_wg128', 'attention_tiled_combine_f32_window_wg128']),
  );
  for (const { key, spec } of variants) {
    const info = await pipelineCache(gpu.device).module(spec.shader, spec.flags).getCompilationInfo();
    expect(info.messages.map((m) => `${m.type} ${spec.shader}.wgsl:${m.lineNum}: ${m.message}`), key).toEqual([]);
    expect((await pipelineCache(gpu.device).get(key, spec)).label).toBe(key);
  }
});

it('blocks and tiles fit the workgroup and its memory for every supported head size', () => {
  expect(attentionTiledWorkgroupBytes(false)).toBeLessThanOrEqual(ATTENTION_TILED_WORKGROUP_BYTES);
  expect(attentionTiledWorkgroupBytes(true)).toBeLessThan(attentionTiledWorkgroupBytes(false));
  for (let d = 4; d <= 256; d += 4) {
    const [keys, stride] = [tiledTileKeys(d), tiledTileStride(d)];
    expect(stride > d / 4 && stride % 8 === 4, `d=${d}: key rows of ${stride} vec4s`).toBe(true);
    expect(keys >= 8 && keys <= 32 && keys * stride <= 544, `d=${d}: ${keys} keys`).toBe(true);
    for (const rowCount of [1, 4, 9, 1000]) {
      const rows = tiledRows(d, rowCount);
      expect(rows % 4 === 0 && rows >= 4 && rows <= 32, `d=${d}`).toBe(true);
      expect((rows / 4) * (d / 4), `d=${d}: a P·V invocation per (4 rows, vec4)`).toBeLessThanOrEqual(ATTENTION_TILED_WORKGROUP);
    }
  }
});

it('the shader declares the step exactly as step.ts does', () => {
  const source = readFileSync('shaders/attention_tiled.wgsl', 'utf8');
  expect(source).toContain(STEP_WGSL);
  expect(source).toMatch(/@binding\(1\) var<storage, read> step: Step;/);
});

it('refuses what Attention refuses, by the same names, and a device with too little workgroup memory', async () => {
  const tiled = await AttentionTiled.create(gpu.device, 'F32');
  const buf = outputBuffer(gpu.device, 4096, 4);
  const step = new Step(gpu.device, 'test.step1', { rows: 1, positions: 8 });
  const bufs = { step, q: buf, kCache: buf, vCache: buf, out: buf };
  const shape = { nHeads: 4, nKvHeads: 2, headDim: 64, maxSeq: 8 };
  expect(() => tiled.prepare('x', { ...shape, softcap: 0 }, bufs)).toThrow(/x: attention softcap must be a positive number or null, got 0/);
  expect(() => tiled.prepareDecode('x', { ...shape, window: 2.5 }, bufs)).toThrow(/window must be an integer ≥ 1 or null/);
  expect(() => tiled.prepare('x', { ...shape, scale: Number.NaN }, bufs)).toThrow(/scale must be a positive number/);
  expect(() => tiled.prepare('x', { ...shape, headDim: 260 }, bufs)).toThrow(/headDim a multiple of 4 up to 256, got 260/);
  expect(() => tiled.prepare('x', { ...shape, nKvHeads: 3 }, bufs)).toThrow(/multiple of nKvHeads/);
  expect(() => tiled.prepare('x', { ...shape, maxSeq: 100 }, bufs)).toThrow(/kCache holds 16384 bytes, needs 51200/);
  expect(() => tiled.prepare('x', { ...shape, maxSeq: 4 }, bufs)).toThrow(/step test.step1 allows positions up to 8, the cache holds 4/);
  expect(() => tiled.prepareDecode('x', { ...shape, slots: 0 }, bufs)).toThrow(/slots = 0 is not a positive integer/);
  tiled.prepare('x', { ...shape, softcap: null, window: null }, bufs).destroy();
  const small = spyDevice(gpu.device, { limits: { maxComputeWorkgroupStorageSize: 16384 } });
  await expect(AttentionTiled.create(small.device, 'F32')).rejects.toThrow(/needs 32768 bytes of workgroup memory, the device allows 16384/);
  step.destroy();
  buf.destroy();
});

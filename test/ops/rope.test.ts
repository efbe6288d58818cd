// rope: HF Llama rotate-half rotary embedding in place on Q and K, F32 and F16, with the
// default, linear and llama3 inv_freq tables (from model/rope-scaling.ts, whose own tests
// check the tables against torch) and with other tables (partial rotary, attention factors),
// at positions offset by `start` (up to 10^5, where the angle needs range reduction) and at
// positions in no order (each row's own, from the pass's Step), against a float64
// reference from the stored values.

import { describe, expect, it } from 'vitest';
import { pipelineCache } from '../../src/gpu/pipeline-cache.js';
import { Step } from '../../src/gpu/step.js';
import { runOps, type ComputeDtype } from '../../src/ops/op.js';
import { parseRope, ropeTables } from '../../src/model/rope-scaling.js';
import { Rope, ropeVariants } from '../../src/ops/rope.js';
import { spyDevice, useGpuTestDevice } from '../support/gpu-helpers.js';
import { asDtype, closeness, randomValues, readArray, uploadArray } from '../support/op-helpers.js';
import { mulberry32 } from '../support/safetensors-bytes.js';

const gpu = useGpuTestDevice('test.rope');

// config.json's rope fields for each kind of table, at a given head size.
const configs = {
  default: (headDim: number) => ({ head_dim: headDim, rope_theta: 10000 }),
  linear: (headDim: number) => ({ head_dim: headDim, rope_theta: 10000, rope_scaling: { type: 'linear', factor: 4 } }),
  // Llama-3.2-1B/3B's rope: theta 500000, llama3 scaling by 32 from an 8192 context.
  llama3: (headDim: number) => ({
    head_dim: headDim,
    rope_theta: 500000,
    rope_scaling: { rope_type: 'llama3', factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 },
  }),
};
type Kind = keyof typeof configs;

/** The inv_freq table of a kind at a head size, as the model computes it (rope-scaling.ts). */
const invFreqOf = (kind: Kind, headDim: number): Float32Array => ropeTables(parseRope(configs[kind](headDim)).rope).invFreq;

interface Shape {
  tokens: number;
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  start: number;
  kind: Kind;
  /** Row r's position (default start + r); tokens = its length. */
  positions?: number[];
}

const positionsOf = (s: { tokens: number; start: number; positions?: number[] }): number[] =>
  s.positions ?? Array.from({ length: s.tokens }, (_, r) => s.start + r);

/** A step for these positions: `rows` rows (default as many), positions below the largest + 1. */
function stepAt(device: GPUDevice, positions: number[], rows = positions.length): Step {
  const step = new Step(device, 'test.step', { rows, positions: Math.max(...positions) + 1 });
  step.write(positions);
  return step;
}

// Named regression cases first (the smallest head; a Llama-3.2 decode step far into the
// context; odd half-dims), then seeded random shapes.
const rng = mulberry32(0x20be);
const HEAD_DIMS = [2, 6, 16, 64, 100, 128];
const KINDS: Kind[] = ['default', 'linear', 'llama3'];
const pick = <T>(list: readonly T[]): T => list[Math.floor(rng() * list.length)];
const SHAPES: Shape[] = [
  { tokens: 1, nHeads: 1, nKvHeads: 1, headDim: 2, start: 0, kind: 'default' },
  { tokens: 1, nHeads: 32, nKvHeads: 8, headDim: 64, start: 100_000, kind: 'llama3' },
  { tokens: 33, nHeads: 3, nKvHeads: 1, headDim: 6, start: 7, kind: 'linear' },
  { tokens: 5, nHeads: 4, nKvHeads: 2, headDim: 128, start: 131_000, kind: 'default' },
  { tokens: 3, nHeads: 4, nKvHeads: 2, headDim: 64, start: 0, kind: 'llama3', positions: [5, 9, 10] }, // not consecutive
  { tokens: 6, nHeads: 3, nKvHeads: 1, headDim: 100, start: 0, kind: 'default', positions: [131_000, 0, 77, 5, 100_000, 6] }, // no order
  ...Array.from({ length: 12 }, (): Shape => {
    const nHeads = 1 + Math.floor(rng() * 8);
    return {
      tokens: 1 + Math.floor(rng() * 33),
      nHeads,
      nKvHeads: 1 + Math.floor(rng() * nHeads),
      headDim: pick(HEAD_DIMS),
      start: rng() < 0.5 ? Math.floor(rng() * 64) : Math.floor(rng() * 131_072),
      kind: pick(KINDS),
    };
  }),
];

/**
 * float64 rotation of the stored values at HF's f32 angle fl32(position · inv_freq), as
 * transformers' apply_rotary_pos_emb: the first 2·inv.length elements of each head (of
 * headDim) rotate half against half, the rest pass through; cos and sin × factor.
 */
function reference(x: Float32Array, positions: readonly number[], heads: number, headDim: number, inv: Float32Array, factor = 1): Float64Array {
  const half = inv.length;
  const out = Float64Array.from(x); // rows past positions.length: unchanged
  for (let t = 0; t < positions.length; t++) {
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < half; i++) {
        const angle = Math.fround(positions[t] * inv[i]);
        const [c, s] = [Math.cos(angle) * factor, Math.sin(angle) * factor];
        const at = (t * heads + h) * headDim + i;
        out[at] = x[at] * c - x[at + half] * s;
        out[at + half] = x[at + half] * c + x[at] * s;
      }
    }
  }
  return out;
}

const noF16 = (dtype: ComputeDtype): boolean => dtype === 'F16' && !gpu.device.features.has('shader-f16');

it('every variant compiles with no message', async () => {
  const features = gpu.device.features as ReadonlySet<string>;
  const variants = ropeVariants(features.has('shader-f16') ? ['F32', 'F16'] : ['F32'], features);
  expect(variants.map((v) => v.key)).toEqual(expect.arrayContaining(['rope_f32_wg256', 'rope_f32_scaled_wg256']));
  for (const { key, spec } of variants) {
    const info = await pipelineCache(gpu.device).module(spec.shader, spec.flags).getCompilationInfo();
    expect(info.messages.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`), key).toEqual([]);
  }
});

/** Runs one rope on fresh random Q and K and compares both with the reference. */
async function check(device: GPUDevice, dtype: ComputeDtype, shape: Shape): Promise<void> {
  const { tokens, nHeads, nKvHeads, headDim, kind } = shape;
  const positions = positionsOf(shape);
  const rope = await Rope.create(device, dtype, { invFreq: invFreqOf(kind, headDim) });
  const q = asDtype(randomValues(rng, tokens * nHeads * headDim), dtype);
  const k = asDtype(randomValues(rng, tokens * nKvHeads * headDim), dtype);
  const [qBuf, kBuf] = [uploadArray(gpu.device, q, dtype), uploadArray(gpu.device, k, dtype)];
  const step = stepAt(device, positions);
  const op = rope.prepare(`test.rope.${kind}`, { nHeads, nKvHeads }, { step, q: qBuf, k: kBuf });
  await runOps(device, [op]);
  const what = JSON.stringify(shape);
  const tol = tolerance(dtype);
  expect(closeness(await readArray(gpu.device, qBuf, q.length, dtype), reference(q, positions, nHeads, headDim, rope.invFreq), ...tol), `q ${what}`).toBeNull();
  expect(closeness(await readArray(gpu.device, kBuf, k.length, dtype), reference(k, positions, nKvHeads, headDim, rope.invFreq), ...tol), `k ${what}`).toBeNull();
  op.destroy();
  step.destroy();
  rope.destroy();
  qBuf.destroy();
  kBuf.destroy();
}

/**
 * |x| ≤ 1. abs: the reduced angle carries ≤ 2^-22 of rounding (|r| ≤ π), lavapipe's f32
 * sin/cos ~2^-23, two terms of a few f32 roundings: measured ≤ 2^-22.2 on lavapipe (at
 * positions up to 131,000 too); 2^-19 leaves 8× margin. (WGSL itself promises only 2^-11
 * for sin/cos on [−π, π]; a GPU near that bound would fail here, and should.) rel: F16
 * output rounding, 2^-11.
 */
function tolerance(dtype: ComputeDtype): [number, number] {
  return dtype === 'F16' ? [2 ** -19, 2 ** -11] : [2 ** -19, 0];
}

describe.each(['F32', 'F16'] as const)('rope %s', (dtype) => {
  it(`${SHAPES.length} seeded shapes, default / linear / llama3`, async () => {
    if (noF16(dtype)) return expect(noF16(dtype)).toBe(true); // said, not silent: no F16 on this adapter
    for (const shape of SHAPES) await check(gpu.device, dtype, shape);
  });

  it('the step moves the positions (and the rows) of the next submit', async () => {
    if (noF16(dtype)) return expect(noF16(dtype)).toBe(true);
    const [tokens, nHeads, nKvHeads, headDim] = [4, 2, 1, 16];
    const rope = await Rope.create(gpu.device, dtype, { invFreq: invFreqOf('llama3', headDim) });
    const q = asDtype(randomValues(rng, tokens * nHeads * headDim), dtype);
    const k = asDtype(randomValues(rng, tokens * nKvHeads * headDim), dtype);
    const [qBuf, kBuf] = [uploadArray(gpu.device, q, dtype), uploadArray(gpu.device, k, dtype)];
    const step = new Step(gpu.device, 'test.step', { rows: tokens, positions: 2 ** 24 });
    const op = rope.prepare('test.rope.positions', { nHeads, nKvHeads }, { step, q: qBuf, k: kBuf });
    step.write([9001, 9000]); // rows 0 and 1 at positions 9001 and 9000; rows 2 and 3 untouched
    await runOps(gpu.device, [op]);
    const gotQ = await readArray(gpu.device, qBuf, q.length, dtype);
    const wantQ = reference(q, [9001, 9000], nHeads, headDim, rope.invFreq);
    expect(closeness(gotQ.subarray(0, 2 * nHeads * headDim), wantQ.subarray(0, 2 * nHeads * headDim), ...tolerance(dtype))).toBeNull();
    expect([...gotQ.subarray(2 * nHeads * headDim)]).toEqual([...q.subarray(2 * nHeads * headDim)]);
    const gotK = await readArray(gpu.device, kBuf, k.length, dtype);
    expect(closeness(gotK.subarray(0, 2 * headDim), reference(k, [9001, 9000], 1, headDim, rope.invFreq).subarray(0, 2 * headDim), ...tolerance(dtype))).toBeNull();
    expect(() => step.write([0, 1, 2, 3, 4])).toThrow(/rows = 5, prepared for 1..4/);
    expect(() => step.writeRange(2 ** 24 - 1, 2)).toThrow(/exceed the cache/);
    op.destroy();
    step.destroy();
    rope.destroy();
    qBuf.destroy();
    kBuf.destroy();
  });
});

// Tables given directly (the model layer's yarn / longrope / partial rotary): head sizes
// past the rotary dim (Phi-4-mini: head 96, rotary 72 at partial_rotary_factor 0.75), odd
// half-dims, attention factors around yarn's 0.1·ln(s) + 1, with start offsets.
interface TableShape {
  tokens: number;
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  rotaryDim: number;
  factor: number;
  start: number;
}
const TABLE_SHAPES: TableShape[] = [
  { tokens: 3, nHeads: 24, nKvHeads: 8, headDim: 96, rotaryDim: 72, factor: 1.1902380714238083, start: 4000 }, // Phi-4-mini, longrope-ish
  { tokens: 1, nHeads: 1, nKvHeads: 1, headDim: 3, rotaryDim: 2, factor: 1, start: 0 }, // one pair and an odd tail
  { tokens: 17, nHeads: 2, nKvHeads: 1, headDim: 64, rotaryDim: 64, factor: 1.3465735902799727, start: 77 }, // full rotary, yarn factor 16
  { tokens: 5, nHeads: 3, nKvHeads: 3, headDim: 80, rotaryDim: 20, factor: 1, start: 131_000 }, // partial, factor 1 (plain variant)
  ...Array.from({ length: 12 }, (): TableShape => {
    const nHeads = 1 + Math.floor(rng() * 8);
    const rotaryDim = 2 * (1 + Math.floor(rng() * 50));
    return {
      tokens: 1 + Math.floor(rng() * 33),
      nHeads,
      nKvHeads: 1 + Math.floor(rng() * nHeads),
      headDim: rotaryDim + (rng() < 0.3 ? 0 : Math.floor(rng() * 40)),
      rotaryDim,
      factor: rng() < 0.3 ? 1 : 0.5 + rng(),
      start: rng() < 0.5 ? Math.floor(rng() * 64) : Math.floor(rng() * 131_072),
    };
  }),
];

describe.each(['F32', 'F16'] as const)('rope from a table, %s', (dtype) => {
  it(`${TABLE_SHAPES.length} seeded shapes: partial rotary (headDim > rotaryDim), attention factors`, async () => {
    if (noF16(dtype)) return expect(noF16(dtype)).toBe(true);
    for (const shape of TABLE_SHAPES) {
      const { tokens, nHeads, nKvHeads, headDim, rotaryDim, factor } = shape;
      const table = invFreqOf('default', rotaryDim).map((x, i) => x * (1 + (i % 3) / 7)); // any table
      const rope = await Rope.create(gpu.device, dtype, { invFreq: table, attentionFactor: factor });
      expect([rope.rotaryDim, rope.attentionFactor]).toEqual([rotaryDim, factor]);
      const q = asDtype(randomValues(rng, tokens * nHeads * headDim), dtype);
      const k = asDtype(randomValues(rng, tokens * nKvHeads * headDim), dtype);
      const [qBuf, kBuf] = [uploadArray(gpu.device, q, dtype), uploadArray(gpu.device, k, dtype)];
      const step = stepAt(gpu.device, positionsOf(shape));
      const op = rope.prepare('test.rope.table', { nHeads, nKvHeads, headDim }, { step, q: qBuf, k: kBuf });
      await runOps(gpu.device, [op]);
      // As tolerance(), abs scaled by the factor (cos and sin × factor, one more f32 rounding).
      const [abs, rel] = tolerance(dtype);
      const tol: [number, number] = [abs * Math.max(1, factor), rel];
      const gotQ = await readArray(gpu.device, qBuf, q.length, dtype);
      const gotK = await readArray(gpu.device, kBuf, k.length, dtype);
      expect(closeness(gotQ, reference(q, positionsOf(shape), nHeads, headDim, rope.invFreq, factor), ...tol), `q ${JSON.stringify(shape)}`).toBeNull();
      expect(closeness(gotK, reference(k, positionsOf(shape), nKvHeads, headDim, rope.invFreq, factor), ...tol), `k ${JSON.stringify(shape)}`).toBeNull();
      // The pass-through part is untouched, bit for bit.
      for (let at = 0; at < q.length; at += headDim) expect([...gotQ.subarray(at + rotaryDim, at + headDim)]).toEqual([...q.subarray(at + rotaryDim, at + headDim)]);
      op.destroy();
      step.destroy();
      rope.destroy();
      qBuf.destroy();
      kBuf.destroy();
    }
  });

  it('ropeTables\' { invFreq, attentionFactor: 1 } gives the plain table\'s result bit for bit; the step moves it', async () => {
    if (noF16(dtype)) return expect(noF16(dtype)).toBe(true);
    const [tokens, nHeads, nKvHeads, headDim] = [6, 4, 2, 64];
    const plain = await Rope.create(gpu.device, dtype, { invFreq: invFreqOf('llama3', headDim) });
    const tables = ropeTables(parseRope(configs.llama3(headDim)).rope); // as model/kernels.ts passes them
    const fromTables = await Rope.create(gpu.device, dtype, { ...tables, label: 'test.rope.table' });
    tables.invFreq.fill(0); // the Rope keeps its own copy
    expect([fromTables.invFreq, fromTables.attentionFactor]).toEqual([plain.invFreq, 1]);
    const q = asDtype(randomValues(rng, tokens * nHeads * headDim), dtype);
    const k = asDtype(randomValues(rng, tokens * nKvHeads * headDim), dtype);
    const results: Float32Array[] = [];
    for (const rope of [plain, fromTables]) {
      const [qBuf, kBuf] = [uploadArray(gpu.device, q, dtype), uploadArray(gpu.device, k, dtype)];
      const step = new Step(gpu.device, 'test.step', { rows: tokens, positions: 8192 });
      const op = rope.prepare('test.rope.same', { nHeads, nKvHeads, headDim }, { step, q: qBuf, k: kBuf });
      step.writeRange(5000, 4);
      await runOps(gpu.device, [op]);
      results.push(await readArray(gpu.device, qBuf, q.length, dtype), await readArray(gpu.device, kBuf, k.length, dtype));
      op.destroy();
      step.destroy();
      qBuf.destroy();
      kBuf.destroy();
    }
    expect(results[2]).toEqual(results[0]);
    expect(results[3]).toEqual(results[1]);
    const rows = 4 * nHeads * headDim;
    expect(closeness(results[0].subarray(0, rows), reference(q, [5000, 5001, 5002, 5003], nHeads, headDim, plain.invFreq).subarray(0, rows), ...tolerance(dtype))).toBeNull();
    expect([...results[0].subarray(rows)]).toEqual([...q.subarray(rows)]);
    plain.destroy();
    fromTables.destroy();
  });
});

it('create refuses bad tables and factors; prepare refuses a head smaller than the rotary dim', async () => {
  await expect(Rope.create(gpu.device, 'F32', { invFreq: new Float32Array(0) })).rejects.toThrow(/invFreq/);
  await expect(Rope.create(gpu.device, 'F32', { invFreq: Float32Array.of(1, Number.NaN) })).rejects.toThrow(/invFreq\[1\]/);
  await expect(Rope.create(gpu.device, 'F32', { invFreq: Float32Array.of(1), attentionFactor: 0 })).rejects.toThrow(/attentionFactor/);
  // The removed { config } form (rope-scaling.ts computes tables now) is refused, not defaulted.
  await expect(Rope.create(gpu.device, 'F32', { config: { headDim: 8, ropeTheta: 1e4 } } as never)).rejects.toThrow(/invFreq must be a Float32Array/);
  const rope = await Rope.create(gpu.device, 'F32', { invFreq: Float32Array.of(1, 0.1, 0.01) });
  const buf = (n: number): GPUBuffer => uploadArray(gpu.device, new Float32Array(n), 'F32');
  const [q, k] = [buf(16), buf(16)];
  const [one, two] = [1, 2].map((rows) => new Step(gpu.device, 'test.step', { rows, positions: 8 }));
  expect(() => rope.prepare('x', { nHeads: 1, nKvHeads: 1, headDim: 4 }, { step: one, q, k })).toThrow(/headDim must be an integer ≥ the rotary dim 6/);
  expect(() => rope.prepare('x', { nHeads: 1, nKvHeads: 1, headDim: 9 }, { step: two, q, k })).toThrow(/q holds 64 bytes, \(2, 1, 9\) F32 needs 72/);
  rope.prepare('x', { nHeads: 1, nKvHeads: 1, headDim: 9 }, { step: one, q, k }).destroy();
  one.destroy();
  two.destroy();
  rope.destroy();
  q.destroy();
  k.destroy();
});

it('pairs past the per-dimension workgroup limit spill into y', async () => {
  // A device that claims 4 workgroups per dimension: 9 tokens × 8 heads × 32 pairs = 2304
  // invocations = 9 workgroups of 256 → a (3, 3) grid.
  const spy = spyDevice(gpu.device, { limits: { maxComputeWorkgroupsPerDimension: 4 } });
  await check(spy.device, 'F32', { tokens: 9, nHeads: 6, nKvHeads: 2, headDim: 64, start: 3, kind: 'llama3' });
});

it('prepare refuses short or shared buffers, bad counts and positions past 2^24', async () => {
  const rope = await Rope.create(gpu.device, 'F32', { invFreq: invFreqOf('default', 8) });
  const buf = (n: number): GPUBuffer => uploadArray(gpu.device, new Float32Array(n), 'F32');
  const [q, k] = [buf(16), buf(16)];
  const step = new Step(gpu.device, 'test.step', { rows: 2, positions: 2 ** 24 });
  const far = new Step(gpu.device, 'test.far', { rows: 2, positions: 2 ** 24 + 1 });
  rope.prepare('x', { nHeads: 1, nKvHeads: 1 }, { step, q, k }).destroy();
  expect(() => rope.prepare('x', { nHeads: 2, nKvHeads: 1 }, { step, q, k })).toThrow(/q holds 64 bytes/);
  expect(() => rope.prepare('x', { nHeads: 1, nKvHeads: 1 }, { step, q, k: q })).toThrow(/distinct/);
  expect(() => rope.prepare('x', { nHeads: 0, nKvHeads: 1 }, { step, q, k })).toThrow(/nHeads must be an integer ≥ 1, got 0/);
  expect(() => rope.prepare('x', { nHeads: 1, nKvHeads: 1 }, { step: far, q, k })).toThrow(/step test.far allows positions up to 16777217, rope takes \[0, 2\^24\)/);
  step.destroy();
  far.destroy();
  rope.destroy();
  q.destroy();
  k.destroy();
});

// qkv_rope_store, F32 and F16: bit for bit what the unfused ops give on the GPU (RmsNorm per
// head → Rope → KvStore, as llama.ts runs them), with and without the per-head q/k norm
// (plain and Gemma's (1 + w)), NoPE, partial rotary, a scaled rope, GQA, caches in slots
// with rows at unrelated positions, q/k/v as views of one joined buffer and as three
// buffers (offsets and row strides that are not the width), head sizes 4 to 256 (80 and 96
// among them), step rows below the prepared rows; cache rows no step row owns keep their
// stale bytes. And against a float64 reference of the math, for a mistake both could share;
// a Rope.setInvFreq reaching the op; the shape guards.

import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { SluiceError } from '../../src/errors.js';
import type { GpuTensor } from '../../src/gpu/gpu-tensor.js';
import { pipelineCache } from '../../src/gpu/pipeline-cache.js';
import { readBuffer } from '../../src/gpu/read-back.js';
import { Step, STEP_WGSL } from '../../src/gpu/step.js';
import { parseRope, ropeTables } from '../../src/model/rope-scaling.js';
import { KvStore } from '../../src/ops/kv-store.js';
import { type ComputeDtype, type PreparedOp, runOps } from '../../src/ops/op.js';
import { QkvRopeStore, qkvRopeStoreVariants, type RowView } from '../../src/ops/qkv-rope-store.js';
import { RmsNorm } from '../../src/ops/rms-norm.js';
import { Rope } from '../../src/ops/rope.js';
import { useGpuTestDevice } from '../support/gpu-helpers.js';
import { asDtype, closeness, decode, encode, outputBuffer, randomValues, roundF16, uploadArray } from '../support/op-helpers.js';
import { mulberry32 } from '../support/safetensors-bytes.js';
import type { SlotRow } from '../support/slot-reference.js';

const gpu = useGpuTestDevice('test.qkv_rope_store');
const rng = mulberry32(0x9c5);
const EPS = 1e-6;

type Norm = 'none' | 'norm' | 'one_plus_w';
interface Case {
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  /** Rotated elements per head (≤ headDim), or null: a NoPE layer. */
  rotary: number | null;
  norm: Norm;
  /** The rope's attention factor (1: unscaled). */
  factor: number;
  maxSeq: number;
  slots: number;
  /** Rows the op is prepared for; the step runs `rows` (fewer or as many). */
  maxRows: number;
  rows: SlotRow[];
  joined: boolean;
}

/** `count` rows of distinct (slot, position) pairs at random. */
function randomRows(count: number, slots: number, maxSeq: number): SlotRow[] {
  const used = new Set<string>();
  const rows: SlotRow[] = [];
  while (rows.length < count) {
    const row = { slot: Math.floor(rng() * slots), position: Math.floor(rng() * maxSeq) };
    if (used.has(`${row.slot}:${row.position}`)) continue;
    used.add(`${row.slot}:${row.position}`);
    rows.push(row);
  }
  return rows;
}

const run = (slot: number, start: number, count: number): SlotRow[] => Array.from({ length: count }, (_, i) => ({ slot, position: start + i }));
const base = { factor: 1, slots: 1, joined: true } as const;

// Named cases first (real models' shapes, then the edges), then seeded random ones.
const CASES: Case[] = [
  // Llama-3.2-1B: a decode pass of 4 slots, and a prefill chunk of one
  { ...base, nHeads: 32, nKvHeads: 8, headDim: 64, rotary: 64, norm: 'none', maxSeq: 300, slots: 4, maxRows: 4, rows: [{ slot: 2, position: 299 }, { slot: 0, position: 7 }, { slot: 3, position: 0 }, { slot: 1, position: 150 }], joined: false },
  { ...base, nHeads: 32, nKvHeads: 8, headDim: 64, rotary: 64, norm: 'none', maxSeq: 200, slots: 2, maxRows: 37, rows: run(1, 100, 37) },
  // Qwen3: per-head norm, head 128, GQA 2
  { ...base, nHeads: 16, nKvHeads: 8, headDim: 128, rotary: 128, norm: 'norm', maxSeq: 64, slots: 3, maxRows: 5, rows: [...run(2, 10, 3), { slot: 0, position: 63 }, { slot: 1, position: 5 }] },
  { ...base, nHeads: 16, nKvHeads: 8, headDim: 128, rotary: 128, norm: 'norm', maxSeq: 64, slots: 3, maxRows: 5, rows: randomRows(5, 3, 64), joined: false },
  // Gemma 3: (1 + w) norm, head 256, one KV head; scaled too
  { ...base, nHeads: 4, nKvHeads: 1, headDim: 256, rotary: 256, norm: 'one_plus_w', maxSeq: 50, slots: 2, maxRows: 9, rows: randomRows(9, 2, 50) },
  { ...base, nHeads: 4, nKvHeads: 1, headDim: 256, rotary: 256, norm: 'one_plus_w', factor: 1.25, maxSeq: 50, maxRows: 3, rows: run(0, 47, 3), joined: false },
  // NoPE layers (SmolLM3): normed or a plain copy
  { ...base, nHeads: 6, nKvHeads: 2, headDim: 96, rotary: null, norm: 'norm', maxSeq: 30, slots: 2, maxRows: 4, rows: randomRows(4, 2, 30), joined: false },
  { ...base, nHeads: 6, nKvHeads: 3, headDim: 80, rotary: null, norm: 'none', maxSeq: 30, maxRows: 4, rows: randomRows(4, 1, 30) },
  // partial rotary (Phi-4-mini: 96 of 128), scaled; and with a norm, head 80 rotating 40
  { ...base, nHeads: 6, nKvHeads: 2, headDim: 128, rotary: 96, norm: 'none', factor: 1.19, maxSeq: 40, slots: 2, maxRows: 6, rows: randomRows(6, 2, 40), joined: false },
  { ...base, nHeads: 5, nKvHeads: 5, headDim: 80, rotary: 40, norm: 'one_plus_w', maxSeq: 40, maxRows: 7, rows: randomRows(7, 1, 40) },
  // the step runs fewer rows than prepared: rows past it write nothing
  { ...base, nHeads: 4, nKvHeads: 2, headDim: 96, rotary: 96, norm: 'norm', maxSeq: 20, slots: 2, maxRows: 8, rows: randomRows(3, 2, 20) },
  // positions far into the context (the angle's range reduction)
  { ...base, nHeads: 2, nKvHeads: 1, headDim: 64, rotary: 64, norm: 'norm', factor: 0.9, maxSeq: 20_000, maxRows: 2, rows: [{ slot: 0, position: 19_999 }, { slot: 0, position: 12_345 }] },
  // small heads: 4 (norm tree of 4), 12 (of 16)
  { ...base, nHeads: 3, nKvHeads: 1, headDim: 4, rotary: 4, norm: 'norm', maxSeq: 9, maxRows: 3, rows: randomRows(3, 1, 9) },
  { ...base, nHeads: 3, nKvHeads: 3, headDim: 12, rotary: 8, norm: 'one_plus_w', maxSeq: 9, slots: 2, maxRows: 3, rows: randomRows(3, 2, 9), joined: false },
  ...Array.from({ length: 8 }, (): Case => {
    const headDim = [16, 64, 80, 96, 128, 256][Math.floor(rng() * 6)];
    const nKvHeads = 1 + Math.floor(rng() * 4);
    const [maxSeq, slots] = [10 + Math.floor(rng() * 90), 1 + Math.floor(rng() * 3)];
    const maxRows = 1 + Math.floor(rng() * 12);
    const rotary = rng() < 0.2 ? null : rng() < 0.3 ? 2 * (1 + Math.floor((rng() * headDim) / 2)) : headDim;
    return {
      nHeads: nKvHeads * (1 + Math.floor(rng() * 4)),
      nKvHeads,
      headDim,
      rotary,
      norm: (['none', 'norm', 'one_plus_w'] as const)[Math.floor(rng() * 3)],
      factor: rng() < 0.3 ? 1.1 : 1,
      maxSeq,
      slots,
      maxRows,
      rows: randomRows(1 + Math.floor(rng() * maxRows), slots, maxSeq),
      joined: rng() < 0.5,
    };
  }),
];

const invFreqOf = (rotary: number, theta: number): Float32Array => ropeTables(parseRope({ head_dim: rotary, rope_theta: theta }).rope).invFreq;

/** A (headDim,) norm weight in the compute dtype, one chunk, as loadTensors gives it (its own tests cover the loading). */
function normWeight(device: GPUDevice, name: string, values: Float32Array, dtype: ComputeDtype): GpuTensor {
  const buffer = uploadArray(device, values, dtype, name);
  const byteLength = values.length * (dtype === 'F16' ? 2 : 4);
  return { name, shape: [values.length], storageDtype: dtype, dtype, chunks: [{ buffer, firstRow: 0, rows: values.length, byteLength }], rowsPerChunk: values.length, byteLength };
}

/** Rows of q, k and v as the fused op reads them: views into one joined buffer, or three buffers; each with a lead and a row pad. */
function uploadViews(device: GPUDevice, dtype: ComputeDtype, matrices: Float32Array[], widths: number[], rows: number, joined: boolean): { views: RowView[]; buffers: GPUBuffer[] } {
  const lead = 3;
  if (joined) {
    const stride = widths.reduce((a, b) => a + b); // [q | k | v] per row, as the joined projection writes it
    const host = asDtype(randomValues(rng, lead + rows * stride), dtype);
    let at = lead;
    const offsets = widths.map((w) => ((at += w), at - w));
    matrices.forEach((m, i) => {
      for (let r = 0; r < rows; r++) host.set(m.subarray(r * widths[i], (r + 1) * widths[i]), offsets[i] + r * stride);
    });
    const buffer = uploadArray(device, host, dtype);
    return { views: offsets.map((offset) => ({ buffer, offset, stride })), buffers: [buffer] };
  }
  const views = matrices.map((m, i) => {
    const stride = widths[i] + 5;
    const host = asDtype(randomValues(rng, lead + rows * stride), dtype);
    for (let r = 0; r < rows; r++) host.set(m.subarray(r * widths[i], (r + 1) * widths[i]), lead + r * stride);
    return { buffer: uploadArray(device, host, dtype), offset: lead, stride };
  });
  return { views, buffers: views.map((v) => v.buffer) };
}

/**
 * float64 of the math from the stored values: per head x·rsqrt(mean(x²) + eps) times w
 * (rounded as HF rounds, see rms-norm.test.ts), then rotate-half at fl32(position · inv_freq),
 * cos and sin × factor; (rows, heads, headDim).
 */
function reference(x: Float32Array, c: Case, heads: number, w: Float32Array | null, inv: Float32Array | null, dtype: ComputeDtype): Float64Array {
  const d = c.headDim;
  const round = (v: number): number => (dtype === 'F16' ? roundF16(v) : v);
  const out = new Float64Array(c.rows.length * heads * d);
  c.rows.forEach(({ position }, t) => {
    for (let h = 0; h < heads; h++) {
      const at = (t * heads + h) * d;
      const head = Array.from(x.subarray(at, at + d));
      if (w) {
        const scale = 1 / Math.sqrt(head.reduce((s, v) => s + v * v, 0) / d + Math.fround(EPS));
        head.forEach((v, j) => (head[j] = c.norm === 'one_plus_w' ? round(v * scale * Math.fround(1 + w[j])) : round(w[j] * round(v * scale))));
      }
      for (let j = 0; j < d; j++) out[at + j] = head[j];
      for (let i = 0; inv && i < inv.length; i++) {
        const angle = Math.fround(position * inv[i]);
        const [cos, sin] = [Math.cos(angle) * c.factor, Math.sin(angle) * c.factor];
        out[at + i] = head[i] * cos - head[i + inv.length] * sin;
        out[at + i + inv.length] = head[i + inv.length] * cos + head[i] * sin;
      }
    }
  });
  return out;
}

/**
 * abs: F32, the rope's 2^-22 (rope.test.ts) on values up to ~4 after the norm, 2^-18 with
 * margin; F16, three roundings to f16 (norm, weight, rope) of values up to ~4, 2^-7. rel: F16
 * output rounding.
 */
const tolerance = (dtype: ComputeDtype): [number, number] => (dtype === 'F16' ? [2 ** -7, 2 ** -10] : [2 ** -18, 0]);

/** Index and values of the first element where two byte strings of `dtype` differ, or null. */
function firstDiff(got: Uint8Array, want: Uint8Array, dtype: ComputeDtype): string | null {
  if (Buffer.from(got.buffer, got.byteOffset, got.byteLength).equals(want)) return null;
  const size = dtype === 'F16' ? 2 : 4;
  for (let i = 0; i < want.length; i += size) {
    for (let b = 0; b < size; b++) {
      if (got[i + b] !== want[i + b]) return `element ${i / size}: got ${decode(got.subarray(i, i + size), dtype)[0]}, unfused ${decode(want.subarray(i, i + size), dtype)[0]}`;
    }
  }
  return null;
}

async function readBytes(buffer: GPUBuffer, bytes: number): Promise<Uint8Array> {
  return readBuffer(gpu.device, buffer, 0, Math.ceil(bytes / 4) * 4).then((b) => b.subarray(0, bytes));
}

/**
 * Runs one case fused and unfused on the same data; checks them equal, the untouched rows,
 * and the float64 reference. `swap`: a table the rope switches to (Rope.setInvFreq) after
 * both are prepared, before they run.
 */
async function check(dtype: ComputeDtype, c: Case, swap?: Float32Array): Promise<void> {
  const { device } = gpu;
  const { nHeads, nKvHeads, headDim: d, maxSeq, slots, maxRows } = c;
  const [qDim, kvDim, bytes] = [nHeads * d, nKvHeads * d, dtype === 'F16' ? 2 : 4];
  const what = `${dtype} ${JSON.stringify({ ...c, rows: c.rows.length > 6 ? `${c.rows.length} rows` : c.rows })}`;
  const q = asDtype(randomValues(rng, maxRows * qDim), dtype);
  const k = asDtype(randomValues(rng, maxRows * kvDim), dtype);
  const v = asDtype(randomValues(rng, maxRows * kvDim), dtype);
  const stale = asDtype(randomValues(rng, slots * kvDim * maxSeq, -4, 4), dtype); // what a cache row holds until written
  const [qW, kW] = [0, 1].map(() => (c.norm === 'one_plus_w' ? randomValues(rng, d, -0.5, 0.5) : randomValues(rng, d, 0.5, 1.5)));
  const weights = c.norm === 'none' ? null : { q: normWeight(device, 'q_norm', qW, dtype), k: normWeight(device, 'k_norm', kW, dtype) };
  const inv = c.rotary === null ? null : invFreqOf(c.rotary, c.rotary % 64 === 0 ? 500_000 : 10_000);
  const rope = inv && (await Rope.create(device, dtype, { invFreq: inv, attentionFactor: c.factor }));
  const step = new Step(device, 'test.step', { rows: maxRows, positions: maxSeq, slots });
  step.write(c.rows.map((r) => r.position), c.rows.map((r) => r.slot));
  const owned: { destroy(): void }[] = [step, ...(weights ? [weights.q.chunks[0].buffer, weights.k.chunks[0].buffer] : []), ...(rope ? [rope] : [])];
  const keep = <T extends { destroy(): void }>(x: T): T => (owned.push(x), x);

  // unfused, as llama.ts: norms over rows × heads rows of headDim, rope in place, store
  const unfused: PreparedOp[] = [];
  const [qRef, kRef, vRef] = [q, k, v].map((m) => keep(uploadArray(device, m, dtype)));
  const [kCacheRef, vCacheRef, kCache, vCache] = [0, 1, 2, 3].map(() => keep(uploadArray(device, stale, dtype)));
  let [qIn, kIn] = [qRef, kRef];
  if (weights) {
    const norm = await RmsNorm.create(device, dtype, { eps: EPS, onePlusWeight: c.norm === 'one_plus_w' });
    [qIn, kIn] = [keep(outputBuffer(device, maxRows * qDim, bytes)), keep(outputBuffer(device, maxRows * kvDim, bytes))];
    unfused.push(norm.prepare('test.q_norm', maxRows * nHeads, d, qRef, weights.q, qIn));
    unfused.push(norm.prepare('test.k_norm', maxRows * nKvHeads, d, kRef, weights.k, kIn));
  }
  if (rope) unfused.push(rope.prepare('test.rope', { nHeads, nKvHeads, headDim: d }, { step, q: qIn, k: kIn }));
  const store = await KvStore.create(device, dtype);
  unfused.push(store.prepare('test.kv_store', { nKvHeads, headDim: d, maxSeq, slots }, { step, k: kIn, v: vRef, kCache: kCacheRef, vCache: vCacheRef }));

  // fused
  const { views, buffers } = uploadViews(device, dtype, [q, k, v], [qDim, kvDim, kvDim], maxRows, c.joined);
  buffers.forEach(keep);
  const qOutStale = asDtype(randomValues(rng, maxRows * qDim), dtype);
  const qOut = keep(uploadArray(device, qOutStale, dtype));
  const fused = await QkvRopeStore.create(device, dtype, { qkNorm: weights && { eps: EPS, onePlusWeight: c.norm === 'one_plus_w' }, scaled: c.factor !== 1 });
  const op = fused.prepare('test.qkv_rope_store', { nHeads, nKvHeads, headDim: d, maxSeq, slots, rows: maxRows }, {
    step, q: views[0], k: views[1], v: views[2], qOut, kCache, vCache, rope,
    qNorm: weights?.q, kNorm: weights?.k,
  });
  const table = swap ?? inv;
  if (swap) rope!.setInvFreq(swap);
  await runOps(device, unfused);
  await runOps(device, [op]);
  unfused.forEach((o) => keep(o));
  keep(op);

  // bit for bit: q rows of the step, and whole caches (the unfused ones start as stale too)
  const n = c.rows.length;
  const qGot = await readBytes(qOut, maxRows * qDim * bytes);
  expect(firstDiff(qGot.subarray(0, n * qDim * bytes), await readBytes(qIn, n * qDim * bytes), dtype), `q ${what}`).toBeNull();
  expect(firstDiff(qGot.subarray(n * qDim * bytes), encode(qOutStale, dtype).subarray(n * qDim * bytes), dtype), `q rows past the step ${what}`).toBeNull();
  const cacheBytes = slots * kvDim * maxSeq * bytes;
  const caches = await Promise.all([kCache, vCache, kCacheRef, vCacheRef].map((b) => readBytes(b, cacheBytes)));
  expect(firstDiff(caches[0], caches[2], dtype), `k cache ${what}`).toBeNull();
  expect(firstDiff(caches[1], caches[3], dtype), `v cache ${what}`).toBeNull();

  // the cache rows no step row owns: still stale, byte for byte (the owned rows copied over the stale bytes give the whole cache)
  const headRow = d * bytes;
  const rowAt = (slot: number, h: number, position: number): number => ((slot * nKvHeads + h) * maxSeq + position) * headRow;
  for (const cache of caches.slice(0, 2)) {
    const want = encode(stale, dtype);
    for (const { slot, position } of c.rows) {
      for (let h = 0; h < nKvHeads; h++) want.set(cache.subarray(rowAt(slot, h, position), rowAt(slot, h, position) + headRow), rowAt(slot, h, position));
    }
    expect(firstDiff(cache, want, dtype), `a cache row no step row owns ${what}`).toBeNull();
  }

  // float64 reference: q rows, then each row's k and v as stored
  const tol = tolerance(dtype);
  const qF = decode(qGot, dtype, n * qDim);
  expect(closeness(qF, reference(q, c, nHeads, weights && asDtype(qW, dtype), table, dtype), ...tol), `q reference ${what}`).toBeNull();
  const [kStored, vStored] = [caches[0], caches[1]].map((cache) => {
    const rows = new Float32Array(n * kvDim);
    c.rows.forEach(({ slot, position }, t) => {
      for (let h = 0; h < nKvHeads; h++) rows.set(decode(cache.subarray(rowAt(slot, h, position), rowAt(slot, h, position) + headRow), dtype), (t * nKvHeads + h) * d);
    });
    return rows;
  });
  expect(closeness(kStored, reference(k, c, nKvHeads, weights && asDtype(kW, dtype), table, dtype), ...tol), `k reference ${what}`).toBeNull();
  expect(closeness(vStored, v.subarray(0, n * kvDim), 0, 0), `v ${what}`).toBeNull();
  owned.forEach((o) => o.destroy());
}

const noF16 = (dtype: ComputeDtype): boolean => dtype === 'F16' && !gpu.device.features.has('shader-f16');

it('every variant compiles with no message, and reads the step as step.ts declares it', async () => {
  const features = gpu.device.features as ReadonlySet<string>;
  const variants = qkvRopeStoreVariants(features.has('shader-f16') ? ['F32', 'F16'] : ['F32'], features);
  expect(variants.map((v) => v.key)).toEqual(expect.arrayContaining(['qkv_rope_store_f32_wg256', 'qkv_rope_store_f32_one_plus_w_scaled_wg256']));
  for (const { key, spec } of variants) {
    const info = await pipelineCache(gpu.device).module(spec.shader, spec.flags).getCompilationInfo();
    expect(info.messages.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`), key).toEqual([]);
  }
  const source = readFileSync('shaders/qkv_rope_store.wgsl', 'utf8');
  expect(source).toContain(STEP_WGSL);
  expect(source).toMatch(/@binding\(1\) var<storage, read> step: Step;/);
});

describe.each(['F32', 'F16'] as const)('qkv_rope_store %s', (dtype) => {
  it('is bit-exact with rms_norm → rope → kv_store, on every case', async () => {
    if (noF16(dtype)) return expect(noF16(dtype)).toBe(true); // said, not silent: no F16 on this adapter
    for (const c of CASES) await check(dtype, c);
  });

  it('follows Rope.setInvFreq made after prepare (dynamic and longrope tables)', async () => {
    if (noF16(dtype)) return expect(noF16(dtype)).toBe(true);
    const c: Case = { ...base, nHeads: 4, nKvHeads: 2, headDim: 64, rotary: 64, norm: 'norm', maxSeq: 900, slots: 2, maxRows: 3, rows: [{ slot: 1, position: 800 }, { slot: 0, position: 3 }, { slot: 1, position: 801 }] };
    await check(dtype, c, invFreqOf(64, 10_000).map((x) => x / 4));
  });
});

it('refuses shapes and buffers it cannot serve, naming the op and the problem', async () => {
  const { device } = gpu;
  const [nHeads, nKvHeads, d, maxSeq, slots, rows] = [4, 2, 64, 16, 2, 3];
  const elems = (n: number) => outputBuffer(device, n, 4);
  const step = new Step(device, 'test.step', { rows, positions: maxSeq, slots });
  const joined = elems(rows * (nHeads + 2 * nKvHeads) * d);
  const width = (nHeads + 2 * nKvHeads) * d;
  const good = {
    step,
    q: { buffer: joined, offset: 0, stride: width },
    k: { buffer: joined, offset: nHeads * d, stride: width },
    v: { buffer: joined, offset: (nHeads + nKvHeads) * d, stride: width },
    qOut: elems(rows * nHeads * d),
    kCache: elems(slots * nKvHeads * maxSeq * d),
    vCache: elems(slots * nKvHeads * maxSeq * d),
    rope: null,
  };
  const shape = { nHeads, nKvHeads, headDim: d, maxSeq, slots, rows };
  const plain = await QkvRopeStore.create(device, 'F32');
  const normed = await QkvRopeStore.create(device, 'F32', { qkNorm: { eps: EPS, onePlusWeight: false } });
  const w = normWeight(device, 'q_norm', new Float32Array(d).fill(1), 'F32');
  const w300 = normWeight(device, 'wide_norm', new Float32Array(300).fill(1), 'F32');
  const rope = await Rope.create(device, 'F32', { invFreq: invFreqOf(64, 10_000) });
  const scaledRope = await Rope.create(device, 'F32', { invFreq: invFreqOf(64, 10_000), attentionFactor: 1.2 });
  const wideRope = await Rope.create(device, 'F32', { invFreq: invFreqOf(128, 10_000) });
  plain.prepare('ok', shape, good).destroy(); // the baseline is fine
  normed.prepare('ok', shape, { ...good, qNorm: w, kNorm: w, rope }).destroy();
  const refused: [QkvRopeStore, Partial<typeof shape>, Record<string, unknown>, RegExp][] = [
    [plain, { nHeads: 0 }, {}, /nHeads = 0 is not a positive integer/],
    [plain, { headDim: 63 }, {}, /needs an even headDim, got 63/],
    [plain, { rows: 2 }, {}, /step test.step has 3 rows, the buffers hold 2/],
    [plain, { maxSeq: 8 }, {}, /allows positions up to 16, the cache holds 8/],
    [plain, {}, { k: { buffer: joined, offset: nHeads * d, stride: nKvHeads * d - 1 } }, /k stride 127 is not an integer ≥ its row width 128/],
    [plain, {}, { v: { buffer: joined, offset: (nHeads + nKvHeads) * d + 1, stride: width } }, /v holds 6144 bytes, 3 rows of 128 at offset 385, stride 512 F32 need 6148/],
    [plain, {}, { q: { buffer: joined, offset: -1, stride: width } }, /q offset -1 is not an integer ≥ 0/],
    [plain, {}, { qOut: elems(rows * nHeads * d - 4) }, /qOut holds 3056 bytes, needs 3072/],
    [plain, {}, { kCache: joined }, /kCache holds 6144 bytes, needs 16384/],
    [plain, {}, { qOut: joined }, /qOut is also an input/],
    [plain, {}, { vCache: good.kCache }, /qOut, kCache and vCache must be distinct/],
    [plain, {}, { qNorm: w, kNorm: w }, /created without qkNorm but is given norm weights/],
    [normed, {}, { qNorm: w }, /created with qkNorm and needs qNorm and kNorm/],
    [normed, { headDim: 300 }, { qNorm: w300, kNorm: w300 }, /with qkNorm takes heads up to 256, got headDim 300/],
    [normed, { headDim: 32 }, { qNorm: w, kNorm: w }, /q_norm is F32 \[64\], expected F32 \[32\]/],
    [plain, {}, { rope: scaledRope }, /attention factor is 1.2: create the op with scaled: true/],
    [plain, { headDim: 32 }, { rope: wideRope }, /rotary dim 128 exceeds headDim 32/],
  ];
  for (const [op, shapeChange, bufferChange, message] of refused) {
    expect(() => op.prepare('test.layer', { ...shape, ...shapeChange }, { ...good, ...bufferChange }), String(message)).toThrow(message);
  }
  // the shape guards are SluiceErrors with a stable code
  expect(() => plain.prepare('test.layer', { ...shape, nHeads: 0 }, good)).toThrow(SluiceError);
  await expect(QkvRopeStore.create(device, 'F32', { qkNorm: { eps: -1, onePlusWeight: false } })).rejects.toThrow(/eps must be a finite number ≥ 0, got -1/);
  for (const b of [step, joined, good.qOut, good.kCache, good.vCache, w.chunks[0].buffer, w300.chunks[0].buffer, rope, scaledRope, wideRope]) b.destroy();
});

// scale_columns: W[n, k] ← round_T(W[n, k] · g[k]) in place, an RMSNorm's weight folded
// into the Linear after it at load. Seeded (N, K) with K not a multiple of 4 and N·K not a
// multiple of the workgroup, weights loaded through the real loader and split into row-chunks
// (small maxChunkBytes), F32 and F16, compared bit for bit with the JS product rounded once
// (a float64 product of two f32 or two f16 values is exact), padding past each chunk's rows
// untouched; a spill past the per-dimension workgroup limit; the refusals.

import { describe, expect, it } from 'vitest';
import { alignUp, type GpuTensor } from '../../src/gpu/gpu-tensor.js';
import { pipelineCache } from '../../src/gpu/pipeline-cache.js';
import { readBuffer } from '../../src/gpu/read-back.js';
import { runOps, type ComputeDtype } from '../../src/ops/op.js';
import { SCALE_COLUMNS_WORKGROUP, ScaleColumns, scaleColumnsVariants } from '../../src/ops/scale-columns.js';
import { firstMismatch, spyDevice, useGpuTestDevice } from '../support/gpu-helpers.js';
import { encode, randomValues, roundF16, uploadWeights } from '../support/op-helpers.js';
import { mulberry32 } from '../support/safetensors-bytes.js';

const gpu = useGpuTestDevice('test.scale_columns');

interface Shape {
  n: number;
  k: number;
  /** Rows per chunk asked of the loader (maxChunkBytes = that many rows). */
  chunkRows: number;
}

// Named cases first (one row; one row per chunk; a chunk one element past a workgroup),
// then seeded random shapes, K odd or 2 mod 4, chunked into 3 or more where N allows.
const rng = mulberry32(0x5ca1e);
const kOffFour = (): number => {
  const k = 1 + Math.floor(rng() * 300);
  return k % 4 === 0 ? k + 1 + 2 * Math.floor(rng() * 2) : k; // a multiple of 4 moves to k + 1 or k + 3
};
const SHAPES: Shape[] = [
  { n: 1, k: 7, chunkRows: 1 },
  { n: 5, k: 3, chunkRows: 1 },
  { n: 3, k: SCALE_COLUMNS_WORKGROUP + 1, chunkRows: 1 },
  { n: 41, k: 30, chunkRows: 13 },
  ...Array.from({ length: 12 }, (): Shape => {
    const n = 3 + Math.floor(rng() * 60);
    return { n, k: kOffFour(), chunkRows: 1 + Math.floor(rng() * Math.floor(n / 3)) };
  }),
];

const noF16 = (dtype: ComputeDtype): boolean => dtype === 'F16' && !gpu.device.features.has('shader-f16');
const bytesOf = (dtype: ComputeDtype): number => (dtype === 'F16' ? 2 : 4);
const round = (dtype: ComputeDtype): ((x: number) => number) => (dtype === 'F16' ? roundF16 : Math.fround);

/** W · g per column, rounded once to T; w and g hold values already in T. */
function reference(w: Float32Array, g: Float32Array, dtype: ComputeDtype): Float32Array {
  const r = round(dtype);
  return w.map((x, i) => r(x * g[i % g.length]));
}

/** What a chunk's buffer holds past its rows (padding to 16 bytes): a value scaling would change. */
const PAD = 1.5;

/** Weights (N, K) in `dtype` chunked at chunkRows, and g (K,) in one buffer; the padding past each chunk's rows set to PAD. */
async function upload(dtype: ComputeDtype, { n, k, chunkRows }: Shape, w: Float32Array, g: Float32Array) {
  const weights = await uploadWeights(gpu.device, { w: { shape: [n, k], values: w } }, dtype, alignUp(chunkRows * k * bytesOf(dtype), 16));
  const norm = await uploadWeights(gpu.device, { g: { shape: [k], values: g } }, dtype);
  const weight = weights.tensors.get('w')!;
  for (const chunk of weight.chunks) {
    // writeBuffer wants 4-byte offsets: an odd f16 chunk's last element is rewritten as it was.
    const from = Math.floor(chunk.byteLength / 4) * 4;
    const tail = new Float32Array((chunk.buffer.size - from) / bytesOf(dtype)).fill(PAD);
    const first = chunk.firstRow * k + from / bytesOf(dtype);
    tail.set(w.subarray(first, first + (chunk.byteLength - from) / bytesOf(dtype)));
    if (chunk.buffer.size > chunk.byteLength) gpu.device.queue.writeBuffer(chunk.buffer, from, encode(tail, dtype));
  }
  return { weight, g: norm.tensors.get('g')!, destroy: () => (weights.destroy(), norm.destroy()) };
}

/** Every chunk's rows bit for bit against the reference, and its padding still PAD. */
async function expectScaled(weight: GpuTensor, want: Float32Array, dtype: ComputeDtype, where: string): Promise<void> {
  const k = weight.shape[1];
  for (const [i, chunk] of weight.chunks.entries()) {
    const got = await readBuffer(gpu.device, chunk.buffer);
    const rows = encode(want.subarray(chunk.firstRow * k, (chunk.firstRow + chunk.rows) * k), dtype);
    expect(firstMismatch(got.subarray(0, chunk.byteLength), rows, bytesOf(dtype)), `${where} chunk ${i}`).toBeNull();
    const padding = encode(new Float32Array((chunk.buffer.size - chunk.byteLength) / bytesOf(dtype)).fill(PAD), dtype);
    expect(firstMismatch(got.subarray(chunk.byteLength), padding, bytesOf(dtype)), `${where} chunk ${i} padding`).toBeNull();
  }
}

async function check(device: GPUDevice, dtype: ComputeDtype, shape: Shape): Promise<number> {
  const { n, k } = shape;
  const r = round(dtype);
  const w = randomValues(rng, n * k, -2, 2).map(r);
  const g = randomValues(rng, k, -2, 2).map(r);
  const t = await upload(dtype, shape, w, g);
  const op = (await ScaleColumns.create(device, dtype)).prepare(`test.scale_columns.${n}x${k}`, t.weight, t.g);
  expect(op.dispatches.length).toBe(t.weight.chunks.length);
  await runOps(device, [op]);
  const where = `N=${n} K=${k} chunkRows=${shape.chunkRows} chunks=${t.weight.chunks.length}`;
  await expectScaled(t.weight, reference(w, g, dtype), dtype, where);
  expect(firstMismatch(await readBuffer(gpu.device, t.g.chunks[0].buffer, 0, t.g.byteLength), encode(g, dtype), bytesOf(dtype)), `${where} g`).toBeNull();
  op.destroy();
  t.destroy();
  return t.weight.chunks.length;
}

it('every variant compiles with no message', async () => {
  const features = gpu.device.features as ReadonlySet<string>;
  const variants = scaleColumnsVariants(['F32', 'F16'], features);
  expect(variants.map((v) => v.key)).toEqual(features.has('shader-f16') ? ['scale_columns_f32_wg256', 'scale_columns_f16_wg256'] : ['scale_columns_f32_wg256']);
  for (const { key, spec } of variants) {
    const info = await pipelineCache(gpu.device).module(spec.shader, spec.flags).getCompilationInfo();
    expect(info.messages.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`), key).toEqual([]);
  }
});

it('offers no F16 variant without shader-f16, and create refuses F16 there', async () => {
  expect(scaleColumnsVariants(['F32', 'F16'], new Set()).map((v) => v.key)).toEqual(['scale_columns_f32_wg256']);
  const spy = spyDevice(gpu.device, { features: new Set() });
  await expect(ScaleColumns.create(spy.device, 'F16')).rejects.toThrow(/^scale_columns: F16 compute needs the device feature 'shader-f16'$/);
});

describe.each(['F32', 'F16'] as const)('scale_columns %s', (dtype) => {
  it(`${SHAPES.length} seeded shapes, chunked weights: bit for bit, padding untouched`, async () => {
    if (noF16(dtype)) return expect(noF16(dtype)).toBe(true); // said, not silent: no F16 on this adapter
    const chunkCounts: number[] = [];
    for (const shape of SHAPES) chunkCounts.push(await check(gpu.device, dtype, shape));
    expect(Math.max(...chunkCounts)).toBeGreaterThanOrEqual(3);
  });

  it('zeros, signs, tiny and large values: one rounding of the exact product', async () => {
    if (noF16(dtype)) return expect(noF16(dtype)).toBe(true); // said, not silent: no F16 on this adapter
    // Columns of g: 1, −1, 0, a tiny and a large power of two, 1/3 and 3; w: 0, −0, one f16
    // ulp above 1, −1/3 and 100.5, times 1, 2 or 3. Products stay inside T's normal range
    // (f16 ≤ 50,250): WGSL leaves an out-of-range conversion to f16 to the platform.
    const g = Float32Array.from(dtype === 'F16' ? [1, -1, 0, 2 ** -7, 250, 1 / 3, 3] : [1, -1, 0, 2 ** -60, 2 ** 60, 1 / 3, 3]).map(round(dtype));
    const w = Float32Array.from({ length: 5 * g.length }, (_, i) => [0, -0, 1 + 2 ** -10, -(1 / 3), 100.5][i % 5] * (1 + (i % 3))).map(round(dtype));
    const shape = { n: 5, k: g.length, chunkRows: 2 };
    const t = await upload(dtype, shape, w, g);
    const op = (await ScaleColumns.create(gpu.device, dtype)).prepare('test.scale_columns.edges', t.weight, t.g);
    await runOps(gpu.device, [op]);
    await expectScaled(t.weight, reference(w, g, dtype), dtype, 'edges');
    op.destroy();
    t.destroy();
  });
});

it('a chunk past the per-dimension workgroup limit spills into y', async () => {
  // A device that claims 4 workgroups per dimension: 30 × 101 = 3030 elements = 12 workgroups → (4, 3).
  const spy = spyDevice(gpu.device, { limits: { maxComputeWorkgroupsPerDimension: 4 } });
  await check(spy.device, 'F32', { n: 30, k: 101, chunkRows: 30 });
});

it('prepare refuses a wrong-length g, a 1-D weight, a dtype mismatch, a chunked g and a chunk past u32 indexing, in one line naming the label', async () => {
  const op = await ScaleColumns.create(gpu.device, 'F32');
  const loaded = await uploadWeights(gpu.device, { w: { shape: [4, 6], values: randomValues(rng, 24) }, g: { shape: [6], values: randomValues(rng, 6) }, g5: { shape: [5], values: randomValues(rng, 5) }, v: { shape: [24], values: randomValues(rng, 24) } }, 'F32');
  const chunked = await uploadWeights(gpu.device, { g: { shape: [6], values: randomValues(rng, 6) } }, 'F32', 16);
  const [w, g, g5, v] = ['w', 'g', 'g5', 'v'].map((name) => loaded.tensors.get(name)!);
  // Descriptions only, no buffers of their own: prepare refuses before it binds anything.
  const asF16 = (t: GpuTensor): GpuTensor => ({ ...t, dtype: 'F16' });
  const huge = 70_000; // one chunk of 70,000 × 70,000 = 4.9e9 elements
  const hugeW: GpuTensor = { ...w, shape: [huge, huge], chunks: [{ ...w.chunks[0], rows: huge }], rowsPerChunk: huge };
  const hugeG: GpuTensor = { ...g, shape: [huge] };
  const refusals: [() => unknown, RegExp][] = [
    [() => op.prepare('layer0.q', w, g5), /^layer0\.q: g5 is F32 \[5\], expected F32 \[6\]$/],
    [() => op.prepare('layer0.q', v, g), /^layer0\.q: scale_columns weight v must be 2-D \(N, K\), got \[24\]$/],
    [() => op.prepare('layer0.q', asF16(w), g), /^layer0\.q: w is F16 \[4, 6\], expected F32 \[4, 6\]$/],
    [() => op.prepare('layer0.q', w, asF16(g)), /^layer0\.q: g is F16 \[6\], expected F32 \[6\]$/],
    [() => op.prepare('layer0.q', w, chunked.tensors.get('g')!), /^layer0\.q: scale_columns g g is stored in 2 chunks, needs one buffer$/],
    [() => op.prepare('layer0.q', hugeW, hugeG), /^layer0\.q: scale_columns chunk of 70000 rows × 70000 has more elements than u32 indexes$/],
  ];
  for (const [prepare, message] of refusals) expect(prepare).toThrow(message);
  loaded.destroy();
  chunked.destroy();
});

// embedding: rows of a (vocab, hidden) table for token ids, the table loaded through the
// real loader and split into row-chunks (small maxChunkBytes), F32 and F16, with ids on
// every chunk's first and last row and past the vocab, against a plain gather; the
// scaled gather (Gemma's embed · √hidden, the scale rounded to the compute dtype); and ids
// bound as a range of a step buffer (src/gpu/step.ts, the model's way) against a plain buffer.

import { describe, expect, it } from 'vitest';
import { alignUp } from '../../src/gpu/gpu-tensor.js';
import { pipelineCache } from '../../src/gpu/pipeline-cache.js';
import { Step } from '../../src/gpu/step.js';
import { EMBEDDING_WORKGROUP, Embedding, embeddingVariants, roundToF16 } from '../../src/ops/embedding.js';
import { runOps, type ComputeDtype } from '../../src/ops/op.js';
import { spyDevice, useGpuTestDevice } from '../support/gpu-helpers.js';
import { asDtype, closeness, outputBuffer, randomValues, readArray, roundF16, uploadArray, uploadWeights } from '../support/op-helpers.js';
import { mulberry32 } from '../support/safetensors-bytes.js';

const gpu = useGpuTestDevice('test.embedding');

interface Shape {
  vocab: number;
  hidden: number;
  /** Rows per chunk asked of the loader (maxChunkBytes = that many rows). */
  chunkRows: number;
}

// Named regression cases first (a one-row table; one row per chunk; hidden past the
// workgroup by one), then seeded random shapes.
const rng = mulberry32(0xe3b);
const HIDDEN = [1, 7, 63, 100, 576, 1000, EMBEDDING_WORKGROUP + 1];
const SHAPES: Shape[] = [
  { vocab: 1, hidden: 7, chunkRows: 1 },
  { vocab: 5, hidden: 8, chunkRows: 1 }, // rows of 16 or 32 bytes: exactly one per chunk
  { vocab: 40, hidden: EMBEDDING_WORKGROUP + 1, chunkRows: 13 },
  { vocab: 100, hidden: 64, chunkRows: 100 },
  ...Array.from({ length: 12 }, (): Shape => {
    const vocab = 1 + Math.floor(rng() * 300);
    return { vocab, hidden: HIDDEN[Math.floor(rng() * HIDDEN.length)], chunkRows: 1 + Math.floor(rng() * Math.min(vocab, 1 + vocab / 2)) };
  }),
];

/** The gather: row ids[t] of the table, or zeros for an id past the vocab. */
function reference(table: Float32Array, vocab: number, hidden: number, ids: Uint32Array): Float32Array {
  const out = new Float32Array(ids.length * hidden);
  ids.forEach((id, t) => {
    if (id < vocab) out.set(table.subarray(id * hidden, (id + 1) * hidden), t * hidden);
  });
  return out;
}

/** Ids on every chunk's first and last row, 0 and vocab − 1, a few at random and three past the vocab; shuffled. */
function idsFor(chunks: readonly { firstRow: number; rows: number }[], vocab: number): Uint32Array {
  const ids = [0, vocab - 1, vocab, vocab + 7, 2 ** 32 - 1, ...chunks.flatMap((c) => [c.firstRow, c.firstRow + c.rows - 1])];
  for (let i = 0; i < 4; i++) ids.push(Math.floor(rng() * vocab));
  for (let i = ids.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [ids[i], ids[j]] = [ids[j], ids[i]];
  }
  return Uint32Array.from(ids);
}

const noF16 = (dtype: ComputeDtype): boolean => dtype === 'F16' && !gpu.device.features.has('shader-f16');
const bytesOf = (dtype: ComputeDtype): number => (dtype === 'F16' ? 2 : 4);

/**
 * transformers' Gemma in the compute dtype: normalizer = tensor(scale, dtype), then
 * row · normalizer rounded once (an f16 × f16 or f32 × f32 product is exact in float64).
 */
function scaled(rows: Float32Array, scale: number, dtype: ComputeDtype): Float32Array {
  const s = dtype === 'F16' ? roundToF16(scale) : Math.fround(scale);
  return rows.map((x) => (dtype === 'F16' ? roundF16(x * s) : Math.fround(x * s)));
}

async function check(device: GPUDevice, dtype: ComputeDtype, { vocab, hidden, chunkRows }: Shape, scale?: number): Promise<number> {
  const values = randomValues(rng, vocab * hidden, -3, 3);
  const weights = await uploadWeights(gpu.device, { table: { shape: [vocab, hidden], values } }, dtype, alignUp(chunkRows * hidden * bytesOf(dtype), 16));
  const table = weights.tensors.get('table')!;
  const ids = idsFor(table.chunks, vocab);
  const idsBuf = uploadArray(gpu.device, ids, 'U32');
  // Start from garbage, so a row no dispatch writes shows.
  const out = uploadArray(gpu.device, new Float32Array(ids.length * hidden).fill(7), dtype);
  const embedding = await Embedding.create(device, dtype);
  const op = embedding.prepare(`test.embedding.${vocab}x${hidden}`, ids.length, idsBuf, table, out, scale === undefined ? undefined : { scale });
  expect(op.dispatches.length).toBe(table.chunks.length);
  await runOps(device, [op]);
  const got = await readArray(gpu.device, out, ids.length * hidden, dtype);
  // Exact: a gather copies stored values (the reference rounds them as the loader does);
  // scaled, one correctly rounded multiply, as the reference's.
  const gathered = reference(asDtype(values, dtype), vocab, hidden, ids);
  const want = scale === undefined ? gathered : scaled(gathered, scale, dtype);
  expect(closeness(got, want, 0, 0), `vocab=${vocab} hidden=${hidden} chunks=${table.chunks.length} scale=${scale}`).toBeNull();
  op.destroy();
  weights.destroy();
  idsBuf.destroy();
  out.destroy();
  return table.chunks.length;
}

it('every variant compiles with no message', async () => {
  const features = gpu.device.features as ReadonlySet<string>;
  for (const { key, spec } of embeddingVariants(features.has('shader-f16') ? ['F32', 'F16'] : ['F32'], features)) {
    const info = await pipelineCache(gpu.device).module(spec.shader, spec.flags).getCompilationInfo();
    expect(info.messages.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`), key).toEqual([]);
  }
});

describe.each(['F32', 'F16'] as const)('embedding %s', (dtype) => {
  it(`${SHAPES.length} seeded shapes, chunked tables, ids on every chunk boundary and past the vocab`, async () => {
    if (noF16(dtype)) return expect(noF16(dtype)).toBe(true); // said, not silent: no F16 on this adapter
    const chunkCounts: number[] = [];
    for (const shape of SHAPES) chunkCounts.push(await check(gpu.device, dtype, shape));
    expect(chunkCounts[1]).toBe(5); // one row per chunk
    expect(chunkCounts.filter((n) => n > 2).length).toBeGreaterThan(4); // most cases are chunked
  });

  it(`scale (Gemma's √hidden): ${SHAPES.length} seeded shapes, chunked tables`, async () => {
    if (noF16(dtype)) return expect(noF16(dtype)).toBe(true);
    for (const shape of SHAPES) await check(gpu.device, dtype, shape, rng() < 0.5 ? Math.sqrt(shape.hidden) : 0.1 + 60 * rng());
    // Gemma-3-1B: hidden 1152, √1152 = 33.941… is 33.9375 in f16; Gemma-2-2B: √2304 = 48 exactly.
    await check(gpu.device, dtype, { vocab: 9, hidden: 1152, chunkRows: 4 }, Math.sqrt(1152));
    await check(gpu.device, dtype, { vocab: 9, hidden: 2304, chunkRows: 9 }, Math.sqrt(2304));
  });

  it('scale 1 is the plain gather; the scaled variant is used otherwise', async () => {
    if (noF16(dtype)) return expect(noF16(dtype)).toBe(true);
    const weights = await uploadWeights(gpu.device, { table: { shape: [4, 8], values: randomValues(rng, 32) } }, dtype);
    const table = weights.tensors.get('table')!;
    const [ids, out] = [uploadArray(gpu.device, Uint32Array.of(1), 'U32'), outputBuffer(gpu.device, 8, 4)];
    const embedding = await Embedding.create(gpu.device, dtype);
    const d = dtype.toLowerCase();
    for (const [options, key] of [[undefined, `embedding_${d}_wg256`], [{ scale: 1 }, `embedding_${d}_wg256`], [{ scale: 48 }, `embedding_${d}_scaled_wg256`]] as const) {
      const op = embedding.prepare('test.embedding.key', 1, ids, table, out, options);
      expect(op.dispatches[0].pipeline.label).toBe(key);
      op.destroy();
    }
    expect(() => embedding.prepare('x', 1, ids, table, out, { scale: Number.NaN })).toThrow(/scale must be a finite number/);
    if (dtype === 'F16') expect(() => embedding.prepare('x', 1, ids, table, out, { scale: 1e5 })).toThrow(/overflows F16/);
    weights.destroy();
    ids.destroy();
    out.destroy();
  });

  it('one prepared op, ids rewritten between submits (the per-token path)', async () => {
    if (noF16(dtype)) return expect(noF16(dtype)).toBe(true);
    const [vocab, hidden] = [30, 9];
    const values = randomValues(rng, vocab * hidden, -3, 3);
    const weights = await uploadWeights(gpu.device, { table: { shape: [vocab, hidden], values } }, dtype, alignUp(7 * hidden * bytesOf(dtype), 16));
    const table = weights.tensors.get('table')!;
    const idsBuf = uploadArray(gpu.device, new Uint32Array(1), 'U32');
    const out = outputBuffer(gpu.device, hidden, bytesOf(dtype));
    const op = (await Embedding.create(gpu.device, dtype)).prepare('test.embedding.decode', 1, idsBuf, table, out);
    for (const id of [0, 6, 7, 29, 13, 30, 3]) {
      gpu.device.queue.writeBuffer(idsBuf, 0, Uint32Array.of(id));
      await runOps(gpu.device, [op]);
      const want = reference(asDtype(values, dtype), vocab, hidden, Uint32Array.of(id));
      expect(closeness(await readArray(gpu.device, out, hidden, dtype), want, 0, 0), `id=${id}`).toBeNull();
    }
    op.destroy();
    weights.destroy();
    idsBuf.destroy();
    out.destroy();
  });

  it("gathers a step's ids (a range of the step buffer) exactly as a plain ids buffer", async () => {
    if (noF16(dtype)) return expect(noF16(dtype)).toBe(true);
    const [vocab, hidden] = [37, 19];
    const values = randomValues(rng, vocab * hidden, -3, 3);
    const weights = await uploadWeights(gpu.device, { table: { shape: [vocab, hidden], values } }, dtype, alignUp(10 * hidden * bytesOf(dtype), 16));
    const table = weights.tensors.get('table')!;
    const ids = new Uint32Array(idsFor(table.chunks, vocab)); // on an ArrayBuffer, for writeBuffer
    const T = ids.length;
    const step = new Step(gpu.device, 'test.embedding', { rows: T, positions: T, ids: true });
    const idsBuf = uploadArray(gpu.device, new Uint32Array(T), 'U32');
    const [viaStep, viaBuffer] = [outputBuffer(gpu.device, T * hidden, bytesOf(dtype)), outputBuffer(gpu.device, T * hidden, bytesOf(dtype))];
    const embedding = await Embedding.create(gpu.device, dtype);
    const ops = [embedding.prepare('test.embedding.step', T, step.ids!, table, viaStep), embedding.prepare('test.embedding.buffer', T, idsBuf, table, viaBuffer)];
    const gathered = async (): Promise<Float32Array[]> => {
      await runOps(gpu.device, ops);
      return Promise.all([viaStep, viaBuffer].map((b) => readArray(gpu.device, b, T * hidden, dtype)));
    };
    step.write(Array.from(ids, (_, r) => r), undefined, ids);
    gpu.device.queue.writeBuffer(idsBuf, 0, ids);
    let [got, want] = await gathered();
    expect(closeness(got, want, 0, 0)).toBeNull();
    expect(closeness(got, reference(asDtype(values, dtype), vocab, hidden, ids), 0, 0)).toBeNull();
    // A shorter call: the first 2 ids change, the rest stay as the last write left them.
    step.writeRange(0, 2, 0, [vocab - 1, 3]);
    ids.set([vocab - 1, 3]);
    gpu.device.queue.writeBuffer(idsBuf, 0, ids);
    [got, want] = await gathered();
    expect(closeness(got, want, 0, 0)).toBeNull();
    expect(closeness(got, reference(asDtype(values, dtype), vocab, hidden, ids), 0, 0)).toBeNull();
    ops.forEach((op) => op.destroy());
    for (const b of [idsBuf, viaStep, viaBuffer]) b.destroy();
    step.destroy();
    weights.destroy();
  });
});

it('roundToF16 rounds doubles to the nearest f16, ties to even, as the f32 path does for f32 values', () => {
  expect([Math.sqrt(1152), Math.sqrt(2304), Math.sqrt(3072), 65504, 65519.99, 65520, 2 ** -24, 2 ** -25, 3 * 2 ** -26, -1 / 3].map(roundToF16)).toEqual([
    33.9375, 48, 55.4375, 65504, 65504, Infinity, 2 ** -24, 0, 2 ** -24, -0.333251953125,
  ]);
  // 1 + 2^-11 is a tie between 1 and 1 + 2^-10: even → 1; 1 + 3·2^-11 → 1 + 2^-9.
  expect([1 + 2 ** -11, 1 + 3 * 2 ** -11].map(roundToF16)).toEqual([1, 1 + 2 ** -9]);
  const values = randomValues(rng, 20000, -70000, 70000);
  const small = randomValues(rng, 20000, -1e-3, 1e-3);
  for (const v of [...values, ...small]) expect(roundToF16(v), `${v}`).toBe(roundF16(v));
});

it('tokens past the per-dimension workgroup limit spill into y', async () => {
  // A device that claims 4 workgroups per dimension: 5 + 2·4 + 4 = 17 ids → a (4, 5) grid.
  const spy = spyDevice(gpu.device, { limits: { maxComputeWorkgroupsPerDimension: 4 } });
  expect(await check(spy.device, 'F32', { vocab: 20, hidden: 2 * EMBEDDING_WORKGROUP + 5, chunkRows: 6 })).toBe(4);
});

it('prepare refuses a table of the wrong dtype or rank and short buffers', async () => {
  const embedding = await Embedding.create(gpu.device, 'F32');
  const weights = await uploadWeights(gpu.device, { table: { shape: [4, 8], values: new Float32Array(32) }, vec: { shape: [8], values: new Float32Array(8) } }, 'F32');
  const [table, vec] = [weights.tensors.get('table')!, weights.tensors.get('vec')!];
  const buf = (n: number): GPUBuffer => outputBuffer(gpu.device, n, 4);
  const [ids, out] = [buf(4), buf(16)];
  expect(() => embedding.prepare('x', 2, ids, vec, out)).toThrow(/must be 2-D/);
  expect(() => embedding.prepare('x', 3, ids, table, out)).toThrow(/out holds 64 bytes/);
  const big = buf(40);
  expect(() => embedding.prepare('x', 5, ids, table, big)).toThrow(/ids holds 16 bytes/);
  expect(() => embedding.prepare('x', 0, ids, table, out)).toThrow(/tokens/);
  // ids as a range of a buffer (a step's): bindable offset, inside the buffer, long enough
  const align = gpu.device.limits.minStorageBufferOffsetAlignment;
  const ranged = buf(align / 4 + 4);
  expect(() => embedding.prepare('x', 1, { buffer: ranged, offset: 4 }, table, out)).toThrow(new RegExp(`ids offset 4 is not a multiple of ${align}`));
  expect(() => embedding.prepare('x', 1, { buffer: ranged, offset: align, size: 32 }, table, out)).toThrow(new RegExp(`ids range \\[${align}, ${align + 32}\\) is past the end`));
  expect(() => embedding.prepare('x', 1, { buffer: ids, offset: 2 * align }, table, out)).toThrow(/is past the end/);
  expect(() => embedding.prepare('x', 3, { buffer: ranged, offset: align, size: 8 }, table, out)).toThrow(/ids holds 8 bytes, 3 u32 need 12/);
  expect(() => embedding.prepare('x', 5, { buffer: ranged, offset: align }, table, big)).toThrow(/ids holds 16 bytes/);
  embedding.prepare('x', 2, { buffer: ranged, offset: align }, table, out).destroy(); // 16 bytes at the offset: 4 ids
  ranged.destroy();
  if (gpu.device.features.has('shader-f16')) {
    const f16 = await Embedding.create(gpu.device, 'F16');
    expect(() => f16.prepare('x', 1, ids, table, out)).toThrow(/is F32 \[4, 8\], expected F16/);
  }
  weights.destroy();
  for (const buffer of [ids, out, big]) buffer.destroy();
});

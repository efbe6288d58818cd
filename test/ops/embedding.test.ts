// embedding: rows of a (vocab, hidden) table for token ids, the table loaded through the
// real loader and split into row-chunks (small maxChunkBytes), F32 and F16, with ids on
// every chunk's first and last row and past the vocab, against a plain gather.

import { describe, expect, it } from 'vitest';
import { alignUp } from '../../src/gpu/gpu-tensor.js';
import { pipelineCache } from '../../src/gpu/pipeline-cache.js';
import { EMBEDDING_WORKGROUP, Embedding, embeddingVariants } from '../../src/ops/embedding.js';
import { runOps, type ComputeDtype } from '../../src/ops/op.js';
import { spyDevice, useGpuTestDevice } from '../support/gpu-helpers.js';
import { asDtype, closeness, outputBuffer, randomValues, readArray, uploadArray, uploadWeights } from '../support/op-helpers.js';
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

async function check(device: GPUDevice, dtype: ComputeDtype, { vocab, hidden, chunkRows }: Shape): Promise<number> {
  const values = randomValues(rng, vocab * hidden, -3, 3);
  const weights = await uploadWeights(gpu.device, { table: { shape: [vocab, hidden], values } }, dtype, alignUp(chunkRows * hidden * bytesOf(dtype), 16));
  const table = weights.tensors.get('table')!;
  const ids = idsFor(table.chunks, vocab);
  const idsBuf = uploadArray(gpu.device, ids, 'U32');
  // Start from garbage, so a row no dispatch writes shows.
  const out = uploadArray(gpu.device, new Float32Array(ids.length * hidden).fill(7), dtype);
  const embedding = await Embedding.create(device, dtype);
  const op = embedding.prepare(`test.embedding.${vocab}x${hidden}`, ids.length, idsBuf, table, out);
  expect(op.dispatches.length).toBe(table.chunks.length);
  await runOps(device, [op]);
  const got = await readArray(gpu.device, out, ids.length * hidden, dtype);
  // Exact: a gather copies stored values (the reference rounds them as the loader does).
  expect(closeness(got, reference(asDtype(values, dtype), vocab, hidden, ids), 0, 0), `vocab=${vocab} hidden=${hidden} chunks=${table.chunks.length}`).toBeNull();
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
  if (gpu.device.features.has('shader-f16')) {
    const f16 = await Embedding.create(gpu.device, 'F16');
    expect(() => f16.prepare('x', 1, ids, table, out)).toThrow(/is F32 \[4, 8\], expected F16/);
  }
  weights.destroy();
  for (const buffer of [ids, out, big]) buffer.destroy();
});

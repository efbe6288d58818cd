// qembedding: dequantized rows of a quantized (vocab, hidden) table for token ids: q8 and q4,
// with and without zero points, f16 and f32 scale storage, F32 and F16 compute, row-chunked
// tables (3+ chunks, and one row per chunk), ids on every chunk's first and last row and past
// the vocab, with and without Gemma's scale; against a plain gather over dequantizeHost's
// values rounded as the kernel documents, and against the dense Embedding on the same values.

import { describe, expect, it } from 'vitest';
import {
  createQuantizedTensor, dequantizeHost, destroyQuantized, type HostQuantized, type QuantizedTensor, type QuantKind, type ScaleDtype, writeQuantized,
} from '../../src/gpu/quantized-tensor.js';
import { alignUp } from '../../src/gpu/gpu-tensor.js';
import { pipelineCache } from '../../src/gpu/pipeline-cache.js';
import { Step } from '../../src/gpu/step.js';
import { Embedding, roundToF16 } from '../../src/ops/embedding.js';
import { runOps, type ComputeDtype } from '../../src/ops/op.js';
import { QEMBEDDING_WORKGROUP, QEmbedding, qembeddingVariants } from '../../src/ops/qembedding.js';
import { spyDevice, useGpuTestDevice } from '../support/gpu-helpers.js';
import { closeness, outputBuffer, readArray, roundF16, uploadArray, uploadWeights } from '../support/op-helpers.js';
import { randomQuantized, uploadQuantized } from '../support/quantized-weights.js';
import { mulberry32 } from '../support/safetensors-bytes.js';

const gpu = useGpuTestDevice('test.qembedding');
const rng = mulberry32(0x9e3b);

interface Case {
  vocab: number;
  hidden: number;
  groupSize: number;
  zeros: boolean;
  scaleDtype: ScaleDtype;
  /** 'three': uploadQuantized's ~3 chunks; 'rows': one row per chunk; 'one': a single chunk. */
  chunks: 'three' | 'rows' | 'one';
  scale?: number;
}

// Named regression cases first (vocab 301 in 3+ chunks; one row per chunk; hidden of one
// group; a row past the 64-thread workgroup in words), then seeded ones mixing every option.
const NAMED: Case[] = [
  { vocab: 301, hidden: 96, groupSize: 32, zeros: true, scaleDtype: 'F16', chunks: 'three' },
  { vocab: 301, hidden: 160, groupSize: 32, zeros: false, scaleDtype: 'F32', chunks: 'three', scale: Math.sqrt(160) },
  { vocab: 5, hidden: 32, groupSize: 8, zeros: true, scaleDtype: 'F32', chunks: 'rows' },
  { vocab: 1, hidden: 32, groupSize: 32, zeros: false, scaleDtype: 'F16', chunks: 'one', scale: 48 },
  { vocab: 40, hidden: 8 * (QEMBEDDING_WORKGROUP + 1), groupSize: 8, zeros: true, scaleDtype: 'F16', chunks: 'three' },
];
const seeded = (i: number): Case => {
  const groupSize = [8, 32, 128][i % 3];
  return {
    vocab: 1 + Math.floor(rng() * 310),
    hidden: groupSize * (1 + Math.floor(rng() * 6)),
    groupSize,
    zeros: (i & 1) === 1,
    scaleDtype: (i & 2) === 2 ? 'F32' : 'F16',
    chunks: i % 4 === 3 ? 'one' : 'three',
    scale: (i & 4) === 4 ? 0.1 + 60 * rng() : undefined,
  };
};
const CASES: Case[] = [...NAMED, ...Array.from({ length: 8 }, (_, i) => seeded(i))];

/** The kernel's documented rounding: T(f32(s·(q − z)) · scaleT), s·(q − z) exact; zeros past the vocab. */
function reference(deq: Float32Array, [vocab, hidden]: [number, number], ids: Uint32Array, dtype: ComputeDtype, scale?: number): Float32Array {
  const s = scale === undefined ? 1 : dtype === 'F16' ? roundToF16(scale) : Math.fround(scale);
  const out = new Float32Array(ids.length * hidden);
  ids.forEach((id, t) => {
    if (id >= vocab) return;
    for (let k = 0; k < hidden; k++) {
      const v = Math.fround(deq[id * hidden + k] * s);
      out[t * hidden + k] = dtype === 'F16' ? roundF16(v) : v;
    }
  });
  return out;
}

/** Ids on every chunk's first and last row, 0 and vocab − 1, three past the vocab and a few at random; shuffled. */
function idsFor(chunks: readonly { firstRow: number; rows: number }[], vocab: number): Uint32Array {
  const ids = [0, vocab - 1, vocab, vocab + 7, 2 ** 32 - 1, ...chunks.flatMap((c) => [c.firstRow, c.firstRow + c.rows - 1])];
  for (let i = 0; i < 4; i++) ids.push(Math.floor(rng() * vocab));
  for (let i = ids.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [ids[i], ids[j]] = [ids[j], ids[i]];
  }
  return Uint32Array.from(ids);
}

function upload(host: HostQuantized, kind: QuantKind, c: Case): QuantizedTensor {
  const layout = { kind, n: c.vocab, k: c.hidden, groupSize: c.groupSize, scaleDtype: c.scaleDtype };
  if (c.chunks !== 'rows') return uploadQuantized(gpu.device, host, layout, c.chunks === 'three');
  // Chunks hold whole 16-byte-padded buffers: one row per chunk needs rows of ≥ 16 bytes.
  const rowBytes = (c.hidden / (kind === 'q4' ? 8 : 4)) * 4;
  if (rowBytes < 16) throw new Error(`test case: one row per chunk needs hidden ≥ ${kind === 'q4' ? 32 : 16}`);
  const shape: [number, number] = [c.vocab, c.hidden];
  const table = createQuantizedTensor(gpu.device, 'test.qtable', { kind, shape, groupSize: c.groupSize, scaleDtype: c.scaleDtype, hasZeros: c.zeros }, 16 + alignUp(rowBytes, 16));
  writeQuantized(gpu.device, table, host);
  return table;
}

const noF16 = (dtype: ComputeDtype): boolean => dtype === 'F16' && !gpu.device.features.has('shader-f16');

/** Runs one gather; returns what it wrote (tokens, hidden), the ids, the dequantized table and its chunk count. */
async function gather(device: GPUDevice, kind: QuantKind, dtype: ComputeDtype, c: Case) {
  const host = randomQuantized(rng, kind, c.vocab, c.hidden, c.groupSize, c.zeros);
  const table = upload(host, kind, c);
  const ids = idsFor(table.chunks, c.vocab);
  const idsBuf = uploadArray(gpu.device, ids, 'U32');
  // Garbage before and 8 elements past the output, so a row no dispatch writes, or a write past the end, shows.
  const size = ids.length * c.hidden;
  const out = uploadArray(gpu.device, new Float32Array(size + 8).fill(7), dtype);
  const op = (await QEmbedding.create(device, kind, dtype)).prepare(`test.qembedding.${c.vocab}x${c.hidden}`, ids.length, idsBuf, table, out, c.scale === undefined ? undefined : { scale: c.scale });
  expect(op.dispatches.length).toBe(table.chunks.length);
  await runOps(device, [op]);
  const all = await readArray(gpu.device, out, size + 8, dtype);
  const chunks = table.chunks.length;
  op.destroy();
  destroyQuantized(table);
  idsBuf.destroy();
  out.destroy();
  expect(Array.from(all.subarray(size)), 'wrote past the output').toEqual(new Array(8).fill(7));
  return { got: all.subarray(0, size), ids, deq: dequantizeHost(kind, [c.vocab, c.hidden], c.groupSize, host), chunks };
}

it('every variant compiles with no message', async () => {
  const features = gpu.device.features as ReadonlySet<string>;
  const variants = qembeddingVariants(features.has('shader-f16') ? ['F32', 'F16'] : ['F32'], features);
  expect(variants.length).toBe(features.has('shader-f16') ? 4 : 2);
  for (const { key, spec } of variants) {
    const info = await pipelineCache(gpu.device).module(spec.shader, spec.flags).getCompilationInfo();
    expect(info.messages.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`), key).toEqual([]);
  }
});

for (const kind of ['q8', 'q4'] as const) {
  describe.each(['F32', 'F16'] as const)(`qembedding ${kind} %s`, (dtype) => {
    it(`${CASES.length} cases: zeros, scale storage, chunks and scale mixed; ids on chunk edges and past the vocab`, async () => {
      if (noF16(dtype)) return expect(noF16(dtype)).toBe(true); // said, not silent: no F16 on this adapter
      const chunkCounts: number[] = [];
      for (const c of CASES) {
        const { got, ids, deq, chunks } = await gather(gpu.device, kind, dtype, c);
        chunkCounts.push(chunks);
        // Exact: the reference does the kernel's roundings (see reference()).
        const what = `${kind} ${dtype} vocab=${c.vocab} hidden=${c.hidden} G=${c.groupSize} zeros=${c.zeros} scales=${c.scaleDtype} chunks=${chunks} scale=${c.scale}`;
        expect(closeness(got, reference(deq, [c.vocab, c.hidden], ids, dtype, c.scale), 0, 0), what).toBeNull();
      }
      expect(chunkCounts.slice(0, 3)).toEqual([expect.any(Number), expect.any(Number), 5]);
      expect(Math.min(chunkCounts[0], chunkCounts[1])).toBeGreaterThanOrEqual(3); // vocab 301 in 3+ chunks
    });

    it('equals the dense Embedding over the dequantized table (F32; F16 without a scale)', async () => {
      if (noF16(dtype)) return expect(noF16(dtype)).toBe(true);
      const c: Case = { vocab: 301, hidden: 96, groupSize: 32, zeros: true, scaleDtype: 'F16', chunks: 'three', scale: dtype === 'F32' ? Math.sqrt(96) : undefined };
      const { got, ids, deq } = await gather(gpu.device, kind, dtype, c);
      // The dense op loads the f32 values (rounded to f16 under F16, as its loader does).
      const weights = await uploadWeights(gpu.device, { table: { shape: [c.vocab, c.hidden], values: deq } }, dtype, 16 + 100 * c.hidden * 4);
      const idsBuf = uploadArray(gpu.device, ids, 'U32');
      const out = outputBuffer(gpu.device, ids.length * c.hidden, dtype === 'F16' ? 2 : 4);
      const op = (await Embedding.create(gpu.device, dtype)).prepare('test.embedding.dense', ids.length, idsBuf, weights.tensors.get('table')!, out, c.scale === undefined ? undefined : { scale: c.scale });
      await runOps(gpu.device, [op]);
      expect(closeness(got, await readArray(gpu.device, out, ids.length * c.hidden, dtype), 0, 0)).toBeNull();
      op.destroy();
      weights.destroy();
      idsBuf.destroy();
      out.destroy();
    });
  });
}

it("one prepared op, ids rewritten between submits (the per-token path), from a plain buffer and from a step's ids", async () => {
  const c: Case = { vocab: 30, hidden: 64, groupSize: 32, zeros: true, scaleDtype: 'F32', chunks: 'rows' };
  const host = randomQuantized(rng, 'q4', c.vocab, c.hidden, c.groupSize, true);
  const table = upload(host, 'q4', c);
  const deq = dequantizeHost('q4', [c.vocab, c.hidden], c.groupSize, host);
  const idsBuf = uploadArray(gpu.device, new Uint32Array(1), 'U32');
  // The model's way: the ids a range of its pass's step buffer (src/gpu/step.ts), written with the row.
  const step = new Step(gpu.device, 'test.qembedding', { rows: 1, positions: 8, ids: true });
  const [out, viaStep] = [outputBuffer(gpu.device, c.hidden, 4), outputBuffer(gpu.device, c.hidden, 4)];
  const qembedding = await QEmbedding.create(gpu.device, 'q4', 'F32');
  const ops = [qembedding.prepare('test.qembedding.decode', 1, idsBuf, table, out), qembedding.prepare('test.qembedding.step', 1, step.ids!, table, viaStep)];
  for (const [position, id] of [0, 6, 29, 13, 30, 3].entries()) {
    gpu.device.queue.writeBuffer(idsBuf, 0, Uint32Array.of(id));
    step.writeRange(position, 1, 0, [id]);
    await runOps(gpu.device, ops);
    const want = reference(deq, [c.vocab, c.hidden], Uint32Array.of(id), 'F32');
    expect(closeness(await readArray(gpu.device, out, c.hidden, 'F32'), want, 0, 0), `id=${id}`).toBeNull();
    expect(closeness(await readArray(gpu.device, viaStep, c.hidden, 'F32'), want, 0, 0), `id=${id} via the step`).toBeNull();
  }
  ops.forEach((op) => op.destroy());
  destroyQuantized(table);
  step.destroy();
  for (const b of [idsBuf, out, viaStep]) b.destroy();
});

it('tokens past the per-dimension workgroup limit spill into y', async () => {
  // A device that claims 4 workgroups per dimension: ids.length > 4 → a 2-D grid.
  const spy = spyDevice(gpu.device, { limits: { maxComputeWorkgroupsPerDimension: 4 } });
  const c: Case = { vocab: 20, hidden: 64, groupSize: 32, zeros: false, scaleDtype: 'F32', chunks: 'three' };
  const { got, ids, deq } = await gather(spy.device, 'q8', 'F32', c);
  expect(ids.length).toBeGreaterThan(8);
  expect(closeness(got, reference(deq, [c.vocab, c.hidden], ids, 'F32'), 0, 0)).toBeNull();
});

it('prepare refuses a table of another kind, short buffers, bad tokens and bad scales', async () => {
  const op = await QEmbedding.create(gpu.device, 'q4', 'F32');
  const q8 = createQuantizedTensor(gpu.device, 'w8', { kind: 'q8', shape: [4, 32], scaleDtype: 'F32', hasZeros: false });
  const q4 = createQuantizedTensor(gpu.device, 'w4', { kind: 'q4', shape: [4, 32], scaleDtype: 'F32', hasZeros: false });
  const buf = (n: number): GPUBuffer => outputBuffer(gpu.device, n, 4);
  const [ids, out, big] = [buf(4), buf(64), buf(160)];
  expect(() => op.prepare('x', 1, ids, q8, out)).toThrow(/qembedding was created for q4 weights, w8 is q8/);
  expect(() => op.prepare('x', 3, ids, q4, out)).toThrow(/out holds 256 bytes, \(3, 32\) F32 needs 384/);
  expect(() => op.prepare('x', 5, ids, q4, big)).toThrow(/ids holds 16 bytes/);
  expect(() => op.prepare('x', 0, ids, q4, out)).toThrow(/tokens must be an integer/);
  expect(() => op.prepare('x', 1, ids, q4, out, { scale: Number.NaN })).toThrow(/scale must be a finite number/);
  if (gpu.device.features.has('shader-f16')) {
    const f16 = await QEmbedding.create(gpu.device, 'q4', 'F16');
    expect(() => f16.prepare('x', 1, ids, q4, out, { scale: 1e5 })).toThrow(/overflows F16/);
  }
  destroyQuantized(q8);
  destroyQuantized(q4);
  for (const b of [ids, out, big]) b.destroy();
});

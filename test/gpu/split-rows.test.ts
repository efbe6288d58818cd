// splitRows: a fused tensor (Phi-3's qkv_proj) cut into consecutive row ranges on the GPU,
// source and parts chunked at row boundaries that do not line up with the parts. concatRows,
// its inverse: separate tensors (gate_proj, up_proj) joined by rows, chunked the same way,
// and split back.

import { describe, expect, it } from 'vitest';
import { concatRows } from '../../src/gpu/concat-rows.js';
import { splitRows } from '../../src/gpu/split-rows.js';
import { readBuffer } from '../../src/gpu/read-back.js';
import type { GpuTensor } from '../../src/gpu/gpu-tensor.js';
import type { ComputeDtype } from '../../src/ops/op.js';
import { useGpuTestDevice } from '../support/gpu-helpers.js';
import { asDtype, decode, randomValues, uploadWeights } from '../support/op-helpers.js';
import { mulberry32 } from '../support/safetensors-bytes.js';

const gpu = useGpuTestDevice('test.split-rows');

async function rowsOf(device: GPUDevice, t: GpuTensor, dtype: ComputeDtype): Promise<Float32Array> {
  const parts = await Promise.all(t.chunks.map((c) => readBuffer(device, c.buffer, 0, c.byteLength)));
  return Float32Array.from(parts.flatMap((p) => [...decode(p, dtype)]));
}

describe('splitRows', () => {
  it.for([
    ['F32', [37, 5, 5], 9, 400],
    ['F16', [12, 4, 4], 10, 256],
    ['F32', [3, 1, 1], 6, 1 << 20],
  ] as const)('%s: parts %j of %i columns, source chunks of %i bytes', async ([dtype, parts, cols, maxChunkBytes]) => {
    const { device } = gpu;
    const rows = parts.reduce((a, b) => a + b, 0);
    const values = randomValues(mulberry32(rows * cols), rows * cols);
    const w = await uploadWeights(device, { fused: { shape: [rows, cols], values } }, dtype, maxChunkBytes);
    const source = w.tensors.get('fused')!;
    const out = splitRows(device, source, parts.map((r, i) => ({ name: `p${i}`, rows: r })), maxChunkBytes);
    let first = 0;
    for (const [i, part] of out.entries()) {
      expect(part.shape).toEqual([parts[i], cols]);
      const want = asDtype(values.slice(first * cols, (first + parts[i]) * cols), dtype);
      expect(await rowsOf(device, part, dtype)).toEqual(want);
      first += parts[i];
      for (const c of part.chunks) c.buffer.destroy();
    }
    w.destroy();
  });

  it('refuses parts that do not add up to the rows', async () => {
    const w = await uploadWeights(gpu.device, { t: { shape: [4, 4], values: new Float32Array(16) } }, 'F32');
    expect(() => splitRows(gpu.device, w.tensors.get('t')!, [{ name: 'a', rows: 3 }])).toThrow(/parts of 3 rows do not split its 4/);
    w.destroy();
  });
});

describe('concatRows', () => {
  it.for([
    ['F32', [37, 5, 11], 9, 400],
    ['F16', [12, 12], 10, 256],
    ['F32', [3, 1], 6, 1 << 20],
  ] as const)('%s: parts %j of %i columns, chunks of %i bytes', async ([dtype, parts, cols, maxChunkBytes]) => {
    const { device } = gpu;
    const rng = mulberry32(parts.length * 1000 + cols);
    const values = parts.map((rows) => randomValues(rng, rows * cols));
    const w = await uploadWeights(device, Object.fromEntries(parts.map((rows, i) => [`p${i}`, { shape: [rows, cols], values: values[i] }])), dtype, maxChunkBytes);
    const sources = parts.map((_, i) => w.tensors.get(`p${i}`)!);
    const out = concatRows(device, 'joined', sources, maxChunkBytes);
    const total = parts.reduce((a, b) => a + b, 0);
    expect(out.shape).toEqual([total, cols]);
    expect(out.byteLength).toBe(total * cols * (dtype === 'F16' ? 2 : 4));
    if (maxChunkBytes < out.byteLength) expect(out.chunks.length).toBeGreaterThan(1);
    for (const c of out.chunks) expect(c.byteLength).toBeLessThanOrEqual(Math.max(maxChunkBytes, cols * (dtype === 'F16' ? 2 : 4)));
    const want = asDtype(Float32Array.from(values.flatMap((v) => [...v])), dtype);
    expect(await rowsOf(device, out, dtype)).toEqual(want);
    // The inverse of a split: the parts back, row for row.
    const back = splitRows(device, out, parts.map((rows, i) => ({ name: `back${i}`, rows })), maxChunkBytes);
    for (const [i, part] of back.entries()) {
      expect(await rowsOf(device, part, dtype)).toEqual(asDtype(values[i], dtype));
      for (const c of part.chunks) c.buffer.destroy();
    }
    for (const c of out.chunks) c.buffer.destroy();
    w.destroy();
  });

  it('refuses parts of other widths or dtypes, and nothing', async () => {
    const { device } = gpu;
    const f32 = await uploadWeights(device, { a: { shape: [2, 4], values: new Float32Array(8) }, b: { shape: [2, 3], values: new Float32Array(6) } }, 'F32');
    const [a, b] = [f32.tensors.get('a')!, f32.tensors.get('b')!];
    expect(() => concatRows(device, 'gate_up', [a, b])).toThrow(/gate_up: b is \[2, 3\], rows of \[2, 4\] expected/);
    expect(() => concatRows(device, 'gate_up', [])).toThrow(/gate_up: nothing to concatenate/);
    if (device.features.has('shader-f16')) {
      const f16 = await uploadWeights(device, { c: { shape: [1, 4], values: new Float32Array(4) } }, 'F16');
      expect(() => concatRows(device, 'gate_up', [a, f16.tensors.get('c')!])).toThrow(/gate_up: c is F16, a is F32/);
      f16.destroy();
    }
    f32.destroy();
  });
});

// splitRows: a fused tensor (Phi-3's qkv_proj) cut into consecutive row ranges on the GPU,
// source and parts chunked at row boundaries that do not line up with the parts.

import { describe, expect, it } from 'vitest';
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

// softmax: (rows, cols) logits in F32 and F16 → f32 probabilities, on seeded random shapes
// (cols not multiples of the workgroup, -inf entries, huge magnitudes, a Llama-3 vocabulary
// row once), against a float64 TypeScript reference.

import { describe, expect, it } from 'vitest';
import { pipelineCache } from '../../src/gpu/pipeline-cache.js';
import type { ComputeDtype } from '../../src/ops/op.js';
import { runOps } from '../../src/ops/op.js';
import { Softmax, SOFTMAX_WORKGROUP, softmaxVariants } from '../../src/ops/softmax.js';
import { useGpuTestDevice } from '../support/gpu-helpers.js';
import { asDtype, nmse, outputBuffer, randomValues, readArray, uploadArray } from '../support/op-helpers.js';
import { mulberry32 } from '../support/safetensors-bytes.js';

const gpu = useGpuTestDevice('test.softmax');

interface Shape {
  rows: number;
  cols: number;
  /** Logits uniform in [-scale, scale). */
  scale: number;
  /** Fraction of entries set to -inf (masked). */
  masked: number;
}

// Named cases first (one element, exact workgroup multiples ± 1, all-masked rows, logits far
// past exp's range, the Llama-3 vocabulary), then seeded random shapes.
const rng = mulberry32(0x50f7);
const SHAPES: Shape[] = [
  { rows: 1, cols: 1, scale: 5, masked: 0 },
  { rows: 2, cols: SOFTMAX_WORKGROUP, scale: 5, masked: 0 },
  { rows: 3, cols: SOFTMAX_WORKGROUP + 1, scale: 5, masked: 0.3 },
  { rows: 4, cols: 7, scale: 5, masked: 1 }, // every row fully masked → all 0
  { rows: 2, cols: 1000, scale: 500, masked: 0.1 }, // exp(500) overflows unless the max is subtracted
  { rows: 1, cols: 128256, scale: 20, masked: 0.01 },
  ...Array.from({ length: 11 }, () => ({
    rows: 1 + Math.floor(rng() * 40),
    cols: 1 + Math.floor(rng() * 3000),
    scale: [1, 10, 50][Math.floor(rng() * 3)],
    masked: rng() < 0.4 ? rng() * 0.5 : 0,
  })),
];

/** float64 softmax of each row; -inf → 0; a fully masked row → all 0 (the kernel's rule). */
function reference(x: Float32Array, rows: number, cols: number): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const row = x.subarray(r * cols, (r + 1) * cols);
    const m = row.reduce((a, b) => Math.max(a, b), -Infinity);
    if (m === -Infinity) continue;
    let s = 0;
    for (const v of row) s += Math.exp(v - m);
    row.forEach((v, j) => (out[r * cols + j] = Math.exp(v - m) / s));
  }
  return out;
}

function logits(shape: Shape, dtype: ComputeDtype): Float32Array {
  const x = randomValues(rng, shape.rows * shape.cols, -shape.scale, shape.scale);
  for (let i = 0; i < x.length; i++) if (rng() < shape.masked) x[i] = -Infinity;
  return asDtype(x, dtype);
}

it('every variant compiles without messages', async () => {
  for (const { key, spec } of softmaxVariants(['F32', 'F16'], gpu.device.features as ReadonlySet<string>)) {
    const info = await pipelineCache(gpu.device).module(spec.shader, spec.flags).getCompilationInfo();
    expect(info.messages.map((m) => m.message), key).toEqual([]);
  }
});

describe.each(['F32', 'F16'] as const)('softmax of %s logits', (dtype) => {
  it(`matches the float64 reference on ${SHAPES.length} shapes`, async () => {
    const skip = dtype === 'F16' && !gpu.device.features.has('shader-f16');
    if (skip) return expect(skip).toBe(true); // said, not silent: no F16 on this adapter
    const softmax = await Softmax.create(gpu.device, dtype);
    for (const shape of SHAPES) {
      const { rows, cols } = shape;
      const x = logits(shape, dtype);
      const xBuf = uploadArray(gpu.device, x, dtype);
      const out = outputBuffer(gpu.device, rows * cols, 4);
      const op = softmax.prepare(`test.softmax.${rows}x${cols}`, rows, cols, xBuf, out);
      await runOps(gpu.device, [op]);
      const got = await readArray(gpu.device, out, rows * cols, 'F32');
      const want = reference(x, rows, cols);
      const what = `${dtype} ${JSON.stringify(shape)}`;
      // WGSL's exp may be off by 3 + 2·|x| ulp (≤ ~1e-5 relative for |x| ≤ 40) and the f32
      // sum by ~1e-6: NMSE ≤ 1e-9 leaves room; a wrong max or sum gives ≥ 1e-2.
      expect(nmse(got, want), what).toBeLessThan(1e-9);
      // Masked entries are exactly 0 and nothing is NaN.
      const bad = got.findIndex((v, i) => Number.isNaN(v) || (x[i] === -Infinity && v !== 0));
      expect(bad, `${what}: first masked ≠ 0 or NaN`).toBe(-1);
      op.destroy();
      xBuf.destroy();
      out.destroy();
    }
  });
});

it('rows past one dispatch dimension spill into y', async () => {
  const rows = gpu.device.limits.maxComputeWorkgroupsPerDimension + 3; // 65538 rows of 2
  const x = randomValues(rng, rows * 2, -3, 3);
  const xBuf = uploadArray(gpu.device, x, 'F32');
  const out = outputBuffer(gpu.device, rows * 2, 4);
  const op = (await Softmax.create(gpu.device, 'F32')).prepare('test.softmax.spill', rows, 2, xBuf, out);
  expect(op.dispatches[0].workgroups[1]).toBeGreaterThan(1);
  await runOps(gpu.device, [op]);
  // Same reason as above.
  expect(nmse(await readArray(gpu.device, out, rows * 2, 'F32'), reference(x, rows, 2))).toBeLessThan(1e-9);
  op.destroy();
  xBuf.destroy();
  out.destroy();
});

it('prepare refuses an empty shape and buffers too small', async () => {
  const softmax = await Softmax.create(gpu.device, 'F32');
  const buf = outputBuffer(gpu.device, 4, 4);
  expect(() => softmax.prepare('x', 0, 4, buf, buf)).toThrow(/rows ≥ 1/);
  expect(() => softmax.prepare('x', 2, 4, buf, buf)).toThrow(/needs x ≥ 32 B/);
  buf.destroy();
});

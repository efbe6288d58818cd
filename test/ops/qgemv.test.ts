// qgemv: y = W·x (+ b) with W quantized (q8, q4; with and without zero points; group sizes 8
// to 256; f16 and f32 scale storage; chunked), F32 and F16 compute, x shared by subgroups or
// loaded by every invocation, block and per-word paths; against the dense float64 reference
// over the dequantized weights (dequantizeHost).

import { describe, expect, it } from 'vitest';
import { createQuantizedTensor, dequantizeHost, destroyQuantized, type QuantKind } from '../../src/gpu/quantized-tensor.js';
import { QGemv, qgemvPath } from '../../src/ops/qgemv.js';
import { runOps, type ComputeDtype } from '../../src/ops/op.js';
import { useGpuTestDevice } from '../support/gpu-helpers.js';
import { asDtype, linearReference, nmse, randomValues, readArray, uploadArray, uploadWeights } from '../support/op-helpers.js';
import { randomQuantized, uploadQuantized } from '../support/quantized-weights.js';
import { mulberry32 } from '../support/safetensors-bytes.js';

const gpu = useGpuTestDevice('test.qgemv');
const rng = mulberry32(0x71a);

// (N, K, group size): N of 1 and not a multiple of the 64 rows per workgroup or 4 per thread;
// K of one group, odd group counts; then seeded shapes.
const SHAPES: [number, number, number][] = [
  [1, 32, 32],
  [5, 128, 128],
  [65, 96, 32],
  [3, 384, 128],
  [127, 64, 32],
  [6, 1024, 128],
  ...Array.from({ length: 10 }, (_, i): [number, number, number] => {
    const g = i % 2 ? 128 : 32;
    return [1 + Math.floor(rng() * 150), g * (1 + Math.floor(rng() * (i % 3 ? 4 : 12))), g];
  }),
];

/**
 * NMSE tolerance. f32 sums in another order than float64, and per group s·(Σq·x − z·Σx)
 * whose two terms are up to ~15× the result (q4, zero 8): ~2^-24·15·√K relative, NMSE well
 * under 1e-9 for K ≤ 4k. An f16 y adds its rounding (≤ 2^-11 relative: NMSE ≤ 2^-22).
 */
const tolerance = (f16Out: boolean): number => (f16Out ? 2 ** -22 + 1e-9 : 1e-9);

for (const kind of ['q8', 'q4'] as QuantKind[]) {
  describe.each(['F32', 'F16'] as const)(`qgemv ${kind} %s`, (dtype: ComputeDtype) => {
    it.each([true, false])(`subgroups %s: ${SHAPES.length} shapes, zeros/bias/chunked/outF32/scale storage mixed`, async (subgroups) => {
      const device = gpu.device;
      if (dtype === 'F16' && !device.features.has('shader-f16')) return expect(dtype).toBe('F16'); // said: no F16 here
      if (subgroups && !device.features.has('subgroups')) return expect(subgroups).toBe(true); // said: no subgroups here
      const ops = new Map<string, QGemv>();
      // The workgroup-memory reduction is the same code after the sums: half the shapes.
      for (const [i, [n, k, g]] of SHAPES.entries()) {
        if (!subgroups && device.features.has('subgroups') && i >= SHAPES.length / 2) break;
        // bit 0 bias, bit 1 chunked, bit 2 outF32, bit 3 zeros; scales f32 on every third case.
        const [bias, chunked, outF32, zeros] = [i & 1, i & 2, i & 4, i & 8].map(Boolean);
        const scaleDtype = i % 3 === 2 ? 'F32' : 'F16';
        const key = `${bias}.${outF32}`;
        if (!ops.has(key)) ops.set(key, await QGemv.create(device, kind, dtype, { bias, outF32, subgroups }));
        const op = ops.get(key)!;
        const host = randomQuantized(rng, kind, n, k, g, zeros);
        const weight = uploadQuantized(device, host, { kind, n, k, groupSize: g, scaleDtype }, chunked);
        const x = asDtype(randomValues(rng, k, -2, 2), dtype);
        const b = bias ? randomValues(rng, n) : undefined;
        const biases = b ? await uploadWeights(device, { b: { shape: [n], values: b } }, dtype) : undefined;
        const outDtype: ComputeDtype = op.outF32 ? 'F32' : dtype;
        const y = uploadArray(device, new Float32Array(n + 8).fill(7), outDtype, 'test.qgemv.y');
        const xBuf = uploadArray(device, x, dtype, 'test.qgemv.x');
        const prepared = op.prepare(`test.qgemv.${n}x${k}`, weight, xBuf, y, biases?.tensors.get('b'));
        await runOps(device, [prepared]);
        const all = await readArray(device, y, n + 8, outDtype);
        const want = linearReference(x, dequantizeHost(kind, [n, k], g, host), [1, n, k], b && asDtype(b, dtype));
        const what = `${kind} ${dtype} N=${n} K=${k} G=${g} bias=${bias} chunks=${weight.chunks.length} outF32=${outF32} zeros=${zeros} scales=${scaleDtype}`;
        if (chunked && n > 2) expect(weight.chunks.length, what).toBeGreaterThan(1);
        const err = nmse(all.subarray(0, n), want);
        expect(err, `${what} nmse=${err}`).toBeLessThan(tolerance(dtype === 'F16' && !op.outF32));
        expect(Array.from(all.subarray(n)), `${what}: wrote past N`).toEqual(new Array(8).fill(7));
        prepared.destroy();
        destroyQuantized(weight);
        biases?.destroy();
        y.destroy();
        xBuf.destroy();
      }
    });
  });
}

// The block path (G a power of two ≥ 32, K a multiple of 128) and the per-word path (any
// other layout): group sizes 8 to 256, K = G·odd, N past one workgroup (128 rows) and odd.
const PATH_CASES: [number, number, number][] = [
  [3, 8 * 5, 8],
  [9, 16 * 3, 16],
  [4, 24 * 7, 24],
  [130, 64 * 6, 64], // block, two workgroups
  [5, 64 * 3, 64], // per word: K = 192
  [7, 256 * 3, 256], // block, a group spans two blocks
  [301, 128 * 3, 128],
  [2, 96 * 4, 96],
];

describe.each(['F32', 'F16'] as const)('qgemv %s, both paths', (dtype: ComputeDtype) => {
  it.each(['q8', 'q4'] as QuantKind[])(`%s: group sizes 8..256, ${PATH_CASES.length} cases, chunked, zeros or not`, async (kind) => {
    const device = gpu.device;
    if (dtype === 'F16' && !device.features.has('shader-f16')) return expect(dtype).toBe('F16'); // said: no F16 here
    const op = await QGemv.create(device, kind, dtype);
    for (const [i, [n, k, g]] of PATH_CASES.entries()) {
      const [chunked, zeros] = [i % 3 === 1, i % 2 === 0];
      const scaleDtype = i % 4 === 3 ? 'F32' : 'F16';
      const host = randomQuantized(rng, kind, n, k, g, zeros);
      const weight = uploadQuantized(device, host, { kind, n, k, groupSize: g, scaleDtype }, chunked);
      const x = asDtype(randomValues(rng, k, -2, 2), dtype);
      const y = uploadArray(device, new Float32Array(n + 8).fill(7), dtype, 'test.qgemv.y');
      const xBuf = uploadArray(device, x, dtype, 'test.qgemv.x');
      const prepared = op.prepare(`test.qgemv.${n}x${k}`, weight, xBuf, y);
      await runOps(device, [prepared]);
      const all = await readArray(device, y, n + 8, dtype);
      const want = linearReference(x, dequantizeHost(kind, [n, k], g, host), [1, n, k]);
      const what = `${kind} ${dtype} N=${n} K=${k} G=${g} path=${qgemvPath(weight)} chunks=${weight.chunks.length} zeros=${zeros} scales=${scaleDtype}`;
      const err = nmse(all.subarray(0, n), want);
      expect(err, `${what} nmse=${err}`).toBeLessThan(tolerance(dtype === 'F16'));
      expect(Array.from(all.subarray(n)), `${what}: wrote past N`).toEqual(new Array(8).fill(7));
      prepared.destroy();
      destroyQuantized(weight);
      y.destroy();
      xBuf.destroy();
    }
  });
});

it('picks the block path exactly for G a power of two ≥ 32 and K a multiple of 128', () => {
  const path = (k: number, groupSize: number) => qgemvPath({ shape: [4, k], groupSize });
  expect([path(2048, 32), path(2048, 64), path(8192, 128), path(256, 256), path(1024, 1024)]).toEqual(['block', 'block', 'block', 'block', 'block']);
  expect([path(576, 32), path(96, 32), path(384, 96), path(128, 16), path(2048, 8)]).toEqual(['word', 'word', 'word', 'word', 'word']);
});

it('refuses a weight of another kind or a missing bias', async () => {
  const op = await QGemv.create(gpu.device, 'q4', 'F32');
  const w = createQuantizedTensor(gpu.device, 'w8', { kind: 'q8', shape: [4, 32], scaleDtype: 'F32', hasZeros: false });
  const buf = gpu.device.createBuffer({ size: 256, usage: GPUBufferUsage.STORAGE });
  const buf2 = gpu.device.createBuffer({ size: 256, usage: GPUBufferUsage.STORAGE });
  expect(() => op.prepare('t', w, buf, buf2)).toThrow(/qgemv was created for q4 weights, w8 is q8/);
  destroyQuantized(w);
  buf.destroy();
  buf2.destroy();
});

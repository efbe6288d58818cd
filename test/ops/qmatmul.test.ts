// qmatmul: y = x·Wᵀ (+ b) with W quantized (q8, q4; zeros or not; G 32 and 128; f16/f32 scale
// storage; chunked), F32 and F16 compute, subgroup and workgroup-memory kernels, on seeded
// (M, N, K) not multiples of the tiles; against float64 over the dequantized weights.

import { describe, expect, it } from 'vitest';
import { dequantizeHost, destroyQuantized, type QuantKind } from '../../src/gpu/quantized-tensor.js';
import { QMatmul } from '../../src/ops/qmatmul.js';
import { runOps, type ComputeDtype } from '../../src/ops/op.js';
import { useGpuTestDevice } from '../support/gpu-helpers.js';
import { asDtype, linearReference, nmse, randomValues, readArray, uploadArray, uploadWeights } from '../support/op-helpers.js';
import { randomQuantized, uploadQuantized } from '../support/quantized-weights.js';
import { mulberry32 } from '../support/safetensors-bytes.js';

const gpu = useGpuTestDevice('test.qmatmul');
const rng = mulberry32(0x3b7);

// (M, N, K, G): M of 1 and past the 32-row tile, N not a multiple of 256 columns per workgroup.
const SHAPES: [number, number, number, number][] = [
  [1, 1, 32, 32],
  [33, 257, 128, 128],
  [5, 70, 96, 32],
  ...Array.from({ length: 5 }, (_, i): [number, number, number, number] => {
    const g = i % 2 ? 128 : 32;
    return [1 + Math.floor(rng() * 40), 1 + Math.floor(rng() * 300), g * (1 + Math.floor(rng() * 4)), g];
  }),
];

/** NMSE tolerance: f32 sums of dequantized products in another order (≤ 1e-10 seen in the dense tests; dequantizing is one rounded multiply per weight), 2^-22 more for an f16 y. */
const tolerance = (f16Out: boolean): number => (f16Out ? 2 ** -22 + 1e-9 : 1e-9);

for (const kind of ['q8', 'q4'] as QuantKind[]) {
  describe.each(['F32', 'F16'] as const)(`qmatmul ${kind} %s`, (dtype: ComputeDtype) => {
    it.each([true, false])(`subgroups %s: ${SHAPES.length} shapes, zeros/bias/chunked/outF32/scale storage mixed`, async (subgroups) => {
      const device = gpu.device;
      if (dtype === 'F16' && !device.features.has('shader-f16')) return expect(dtype).toBe('F16'); // said: no F16 here
      if (subgroups && !(device.features.has('subgroups') && (device.adapterInfo?.subgroupMaxSize ?? 999) <= 64)) return expect(subgroups).toBe(true); // said
      const ops = new Map<string, QMatmul>();
      for (const [i, [m, n, k, g]] of SHAPES.entries()) {
        const [bias, chunked, outF32, zeros] = [i & 1, i & 2, i & 4, (i + 1) & 2].map(Boolean);
        const scaleDtype = i % 3 === 2 ? 'F32' : 'F16';
        const key = `${bias}.${outF32}`;
        if (!ops.has(key)) ops.set(key, await QMatmul.create(device, kind, dtype, { bias, outF32, subgroups }));
        const op = ops.get(key)!;
        const host = randomQuantized(rng, kind, n, k, g, zeros);
        const weight = uploadQuantized(device, host, { kind, n, k, groupSize: g, scaleDtype }, chunked);
        const x = asDtype(randomValues(rng, m * k, -2, 2), dtype);
        const b = bias ? randomValues(rng, n) : undefined;
        const biases = b ? await uploadWeights(device, { b: { shape: [n], values: b } }, dtype) : undefined;
        const outDtype: ComputeDtype = op.outF32 ? 'F32' : dtype;
        const y = uploadArray(device, new Float32Array(m * n + 8).fill(7), outDtype, 'test.qmatmul.y');
        const xBuf = uploadArray(device, x, dtype, 'test.qmatmul.x');
        const prepared = op.prepare(`test.qmatmul.${m}x${n}x${k}`, m, weight, xBuf, y, biases?.tensors.get('b'));
        await runOps(device, [prepared]);
        const all = await readArray(device, y, m * n + 8, outDtype);
        const want = linearReference(x, dequantizeHost(kind, [n, k], g, host), [m, n, k], b && asDtype(b, dtype));
        const what = `${kind} ${dtype} M=${m} N=${n} K=${k} G=${g} bias=${bias} chunks=${weight.chunks.length} outF32=${outF32} zeros=${zeros} scales=${scaleDtype}`;
        if (chunked && n > 2) expect(weight.chunks.length, what).toBeGreaterThan(1);
        const err = nmse(all.subarray(0, m * n), want);
        expect(err, `${what} nmse=${err}`).toBeLessThan(tolerance(dtype === 'F16' && !op.outF32));
        expect(Array.from(all.subarray(m * n)), `${what}: wrote past y`).toEqual(new Array(8).fill(7));
        prepared.destroy();
        destroyQuantized(weight);
        biases?.destroy();
        y.destroy();
        xBuf.destroy();
      }
    });
  });
}

// gemv: y = W·x (+ b), F32 and F16, subgroup and workgroup-memory reductions, on seeded
// random (N, K) (K not a multiple of the 4- or 8-element vector, N not a multiple of the
// rows per workgroup), with and without bias, chunked weights, f32 output; against a
// float64 reference computed from the stored values. The residual variant (y += W·x (+ b))
// against the same reference and, bit for bit, against gemv then Add.

import { describe, expect, it } from 'vitest';
import { alignUp } from '../../src/gpu/gpu-tensor.js';
import { pipelineCache } from '../../src/gpu/pipeline-cache.js';
import { Add } from '../../src/ops/add.js';
import { GEMV_ROWS_PER_THREAD, GEMV_ROWS_PER_WORKGROUP, Gemv, gemvVariants } from '../../src/ops/gemv.js';
import { runOps, type ComputeDtype } from '../../src/ops/op.js';
import { spyDevice, useGpuTestDevice } from '../support/gpu-helpers.js';
import { asDtype, closeness, linearReference, nmse, outputBuffer, randomValues, readArray, uploadArray, uploadWeights } from '../support/op-helpers.js';
import { mulberry32 } from '../support/safetensors-bytes.js';

const gpu = useGpuTestDevice('test.gemv');

// Named cases first: K of 1 and around the vector widths (the scalar path), K a multiple of
// 8 (the vector path in both dtypes), N of 1 and not a multiple of the rows per workgroup
// or of the rows per thread. Then seeded random shapes, some with a 1000-ish K.
const rng = mulberry32(0x6e3);
const SHAPES: [n: number, k: number][] = [
  [1, 1],
  [5, 3],
  [GEMV_ROWS_PER_WORKGROUP + 1, 5],
  [3, 7],
  [2 * GEMV_ROWS_PER_WORKGROUP - 1, 8],
  [GEMV_ROWS_PER_THREAD + 1, 9],
  [70, 33],
  [37, 1000],
  ...Array.from({ length: 8 }, (_, i): [number, number] => [
    1 + Math.floor(rng() * 300),
    i % 2 ? 990 + Math.floor(rng() * 20) : 1 + Math.floor(rng() * 200),
  ]),
];

/**
 * Tolerance on NMSE. The kernel sums in f32 in another order than float64: the error grows
 * like √K·2^-24 of the terms' size (seen: NMSE ≤ 1e-13 up to K = 1009); 1e-10 leaves room
 * for sums that cancel. An f16 output adds its rounding, at most 2^-11 relative (seen:
 * 1.1e-7), so NMSE ≤ 2^-22 plus the f32 part.
 */
const tolerance = (f16Out: boolean): number => (f16Out ? 2 ** -22 + 1e-10 : 1e-10);

const noF16 = (dtype: ComputeDtype): boolean => dtype === 'F16' && !gpu.device.features.has('shader-f16');

/** The residual variant's reference: residual + projection, in float64. */
const residualReference = (projection: Float64Array, residual: Float32Array): Float64Array => projection.map((v, j) => v + residual[j]);
/** Half an ulp at 1 in the compute dtype: what one rounding to it costs, relative. */
const unitRoundoff = (dtype: ComputeDtype): number => (dtype === 'F16' ? 2 ** -11 : 2 ** -24);
/**
 * The residual variant rounds twice, the projection then the sum (as the unfused ops do):
 * the first rounding is relative to the projection, not to the sum, which may cancel, so
 * it is bounded by the largest projection; 1e-5 of it more for the f32 sum's order.
 */
const residualAbs = (projection: Float64Array, dtype: ComputeDtype): number =>
  (1.01 * unitRoundoff(dtype) + 1e-5) * projection.reduce((m, v) => Math.max(m, Math.abs(v)), 0);

/**
 * One case: uploads W (chunked into ~3 uneven row-chunks when `chunked`), x and a bias,
 * runs the op into a y with spare sentinel elements past N, and returns what it wrote.
 */
async function runCase(
  device: GPUDevice,
  gemv: Gemv,
  dtype: ComputeDtype,
  [n, k]: [number, number],
  chunked: boolean,
): Promise<{ got: Float32Array; want: Float64Array; spare: Float32Array; chunks: number }> {
  const w = randomValues(rng, n * k);
  const x = asDtype(randomValues(rng, k, -2, 2), dtype);
  const b = gemv.bias ? randomValues(rng, n) : undefined;
  const rowBytes = k * (dtype === 'F16' ? 2 : 4);
  const maxChunkBytes = chunked ? alignUp(Math.ceil(n / 3) * rowBytes, 16) : undefined;
  const weights = await uploadWeights(device, { w: { shape: [n, k], values: w } }, dtype, maxChunkBytes);
  const biases = b ? await uploadWeights(device, { b: { shape: [n], values: b } }, dtype) : undefined;
  const outDtype: ComputeDtype = gemv.outF32 ? 'F32' : dtype;
  const spare = 8;
  const y = uploadArray(device, new Float32Array(n + spare).fill(7), outDtype, 'test.gemv.y');
  const xBuf = uploadArray(device, x, dtype, 'test.gemv.x');
  const weight = weights.tensors.get('w')!;
  const op = gemv.prepare(`test.gemv.${n}x${k}`, weight, xBuf, y, biases?.tensors.get('b'));
  await runOps(device, [op]);
  const all = await readArray(device, y, n + spare, outDtype);
  const want = linearReference(x, asDtype(w, dtype), [1, n, k], b && asDtype(b, dtype));
  op.destroy();
  weights.destroy();
  biases?.destroy();
  y.destroy();
  xBuf.destroy();
  return { got: all.subarray(0, n), want, spare: all.subarray(n), chunks: weight.chunks.length };
}

it('every variant compiles with no message', async () => {
  const features = gpu.device.features as ReadonlySet<string>;
  const variants = gemvVariants(features.has('shader-f16') ? ['F32', 'F16'] : ['F32'], features);
  expect(new Set(variants.map((v) => v.key)).size).toBe(variants.length);
  for (const { key, spec } of variants) {
    const info = await pipelineCache(gpu.device).module(spec.shader, spec.flags).getCompilationInfo();
    expect(info.messages.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`), key).toEqual([]);
    expect((await pipelineCache(gpu.device).get(key, spec)).label).toBe(key);
  }
});

describe.each(['F32', 'F16'] as const)('gemv %s', (dtype) => {
  // Both reductions on this adapter: subgroups where it has them, the fallback forced.
  it.each([true, false])(`subgroups %s: ${SHAPES.length} seeded shapes, bias/chunked/outF32 in every combination`, async (subgroups) => {
    if (noF16(dtype)) return expect(noF16(dtype)).toBe(true); // said, not silent: no F16 on this adapter
    if (subgroups && !gpu.device.features.has('subgroups')) return expect(subgroups).toBe(true); // said: no subgroups here
    const ops = new Map<string, Gemv>();
    for (const [i, shape] of SHAPES.entries()) {
      // Case i takes bit 0 = bias, bit 1 = chunked, bit 2 = outF32: each combination twice.
      const [bias, chunked, outF32] = [i & 1, i & 2, i & 4].map(Boolean);
      const key = `${bias}.${outF32}`;
      if (!ops.has(key)) ops.set(key, await Gemv.create(gpu.device, dtype, { bias, outF32, subgroups }));
      const gemv = ops.get(key)!;
      expect(gemv.subgroups).toBe(subgroups);
      const { got, want, spare, chunks } = await runCase(gpu.device, gemv, dtype, shape, chunked);
      const what = `N=${shape[0]} K=${shape[1]} bias=${bias} chunked=${chunked} outF32=${outF32}`;
      if (chunked && shape[0] > 2) expect(chunks, what).toBeGreaterThan(1);
      const err = nmse(got, want);
      expect(err, `${what} nmse=${err}`).toBeLessThan(tolerance(dtype === 'F16' && !outF32));
      expect([...spare], `${what}: y past N untouched`).toEqual(new Array(spare.length).fill(7));
    }
  });
});

describe.each(['F32', 'F16'] as const)('gemv %s residual', (dtype) => {
  // The named shapes and two seeded ones (bias on every other): the epilogue is all that differs.
  const shapes = SHAPES.slice(0, 10);
  it(`y += W·x (+ b) on ${shapes.length} shapes: the bits of gemv then Add, and the float64 reference`, async () => {
    if (noF16(dtype)) return expect(noF16(dtype)).toBe(true); // said, not silent: no F16 on this adapter
    const { device } = gpu;
    const [fused, fusedBias, plain, plainBias] = await Promise.all([
      Gemv.create(device, dtype, { residual: true }),
      Gemv.create(device, dtype, { residual: true, bias: true }),
      Gemv.create(device, dtype),
      Gemv.create(device, dtype, { bias: true }),
    ]);
    expect(fused.residual).toBe(true);
    const add = await Add.create(device, dtype, { inPlace: true });
    for (const [i, [n, k]] of shapes.entries()) {
      const bias = i % 2 === 1;
      const w = randomValues(rng, n * k);
      const x = asDtype(randomValues(rng, k, -2, 2), dtype);
      const b = bias ? randomValues(rng, n) : undefined;
      const residual = asDtype(randomValues(rng, n, -4, 4), dtype);
      const weights = await uploadWeights(device, { w: { shape: [n, k], values: w }, ...(b ? { b: { shape: [n], values: b } } : {}) }, dtype);
      const [wt, bt] = [weights.tensors.get('w')!, weights.tensors.get('b')];
      const spare = 8;
      const withSpare = new Float32Array(n + spare).fill(7);
      withSpare.set(residual);
      const yFused = uploadArray(device, withSpare, dtype, 'test.gemv.y_fused');
      const yUnfused = uploadArray(device, residual, dtype, 'test.gemv.y_unfused');
      const projected = outputBuffer(device, n, dtype === 'F16' ? 2 : 4);
      const xBuf = uploadArray(device, x, dtype, 'test.gemv.x');
      const ops = [
        (bias ? fusedBias : fused).prepare('test.gemv.residual', wt, xBuf, yFused, bt),
        (bias ? plainBias : plain).prepare('test.gemv.projection', wt, xBuf, projected, bt),
        add.prepare('test.gemv.add', n, yUnfused, projected),
      ];
      await runOps(device, ops);
      const got = await readArray(device, yFused, n + spare, dtype);
      const unfused = await readArray(device, yUnfused, n, dtype);
      const what = `N=${n} K=${k} bias=${bias}`;
      expect([...got.subarray(0, n)], `${what}: the bits of gemv then add`).toEqual([...unfused]);
      const projection = linearReference(x, asDtype(w, dtype), [1, n, k], b && asDtype(b, dtype));
      expect(closeness(got.subarray(0, n), residualReference(projection, residual), residualAbs(projection, dtype), unitRoundoff(dtype)), what).toBeNull();
      expect([...got.subarray(n)], `${what}: y past N untouched`).toEqual(new Array(spare).fill(7));
      for (const op of ops) op.destroy();
      for (const buffer of [yFused, yUnfused, projected, xBuf]) buffer.destroy();
      weights.destroy();
    }
  });
});

it('reads a new x on every run of the same prepared op (the decode loop)', async () => {
  const [n, k] = [100, 64];
  const gemv = await Gemv.create(gpu.device, 'F32');
  const w = randomValues(rng, n * k);
  const weights = await uploadWeights(gpu.device, { w: { shape: [n, k], values: w } }, 'F32');
  const xBuf = uploadArray(gpu.device, new Float32Array(k), 'F32');
  const y = outputBuffer(gpu.device, n, 4);
  const op = gemv.prepare('test.gemv.loop', weights.tensors.get('w')!, xBuf, y);
  for (let step = 0; step < 2; step++) {
    const x = randomValues(rng, k, -2, 2);
    gpu.device.queue.writeBuffer(xBuf, 0, x);
    await runOps(gpu.device, [op]);
    const err = nmse(await readArray(gpu.device, y, n, 'F32'), linearReference(x, w, [1, n, k]));
    expect(err, `step ${step}`).toBeLessThan(tolerance(false));
  }
  op.destroy();
  weights.destroy();
  xBuf.destroy();
  y.destroy();
});

it('spills past the per-dimension workgroup limit into a 2-D dispatch', async () => {
  // A device that allows 3 workgroups per dimension: 8 workgroups' rows need 3 × 3.
  const spy = spyDevice(gpu.device, { limits: { maxComputeWorkgroupsPerDimension: 3 } });
  const gemv = await Gemv.create(spy.device, 'F32');
  const shape: [number, number] = [7 * GEMV_ROWS_PER_WORKGROUP + 5, 12];
  const { got, want, spare } = await runCase(spy.device, gemv, 'F32', shape, false);
  expect(nmse(got, want)).toBeLessThan(tolerance(false));
  expect([...spare]).toEqual(new Array(spare.length).fill(7));
});

it('prepare checks shapes, dtypes, bias and aliasing', async () => {
  const [n, k] = [8, 8];
  const weights = await uploadWeights(gpu.device, { w: { shape: [n, k], values: randomValues(rng, n * k) }, b: { shape: [n], values: randomValues(rng, n) } }, 'F32');
  const [w, b] = [weights.tensors.get('w')!, weights.tensors.get('b')!];
  const x = outputBuffer(gpu.device, k, 4);
  const y = outputBuffer(gpu.device, n, 4);
  const small = outputBuffer(gpu.device, 1, 4);
  const plain = await Gemv.create(gpu.device, 'F32');
  const withBias = await Gemv.create(gpu.device, 'F32', { bias: true });
  expect(() => plain.prepare('t', w, x, y, b)).toThrow(/created without bias/);
  expect(() => withBias.prepare('t', w, x, y)).toThrow(/created with bias/);
  expect(() => withBias.prepare('t', w, x, y, w)).toThrow(/expected F32 \[8\]/);
  expect(() => plain.prepare('t', b, x, y)).toThrow(/2-D weight/);
  expect(() => plain.prepare('t', w, small, y)).toThrow(/x holds 16 bytes/);
  expect(() => plain.prepare('t', w, x, small)).toThrow(/y holds 16 bytes/);
  expect(() => plain.prepare('t', w, y, y)).toThrow(/in place/);
  await expect(Gemv.create(gpu.device, 'F32', { residual: true, outF32: true })).rejects.toThrow(/residual writes the compute dtype/);
  if (gpu.device.features.has('shader-f16')) {
    const f16 = await Gemv.create(gpu.device, 'F16');
    expect(() => f16.prepare('t', w, x, y)).toThrow(/expected F16/);
  }
  for (const buffer of [x, y, small]) buffer.destroy();
  weights.destroy();
});

// gemv's RMS_NORM variant: x is the un-normalised row, y = s·(W·x) (+ b) with
// s = 1/sqrt(mean(x²) + eps), alone, with a bias and with the GLU epilogue, F32 and F16,
// both reductions, on seeded shapes (K around and off the vector width, N not a multiple
// of the rows per workgroup), against a float64 reference from the stored values; eps
// where it dominates; the same result as rms_norm.wgsl (weight 1) then the plain gemv,
// to the roundings that path adds; the refusals.

import { describe, expect, it } from 'vitest';
import { GEMV_ROWS_PER_WORKGROUP, Gemv } from '../../src/ops/gemv.js';
import { runOps, type ComputeDtype } from '../../src/ops/op.js';
import { RmsNorm } from '../../src/ops/rms-norm.js';
import type { SwigluAct } from '../../src/ops/swiglu.js';
import { useGpuTestDevice } from '../support/gpu-helpers.js';
import { asDtype, linearReference, nmse, outputBuffer, randomValues, readArray, roundF16, uploadArray, uploadWeights } from '../support/op-helpers.js';
import { mulberry32 } from '../support/safetensors-bytes.js';

const gpu = useGpuTestDevice('test.gemv-rms');
const rng = mulberry32(0x3a5);

// [N, K]: N of 1 and around the rows per workgroup, K of 1, 7 and 9 (the scalar path), 8
// and 576 (the vector path), then seeded ones. N is even: the GLU cases split it in two.
const SHAPES: [n: number, k: number][] = [
  [2, 1],
  [6, 7],
  [GEMV_ROWS_PER_WORKGROUP + 2, 8],
  [2 * GEMV_ROWS_PER_WORKGROUP - 2, 9],
  [74, 576],
  ...Array.from({ length: 3 }, (_, i): [number, number] => [2 + 2 * Math.floor(rng() * 100), i === 1 ? 600 + Math.floor(rng() * 50) : 1 + Math.floor(rng() * 100)]),
];

const noF16 = (dtype: ComputeDtype): boolean => dtype === 'F16' && !gpu.device.features.has('shader-f16');
const round = (v: number, dtype: ComputeDtype): number => (dtype === 'F16' ? roundF16(v) : Math.fround(v));
const geluTanh = (x: number): number => x / (1 + Math.exp(-2 * Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));

/** s = 1/sqrt(mean(x²) + eps) in float64. */
const rmsScale = (x: Float32Array, eps: number): number => 1 / Math.sqrt(x.reduce((a, v) => a + v * v, 0) / x.length + eps);

type Kind = 'plain' | 'bias' | SwigluAct;

/** The kernel's result in float64 from the stored values: s·(W·x) (+ b) rounded, or the GLU of s·gate, s·up. */
function reference(kind: Kind, w: Float32Array, x: Float32Array, b: Float32Array | undefined, [n, k]: [number, number], eps: number, dtype: ComputeDtype): Float64Array {
  const s = rmsScale(x, eps);
  const sums = linearReference(x, w, [1, n, k]).map((v) => v * s);
  if (kind === 'plain' || kind === 'bias') return sums.map((v, j) => round(v + (b ? b[j] : 0), dtype));
  const i = n / 2;
  return Float64Array.from({ length: i }, (_, r) => {
    const g = round(sums[r], dtype);
    const u = round(sums[i + r], dtype);
    return round(round(kind === 'silu' ? g / (1 + Math.exp(-g)) : geluTanh(g), dtype) * u, dtype);
  });
}

/**
 * NMSE against the reference. F32: the sums' order and s's few ulps (sqrt, the division),
 * 1e-10. F16: an output may round to the neighbouring f16 of float64's (2^-22 NMSE at
 * most), the GLU passes a projection's such rounding on (2^-18, as gemv-glu.test.ts).
 */
const tolerance = (dtype: ComputeDtype, kind: Kind): number => (dtype === 'F32' ? 1e-10 : kind === 'plain' || kind === 'bias' ? 2 ** -22 + 1e-10 : 2 ** -18);

async function runCase(kind: Kind, dtype: ComputeDtype, subgroups: boolean, [n, k]: [number, number], eps: number, xScale = 2) {
  const { device } = gpu;
  const gemv = await Gemv.create(device, dtype, { rmsNorm: { eps }, subgroups, bias: kind === 'bias', glu: kind === 'plain' || kind === 'bias' ? undefined : kind });
  expect(gemv.rmsNorm).toEqual({ eps });
  const w = asDtype(randomValues(rng, n * k), dtype);
  const x = asDtype(randomValues(rng, k, -xScale, xScale), dtype);
  const b = kind === 'bias' ? asDtype(randomValues(rng, n), dtype) : undefined;
  const outN = kind === 'plain' || kind === 'bias' ? n : n / 2;
  const weights = await uploadWeights(device, { w: { shape: [n, k], values: w }, ...(b ? { b: { shape: [n], values: b } } : {}) }, dtype);
  const xBuf = uploadArray(device, x, dtype, 'test.rms.x');
  const spare = 8;
  const y = uploadArray(device, new Float32Array(outN + spare).fill(7), dtype, 'test.rms.y');
  const op = gemv.prepare(`test.rms.${n}x${k}`, weights.tensors.get('w')!, xBuf, y, weights.tensors.get('b'));
  await runOps(device, [op]);
  const all = await readArray(device, y, outN + spare, dtype);
  op.destroy();
  weights.destroy();
  xBuf.destroy();
  y.destroy();
  return { got: all.subarray(0, outN), spare: all.subarray(outN), want: reference(kind, w, x, b, [n, k], eps, dtype) };
}

describe.each(['F32', 'F16'] as const)('gemv RMS_NORM %s', (dtype) => {
  it.each([
    ['plain', true],
    ['bias', true],
    ['silu', true],
    ['gelu_tanh', true],
    ['plain', false],
    ['bias', false],
    ['silu', false],
  ] as const)(`%s, subgroups %s: ${SHAPES.length} shapes against the float64 reference`, async (kind, subgroups) => {
    if (noF16(dtype)) return expect(noF16(dtype)).toBe(true); // said, not silent: no F16 on this adapter
    if (subgroups && !gpu.device.features.has('subgroups')) return expect(subgroups).toBe(true); // said: no subgroups here
    for (const shape of SHAPES) {
      const what = `${kind} N=${shape[0]} K=${shape[1]}`;
      const { got, want, spare } = await runCase(kind, dtype, subgroups, shape, 1e-5);
      const err = nmse(got, want);
      expect(err, `${what} nmse=${err}`).toBeLessThan(tolerance(dtype, kind));
      expect([...spare], `${what}: y past its end untouched`).toEqual(new Array(spare.length).fill(7));
    }
  });

  it('eps where it dominates: x of ~1e-3 with eps 1e-2 scales by ~10, not by ~1000', async () => {
    if (noF16(dtype)) return expect(noF16(dtype)).toBe(true);
    for (const eps of [1e-2, 0]) {
      const { got, want } = await runCase('plain', dtype, gpu.device.features.has('subgroups'), [70, 300], eps, 1e-3);
      const err = nmse(got, want);
      expect(err, `eps=${eps} nmse=${err}`).toBeLessThan(tolerance(dtype, 'plain'));
    }
  });
});

it('equals rms_norm.wgsl (weight 1) then the plain gemv, to the roundings that path adds', async () => {
  // F32: the normed row rounds once more there (x·s, then ·1), and the sums go in another order.
  const { device } = gpu;
  const [n, k, eps] = [90, 333, 1e-6];
  const [fused, plain, norm] = await Promise.all([Gemv.create(device, 'F32', { rmsNorm: { eps } }), Gemv.create(device, 'F32'), RmsNorm.create(device, 'F32', { eps })]);
  const w = randomValues(rng, n * k);
  const x = randomValues(rng, k, -3, 3);
  const weights = await uploadWeights(device, { w: { shape: [n, k], values: w }, ones: { shape: [k], values: new Float32Array(k).fill(1) } }, 'F32');
  const xBuf = uploadArray(device, x, 'F32');
  const [normed, a, b] = [outputBuffer(device, k, 4), outputBuffer(device, n, 4), outputBuffer(device, n, 4)];
  const ops = [fused.prepare('fused', weights.tensors.get('w')!, xBuf, a), norm.prepare('norm', 1, k, xBuf, weights.tensors.get('ones')!, normed), plain.prepare('plain', weights.tensors.get('w')!, normed, b)];
  await runOps(device, ops);
  const [got, want] = [await readArray(device, a, n, 'F32'), await readArray(device, b, n, 'F32')];
  expect(nmse(got, want)).toBeLessThan(1e-11);
  ops.forEach((op) => op.destroy());
  for (const buf of [xBuf, normed, a, b]) buf.destroy();
  weights.destroy();
});

it('refuses residual, outF32 and a bad eps, each in one line', async () => {
  const { device } = gpu;
  await expect(Gemv.create(device, 'F32', { rmsNorm: { eps: 1e-5 }, residual: true })).rejects.toThrow(/^gemv: rmsNorm takes no residual or outF32$/);
  if (!noF16('F16')) await expect(Gemv.create(device, 'F16', { rmsNorm: { eps: 1e-5 }, outF32: true })).rejects.toThrow(/^gemv: rmsNorm takes no residual or outF32$/);
  await expect(Gemv.create(device, 'F32', { rmsNorm: { eps: -1 } })).rejects.toThrow(/^gemv: rmsNorm's eps must be a finite number ≥ 0, not -1$/);
  await expect(Gemv.create(device, 'F32', { rmsNorm: { eps: Number.NaN } })).rejects.toThrow(/eps must be a finite number/);
});

describe.each(['F32', 'F16'] as const)('gemv RMS_NORM %s over several rows (the batched decode pass)', (dtype) => {
  // Each row of x by its own scale, bit for bit what the one-row kernel gives that row alone
  // (a batched decode equals each sequence's solo run); odd counts pad the x-sharing pairs.
  it.each([2, 3, 5])('%i rows, with and without bias: each row bit for bit as alone', async (tokens) => {
    if (noF16(dtype)) return expect(noF16(dtype)).toBe(true);
    if (!gpu.device.features.has('subgroups')) return expect(gpu.device.features.has('subgroups')).toBe(false); // said: the batch needs subgroups
    const { device } = gpu;
    for (const [[n, k], bias] of [[[70, 576], false], [[37, 41], true], [[130, 200], false]] as const) {
      const eps = 1e-5;
      const [batched, alone] = await Promise.all([Gemv.create(device, dtype, { rmsNorm: { eps }, bias, tokens }), Gemv.create(device, dtype, { rmsNorm: { eps }, bias })]);
      const w = randomValues(rng, n * k);
      // rows of very different sizes, so a shared scale would show
      const x = asDtype(Float32Array.from({ length: tokens * k }, (_, i) => (rng() * 2 - 1) * 4 ** Math.floor(i / k)), dtype);
      const weights = await uploadWeights(device, { w: { shape: [n, k], values: w }, ...(bias ? { b: { shape: [n], values: randomValues(rng, n) } } : {}) }, dtype);
      const [weight, b] = [weights.tensors.get('w')!, weights.tensors.get('b')];
      const xAll = uploadArray(device, x, dtype, 'test.rms.x');
      const yAll = outputBuffer(device, tokens * n, dtype === 'F16' ? 2 : 4);
      const xRows = Array.from({ length: tokens }, (_, t) => uploadArray(device, x.subarray(t * k, (t + 1) * k), dtype, `test.rms.x${t}`));
      const yRows = xRows.map(() => outputBuffer(device, n, dtype === 'F16' ? 2 : 4));
      const ops = [batched.prepare('batched', weight, xAll, yAll, b), ...xRows.map((xr, t) => alone.prepare(`alone${t}`, weight, xr, yRows[t], b))];
      await runOps(device, ops);
      const all = await readArray(device, yAll, tokens * n, dtype);
      for (let t = 0; t < tokens; t++) {
        expect([...all.subarray(t * n, (t + 1) * n)], `N=${n} K=${k} bias=${bias} row ${t}`).toEqual([...(await readArray(device, yRows[t], n, dtype))]);
      }
      ops.forEach((op) => op.destroy());
      for (const buf of [xAll, yAll, ...xRows, ...yRows]) buf.destroy();
      weights.destroy();
    }
  });
});

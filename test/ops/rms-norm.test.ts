// rms_norm: y = x / sqrt(mean(x²) + eps) * weight, F32 and F16, on seeded random shapes
// (hidden sizes not multiples of the workgroup), against a float64 reference of HF's
// LlamaRMSNorm computed from the stored values; and the onePlusWeight variant (Gemma:
// · (1 + weight) in f32, rounded once) against GemmaRMSNorm's.

import { describe, expect, it } from 'vitest';
import { pipelineCache } from '../../src/gpu/pipeline-cache.js';
import { runOps, type ComputeDtype } from '../../src/ops/op.js';
import { RMS_NORM_WORKGROUP, RmsNorm, rmsNormVariants } from '../../src/ops/rms-norm.js';
import { spyDevice, useGpuTestDevice } from '../support/gpu-helpers.js';
import { asDtype, nmse, outputBuffer, randomValues, readArray, roundF16, uploadArray, uploadWeights } from '../support/op-helpers.js';
import { mulberry32 } from '../support/safetensors-bytes.js';

const gpu = useGpuTestDevice('test.rms_norm');
const EPS = 1e-5;

// Named regression cases first (hidden 1; one row; a row past the workgroup; Llama-ish
// widths that are not multiples of RMS_NORM_WORKGROUP), then seeded random shapes.
const rng = mulberry32(0x4a5);
const HIDDEN = [1, 7, 63, 100, 576, 1000, RMS_NORM_WORKGROUP + 1, 2 * RMS_NORM_WORKGROUP];
const SHAPES: [rows: number, hidden: number][] = [
  [1, 1],
  [33, 7],
  [1, RMS_NORM_WORKGROUP - 1],
  [2, 1000],
  ...Array.from({ length: 12 }, (): [number, number] => [1 + Math.floor(rng() * 33), HIDDEN[Math.floor(rng() * HIDDEN.length)]]),
];

/**
 * HF in float64 from the stored values: h = x·rsqrt(mean(x²) + eps), cast to the dtype,
 * times weight; onePlus (GemmaRMSNorm): h·(1 + weight) with h not cast, (1 + w) as f32.
 */
function reference(x: Float32Array, w: Float32Array, rows: number, hidden: number, dtype: ComputeDtype, onePlus = false): Float64Array {
  const out = new Float64Array(rows * hidden);
  for (let r = 0; r < rows; r++) {
    let sum = 0;
    for (let i = 0; i < hidden; i++) sum += x[r * hidden + i] ** 2;
    const scale = 1 / Math.sqrt(sum / hidden + Math.fround(EPS));
    for (let i = 0; i < hidden; i++) {
      const h = x[r * hidden + i] * scale;
      out[r * hidden + i] = onePlus ? h * Math.fround(1 + w[i]) : w[i] * (dtype === 'F16' ? roundF16(h) : h);
    }
  }
  return out;
}

const noF16 = (dtype: ComputeDtype): boolean => dtype === 'F16' && !gpu.device.features.has('shader-f16');

it('every variant compiles with no message', async () => {
  const features = gpu.device.features as ReadonlySet<string>;
  const variants = rmsNormVariants(features.has('shader-f16') ? ['F32', 'F16'] : ['F32'], features);
  expect(variants.map((v) => v.key)).toContain(`rms_norm_f32_wg${RMS_NORM_WORKGROUP}`);
  expect(variants.map((v) => v.key)).toContain(`rms_norm_f32_one_plus_w_wg${RMS_NORM_WORKGROUP}`);
  for (const { key, spec } of variants) {
    const info = await pipelineCache(gpu.device).module(spec.shader, spec.flags).getCompilationInfo();
    expect(info.messages.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`), key).toEqual([]);
  }
});

describe.each(['F32', 'F16'] as const)('rms_norm %s', (dtype) => {
  it(`${SHAPES.length} seeded shapes`, async () => {
    if (noF16(dtype)) return expect(noF16(dtype)).toBe(true); // said, not silent: no F16 on this adapter
    const norm = await RmsNorm.create(gpu.device, dtype, { eps: EPS });
    for (const [rows, hidden] of SHAPES) {
      // An offset keeps the mean square away from eps, where a row would be mostly eps.
      const x = asDtype(randomValues(rng, rows * hidden, -2, 3), dtype);
      const w = randomValues(rng, hidden, -2, 2);
      const weights = await uploadWeights(gpu.device, { w: { shape: [hidden], values: w } }, dtype);
      const xBuf = uploadArray(gpu.device, x, dtype);
      const out = outputBuffer(gpu.device, rows * hidden, dtype === 'F16' ? 2 : 4);
      const op = norm.prepare(`test.rms_norm.${rows}x${hidden}`, rows, hidden, xBuf, weights.tensors.get('w')!, out);
      await runOps(gpu.device, [op]);
      const got = await readArray(gpu.device, out, rows * hidden, dtype);
      // F32: f32 sums of ≤ 1000 squares and a few f32 roundings per element: relative error
      // ~1e-6 at most, NMSE ≤ 1e-11. F16: the output's f16 rounding alone gives NMSE up to
      // 2^-22 (2^-11 relative); h's f16 rounding may flip at a tie (the f32 scale differs by
      // ulps from float64's), one f16 ulp on a few elements: allow 2^-20.
      const want = reference(x, asDtype(w, dtype), rows, hidden, dtype);
      const err = nmse(got, want);
      expect(err, `rows=${rows} hidden=${hidden} nmse=${err}`).toBeLessThan(dtype === 'F16' ? 2 ** -20 : 1e-11);
      if (dtype === 'F16') {
        // HF's two roundings (h, then w·h) bit for bit but where a tie flips: a kernel whose
        // compiler dropped h's rounding (lavapipe drops f32(f16(v))) left ~25% of elements
        // an ulp off; allow 1%.
        const off = got.filter((v, i) => v !== roundF16(want[i])).length;
        expect(off, `rows=${rows} hidden=${hidden}: ${off} of ${got.length} not torch's f16`).toBeLessThanOrEqual(Math.max(1, got.length / 100));
      }
      op.destroy();
      weights.destroy();
      xBuf.destroy();
      out.destroy();
    }
  });

  it(`onePlusWeight (Gemma): ${SHAPES.length} seeded shapes`, async () => {
    if (noF16(dtype)) return expect(noF16(dtype)).toBe(true);
    const norm = await RmsNorm.create(gpu.device, dtype, { eps: EPS, onePlusWeight: true });
    expect(norm.onePlusWeight).toBe(true);
    for (const [rows, hidden] of SHAPES) {
      const x = asDtype(randomValues(rng, rows * hidden, -2, 3), dtype);
      // Gemma's weights sit around 0 (the norm is 1 + w); −1.5 … 1.5 makes 1 + w change sign.
      const w = randomValues(rng, hidden, -1.5, 1.5);
      const weights = await uploadWeights(gpu.device, { w: { shape: [hidden], values: w } }, dtype);
      const xBuf = uploadArray(gpu.device, x, dtype);
      const out = outputBuffer(gpu.device, rows * hidden, dtype === 'F16' ? 2 : 4);
      const op = norm.prepare(`test.rms_norm.one_plus.${rows}x${hidden}`, rows, hidden, xBuf, weights.tensors.get('w')!, out);
      await runOps(gpu.device, [op]);
      const got = await readArray(gpu.device, out, rows * hidden, dtype);
      // F32: as above, one more f32 rounding: NMSE ≤ 1e-11. F16: only the output's f16
      // rounding (h stays f32): NMSE ≤ 2^-22, allow 2^-21 for ties decided by f32 ulps.
      const err = nmse(got, reference(x, asDtype(w, dtype), rows, hidden, dtype, true));
      expect(err, `rows=${rows} hidden=${hidden} nmse=${err}`).toBeLessThan(dtype === 'F16' ? 2 ** -21 : 1e-11);
      op.destroy();
      weights.destroy();
      xBuf.destroy();
      out.destroy();
    }
  });

  it('onePlusWeight: w = 0 is the plain norm, w = −1 gives zeros', async () => {
    if (noF16(dtype)) return expect(noF16(dtype)).toBe(true);
    const [rows, hidden] = [3, 37];
    const x = asDtype(randomValues(rng, rows * hidden, -2, 3), dtype);
    const w = new Float32Array(hidden).map((_, i) => (i % 2 ? 0 : -1));
    const weights = await uploadWeights(gpu.device, { w: { shape: [hidden], values: w } }, dtype);
    const xBuf = uploadArray(gpu.device, x, dtype);
    const out = outputBuffer(gpu.device, rows * hidden, dtype === 'F16' ? 2 : 4);
    const norm = await RmsNorm.create(gpu.device, dtype, { eps: EPS, onePlusWeight: true });
    const op = norm.prepare('test.rms_norm.one_plus.exact', rows, hidden, xBuf, weights.tensors.get('w')!, out);
    await runOps(gpu.device, [op]);
    const got = await readArray(gpu.device, out, rows * hidden, dtype);
    const plain = reference(x, new Float32Array(hidden).fill(1), rows, hidden, 'F32');
    for (let i = 0; i < rows * hidden; i++) {
      if (i % hidden % 2 === 0) expect(Math.abs(got[i]), `[${i}]`).toBe(0); // x · 0 (−0 where x < 0)
      // One rounding of h: f16 half an ulp (2^-11), f32 a few ulps.
      else expect(Math.abs(got[i] - plain[i]), `[${i}]`).toBeLessThanOrEqual(Math.abs(plain[i]) * (dtype === 'F16' ? 2 ** -11 : 2 ** -21));
    }
    op.destroy();
    weights.destroy();
    xBuf.destroy();
    out.destroy();
  });

  it('a row of zeros gives zeros (eps keeps it finite), next to a normal row', async () => {
    if (noF16(dtype)) return expect(noF16(dtype)).toBe(true);
    const norm = await RmsNorm.create(gpu.device, dtype, { eps: EPS });
    const hidden = 5;
    const x = new Float32Array([0, 0, 0, 0, 0, 1, -1, 1, -1, 1]);
    const w = new Float32Array([1, 2, 3, 4, 5]);
    const weights = await uploadWeights(gpu.device, { w: { shape: [hidden], values: w } }, dtype);
    const xBuf = uploadArray(gpu.device, x, dtype);
    const out = outputBuffer(gpu.device, 10, 4);
    const op = norm.prepare('test.rms_norm.zeros', 2, hidden, xBuf, weights.tensors.get('w')!, out);
    await runOps(gpu.device, [op]);
    const got = await readArray(gpu.device, out, 10, dtype);
    const want = reference(x, w, 2, hidden, dtype);
    expect([...got.slice(0, 5)]).toEqual([0, 0, 0, 0, 0]);
    // Row 2: |x| = 1, so y = ±w / sqrt(1 + eps): f16 rounding (2^-11) or f32 (a few ulps).
    for (let i = 5; i < 10; i++) expect(Math.abs(got[i] - want[i])).toBeLessThanOrEqual(Math.abs(want[i]) * (dtype === 'F16' ? 2 ** -11 : 2 ** -22));
    op.destroy();
    weights.destroy();
    xBuf.destroy();
    out.destroy();
  });
});

it('rows past the per-dimension workgroup limit spill into y', async () => {
  // A device that claims 4 workgroups per dimension: 11 rows need a (4, 3) grid, one spare.
  const spy = spyDevice(gpu.device, { limits: { maxComputeWorkgroupsPerDimension: 4 } });
  const norm = await RmsNorm.create(spy.device, 'F32', { eps: EPS });
  const [rows, hidden] = [11, 9];
  const x = randomValues(rng, rows * hidden, -1, 1);
  const w = randomValues(rng, hidden, -1, 1);
  const weights = await uploadWeights(gpu.device, { w: { shape: [hidden], values: w } }, 'F32');
  const xBuf = uploadArray(gpu.device, x, 'F32');
  const out = outputBuffer(gpu.device, rows * hidden, 4);
  const op = norm.prepare('test.rms_norm.spill', rows, hidden, xBuf, weights.tensors.get('w')!, out);
  expect(op.dispatches[0].workgroups).toEqual([4, 3]);
  await runOps(spy.device, [op]);
  expect(nmse(await readArray(gpu.device, out, rows * hidden, 'F32'), reference(x, w, rows, hidden, 'F32'))).toBeLessThan(1e-11);
  op.destroy();
  weights.destroy();
  xBuf.destroy();
  out.destroy();
});

it('prepare refuses a weight of the wrong shape or dtype, short buffers, and running in place', async () => {
  const norm = await RmsNorm.create(gpu.device, 'F32', { eps: EPS });
  const weights = await uploadWeights(gpu.device, { w: { shape: [8], values: new Float32Array(8) } }, 'F32');
  const w = weights.tensors.get('w')!;
  const buf = outputBuffer(gpu.device, 16, 4);
  expect(() => norm.prepare('x', 2, 7, buf, w, outputBuffer(gpu.device, 16, 4))).toThrow(/expected F32 \[7\]/);
  expect(() => norm.prepare('x', 3, 8, buf, w, outputBuffer(gpu.device, 24, 4))).toThrow(/x holds 64 bytes/);
  expect(() => norm.prepare('x', 2, 8, buf, w, buf)).toThrow(/in place/);
  await expect(RmsNorm.create(gpu.device, 'F32', { eps: Number.NaN })).rejects.toThrow(/eps/);
  if (gpu.device.features.has('shader-f16')) {
    const f16 = await RmsNorm.create(gpu.device, 'F16', { eps: EPS });
    expect(() => f16.prepare('x', 1, 8, buf, w, outputBuffer(gpu.device, 16, 4))).toThrow(/is F32 \[8\], expected F16/);
  }
  weights.destroy();
  buf.destroy();
});

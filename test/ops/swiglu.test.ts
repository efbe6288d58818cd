// swiglu: out = act(gate) * up, act silu (SwiGLU) or gelu_tanh (GeGLU), from two buffers
// or one fused [gate | up] buffer, F32 and F16, on seeded random shapes, against a float64
// reference from the stored values.

import { describe, expect, it } from 'vitest';
import { pipelineCache } from '../../src/gpu/pipeline-cache.js';
import { runOps, type ComputeDtype } from '../../src/ops/op.js';
import { SWIGLU_WORKGROUP, Swiglu, type SwigluAct, swigluVariants } from '../../src/ops/swiglu.js';
import { spyDevice, useGpuTestDevice } from '../support/gpu-helpers.js';
import { asDtype, closeness, outputBuffer, randomValues, readArray, roundF16, uploadArray } from '../support/op-helpers.js';
import { mulberry32 } from '../support/safetensors-bytes.js';

const gpu = useGpuTestDevice('test.swiglu');

// Named regression cases first, then seeded random shapes (intermediate sizes that are
// not multiples of the workgroup).
const rng = mulberry32(0x5119);
const COLS = [1, 7, 63, 100, 576, 1000, SWIGLU_WORKGROUP + 1];
const SHAPES: [rows: number, cols: number][] = [
  [1, 1],
  [33, 7],
  [1, SWIGLU_WORKGROUP - 1],
  [3, 1000],
  ...Array.from({ length: 12 }, (): [number, number] => [1 + Math.floor(rng() * 33), COLS[Math.floor(rng() * COLS.length)]]),
];

/**
 * torch's gelu(approximate='tanh') in float64: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))),
 * written as x / (1 + exp(−2y)) (the same number: 1 + tanh(y) = 2·sigmoid(2y)), because
 * 1 + tanh(y) cancels at large negative x even in float64 (x = −6: 1e-6 relative).
 */
function geluTanh(x: number): number {
  const y = Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3);
  return x / (1 + Math.exp(-2 * y));
}

/** HF in float64: act(gate), cast to the dtype (torch's f16 silu / gelu round), times up. */
function reference(gate: Float32Array, up: Float32Array, dtype: ComputeDtype, act: SwigluAct = 'silu'): Float64Array {
  return Float64Array.from(gate, (g, i) => {
    const s = act === 'silu' ? g / (1 + Math.exp(-g)) : geluTanh(g);
    return (dtype === 'F16' ? roundF16(s) : s) * up[i];
  });
}

/**
 * |gate| ≤ 12. F32: WGSL's exp is within 3 + 2|x| ulps (27 at |x| = 12, 1.6e-6 relative),
 * which silu passes on at most 1:1, plus three roundings (measured ≤ 2^-20 on lavapipe):
 * 2^-18 relative. F16: the rounded silu may sit one f16 ulp (≤ 2^-10 relative) from the
 * reference's where f32 and float64 land on either side of a rounding tie, plus the
 * product's rounding (2^-11): 3·2^-11 (measured 2^-10.04 over 200,000 elements). abs
 * 2^-24 for results in f16's subnormals.
 */
function tolerance(dtype: ComputeDtype, act: SwigluAct = 'silu'): [number, number] {
  // gelu_tanh, F16: gelu(x ≪ 0) lands in f16's subnormals (spacing 2^-24), so the rounded
  // act is off by up to 2^-25 absolute, times |up| ≤ 4, plus the output's rounding: 2^-22.
  if (dtype === 'F16') return [act === 'silu' ? 2 ** -24 : 2 ** -22, 3 * 2 ** -11];
  // gelu_tanh, F32: the f32 rounding of y (a few ulps of |2y| ≤ 30 where the result is
  // not tiny) moves exp(−2y) by ~1e-6 relative, plus exp's own error: measured 2^-18.2
  // (x ≈ −5.7, 200,000 values in ±12) on lavapipe; 2^-17. abs 2^-30 for the tiny values
  // at x ≪ 0 (torch's own f32 1 + tanh is off by 6e-8 absolute there).
  return act === 'silu' ? [0, 2 ** -18] : [2 ** -30, 2 ** -17];
}

const noF16 = (dtype: ComputeDtype): boolean => dtype === 'F16' && !gpu.device.features.has('shader-f16');

/** [gate | up] per row. */
function interleave(gate: Float32Array, up: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(2 * rows * cols);
  for (let r = 0; r < rows; r++) {
    out.set(gate.subarray(r * cols, (r + 1) * cols), 2 * r * cols);
    out.set(up.subarray(r * cols, (r + 1) * cols), (2 * r + 1) * cols);
  }
  return out;
}

async function check(device: GPUDevice, swiglu: Swiglu, rows: number, cols: number, gate: Float32Array, up: Float32Array, tol: [number, number]): Promise<Float32Array> {
  const dtype = swiglu.dtype;
  const inputs = swiglu.fused ? [uploadArray(gpu.device, interleave(gate, up, rows, cols), dtype)] : [uploadArray(gpu.device, gate, dtype), uploadArray(gpu.device, up, dtype)];
  const out = outputBuffer(gpu.device, rows * cols, dtype === 'F16' ? 2 : 4);
  const op = swiglu.prepare(`test.swiglu.${rows}x${cols}`, rows, cols, inputs as [GPUBuffer, GPUBuffer] | [GPUBuffer], out);
  await runOps(device, [op]);
  const got = await readArray(gpu.device, out, rows * cols, dtype);
  expect(closeness(got, reference(gate, up, dtype, swiglu.act), ...tol), `act=${swiglu.act} fused=${swiglu.fused} rows=${rows} cols=${cols}`).toBeNull();
  op.destroy();
  for (const buffer of [...inputs, out]) buffer.destroy();
  return got;
}

it('every variant compiles with no message', async () => {
  const features = gpu.device.features as ReadonlySet<string>;
  const variants = swigluVariants(features.has('shader-f16') ? ['F32', 'F16'] : ['F32'], features);
  expect(variants.map((v) => v.key)).toContain(`swiglu_f32_fused_wg${SWIGLU_WORKGROUP}`);
  expect(variants.map((v) => v.key)).toContain(`swiglu_f32_fused_gelu_tanh_wg${SWIGLU_WORKGROUP}`);
  for (const { key, spec } of variants) {
    const info = await pipelineCache(gpu.device).module(spec.shader, spec.flags).getCompilationInfo();
    expect(info.messages.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`), key).toEqual([]);
  }
});

describe.each(['F32', 'F16'] as const)('swiglu %s', (dtype) => {
  it.each([false, true])(`fused: %s, ${SHAPES.length} seeded shapes`, async (fused) => {
    if (noF16(dtype)) return expect(noF16(dtype)).toBe(true); // said, not silent: no F16 on this adapter
    const swiglu = await Swiglu.create(gpu.device, dtype, { fused });
    for (const [rows, cols] of SHAPES) {
      const gate = asDtype(randomValues(rng, rows * cols, -12, 12), dtype);
      const up = asDtype(randomValues(rng, rows * cols, -4, 4), dtype);
      await check(gpu.device, swiglu, rows, cols, gate, up, tolerance(dtype));
    }
  });

  it('saturates like torch at large |gate| (exp overflowing to inf gives -0, not NaN)', async () => {
    if (noF16(dtype)) return expect(noF16(dtype)).toBe(true);
    const gate = asDtype(new Float32Array([-1e4, -100, -88, -20, -1, 0, 1, 20, 88, 100, 1e4]), dtype);
    const up = asDtype(new Float32Array(gate.length).fill(1.5), dtype);
    // Outside |x| ≤ 12 WGSL's exp bound grows (3 + 2|x| ulps), but silu's dependence on it
    // vanishes: results are x or ~0. rel as above; abs 2^-24 for silu(-20..-1e4) ≈ 0.
    await check(gpu.device, await Swiglu.create(gpu.device, dtype), 1, gate.length, gate, up, [2 ** -24, tolerance(dtype)[1]]);
  });

  it.each([false, true])(`gelu_tanh (GeGLU), fused: %s, ${SHAPES.length} seeded shapes`, async (fused) => {
    if (noF16(dtype)) return expect(noF16(dtype)).toBe(true);
    const geglu = await Swiglu.create(gpu.device, dtype, { fused, act: 'gelu_tanh' });
    expect(geglu.act).toBe('gelu_tanh');
    for (const [rows, cols] of SHAPES) {
      const gate = asDtype(randomValues(rng, rows * cols, -12, 12), dtype);
      const up = asDtype(randomValues(rng, rows * cols, -4, 4), dtype);
      await check(gpu.device, geglu, rows, cols, gate, up, tolerance(dtype, 'gelu_tanh'));
    }
  });

  it('gelu_tanh saturates without NaN for |x| up to 50 and beyond (no tanh overflow)', async () => {
    if (noF16(dtype)) return expect(noF16(dtype)).toBe(true);
    const big = [-6e4, -1e4, -100, -50, -44.5, -20, -9, -5, -3, -1, -1e-3, 0, 1e-3, 0.5, 1, 3, 9, 20, 44.5, 50, 100, 1e4, 6e4];
    const ramp = Array.from({ length: 201 }, (_, i) => -50 + i / 2); // every half step over ±50
    const gate = asDtype(Float32Array.from([...big, ...ramp]), dtype);
    const up = new Float32Array(gate.length).fill(1); // 6e4 · 1.5 would overflow f16
    const got = await check(gpu.device, await Swiglu.create(gpu.device, dtype, { act: 'gelu_tanh' }), 1, gate.length, gate, up, tolerance(dtype, 'gelu_tanh'));
    expect(got.findIndex(Number.isNaN)).toBe(-1);
    // x ≥ 9: gelu(x) = x exactly in f32; x ≤ −9: |gelu| < 1e-27 (−0 once exp(−2y) overflows, x ≤ −14).
    gate.forEach((x, i) => {
      if (x >= 9) expect(got[i], `x=${x}`).toBe(x);
      if (x <= -9) expect(Math.abs(got[i]), `x=${x}`).toBeLessThan(1e-27);
      if (x <= -14) expect(Math.abs(got[i]), `x=${x}`).toBe(0);
    });
  });
});

it('elements past the per-dimension workgroup limit spill into y', async () => {
  // A device that claims 4 workgroups per dimension: 3 × 1000 elements = 12 workgroups → (4, 3).
  const spy = spyDevice(gpu.device, { limits: { maxComputeWorkgroupsPerDimension: 4 } });
  const swiglu = await Swiglu.create(spy.device, 'F32', { fused: true });
  await check(spy.device, swiglu, 3, 1000, randomValues(rng, 3000, -12, 12), randomValues(rng, 3000, -4, 4), tolerance('F32'));
});

it('prepare refuses the wrong number of inputs, short buffers and out among the inputs', async () => {
  const [two, fused] = [await Swiglu.create(gpu.device, 'F32'), await Swiglu.create(gpu.device, 'F32', { fused: true })];
  const buf = (n: number): GPUBuffer => outputBuffer(gpu.device, n, 4);
  const [a, b, out] = [buf(8), buf(8), buf(8)];
  expect(() => two.prepare('x', 2, 4, [a], out)).toThrow(/two inputs/);
  expect(() => fused.prepare('x', 2, 4, [a, b], out)).toThrow(/fused takes one input/);
  expect(() => fused.prepare('x', 2, 4, [a], out)).toThrow(/gate_up holds 32 bytes, needs 64/);
  expect(() => two.prepare('x', 3, 4, [a, b], out)).toThrow(/gate holds 32 bytes/);
  expect(() => two.prepare('x', 2, 4, [a, out], out)).toThrow(/out must not be an input/);
  for (const buffer of [a, b, out]) buffer.destroy();
});

// gemv_coalesced's RMS_NORM variant (rmsNorm: { eps }): x is the un-normalised row and
// y = s·(W·x) (+ b), s = 1/sqrt(mean(x²) + eps), with GLU act(s·gate)·(s·up). F32 and F16,
// subgroup and workgroup-memory reductions, plain, bias and GLU silu, on seeded (N, K)
// (N not a multiple of the rows per workgroup, K on the scalar and the vector path, below
// and past the x cache), against a float64 reference from the stored values with the
// kernel's output roundings. Then GLU gelu_tanh on a few shapes, a tiny x (eps most of the
// mean square), the refusals, and every RMS_NORM variant compiling.

import { describe, expect, it } from 'vitest';
import { alignUp } from '../../src/gpu/gpu-tensor.js';
import { pipelineCache } from '../../src/gpu/pipeline-cache.js';
import {
  GemvCoalesced,
  gemvCoalescedVariants,
} from '../../src/ops/gemv-coalesced.js';
import type { GemvOptions } from '../../src/ops/gemv.js';
import { type ComputeDtype, computeBytes, runOps } from '../../src/ops/op.js';
import type { SwigluAct } from '../../src/ops/swiglu.js';
import { useGpuTestDevice } from '../support/gpu-helpers.js';
import { COALESCED_ROWS as ROWS, pastCoalescedCache as pastCache, SPARE, untouched } from '../support/linear-cases.js';
import { asDtype, linearReference, nmse, randomValues, readArray, roundF16, uploadArray, uploadWeights } from '../support/op-helpers.js';
import { mulberry32 } from '../support/safetensors-bytes.js';

const gpu = useGpuTestDevice('test.gemv_coalesced_rms');

/** Llama's rms_norm_eps. */
const EPS = 1e-5;

type Mode = 'plain' | 'bias' | 'glu_silu';
const MODES: readonly Mode[] = ['plain', 'bias', 'glu_silu'];
const optionsOf = (mode: Mode): GemvOptions => (mode === 'bias' ? { bias: true } : mode === 'glu_silu' ? { glu: 'silu' } : {});

// Named cases: N of 1 and past the rows per workgroup, K of 1 and 7 (the scalar path), 264
// and 1000 (the vector path, 1000 an uneven last pass of the lanes). Then seeded random
// shapes, one on each path, and per dtype one past the x cache. n is y's length (GLU: I).
const rng = mulberry32(0x5a5e);
const SHAPES: [n: number, k: number][] = [
  [1, 1],
  [ROWS + 1, 7],
  [5, 264],
  [2 * ROWS - 1, 1000],
  [1 + Math.floor(rng() * 40), 1 + Math.floor(rng() * 300)],
  [1 + Math.floor(rng() * 40), alignUp(8 + Math.floor(rng() * 300), 8)],
];
const shapesFor = (dtype: ComputeDtype): [number, number][] => [...SHAPES, [ROWS + 3, pastCache(dtype)]];

const roundTo = (dtype: ComputeDtype): ((v: number) => number) => (dtype === 'F16' ? roundF16 : Math.fround);

/** The norm's scale in float64 from the stored x: 1/sqrt(Σx²/K + eps). */
function rmsScale(x: ArrayLike<number>, eps: number): number {
  let sum = 0;
  for (let i = 0; i < x.length; i++) sum += x[i] * x[i];
  return 1 / Math.sqrt(sum / x.length + eps);
}

/** torch's gelu(approximate='tanh') in float64, as x / (1 + exp(−2y)) (swiglu.test.ts says why). */
function geluTanh(x: number): number {
  const y = Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3);
  return x / (1 + Math.exp(-2 * y));
}

/** common/glu.wgsl in float64: gate and up rounded to the dtype, act rounded, the product rounded. */
function gluReference(gate: number, up: number, dtype: ComputeDtype, act: SwigluAct): number {
  const round = roundTo(dtype);
  const g = round(gate);
  return round(round(act === 'silu' ? g / (1 + Math.exp(-g)) : geluTanh(g)) * round(up));
}

/**
 * NMSE tolerances. F32: the f32 sums in another order, and s's few ulps (the sum of squares,
 * the division, sqrt): 1e-10, as gemv-coalesced.test.ts. F16 plain and bias: a flip of the
 * output's rounding, one f16 ulp (2^-11 relative, squared), as there. F16 GLU: a flip of
 * g's, u's or the act's rounding times the act's slope, 2^-16, as gemv-coalesced-glu.test.ts.
 */
function tolerance(dtype: ComputeDtype, mode: Mode | 'glu'): number {
  if (dtype === 'F32') return 1e-10;
  return mode === 'plain' || mode === 'bias' ? 2 ** -22 + 1e-10 : 2 ** -16;
}
const noF16 = (dtype: ComputeDtype): boolean => dtype === 'F16' && !gpu.device.features.has('shader-f16');
const noSubgroups = (subgroups: boolean): boolean => subgroups && !gpu.device.features.has('subgroups');

/**
 * One case: W (N, K) (GLU: (2N, K), [gate; up]), x in [xLo, xHi), bias in [-1, 1) when the
 * op takes one, into a y with SPARE sentinels past N. W in ~3 row-chunks when `chunked`
 * (not GLU: one chunk). Returns what the kernel wrote, the reference with `eps`, and the
 * sentinels.
 */
async function rmsCase(device: GPUDevice, gemv: GemvCoalesced, [n, k]: readonly [number, number], opts: { xRange?: [number, number]; chunked?: boolean; eps?: number } = {}) {
  const { dtype } = gemv;
  const [xLo, xHi] = opts.xRange ?? [-2, 2];
  const rows = gemv.glu ? 2 * n : n;
  const w = randomValues(rng, rows * k);
  const x = asDtype(randomValues(rng, k, xLo, xHi), dtype);
  const b = gemv.bias ? randomValues(rng, n) : undefined;
  const s = rmsScale(x, opts.eps ?? gemv.rmsNorm!.eps);
  const sums = linearReference(x, asDtype(w, dtype), [1, rows, k]);
  const round = roundTo(dtype);
  const storedBias = b && asDtype(b, dtype);
  const want = gemv.glu
    ? Float64Array.from({ length: n }, (_, p) => gluReference(s * sums[p], s * sums[n + p], dtype, gemv.glu!))
    : Float64Array.from({ length: n }, (_, r) => round(s * sums[r] + (storedBias ? storedBias[r] : 0)));

  const maxChunkBytes = opts.chunked ? alignUp(Math.ceil(n / 3) * k * computeBytes(dtype), 16) : undefined;
  const weights = await uploadWeights(device, { w: { shape: [rows, k], values: w }, ...(b ? { b: { shape: [n], values: b } } : {}) }, dtype, maxChunkBytes);
  const xBuf = uploadArray(device, x, dtype, 'test.rms.x');
  const y = uploadArray(device, new Float32Array(n + SPARE).fill(7), dtype, 'test.rms.y');
  const op = gemv.prepare(`test.rms.${n}x${k}`, weights.tensors.get('w')!, xBuf, y, weights.tensors.get('b'));
  await runOps(device, [op]);
  const all = await readArray(device, y, n + SPARE, dtype);
  const chunks = weights.tensors.get('w')!.chunks.length;
  op.destroy();
  for (const buffer of [xBuf, y]) buffer.destroy();
  weights.destroy();
  return { got: all.subarray(0, n), want, spare: [...all.subarray(n)], chunks };
}

it('the RMS_NORM variants are among gemvCoalescedVariants, plain, bias and both GLU acts, never outF32 or residual, and compile with no message', async () => {
  const features = gpu.device.features as ReadonlySet<string>;
  const variants = gemvCoalescedVariants(['F32', 'F16'], features);
  const flagsOf = (spec: { flags?: readonly string[] }): readonly string[] => spec.flags ?? [];
  // (the ROPE_STORE ones with a folded norm: gemv-coalesced-rope-store.test.ts)
  const rms = variants.filter((v) => flagsOf(v.spec).includes('RMS_NORM') && !flagsOf(v.spec).includes('ROPE_STORE'));
  expect(rms.length).toBe(2 * 4 * (features.has('subgroups') ? 2 : 1)); // dtypes × (plain, bias, silu, gelu_tanh) × reductions
  for (const { key, spec } of rms) {
    expect(key, key).toMatch(/^gemv_coalesced_f(16|32)_(sg|wgred)_.*rms_t/);
    expect(flagsOf(spec).filter((f) => ['OUT_F32', 'RESIDUAL'].includes(f)), key).toEqual([]);
    if (key.includes('_f16_') && !features.has('shader-f16')) continue; // said: no F16 on this adapter, F32 ones compile
    const info = await pipelineCache(gpu.device).module(spec.shader, spec.flags).getCompilationInfo();
    expect(info.messages.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`), key).toEqual([]);
  }
  const keys = rms.map((v) => v.key);
  for (const options of ['rms', 'bias_rms', 'glu_silu_rms', 'glu_gelu_tanh_rms']) expect(keys).toContain(`gemv_coalesced_f32_wgred_${options}_t32r2x512_wg256`);
});

describe.each(['F32', 'F16'] as const)('gemv_coalesced rmsNorm %s', (dtype) => {
  describe.each(MODES)('%s', (mode) => {
    it.each([true, false])(`subgroups %s: ${SHAPES.length + 1} seeded shapes against the float64 reference`, async (subgroups) => {
      if (noF16(dtype)) return expect(noF16(dtype)).toBe(true); // said, not silent: no F16 on this adapter
      if (noSubgroups(subgroups)) return expect(subgroups).toBe(true); // said: no subgroups here
      const gemv = await GemvCoalesced.create(gpu.device, dtype, { subgroups, rmsNorm: { eps: EPS }, ...optionsOf(mode) });
      expect([gemv.rmsNorm, gemv.subgroups]).toEqual([{ eps: EPS }, subgroups]);
      for (const [i, shape] of shapesFor(dtype).entries()) {
        // Every other plain or bias case with W in row-chunks: each chunk computes s itself.
        const chunked = mode !== 'glu_silu' && i % 2 === 1;
        const { got, want, spare, chunks } = await rmsCase(gpu.device, gemv, shape, { chunked });
        const what = `${dtype} subgroups=${subgroups} ${mode} N=${shape[0]} K=${shape[1]} chunked=${chunked}`;
        if (chunked && shape[0] > 2) expect(chunks, what).toBeGreaterThan(1);
        const err = nmse(got, want);
        expect(err, `${what} nmse=${err}`).toBeLessThan(tolerance(dtype, mode));
        expect(spare, `${what}: y past N untouched`).toEqual(untouched());
      }
    });
  });
});

it('eps counts: x tiny (|x| < 1e-3), where eps is most of the mean square', async () => {
  const subgroups = gpu.device.features.has('subgroups');
  for (const mode of MODES) {
    const gemv = await GemvCoalesced.create(gpu.device, 'F32', { subgroups, rmsNorm: { eps: EPS }, ...optionsOf(mode) });
    for (const shape of [[ROWS + 1, 7], [5, 264]] as const) {
      const { got, want, spare } = await rmsCase(gpu.device, gemv, shape, { xRange: [-1e-3, 1e-3] });
      const what = `${mode} N=${shape[0]} K=${shape[1]}`;
      const err = nmse(got, want);
      expect(err, `${what} nmse=${err}`).toBeLessThan(tolerance('F32', mode));
      expect(spare, what).toEqual(untouched());
    }
  }
  // The same tiny x against the reference without eps: far off, so the check above saw eps.
  // (mean x² ≈ 3.3e-7 against eps 1e-5: s without eps is ~5.6× s with it.)
  const gemv = await GemvCoalesced.create(gpu.device, 'F32', { subgroups, rmsNorm: { eps: EPS } });
  const { got, want } = await rmsCase(gpu.device, gemv, [5, 264], { xRange: [-1e-3, 1e-3], eps: 0 });
  expect(nmse(got, want)).toBeGreaterThan(0.1);
});

it('create keeps eps (and null without rmsNorm); refuses rmsNorm with residual, outF32 or tokens > 1, and a bad eps', async () => {
  expect((await GemvCoalesced.create(gpu.device, 'F32', { rmsNorm: { eps: 1e-6 } })).rmsNorm).toEqual({ eps: 1e-6 });
  expect((await GemvCoalesced.create(gpu.device, 'F32')).rmsNorm).toBeNull();
  const dtypes: ComputeDtype[] = gpu.device.features.has('shader-f16') ? ['F32', 'F16'] : ['F32'];
  for (const dtype of dtypes) {
    for (const option of [{ residual: true }, { outF32: true }, { residual: true, bias: true }]) {
      await expect(GemvCoalesced.create(gpu.device, dtype, { rmsNorm: { eps: EPS }, ...option }), `${dtype} ${JSON.stringify(option)}`).rejects.toThrow(
        'gemv_coalesced: rmsNorm takes no residual or outF32',
      );
    }
  }
  await expect(GemvCoalesced.create(gpu.device, 'F32', { rmsNorm: { eps: EPS }, tokens: 2 })).rejects.toThrow(/one row of x only/);
  for (const eps of [-1e-5, Number.NaN, Number.POSITIVE_INFINITY]) {
    await expect(GemvCoalesced.create(gpu.device, 'F32', { rmsNorm: { eps } }), String(eps)).rejects.toThrow(/^gemv_coalesced: rmsNorm's eps must be a finite number ≥ 0, not /);
  }
});

it('GLU gelu_tanh: s reaches both halves before the activation too (a few shapes, F32 and F16)', async () => {
  const subgroups = gpu.device.features.has('subgroups');
  for (const dtype of ['F32', 'F16'] as const) {
    if (noF16(dtype)) continue; // said by the F16 cases above
    const gemv = await GemvCoalesced.create(gpu.device, dtype, { subgroups, glu: 'gelu_tanh', rmsNorm: { eps: EPS } });
    for (const shape of [[ROWS / 2 + 1, 13], [3, 264]] as const) {
      const { got, want, spare } = await rmsCase(gpu.device, gemv, shape);
      const what = `${dtype} gelu_tanh N=${shape[0]} K=${shape[1]}`;
      const err = nmse(got, want);
      expect(err, `${what} nmse=${err}`).toBeLessThan(tolerance(dtype, 'glu'));
      expect(spare, what).toEqual(untouched());
    }
  }
});

// gemv's GLU epilogue: W = [gate; up] (2I, K), y (I,) = act(gate·x) · (up·x), silu and
// gelu_tanh, F32 and F16, both reductions, on seeded shapes (I not a multiple of the pairs
// per workgroup, K around and off the vector width). Bit for bit the unfused decode (the
// plain gemv into [gate | up], then swiglu.wgsl FUSED), and close to a float64 reference
// with the roundings HF's f16 MLP makes. Batched (tokens, with and without the folded norm):
// each row the bits of the one-row GLU gemv. The refusals: bias, outF32, residual, a chunked
// weight, an odd N.

import { describe, expect, it } from 'vitest';
import { alignUp } from '../../src/gpu/gpu-tensor.js';
import { GEMV_ROWS_PER_WORKGROUP, Gemv } from '../../src/ops/gemv.js';
import { runOps, type ComputeDtype } from '../../src/ops/op.js';
import { Swiglu, type SwigluAct } from '../../src/ops/swiglu.js';
import { useGpuTestDevice } from '../support/gpu-helpers.js';
import { asDtype, linearReference, nmse, outputBuffer, randomValues, readArray, roundF16, uploadArray, uploadWeights } from '../support/op-helpers.js';
import { mulberry32 } from '../support/safetensors-bytes.js';

const gpu = useGpuTestDevice('test.gemv-glu');
const rng = mulberry32(0x61a);

/** Outputs per workgroup: each thread computes half its rows' worth (a gate and an up row each). */
const PAIRS_PER_WORKGROUP = GEMV_ROWS_PER_WORKGROUP / 2;
// [I, K]: one output, I around the pairs per workgroup, K of 1, 7 and 9 (the scalar path),
// 8 and 576 (the vector path), then seeded ones.
const SHAPES: [i: number, k: number][] = [
  [1, 1],
  [3, 7],
  [PAIRS_PER_WORKGROUP + 1, 8],
  [2 * PAIRS_PER_WORKGROUP - 1, 9],
  [37, 576],
  ...Array.from({ length: 3 }, (_, i): [number, number] => [1 + Math.floor(rng() * 150), i === 1 ? 600 + Math.floor(rng() * 50) : 1 + Math.floor(rng() * 100)]),
];

const noF16 = (dtype: ComputeDtype): boolean => dtype === 'F16' && !gpu.device.features.has('shader-f16');
const round = (v: number, dtype: ComputeDtype): number => (dtype === 'F16' ? roundF16(v) : Math.fround(v));

/** torch's gelu(approximate='tanh') in float64 (written as x / (1 + exp(−2y)): see swiglu.test.ts). */
const geluTanh = (x: number): number => x / (1 + Math.exp(-2 * Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));

/** HF's MLP in float64 from the stored values: each projection rounded, act rounded, the product rounded. */
function reference(projections: Float64Array, i: number, dtype: ComputeDtype, act: SwigluAct): Float64Array {
  return Float64Array.from({ length: i }, (_, r) => {
    const g = round(projections[r], dtype);
    const u = round(projections[i + r], dtype);
    return round(round(act === 'silu' ? g / (1 + Math.exp(-g)) : geluTanh(g), dtype) * u, dtype);
  });
}

/**
 * NMSE against the float64 reference. F32: the f32 sums' order (≤ 1e-13, gemv.test.ts) and
 * exp's few ulps, 1e-10. F16: a projection may round to the neighbouring f16 of float64's
 * (2^-10 relative), which the activation passes on at most ~1.1:1: 2^-18.
 */
const tolerance = (dtype: ComputeDtype): number => (dtype === 'F16' ? 2 ** -18 : 1e-10);

describe.each(['F32', 'F16'] as const)('gemv GLU %s', (dtype) => {
  it.each([
    ['silu', true],
    ['gelu_tanh', true],
    ['silu', false],
  ] as const)(`%s, subgroups %s: ${SHAPES.length} shapes, the bits of gemv then swiglu, and the float64 reference`, async (act, subgroups) => {
    if (noF16(dtype)) return expect(noF16(dtype)).toBe(true); // said, not silent: no F16 on this adapter
    if (subgroups && !gpu.device.features.has('subgroups')) return expect(subgroups).toBe(true); // said: no subgroups here
    const { device } = gpu;
    const [fused, plain, swiglu] = await Promise.all([Gemv.create(device, dtype, { glu: act, subgroups }), Gemv.create(device, dtype, { subgroups }), Swiglu.create(device, dtype, { act, fused: true })]);
    expect(fused.glu).toBe(act);
    for (const [i, k] of SHAPES) {
      const what = `I=${i} K=${k}`;
      const w = randomValues(rng, 2 * i * k);
      const x = asDtype(randomValues(rng, k, -2, 2), dtype);
      const weights = await uploadWeights(device, { w: { shape: [2 * i, k], values: w } }, dtype);
      const weight = weights.tensors.get('w')!;
      const xBuf = uploadArray(device, x, dtype, 'test.glu.x');
      const spare = 8;
      const y = uploadArray(device, new Float32Array(i + spare).fill(7), dtype, 'test.glu.y');
      const gateUp = outputBuffer(device, 2 * i, dtype === 'F16' ? 2 : 4, 'test.glu.gate_up');
      const unfused = outputBuffer(device, i, dtype === 'F16' ? 2 : 4, 'test.glu.unfused');
      const ops = [fused.prepare(`test.glu.${what}`, weight, xBuf, y), plain.prepare('test.glu.plain', weight, xBuf, gateUp), swiglu.prepare('test.glu.act', 1, i, [gateUp], unfused)];
      await runOps(device, ops);
      const all = await readArray(device, y, i + spare, dtype);
      const got = all.subarray(0, i);
      expect([...got], `${what}: the unfused gemv then swiglu, bit for bit`).toEqual([...(await readArray(device, unfused, i, dtype))]);
      expect([...all.subarray(i)], `${what}: y past I untouched`).toEqual(new Array(spare).fill(7));
      const want = reference(linearReference(x, asDtype(w, dtype), [1, 2 * i, k]), i, dtype, act);
      const err = nmse(got, want);
      expect(err, `${what} nmse=${err}`).toBeLessThan(tolerance(dtype));
      ops.forEach((op) => op.destroy());
      for (const b of [xBuf, y, gateUp, unfused]) b.destroy();
      weights.destroy();
    }
  });
});

describe.each(['F32', 'F16'] as const)('gemv GLU %s over several rows (the batched decode pass)', (dtype) => {
  it.each([false, true])('rmsNorm %s: each row the bits of the one-row GLU gemv', async (rms) => {
    if (noF16(dtype)) return expect(noF16(dtype)).toBe(true); // said, not silent: no F16 on this adapter
    if (!gpu.device.features.has('subgroups')) return expect(gpu.device.features.has('subgroups')).toBe(false); // said: the batch needs subgroups
    const { device } = gpu;
    const options = { glu: 'silu' as const, ...(rms ? { rmsNorm: { eps: 1e-5 } } : {}) };
    const single = await Gemv.create(device, dtype, options);
    for (const [s, [i, k]] of SHAPES.entries()) {
      const tokens = [2, 3, 4, 8, 5][s % 5];
      const batched = await Gemv.create(device, dtype, { ...options, tokens });
      const what = `I=${i} K=${k} tokens=${tokens}`;
      const weights = await uploadWeights(device, { w: { shape: [2 * i, k], values: randomValues(rng, 2 * i * k) } }, dtype);
      const weight = weights.tensors.get('w')!;
      const x = asDtype(randomValues(rng, tokens * k, -2, 2), dtype);
      const xBuf = uploadArray(device, x, dtype, 'test.glu.x');
      const spare = 8;
      const y = uploadArray(device, new Float32Array(tokens * i + spare).fill(7), dtype, 'test.glu.y');
      const op = batched.prepare(`test.glu.batch.${what}`, weight, xBuf, y);
      await runOps(device, [op]);
      const all = await readArray(device, y, tokens * i + spare, dtype);
      for (let t = 0; t < tokens; t++) {
        const xRow = uploadArray(device, x.subarray(t * k, (t + 1) * k), dtype, 'test.glu.x_row');
        const yRow = outputBuffer(device, i, dtype === 'F16' ? 2 : 4, 'test.glu.y_row');
        const one = single.prepare('test.glu.solo', weight, xRow, yRow);
        await runOps(device, [one]);
        expect([...all.subarray(t * i, (t + 1) * i)], `${what}: row ${t}, the one-row gemv's bits`).toEqual([...(await readArray(device, yRow, i, dtype))]);
        one.destroy();
        xRow.destroy();
        yRow.destroy();
      }
      expect([...all.subarray(tokens * i)], `${what}: y past T·I untouched`).toEqual(new Array(spare).fill(7));
      op.destroy();
      xBuf.destroy();
      y.destroy();
      weights.destroy();
    }
  });
});

describe('gemv GLU refusals', () => {
  it('refuses bias, outF32 and residual with glu, and an unknown act, each in one line', async () => {
    const { device } = gpu;
    await expect(Gemv.create(device, 'F32', { glu: 'silu', bias: true })).rejects.toThrow(/^gemv: the GLU epilogue \(glu: 'silu'\) takes no bias, outF32 or residual$/);
    await expect(Gemv.create(device, 'F32', { glu: 'silu', residual: true })).rejects.toThrow(/takes no bias, outF32 or residual/);
    await expect(Gemv.create(device, 'F32', { glu: 'gelu_tanh', outF32: true })).rejects.toThrow(/takes no bias, outF32 or residual/);
    // an act TypeScript would have refused, from JavaScript
    await expect(Gemv.create(device, 'F32', { glu: 'relu' as SwigluAct })).rejects.toThrow(/^gemv: glu must be one of silu, gelu_tanh, got relu$/);
  });

  it('refuses a chunked [gate; up], an odd N and a y shorter than I, naming the op', async () => {
    const { device } = gpu;
    const gemv = await Gemv.create(device, 'F32', { glu: 'silu' });
    const [i, k] = [40, 16];
    const chunked = await uploadWeights(device, { w: { shape: [2 * i, k], values: randomValues(rng, 2 * i * k) } }, 'F32', alignUp(i * k * 4, 16));
    const odd = await uploadWeights(device, { w: { shape: [2 * i - 1, k], values: randomValues(rng, (2 * i - 1) * k) } }, 'F32');
    const whole = await uploadWeights(device, { w: { shape: [2 * i, k], values: randomValues(rng, 2 * i * k) } }, 'F32');
    const x = outputBuffer(device, k, 4);
    const y = outputBuffer(device, i, 4);
    const short = outputBuffer(device, i - 4, 4);
    expect(chunked.tensors.get('w')!.chunks.length).toBeGreaterThan(1);
    expect(() => gemv.prepare('mlp', chunked.tensors.get('w')!, x, y)).toThrow(/^mlp: a GLU gemv needs the gate and up rows in one chunk, w has 2$/);
    expect(() => gemv.prepare('mlp', odd.tensors.get('w')!, x, y)).toThrow(/^mlp: a GLU gemv needs \[gate; up\] rows, an even N, w is \[79, 16\]$/);
    expect(() => gemv.prepare('mlp', whole.tensors.get('w')!, x, short)).toThrow(/^mlp: gemv y holds 144 bytes, \(40,\) needs 160$/);
    for (const b of [x, y, short]) b.destroy();
    for (const t of [chunked, odd, whole]) t.destroy();
  });
});

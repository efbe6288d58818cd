// gemv_coalesced's GLU epilogue (glu: 'silu' | 'gelu_tanh'): y (I,) = act(gate·x) · (up·x)
// from the joined [gate; up] (2I, K) weight in one dispatch. F32 and F16, subgroup and
// workgroup-memory reductions, on seeded random (I, K) (I not a multiple of the pairs per
// workgroup, K on the scalar and the vector path, below and past the x cache). Each case
// against the unfused path bit for bit (the plain gemv writing 2I values, then Swiglu
// FUSED over them) and against a float64 reference with common/glu.wgsl's roundings.

import { describe, expect, it } from 'vitest';
import { alignUp } from '../../src/gpu/gpu-tensor.js';
import { pipelineCache } from '../../src/gpu/pipeline-cache.js';
import { readBuffer } from '../../src/gpu/read-back.js';
import {
  GemvCoalesced,
  gemvCoalescedVariants,
} from '../../src/ops/gemv-coalesced.js';
import type { GemvOptions } from '../../src/ops/gemv.js';
import { type ComputeDtype, computeBytes, runOps } from '../../src/ops/op.js';
import { Swiglu, type SwigluAct } from '../../src/ops/swiglu.js';
import { spyDevice, useGpuTestDevice, withSubgroupWidth } from '../support/gpu-helpers.js';
import { COALESCED_ROWS, pastCoalescedCache as pastCache, SPARE, untouched } from '../support/linear-cases.js';
import { asDtype, linearReference, nmse, outputBuffer, randomValues, readArray, roundF16, uploadArray, uploadWeights } from '../support/op-helpers.js';
import { mulberry32 } from '../support/safetensors-bytes.js';

const gpu = useGpuTestDevice('test.gemv_coalesced_glu');

/** (gate, up) pairs per workgroup with 32-lane row groups (8): a pair takes two of a row group's rows. */
const PAIRS = COALESCED_ROWS / 2;
const ACTS: readonly SwigluAct[] = ['silu', 'gelu_tanh'];

// Named cases first: I of 1 and around the pairs per workgroup, K of 1 and around the
// vector widths (the scalar path), multiples of 8 (the vector path in both dtypes), K = 1000
// (an uneven last pass of the 32 lanes). Then seeded random shapes, K alternately on the
// scalar and the vector path. The case past the x cache is added per dtype.
const rng = mulberry32(0x61a0);
const SHAPES: [i: number, k: number][] = [
  [1, 1],
  [3, 7],
  [PAIRS + 1, 8],
  [2 * PAIRS - 1, 9],
  [5, 264],
  [11, 1000],
  ...Array.from({ length: 4 }, (_, n): [number, number] => [
    1 + Math.floor(rng() * 40),
    n % 2 ? alignUp(8 + Math.floor(rng() * 600), 8) : 1 + Math.floor(rng() * 600),
  ]),
];
const shapesFor = (dtype: ComputeDtype): [number, number][] => [...SHAPES, [PAIRS + 3, pastCache(dtype)]];

/** torch's gelu(approximate='tanh') in float64, as x / (1 + exp(−2y)) (swiglu.test.ts says why). */
function geluTanh(x: number): number {
  const y = Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3);
  return x / (1 + Math.exp(-2 * y));
}

/** common/glu.wgsl in float64: gate and up rounded to the dtype, act rounded, the product rounded. */
function gluReference(gate: number, up: number, dtype: ComputeDtype, act: SwigluAct): number {
  const round = dtype === 'F16' ? roundF16 : Math.fround;
  const g = round(gate);
  return round(round(act === 'silu' ? g / (1 + Math.exp(-g)) : geluTanh(g)) * round(up));
}

/**
 * NMSE against the float64 reference, whose roundings are the shader's: what is left is
 * where the f32 sums (another order) and float64 land on either side of a rounding, and
 * WGSL's exp (≤ 3 + 2|x| ulps). F32: a few f32 ulps per element, amplified by the
 * activation's slope: 1e-10, as gemv-coalesced.test.ts. F16: such a flip costs one f16 ulp
 * (2^-10 relative) of g or u, or of the rounded act, times the act's relative slope
 * (|g·act'(g) / act(g)| ≈ |1 + g| for g ≪ 0, ≤ 4 where act is not tiny next to the rest):
 * 2^-16, the square of 2^-8. Measured on lavapipe: F32 ≤ 1.1e-13, F16 0 (no flip on these seeds).
 */
const tolerance = (dtype: ComputeDtype): number => (dtype === 'F16' ? 2 ** -16 : 1e-10);
const noF16 = (dtype: ComputeDtype): boolean => dtype === 'F16' && !gpu.device.features.has('shader-f16');
const noSubgroups = (subgroups: boolean): boolean => subgroups && !gpu.device.features.has('subgroups');

/**
 * One case: the GLU gemv into a y with SPARE sentinels past I, and the unfused path (the
 * plain gemv over the same weight into (2I,), then Swiglu FUSED, rows 1, cols I) in the
 * same submission. Returns both outputs' bytes, the GLU output as numbers, the reference
 * and the sentinels.
 */
async function gluCase(device: GPUDevice, glu: GemvCoalesced, plain: GemvCoalesced, swiglu: Swiglu, [i, k]: readonly [number, number]) {
  const dtype = glu.dtype;
  const bytes = computeBytes(dtype);
  const w = randomValues(rng, 2 * i * k); // [gate; up], (2I, K)
  const x = asDtype(randomValues(rng, k, -2, 2), dtype);
  const sums = linearReference(x, asDtype(w, dtype), [1, 2 * i, k]); // (2I,): gate·x, then up·x
  const want = Float64Array.from({ length: i }, (_, p) => gluReference(sums[p], sums[i + p], dtype, glu.glu!));

  const weights = await uploadWeights(device, { w: { shape: [2 * i, k], values: w } }, dtype);
  const weight = weights.tensors.get('w')!;
  const xBuf = uploadArray(device, x, dtype, 'test.glu.x');
  const y = uploadArray(device, new Float32Array(i + SPARE).fill(7), dtype, 'test.glu.y');
  const gateUp = outputBuffer(device, 2 * i, bytes, 'test.glu.gate_up');
  const unfused = outputBuffer(device, i, bytes, 'test.glu.unfused');
  const label = `test.glu.${i}x${k}`;
  const ops = [
    glu.prepare(label, weight, xBuf, y),
    plain.prepare(`${label}.plain`, weight, xBuf, gateUp),
    swiglu.prepare(`${label}.swiglu`, 1, i, [gateUp], unfused),
  ];
  await runOps(device, ops);
  const outBytes = alignUp(i * bytes, 4);
  const [fusedBits, unfusedBits] = await Promise.all([y, unfused].map(async (b) => (await readBuffer(device, b, 0, outBytes)).slice(0, i * bytes)));
  const all = await readArray(device, y, i + SPARE, dtype);
  for (const op of ops) op.destroy();
  for (const buffer of [xBuf, y, gateUp, unfused]) buffer.destroy();
  weights.destroy();
  return { fusedBits, unfusedBits, got: all.subarray(0, i), want, spare: [...all.subarray(i)] };
}

/** Every shape with each act: bit for bit the unfused path, near the reference, nothing past I written. */
async function checkShapes(device: GPUDevice, dtype: ComputeDtype, subgroups: boolean, act: SwigluAct, shapes: readonly [number, number][]): Promise<void> {
  const glu = await GemvCoalesced.create(device, dtype, { subgroups, glu: act });
  expect([glu.glu, glu.subgroups]).toEqual([act, subgroups]);
  const plain = await GemvCoalesced.create(device, dtype, { subgroups });
  const swiglu = await Swiglu.create(device, dtype, { act, fused: true });
  for (const shape of shapes) {
    const { fusedBits, unfusedBits, got, want, spare } = await gluCase(device, glu, plain, swiglu, shape);
    const what = `${dtype} subgroups=${subgroups} ${act} I=${shape[0]} K=${shape[1]}`;
    expect(fusedBits, `${what}: the bits of gemv then swiglu`).toEqual(unfusedBits);
    const err = nmse(got, want);
    expect(err, `${what} nmse=${err}`).toBeLessThan(tolerance(dtype));
    expect(spare, `${what}: y past I untouched`).toEqual(untouched());
  }
}


it('the GLU variants are among gemvCoalescedVariants, both acts, neither bias nor outF32 nor residual, and compile', async () => {
  const features = gpu.device.features as ReadonlySet<string>;
  const variants = gemvCoalescedVariants(['F32', 'F16'], features);
  const flagsOf = (spec: { flags?: readonly string[] }): readonly string[] => spec.flags ?? [];
  const glu = variants.filter((v) => flagsOf(v.spec).includes('GLU'));
  expect(glu.length).toBe(2 * 2 * 2 * (features.has('subgroups') ? 2 : 1)); // dtypes × acts × RMS_NORM or not × reductions
  for (const { key, spec } of glu) {
    expect(flagsOf(spec).filter((f) => ['BIAS', 'OUT_F32', 'RESIDUAL'].includes(f)), key).toEqual([]);
    expect(flagsOf(spec).includes('GELU_TANH'), key).toBe(key.includes('_glu_gelu_tanh_'));
    if (key.includes('_f16_') && !features.has('shader-f16')) continue; // said: no F16 on this adapter, F32 ones compile
    const info = await pipelineCache(gpu.device).module(spec.shader, spec.flags).getCompilationInfo();
    expect(info.messages.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`), key).toEqual([]);
  }
  expect(glu.map((v) => v.key)).toContain(`gemv_coalesced_f32_wgred_glu_silu_t32r2x512_wg256`);
});

describe.each(['F32', 'F16'] as const)('gemv_coalesced glu %s', (dtype) => {
  describe.each(ACTS)('%s', (act) => {
    it.each([true, false])(`subgroups %s: ${SHAPES.length + 1} seeded shapes, the bits of gemv then swiglu`, async (subgroups) => {
      if (noF16(dtype)) return expect(noF16(dtype)).toBe(true); // said, not silent: no F16 on this adapter
      if (noSubgroups(subgroups)) return expect(subgroups).toBe(true); // said: no subgroups here
      await checkShapes(gpu.device, dtype, subgroups, act, shapesFor(dtype));
    });
  });
});

it('64-lane row groups where the adapter reports 64-wide subgroups (4 pairs per workgroup)', async () => {
  if (noSubgroups(true)) return expect(noSubgroups(true)).toBe(true); // said: no subgroups here
  const dtype: ComputeDtype = gpu.device.features.has('shader-f16') ? 'F16' : 'F32';
  await checkShapes(withSubgroupWidth(gpu.device, 64), dtype, true, 'silu', [[5, 1000], [9, 64], [3, 5]]);
});

it('spills past the per-dimension workgroup limit into a 2-D dispatch', async () => {
  // 3 workgroups per dimension: 61 pairs are 8 workgroups, 3 × 3.
  const spy = spyDevice(gpu.device, { limits: { maxComputeWorkgroupsPerDimension: 3 } });
  await checkShapes(spy.device, 'F32', false, 'gelu_tanh', [[7 * PAIRS + 5, 12]]);
});

it('create refuses glu with bias, outF32 or residual, and an unknown act; prepare a chunked or odd weight', async () => {
  for (const option of [{ bias: true }, { outF32: true }, { residual: true }]) {
    await expect(GemvCoalesced.create(gpu.device, 'F32', { glu: 'silu', ...option }), JSON.stringify(option)).rejects.toThrow(/gemv_coalesced: .*GLU.*bias, outF32 or residual/);
  }
  await expect(GemvCoalesced.create(gpu.device, 'F32', { glu: 'relu' } as unknown as GemvOptions)).rejects.toThrow(/glu/);
  const glu = await GemvCoalesced.create(gpu.device, 'F32', { glu: 'silu', subgroups: false });
  // 16 rows of 8 f32 in chunks of at most 4 rows.
  const weights = await uploadWeights(
    gpu.device,
    { chunked: { shape: [16, 8], values: randomValues(rng, 128) }, odd: { shape: [5, 8], values: randomValues(rng, 40) } },
    'F32',
    4 * 8 * 4,
  );
  const [x, y] = [outputBuffer(gpu.device, 8, 4), outputBuffer(gpu.device, 8, 4)];
  const chunked = weights.tensors.get('chunked')!;
  expect(chunked.chunks.length).toBeGreaterThan(1);
  expect(() => glu.prepare('t.mlp', chunked, x, y)).toThrow(/^t\.mlp: .*one chunk/);
  expect(() => glu.prepare('t.mlp', weights.tensors.get('odd')!, x, y)).toThrow(/^t\.mlp: .*even/);
  // y holds I = 8 values, not 2I: 16 bytes are too few for (8,) f32.
  const short = outputBuffer(gpu.device, 4, 4);
  const one = await uploadWeights(gpu.device, { w: { shape: [16, 8], values: randomValues(rng, 128) } }, 'F32');
  expect(() => glu.prepare('t.mlp', one.tensors.get('w')!, x, short)).toThrow(/^t\.mlp: gemv y holds 16 bytes/);
  expect(() => glu.prepare('t.mlp', one.tensors.get('w')!, x, y).destroy()).not.toThrow();
  for (const buffer of [x, y, short]) buffer.destroy();
  weights.destroy();
  one.destroy();
});

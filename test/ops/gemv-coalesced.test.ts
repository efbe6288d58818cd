// gemv_coalesced (the hardware-GPU gemv): y = W·x (+ b), F32 and F16, subgroup and
// workgroup-memory reductions, on seeded random (N, K) (K around the vector widths and
// past the x cache, N not a multiple of the rows per workgroup), with and without bias,
// row-chunked weights, f32 output; against the float64 linearReference. The residual
// variant against the same reference and, bit for bit, against itself then Add. A device
// reporting 64-wide subgroups runs 64-lane row groups (8 of lavapipe's 8-wide subgroups
// per row), the AMD wave64 path.

import { describe, expect, it } from 'vitest';
import { alignUp } from '../../src/gpu/gpu-tensor.js';
import { pipelineCache } from '../../src/gpu/pipeline-cache.js';
import {
  GEMV_COALESCED_ROWS_PER_THREAD,
  GemvCoalesced,
  gemvCoalescedVariants,
} from '../../src/ops/gemv-coalesced.js';
import type { GemvOptions } from '../../src/ops/gemv.js';
import type { ComputeDtype } from '../../src/ops/op.js';
import { spyDevice, useGpuTestDevice, withSubgroupWidth } from '../support/gpu-helpers.js';
import { gemvAsLinear, linearCase, residualCase, untouched, COALESCED_ROWS as ROWS, pastCoalescedCache as pastCache } from '../support/linear-cases.js';
import { nmse, outputBuffer, randomValues, uploadWeights } from '../support/op-helpers.js';
import { mulberry32 } from '../support/safetensors-bytes.js';

const gpu = useGpuTestDevice('test.gemv_coalesced');


// Named cases first: K of 1 and around the vector widths (the scalar path), multiples of 8
// (the vector path in both dtypes), N of 1 and around the rows per workgroup, K = 1000 (an
// uneven last pass of the 32 lanes). Then seeded random shapes. The case past the x cache
// is added per dtype.
const rng = mulberry32(0xc0a1);
const SHAPES: [n: number, k: number][] = [
  [1, 1],
  [5, 3],
  [ROWS + 1, 5],
  [3, 7],
  [2 * ROWS - 1, 8],
  [GEMV_COALESCED_ROWS_PER_THREAD + 1, 9],
  [70, 264],
  [37, 1000],
  ...Array.from({ length: 6 }, (_, i): [number, number] => [
    1 + Math.floor(rng() * 300),
    i % 2 ? alignUp(300 + Math.floor(rng() * 700), 8) : 1 + Math.floor(rng() * 300),
  ]),
];
const shapesFor = (dtype: ComputeDtype): [number, number][] => [...SHAPES, [23, pastCache(dtype)]];

/** NMSE tolerance, as gemv.test.ts: f32 sums in another order, plus an f16 output's rounding. */
const tolerance = (f16Out: boolean): number => (f16Out ? 2 ** -22 + 1e-10 : 1e-10);
const noF16 = (dtype: ComputeDtype): boolean => dtype === 'F16' && !gpu.device.features.has('shader-f16');
const noSubgroups = (subgroups: boolean): boolean => subgroups && !gpu.device.features.has('subgroups');


/** Runs every shape, case i taking bit 0 = bias, bit 1 = chunked, bit 2 = outF32 (F16). */
async function checkShapes(device: GPUDevice, dtype: ComputeDtype, options: GemvOptions, shapes: [number, number][]): Promise<void> {
  const ops = new Map<string, Promise<GemvCoalesced>>();
  for (const [i, shape] of shapes.entries()) {
    const [bias, chunked, outF32] = [i & 1, i & 2, i & 4].map(Boolean);
    const key = `${bias}.${outF32}`;
    if (!ops.has(key)) ops.set(key, GemvCoalesced.create(device, dtype, { ...options, bias, outF32 }));
    const gemv = await ops.get(key)!;
    expect(gemv.subgroups).toBe(options.subgroups);
    const { got, want, spare, chunks } = await linearCase(device, rng, gemvAsLinear(gemv), [1, ...shape], chunked);
    const what = `N=${shape[0]} K=${shape[1]} bias=${bias} chunked=${chunked} outF32=${outF32}`;
    if (chunked && shape[0] > 2) expect(chunks, what).toBeGreaterThan(1);
    const err = nmse(got, want);
    expect(err, `${what} nmse=${err}`).toBeLessThan(tolerance(dtype === 'F16' && !outF32));
    expect(spare, `${what}: y past N untouched`).toEqual(untouched());
  }
}

it('every variant compiles with no message', async () => {
  const features = gpu.device.features as ReadonlySet<string>;
  const variants = gemvCoalescedVariants(features.has('shader-f16') ? ['F32', 'F16'] : ['F32'], features);
  expect(new Set(variants.map((v) => v.key)).size).toBe(variants.length);
  expect(variants.length).toBe(features.has('subgroups') ? 76 : 38); // 22 a reduction, and 16 ROPE_STORE ones
  for (const { key, spec } of variants) {
    const info = await pipelineCache(gpu.device).module(spec.shader, spec.flags).getCompilationInfo();
    expect(info.messages.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`), key).toEqual([]);
    expect((await pipelineCache(gpu.device).get(key, spec)).label).toBe(key);
  }
});

describe.each(['F32', 'F16'] as const)('gemv_coalesced %s', (dtype) => {
  it.each([true, false])(`subgroups %s: ${SHAPES.length + 1} seeded shapes, bias/chunked/outF32 in every combination`, async (subgroups) => {
    if (noF16(dtype)) return expect(noF16(dtype)).toBe(true); // said, not silent: no F16 on this adapter
    if (noSubgroups(subgroups)) return expect(subgroups).toBe(true); // said: no subgroups here
    await checkShapes(gpu.device, dtype, { subgroups }, shapesFor(dtype));
  });
});

it('64-lane row groups where the adapter reports 64-wide subgroups (several subgroups per row)', async () => {
  if (noSubgroups(true)) return expect(noSubgroups(true)).toBe(true); // said: no subgroups here
  const dtype: ComputeDtype = gpu.device.features.has('shader-f16') ? 'F16' : 'F32';
  const shapes: [number, number][] = [[9, 1000], [17, 64], [33, 5], [8, pastCache(dtype)]];
  await checkShapes(withSubgroupWidth(gpu.device, 64), dtype, { subgroups: true }, shapes);
});

describe.each(['F32', 'F16'] as const)('gemv_coalesced %s residual', (dtype) => {
  const shapes = SHAPES.slice(0, 8);
  it.each([true, false])(`subgroups %s: y += W·x (+ b) on ${shapes.length} shapes, the bits of gemv then Add`, async (subgroups) => {
    if (noF16(dtype)) return expect(noF16(dtype)).toBe(true); // said: no F16 on this adapter
    if (noSubgroups(subgroups)) return expect(subgroups).toBe(true); // said: no subgroups here
    const make = (bias: boolean) => Promise.all([GemvCoalesced.create(gpu.device, dtype, { subgroups, bias, residual: true }), GemvCoalesced.create(gpu.device, dtype, { subgroups, bias })]);
    const ops = [await make(false), await make(true)];
    expect(ops[0][0].residual).toBe(true);
    for (const [i, [n, k]] of shapes.entries()) {
      const bias = i % 2 === 1;
      const [fused, plain] = ops[Number(bias)].map(gemvAsLinear);
      const { fused: got, unfused, off, spare } = await residualCase(gpu.device, rng, fused, plain, [1, n, k]);
      const what = `N=${n} K=${k} bias=${bias}`;
      expect(got, `${what}: the bits of gemv then add`).toEqual(unfused);
      expect(off, what).toBeNull();
      expect(spare, `${what}: y past N untouched`).toEqual(untouched());
    }
  });
});

it('spills past the per-dimension workgroup limit into a 2-D dispatch', async () => {
  // 3 workgroups per dimension: 8 workgroups' rows need 3 × 3.
  const spy = spyDevice(gpu.device, { limits: { maxComputeWorkgroupsPerDimension: 3 } });
  const gemv = await GemvCoalesced.create(spy.device, 'F32', { subgroups: false });
  const { got, want, spare } = await linearCase(spy.device, rng, gemvAsLinear(gemv), [1, 7 * ROWS + 5, 12], false);
  expect(nmse(got, want)).toBeLessThan(tolerance(false));
  expect(spare).toEqual(untouched());
});

// The operand checks themselves: linear-prepare.test.ts.
it('create checks features and options; prepare checks its operands', async () => {
  const noFeatures = spyDevice(gpu.device, { features: new Set() }).device;
  await expect(GemvCoalesced.create(noFeatures, 'F32', { subgroups: true })).rejects.toThrow(/'subgroups'/);
  await expect(GemvCoalesced.create(noFeatures, 'F16')).rejects.toThrow(/shader-f16/);
  expect((await GemvCoalesced.create(noFeatures, 'F32')).subgroups).toBe(false);
  await expect(GemvCoalesced.create(gpu.device, 'F32', { residual: true, outF32: true })).rejects.toThrow(/residual writes the compute dtype/);
  await expect(GemvCoalesced.create(gpu.device, 'F32', { tokens: 4 } as GemvOptions)).rejects.toThrow(/one row of x only/);
  const weights = await uploadWeights(gpu.device, { w: { shape: [8, 8], values: randomValues(rng, 64) } }, 'F32');
  const [x, y] = [outputBuffer(gpu.device, 8, 4), outputBuffer(gpu.device, 8, 4)];
  const gemv = await GemvCoalesced.create(gpu.device, 'F32', { bias: true });
  expect(() => gemv.prepare('t', weights.tensors.get('w')!, x, y)).toThrow('t: gemv was created with bias, prepare got none');
  expect(() => gemv.prepare('t', weights.tensors.get('w')!, x, y, weights.tensors.get('w'))).toThrow('t: w is F32 [8, 8], expected F32 [8]');
  for (const buffer of [x, y]) buffer.destroy();
  weights.destroy();
});

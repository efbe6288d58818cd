// matmul: y = x·Wᵀ (+ b), F32 and F16, the subgroup, workgroup-memory and naive kernels
// (and the residual variant, y += x·Wᵀ (+ b), against matmul then Add bit for bit),
// on seeded random (M, N, K) (none a multiple of the tiles; K both a multiple of 4, the
// vector path, and not, the scalar path), with and without bias, chunked weights, f32
// output; against a float64 reference computed from the stored values.

import { describe, expect, it } from 'vitest';
import { alignUp } from '../../src/gpu/gpu-tensor.js';
import { pipelineCache } from '../../src/gpu/pipeline-cache.js';
import {
  MATMUL_COLUMNS_PER_WORKGROUP,
  MATMUL_TILE_K,
  MATMUL_TILE_M_SUBGROUPS,
  MATMUL_TILE_M_WORKGROUP,
  Matmul,
  type MatmulKernel,
  matmulVariants,
  NaiveMatmul,
} from '../../src/ops/matmul.js';
import { Add } from '../../src/ops/add.js';
import { runOps, type ComputeDtype } from '../../src/ops/op.js';
import { spyDevice, useGpuTestDevice } from '../support/gpu-helpers.js';
import { asDtype, closeness, linearReference, nmse, outputBuffer, randomValues, readArray, uploadArray, uploadWeights } from '../support/op-helpers.js';
import { mulberry32 } from '../support/safetensors-bytes.js';

const gpu = useGpuTestDevice('test.matmul');

// Named cases first: sizes of 1; K not a multiple of 4 (the scalar path); M and N one past
// and one short of a tile; K whose vec4 count (33, 250) leaves a tail after subgroup passes
// and workgroup-memory stages. Then seeded random shapes, half with K % 4 == 0.
const rng = mulberry32(0x3a7);
const SHAPES: [m: number, n: number, k: number][] = [
  [1, 1, 1],
  [3, 5, 3],
  [17, 63, 65],
  [63, 65, 17],
  [MATMUL_TILE_M_SUBGROUPS + 1, MATMUL_COLUMNS_PER_WORKGROUP + 1, 64],
  [MATMUL_TILE_M_WORKGROUP - 1, MATMUL_COLUMNS_PER_WORKGROUP - 1, 60],
  [65, 129, 4 * (2 * MATMUL_TILE_K + 1)],
  [129, 17, 128],
  [2, 300, 1000],
  ...Array.from({ length: 8 }, (_, i): [number, number, number] => {
    const k = 1 + Math.floor(rng() * 300);
    return [1 + Math.floor(rng() * 140), 1 + Math.floor(rng() * 300), i % 2 ? alignUp(k, 4) : k];
  }),
];

/**
 * Tolerance on NMSE. f32 accumulation in another order than float64: the error grows like
 * √K·2^-24 of the terms' size, NMSE ~1e-12 at K = 1000; 1e-10 leaves room for sums that
 * cancel. An f16 output adds its own rounding, at most 2^-11 relative: NMSE ≤ 2^-22, +1%
 * for the f32 sum's own error, which can carry a value across a rounding boundary.
 */
const tolerance = (f16Out: boolean): number => (f16Out ? 1.01 * 2 ** -22 : 1e-10);

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

const create = (device: GPUDevice, dtype: ComputeDtype, kernel: MatmulKernel, options: { bias?: boolean; outF32?: boolean } = {}): Promise<Matmul> =>
  kernel === 'naive' ? NaiveMatmul.create(device, dtype, options) : Matmul.create(device, dtype, { ...options, subgroups: kernel === 'subgroups' });

/**
 * One case: uploads W (chunked into ~3 uneven row-chunks when `chunked`), x and a bias,
 * runs the op into a y with spare sentinel elements past M·N, and returns what it wrote.
 */
async function runCase(
  device: GPUDevice,
  matmul: Matmul,
  [m, n, k]: [number, number, number],
  chunked: boolean,
): Promise<{ got: Float32Array; want: Float64Array; spare: Float32Array; chunks: number }> {
  const dtype = matmul.dtype;
  const w = randomValues(rng, n * k);
  const x = asDtype(randomValues(rng, m * k, -2, 2), dtype);
  const b = matmul.bias ? randomValues(rng, n) : undefined;
  const rowBytes = k * (dtype === 'F16' ? 2 : 4);
  const maxChunkBytes = chunked ? alignUp(Math.ceil(n / 3) * rowBytes, 16) : undefined;
  const weights = await uploadWeights(device, { w: { shape: [n, k], values: w } }, dtype, maxChunkBytes);
  const biases = b ? await uploadWeights(device, { b: { shape: [n], values: b } }, dtype) : undefined;
  const outDtype: ComputeDtype = matmul.outF32 ? 'F32' : dtype;
  const spare = 8;
  const y = uploadArray(device, new Float32Array(m * n + spare).fill(7), outDtype, 'test.matmul.y');
  const xBuf = uploadArray(device, x, dtype, 'test.matmul.x');
  const weight = weights.tensors.get('w')!;
  const op = matmul.prepare(`test.matmul.${m}x${n}x${k}`, m, weight, xBuf, y, biases?.tensors.get('b'));
  await runOps(device, [op]);
  const all = await readArray(device, y, m * n + spare, outDtype);
  const want = linearReference(x, asDtype(w, dtype), [m, n, k], b && asDtype(b, dtype));
  op.destroy();
  weights.destroy();
  biases?.destroy();
  y.destroy();
  xBuf.destroy();
  return { got: all.subarray(0, m * n), want, spare: all.subarray(m * n), chunks: weight.chunks.length };
}

it('every variant compiles with no message', async () => {
  const features = gpu.device.features as ReadonlySet<string>;
  const variants = matmulVariants(features.has('shader-f16') ? ['F32', 'F16'] : ['F32'], features);
  expect(new Set(variants.map((v) => v.key)).size).toBe(variants.length);
  for (const { key, spec } of variants) {
    const info = await pipelineCache(gpu.device).module(spec.shader, spec.flags).getCompilationInfo();
    expect(info.messages.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`), key).toEqual([]);
    expect((await pipelineCache(gpu.device).get(key, spec)).label).toBe(key);
  }
});

describe.each(['F32', 'F16'] as const)('matmul %s', (dtype) => {
  it.each(['subgroups', 'workgroup', 'naive'] as const)(`%s kernel: ${SHAPES.length} seeded shapes, bias/chunked/outF32 in every combination`, async (kernel) => {
    if (noF16(dtype)) return expect(noF16(dtype)).toBe(true); // said, not silent: no F16 on this adapter
    const noSubgroups = kernel === 'subgroups' && !gpu.device.features.has('subgroups');
    if (noSubgroups) return expect(noSubgroups).toBe(true); // said: no subgroups on this adapter
    const ops = new Map<string, Matmul>();
    for (const [i, shape] of SHAPES.entries()) {
      // Case i takes bit 0 = bias, bit 1 = chunked, bit 2 = outF32: each combination twice.
      const [bias, chunked, outF32] = [i & 1, i & 2, i & 4].map(Boolean);
      const key = `${bias}.${outF32}`;
      if (!ops.has(key)) ops.set(key, await create(gpu.device, dtype, kernel, { bias, outF32 }));
      const matmul = ops.get(key)!;
      expect(matmul.kernel).toBe(kernel);
      const { got, want, spare, chunks } = await runCase(gpu.device, matmul, shape, chunked);
      const what = `M=${shape[0]} N=${shape[1]} K=${shape[2]} bias=${bias} chunked=${chunked} outF32=${outF32}`;
      if (chunked && shape[1] > 2) expect(chunks, what).toBeGreaterThan(1);
      const err = nmse(got, want);
      expect(err, `${what} nmse=${err}`).toBeLessThan(tolerance(dtype === 'F16' && !outF32));
      expect([...spare], `${what}: y past M·N untouched`).toEqual(new Array(spare.length).fill(7));
    }
  });
});

describe.each(['F32', 'F16'] as const)('matmul %s residual', (dtype) => {
  // Named shapes (tiles ± 1, K % 4 ≠ 0) with bias on every other, the default and the small
  // tile: the epilogue is all that differs from the plain kernel.
  const shapes = SHAPES.slice(0, 6);
  it.each(['subgroups', 'workgroup'] as const)(`%s kernel: y += x·Wᵀ (+ b) on ${shapes.length} shapes, the bits of matmul then Add`, async (kernel) => {
    if (noF16(dtype)) return expect(noF16(dtype)).toBe(true); // said: no F16 on this adapter
    const noSubgroups = kernel === 'subgroups' && !gpu.device.features.has('subgroups');
    if (noSubgroups) return expect(noSubgroups).toBe(true); // said: no subgroups on this adapter
    const { device } = gpu;
    const subgroups = kernel === 'subgroups';
    const add = await Add.create(device, dtype, { inPlace: true });
    const made = new Map<string, Promise<[Matmul, Matmul]>>();
    for (const [i, [m, n, k]] of shapes.entries()) {
      const bias = i % 2 === 1;
      const tileM = i % 4 >= 2 ? 8 : undefined;
      const key = `${bias}.${tileM}`;
      if (!made.has(key)) {
        made.set(key, Promise.all([Matmul.create(device, dtype, { subgroups, bias, tileM, residual: true }), Matmul.create(device, dtype, { subgroups, bias, tileM })]));
      }
      const [fused, plain] = await made.get(key)!;
      expect(fused.residual).toBe(true);
      const w = randomValues(rng, n * k);
      const x = asDtype(randomValues(rng, m * k, -2, 2), dtype);
      const b = bias ? randomValues(rng, n) : undefined;
      const residual = asDtype(randomValues(rng, m * n, -4, 4), dtype);
      const weights = await uploadWeights(device, { w: { shape: [n, k], values: w }, ...(b ? { b: { shape: [n], values: b } } : {}) }, dtype);
      const [wt, bt] = [weights.tensors.get('w')!, weights.tensors.get('b')];
      const spare = 8;
      const withSpare = new Float32Array(m * n + spare).fill(7);
      withSpare.set(residual);
      const yFused = uploadArray(device, withSpare, dtype, 'test.matmul.y_fused');
      const yUnfused = uploadArray(device, residual, dtype, 'test.matmul.y_unfused');
      const projected = outputBuffer(device, m * n, dtype === 'F16' ? 2 : 4);
      const xBuf = uploadArray(device, x, dtype, 'test.matmul.x');
      const ops = [
        fused.prepare('test.matmul.residual', m, wt, xBuf, yFused, bt),
        plain.prepare('test.matmul.projection', m, wt, xBuf, projected, bt),
        add.prepare('test.matmul.add', m * n, yUnfused, projected),
      ];
      await runOps(device, ops);
      const got = await readArray(device, yFused, m * n + spare, dtype);
      const unfused = await readArray(device, yUnfused, m * n, dtype);
      const what = `M=${m} N=${n} K=${k} bias=${bias} tileM=${fused.tileM}`;
      expect([...got.subarray(0, m * n)], `${what}: the bits of matmul then add`).toEqual([...unfused]);
      const projection = linearReference(x, asDtype(w, dtype), [m, n, k], b && asDtype(b, dtype));
      expect(closeness(got.subarray(0, m * n), residualReference(projection, residual), residualAbs(projection, dtype), unitRoundoff(dtype)), what).toBeNull();
      expect([...got.subarray(m * n)], `${what}: y past M·N untouched`).toEqual(new Array(spare).fill(7));
      for (const op of ops) op.destroy();
      for (const buffer of [yFused, yUnfused, projected, xBuf]) buffer.destroy();
      weights.destroy();
    }
  });
});

describe.each(['F32', 'F16'] as const)('matmul %s with a small tile (tileM 8, for short prefills)', (dtype) => {
  it.each(['subgroups', 'workgroup'] as const)('%s kernel: seeded shapes, M around and past the tile', async (kernel) => {
    if (noF16(dtype)) return expect(noF16(dtype)).toBe(true); // said: no F16 on this adapter
    const noSubgroups = kernel === 'subgroups' && !gpu.device.features.has('subgroups');
    if (noSubgroups) return expect(noSubgroups).toBe(true); // said: no subgroups on this adapter
    const matmul = await Matmul.create(gpu.device, dtype, { subgroups: kernel === 'subgroups', tileM: 8, bias: true });
    expect(matmul.tileM).toBe(8);
    for (const shape of [[1, 65, 33], [7, 300, 64], [8, 129, 100], [9, 17, 257], [23, 70, 60]] as [number, number, number][]) {
      const { got, want, spare } = await runCase(gpu.device, matmul, shape, shape[0] % 2 === 1);
      expect(nmse(got, want), `M=${shape[0]} N=${shape[1]} K=${shape[2]}`).toBeLessThan(tolerance(dtype === 'F16'));
      expect([...spare]).toEqual(new Array(spare.length).fill(7));
    }
  });
});

it('picks the subgroup kernel where subgroups fit in a workgroup, else workgroup memory', async () => {
  const widest = gpu.device.adapterInfo.subgroupMaxSize;
  const fits = gpu.device.features.has('subgroups') && widest !== undefined && widest <= 64;
  expect((await Matmul.create(gpu.device, 'F32')).kernel).toBe(fits ? 'subgroups' : 'workgroup');
  expect((await Matmul.create(gpu.device, 'F32', { subgroups: false })).kernel).toBe('workgroup');
  expect((await NaiveMatmul.create(gpu.device, 'F32')).kernel).toBe('naive');
  const noSubgroups = spyDevice(gpu.device, { features: new Set(['shader-f16']) });
  expect((await Matmul.create(noSubgroups.device, 'F32')).kernel).toBe('workgroup');
  await expect(Matmul.create(noSubgroups.device, 'F32', { subgroups: true })).rejects.toThrow(/'subgroups'/);
  await expect(Matmul.create(gpu.device, 'F32', { naive: true, subgroups: true })).rejects.toThrow(/naive kernel uses no subgroups/);
  await expect(Matmul.create(gpu.device, 'F32', { naive: true, residual: true })).rejects.toThrow(/naive kernel has no residual/);
  await expect(Matmul.create(gpu.device, 'F32', { residual: true, outF32: true })).rejects.toThrow(/residual writes the compute dtype/);
});

it('prepare checks shapes, dtypes, bias, sizes, aliasing and the workgroup limit', async () => {
  const [m, n, k] = [2, 8, 8];
  const weights = await uploadWeights(gpu.device, { w: { shape: [n, k], values: randomValues(rng, n * k) }, b: { shape: [n], values: randomValues(rng, n) } }, 'F32');
  const [w, b] = [weights.tensors.get('w')!, weights.tensors.get('b')!];
  const x = outputBuffer(gpu.device, m * k, 4);
  const y = outputBuffer(gpu.device, m * n, 4);
  const small = outputBuffer(gpu.device, 1, 4);
  const plain = await Matmul.create(gpu.device, 'F32');
  const withBias = await Matmul.create(gpu.device, 'F32', { bias: true });
  expect(() => plain.prepare('t', m, w, x, y, b)).toThrow(/created without bias/);
  expect(() => withBias.prepare('t', m, w, x, y)).toThrow(/created with bias/);
  expect(() => withBias.prepare('t', m, w, x, y, w)).toThrow(/expected F32 \[8\]/);
  expect(() => plain.prepare('t', m, b, x, y)).toThrow(/2-D weight/);
  expect(() => plain.prepare('t', 0, w, x, y)).toThrow(/M ≥ 1/);
  expect(() => plain.prepare('t', m, w, small, y)).toThrow(/x holds 16 bytes/);
  expect(() => plain.prepare('t', m, w, x, small)).toThrow(/y holds 16 bytes/);
  expect(() => plain.prepare('t', m, w, y, y)).toThrow(/in place/);
  if (gpu.device.features.has('shader-f16')) {
    const f16 = await Matmul.create(gpu.device, 'F16');
    expect(() => f16.prepare('t', m, w, x, y)).toThrow(/expected F16/);
  }
  // A device allowing 1 workgroup per dimension: 2 row tiles do not fit.
  const tiny = spyDevice(gpu.device, { limits: { maxComputeWorkgroupsPerDimension: 1 } });
  const rows = MATMUL_TILE_M_SUBGROUPS + 1; // 2 row tiles for either kernel
  const [bigX, bigY] = [k, n].map((cols) => outputBuffer(gpu.device, rows * cols, 4));
  const limited = await Matmul.create(tiny.device, 'F32');
  expect(() => limited.prepare('t', rows, w, bigX, bigY)).toThrow(/more than 1 per dimension/);
  for (const buffer of [x, y, small, bigX, bigY]) buffer.destroy();
  weights.destroy();
});

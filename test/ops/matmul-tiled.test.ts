// matmul_tiled (the hardware-GPU matmul): y = x·Wᵀ (+ b), F32 and F16, on seeded random
// (M, N, K) (none a multiple of the 64 × 64 × 16 tiles; K both a multiple of 4, the vector
// loads, and not, the element loads), with and without bias, row-chunked weights, f32
// output, the default tile and small ones; against the float64 linearReference. The
// residual variant against the same reference and, bit for bit, against itself then Add.

import { describe, expect, it } from 'vitest';
import { alignUp } from '../../src/gpu/gpu-tensor.js';
import { pipelineCache } from '../../src/gpu/pipeline-cache.js';
import type { MatmulOptions } from '../../src/ops/matmul.js';
import { MATMUL_TILED_TILE_K, MATMUL_TILED_TILE_M, MATMUL_TILED_TILE_N, MatmulTiled, matmulTiledVariants } from '../../src/ops/matmul-tiled.js';
import type { ComputeDtype } from '../../src/ops/op.js';
import { spyDevice, useGpuTestDevice } from '../support/gpu-helpers.js';
import { linearCase, residualCase, untouched } from '../support/linear-cases.js';
import { nmse, outputBuffer, randomValues, uploadWeights } from '../support/op-helpers.js';
import { mulberry32 } from '../support/safetensors-bytes.js';

const gpu = useGpuTestDevice('test.matmul_tiled');

// Named cases first: sizes of 1; K not a multiple of 4; M and N one past and one short of a
// tile; K one past a stage and a few stages plus a tail. Then seeded random shapes, half
// with K % 4 == 0.
const rng = mulberry32(0x71e5);
const [TM, TN, TK] = [MATMUL_TILED_TILE_M, MATMUL_TILED_TILE_N, MATMUL_TILED_TILE_K];
const SHAPES: [m: number, n: number, k: number][] = [
  [1, 1, 1],
  [3, 5, 3],
  [TM + 1, TN - 1, TK + 1],
  [TM - 1, TN + 1, 4 * TK + 4],
  [17, 2 * TN + 3, 65],
  [2, 300, 1000],
  ...Array.from({ length: 6 }, (_, i): [number, number, number] => {
    const k = 1 + Math.floor(rng() * 300);
    return [1 + Math.floor(rng() * 140), 1 + Math.floor(rng() * 300), i % 2 ? alignUp(k, 4) : k];
  }),
];

/** NMSE tolerance, as matmul.test.ts: f32 sums in another order, plus an f16 output's rounding. */
const tolerance = (f16Out: boolean): number => (f16Out ? 1.01 * 2 ** -22 : 1e-10);
const noF16 = (dtype: ComputeDtype): boolean => dtype === 'F16' && !gpu.device.features.has('shader-f16');

it('every variant compiles with no message', async () => {
  const features = gpu.device.features as ReadonlySet<string>;
  const variants = matmulTiledVariants(features.has('shader-f16') ? ['F32', 'F16'] : ['F32'], features);
  expect(new Set(variants.map((v) => v.key)).size).toBe(variants.length);
  expect(variants.length).toBe(features.has('shader-f16') ? 10 : 4);
  for (const { key, spec } of variants) {
    const info = await pipelineCache(gpu.device).module(spec.shader, spec.flags).getCompilationInfo();
    expect(info.messages.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`), key).toEqual([]);
    expect((await pipelineCache(gpu.device).get(key, spec)).label).toBe(key);
  }
});

describe.each(['F32', 'F16'] as const)('matmul_tiled %s', (dtype) => {
  it(`${SHAPES.length} seeded shapes on the 64 × 64 tile, bias/chunked/outF32 in every combination`, async () => {
    if (noF16(dtype)) return expect(noF16(dtype)).toBe(true); // said, not silent: no F16 on this adapter
    const ops = new Map<string, Promise<MatmulTiled>>();
    for (const [i, shape] of SHAPES.entries()) {
      // Case i takes bit 0 = bias, bit 1 = chunked, bit 2 = outF32.
      const [bias, chunked, outF32] = [i & 1, i & 2, i & 4].map(Boolean);
      const key = `${bias}.${outF32}`;
      if (!ops.has(key)) ops.set(key, MatmulTiled.create(gpu.device, dtype, { bias, outF32 }));
      const matmul = await ops.get(key)!;
      expect(matmul.tileM).toBe(TM);
      const { got, want, spare, chunks } = await linearCase(gpu.device, rng, matmul, shape, chunked);
      const what = `M=${shape[0]} N=${shape[1]} K=${shape[2]} bias=${bias} chunked=${chunked} outF32=${outF32}`;
      if (chunked && shape[1] > 2) expect(chunks, what).toBeGreaterThan(1);
      const err = nmse(got, want);
      expect(err, `${what} nmse=${err}`).toBeLessThan(tolerance(dtype === 'F16' && !outF32));
      expect(spare, `${what}: y past M·N untouched`).toEqual(untouched());
    }
  });

  // tileM 8 (the model's short prefills: 32 invocations), 6 (rounded up to 8) and 3 (to 4: 16 invocations).
  it.each([8, 6, 3])('tileM %i: M around and past the tile', async (tileM) => {
    if (noF16(dtype)) return expect(noF16(dtype)).toBe(true); // said: no F16 on this adapter
    const matmul = await MatmulTiled.create(gpu.device, dtype, { tileM, bias: true });
    expect(matmul.tileM).toBe(Math.ceil(tileM / 4) * 4);
    for (const shape of [[1, 65, 33], [7, 130, 64], [9, 17, 257], [23, 70, 60]] as [number, number, number][]) {
      const { got, want, spare } = await linearCase(gpu.device, rng, matmul, shape, shape[0] % 2 === 1);
      expect(nmse(got, want), `M=${shape[0]} N=${shape[1]} K=${shape[2]}`).toBeLessThan(tolerance(dtype === 'F16'));
      expect(spare).toEqual(untouched());
    }
  });
});

describe.each(['F32', 'F16'] as const)('matmul_tiled %s residual', (dtype) => {
  const shapes = SHAPES.slice(0, 6);
  it(`y += x·Wᵀ (+ b) on ${shapes.length} shapes, the default and the small tile: the bits of matmul then Add`, async () => {
    if (noF16(dtype)) return expect(noF16(dtype)).toBe(true); // said: no F16 on this adapter
    const made = new Map<string, Promise<[MatmulTiled, MatmulTiled]>>();
    for (const [i, shape] of shapes.entries()) {
      const bias = i % 2 === 1;
      const tileM = i % 4 >= 2 ? 8 : undefined;
      const key = `${bias}.${tileM}`;
      if (!made.has(key)) made.set(key, Promise.all([MatmulTiled.create(gpu.device, dtype, { bias, tileM, residual: true }), MatmulTiled.create(gpu.device, dtype, { bias, tileM })]));
      const [fused, plain] = await made.get(key)!;
      expect(fused.residual).toBe(true);
      const { fused: got, unfused, off, spare } = await residualCase(gpu.device, rng, fused, plain, shape);
      const what = `M=${shape[0]} N=${shape[1]} K=${shape[2]} bias=${bias} tileM=${fused.tileM}`;
      expect(got, `${what}: the bits of matmul then add`).toEqual(unfused);
      expect(off, what).toBeNull();
      expect(spare, `${what}: y past M·N untouched`).toEqual(untouched());
    }
  });
});

// The operand checks themselves: linear-prepare.test.ts.
it('create checks options; prepare checks its operands and the workgroup limit', async () => {
  await expect(MatmulTiled.create(gpu.device, 'F32', { naive: true })).rejects.toThrow(/naive kernel/);
  await expect(MatmulTiled.create(gpu.device, 'F32', { residual: true, outF32: true })).rejects.toThrow(/residual writes the compute dtype/);
  for (const tileM of [0, 65, 2.5]) {
    await expect(MatmulTiled.create(gpu.device, 'F32', { tileM } as MatmulOptions)).rejects.toThrow(/tileM must be an integer in 1..64/);
  }
  await expect(MatmulTiled.create(spyDevice(gpu.device, { features: new Set() }).device, 'F16')).rejects.toThrow(/shader-f16/);
  const [n, k] = [8, 8];
  const weights = await uploadWeights(gpu.device, { w: { shape: [n, k], values: randomValues(rng, n * k) } }, 'F32');
  const w = weights.tensors.get('w')!;
  // One workgroup per dimension allowed: 2 row tiles do not fit.
  const limited = await MatmulTiled.create(spyDevice(gpu.device, { limits: { maxComputeWorkgroupsPerDimension: 1 } }).device, 'F32');
  const rows = TM + 1;
  const [x, y] = [k, n].map((cols) => outputBuffer(gpu.device, rows * cols, 4));
  expect(() => limited.prepare('t', 0, w, x, y)).toThrow('t: matmul needs M ≥ 1 rows, got 0');
  expect(() => limited.prepare('t', rows, w, x, y)).toThrow(/more than 1 per dimension/);
  for (const buffer of [x, y]) buffer.destroy();
  weights.destroy();
});

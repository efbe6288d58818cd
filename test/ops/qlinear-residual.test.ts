// The RESIDUAL variants of qgemv and qmatmul (y += W·x (+ b), W quantized): bit for bit the
// unfused op into a scratch buffer then Add in place (src/ops/add.ts), as the model ran
// o_proj and down_proj before. q8 and q4, F32 and F16, with and without bias, both qgemv
// paths, both qmatmul kernels, chunked weights, seeded shapes not multiples of the tiles.

import { describe, expect, it } from 'vitest';
import { readBuffer } from '../../src/gpu/read-back.js';
import { destroyQuantized, type QuantKind } from '../../src/gpu/quantized-tensor.js';
import { Add } from '../../src/ops/add.js';
import { type ComputeDtype, computeBytes, type PreparedOp, runOps } from '../../src/ops/op.js';
import { QGemv, qgemvPath } from '../../src/ops/qgemv.js';
import { QMatmul } from '../../src/ops/qmatmul.js';
import { useGpuTestDevice } from '../support/gpu-helpers.js';
import { asDtype, decode, outputBuffer, randomValues, uploadArray, uploadWeights } from '../support/op-helpers.js';
import { randomQuantized, uploadQuantized } from '../support/quantized-weights.js';
import { mulberry32 } from '../support/safetensors-bytes.js';

const gpu = useGpuTestDevice('test.qlinear-residual');
const rng = mulberry32(0x4e5);
/** Elements past y that neither path may write (they hold 7). */
const SPARE = 8;

/** The op over y (fused: adds into it; plain: overwrites it) for y of `count` elements. */
type Linear = (y: GPUBuffer, fused: boolean) => PreparedOp;

/**
 * A random y (the residual stream) updated by the fused op, and the same y updated by the
 * plain op into a scratch buffer then Add in place: expects the same bytes, SPARE elements
 * past y untouched, and y changed (a fused op that dropped W·x or y would fail).
 */
async function expectFusedIsUnfused(dtype: ComputeDtype, count: number, linear: Linear, what: string): Promise<void> {
  const device = gpu.device;
  const y0 = asDtype(new Float32Array(count + SPARE).map((_, i) => (i < count ? -4 + 8 * rng() : 7)), dtype);
  const yFused = uploadArray(device, y0, dtype, 'test.y.fused');
  const yUnfused = uploadArray(device, y0, dtype, 'test.y.unfused');
  const scratch = outputBuffer(device, count, computeBytes(dtype), 'test.y.scratch');
  const add = await Add.create(device, dtype, { inPlace: true });
  const ops = [linear(yFused, true), linear(scratch, false), add.prepare('test.add', count, yUnfused, scratch)];
  await runOps(device, ops);
  const size = Math.ceil(((count + SPARE) * computeBytes(dtype)) / 4) * 4;
  const [fused, unfused] = await Promise.all([readBuffer(device, yFused, 0, size), readBuffer(device, yUnfused, 0, size)]);
  ops.forEach((op) => op.destroy());
  [yFused, yUnfused, scratch].forEach((b) => b.destroy());
  const [got, want] = [decode(fused, dtype, count + SPARE), decode(unfused, dtype, count + SPARE)];
  const at = Math.floor(fused.findIndex((byte, i) => byte !== unfused[i]) / computeBytes(dtype));
  expect(at < 0 ? 'same bits' : `element ${at}: ${got[at]}, unfused ${want[at]}`, what).toBe('same bits');
  expect(Array.from(got.subarray(count)), `${what}: wrote past y`).toEqual(new Array(SPARE).fill(7));
  expect(got.subarray(0, count).filter((v, i) => v !== y0[i]).length, `${what}: y changed`).toBeGreaterThan(count / 2);
}

// (N, K, G, chunked): the block path (G a power of two ≥ 32, K a multiple of 128) and the
// per-word path; N of 1, odd, past one workgroup (128 rows); then seeded shapes.
const GEMV_SHAPES: [number, number, number, boolean][] = [
  [1, 128, 32, false],
  [131, 256, 64, true],
  [7, 96, 32, false],
  [45, 40, 8, true],
  ...Array.from({ length: 4 }, (_, i): [number, number, number, boolean] => {
    const g = i % 2 ? 128 : 32;
    return [1 + Math.floor(rng() * 200), g * (1 + Math.floor(rng() * 5)), g, i % 2 === 0];
  }),
];

// (M, N, K, G, chunked): M of 1 and past the 32-row tile, N not a multiple of the 256 columns per workgroup.
const MATMUL_SHAPES: [number, number, number, number, boolean][] = [
  [1, 3, 32, 32, false],
  [37, 261, 128, 64, true],
  ...Array.from({ length: 3 }, (_, i): [number, number, number, number, boolean] => {
    const g = i % 2 ? 128 : 32;
    return [1 + Math.floor(rng() * 40), 1 + Math.floor(rng() * 300), g * (1 + Math.floor(rng() * 3)), g, i !== 1];
  }),
];

/** A random quantized (n, k) weight, zero points on odd cases, scales f32 on every third, and a bias when asked. */
async function linearCase(dtype: ComputeDtype, kind: QuantKind, [n, k, g, chunked]: [number, number, number, boolean], i: number, bias: boolean) {
  const device = gpu.device;
  const zeros = i % 2 === 1;
  const scaleDtype = i % 3 === 2 ? ('F32' as const) : ('F16' as const);
  const weight = uploadQuantized(device, randomQuantized(rng, kind, n, k, g, zeros), { kind, n, k, groupSize: g, scaleDtype }, chunked);
  const biases = bias ? await uploadWeights(device, { b: { shape: [n], values: randomValues(rng, n) } }, dtype) : undefined;
  const what = `${kind} ${dtype} N=${n} K=${k} G=${g} chunks=${weight.chunks.length} zeros=${zeros} scales=${scaleDtype} bias=${bias}`;
  if (chunked && n > 2) expect(weight.chunks.length, what).toBeGreaterThan(1);
  const destroy = () => {
    destroyQuantized(weight);
    biases?.destroy();
  };
  return { weight, bias: biases?.tensors.get('b'), what, destroy };
}

const hasF16 = (dtype: ComputeDtype) => dtype === 'F32' || gpu.device.features.has('shader-f16');

/**
 * The fused and plain ops with or without bias, created at first use: llvmpipe compiles a
 * pipeline at its first dispatch, ~1 s each on a busy machine, so every case below is
 * chosen to need few of them.
 */
function opPairs<Op>(create: (bias: boolean, residual: boolean) => Promise<Op>): (bias: boolean) => Promise<[Op, Op]> {
  const made = new Map<boolean, Promise<[Op, Op]>>();
  return (bias) => {
    if (!made.has(bias)) made.set(bias, Promise.all([create(bias, true), create(bias, false)]));
    return made.get(bias)!;
  };
}

/** One of the two qgemv paths takes the bias in each (kind, dtype), the other path in the next. */
const biasPath = (kind: QuantKind, dtype: ComputeDtype) => ((kind === 'q8') === (dtype === 'F32') ? 'block' : 'word');

describe.each(['F32', 'F16'] as const)('qgemv residual %s', (dtype: ComputeDtype) => {
  it.each(['q8', 'q4'] as QuantKind[])(`%s: ${GEMV_SHAPES.length} shapes, both paths, bias on one, chunked`, async (kind) => {
    if (!hasF16(dtype)) return expect(dtype).toBe('F16'); // said: no F16 here
    const device = gpu.device;
    const ops = opPairs((bias, residual) => QGemv.create(device, kind, dtype, { bias, residual }));
    const paths = new Set<string>();
    for (const [i, shape] of GEMV_SHAPES.entries()) {
      const [n, k, groupSize] = shape;
      const path = qgemvPath({ shape: [n, k], groupSize });
      const bias = path === biasPath(kind, dtype);
      const [fused, plain] = await ops(bias);
      expect(fused.residual && !plain.residual).toBe(true);
      const c = await linearCase(dtype, kind, shape, i, bias);
      const x = uploadArray(device, asDtype(randomValues(rng, k, -2, 2), dtype), dtype, 'test.x');
      paths.add(path);
      await expectFusedIsUnfused(dtype, n, (y, f) => (f ? fused : plain).prepare(`test.qgemv.${f ? 'fused' : 'plain'}`, c.weight, x, y, c.bias), `${c.what} path=${path}`);
      c.destroy();
      x.destroy();
    }
    expect([...paths].sort()).toEqual(['block', 'word']);
  });
});

describe.each(['F32', 'F16'] as const)('qmatmul residual %s', (dtype: ComputeDtype) => {
  it.each(['q8', 'q4'] as QuantKind[])(`%s: ${MATMUL_SHAPES.length} shapes, bias or not, chunked; the other kernel on two`, async (kind) => {
    if (!hasF16(dtype)) return expect(dtype).toBe('F16'); // said: no F16 here
    const device = gpu.device;
    const fits = device.features.has('subgroups') && (device.adapterInfo?.subgroupMaxSize ?? 999) <= 64;
    // The workgroup-memory kernel differs from the subgroup one only before the epilogue:
    // two shapes without bias, in half the (kind, dtype) pairs.
    const otherKernel = fits && (kind === 'q8') === (dtype === 'F32');
    for (const subgroups of fits ? [true, ...(otherKernel ? [false] : [])] : [false]) {
      const ops = opPairs((bias, residual) => QMatmul.create(device, kind, dtype, { bias, residual, subgroups }));
      for (const [i, [m, ...shape]] of MATMUL_SHAPES.entries()) {
        if (!subgroups && fits && i >= 2) break;
        const bias = i % 2 === 1 && (subgroups || !fits);
        const [fused, plain] = await ops(bias);
        const c = await linearCase(dtype, kind, shape, i, bias);
        const [n, k] = shape;
        const x = uploadArray(device, asDtype(randomValues(rng, m * k, -2, 2), dtype), dtype, 'test.x');
        const what = `${c.what} M=${m} kernel=${fused.kernel}`;
        await expectFusedIsUnfused(dtype, m * n, (y, f) => (f ? fused : plain).prepare(`test.qmatmul.${f ? 'fused' : 'plain'}`, m, c.weight, x, y, c.bias), what);
        c.destroy();
        x.destroy();
      }
    }
  });
});

it('refuses residual with outF32', async () => {
  await expect(QGemv.create(gpu.device, 'q4', 'F32', { residual: true, outF32: true })).rejects.toThrow(/qgemv: residual writes the compute dtype/);
  await expect(QMatmul.create(gpu.device, 'q8', 'F32', { residual: true, outF32: true })).rejects.toThrow(/qmatmul: residual writes the compute dtype/);
});

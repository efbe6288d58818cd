// One case of a dense Linear kernel (gemv or matmul, either family) on the GPU against the
// float64 linearReference: the plain case (optionally row-chunked weights, bias, f32 out)
// and the residual case (y += x·Wᵀ (+ b) against the same op unfused then Add, bit for bit).
// Written for gemv-coalesced.test.ts and matmul-tiled.test.ts; gemv.test.ts and
// matmul.test.ts run the same steps inline.

import type { GpuTensor } from '../../src/gpu/gpu-tensor.js';
import { alignUp } from '../../src/gpu/gpu-tensor.js';
import { Add } from '../../src/ops/add.js';
import { GEMV_COALESCED_ROWS_PER_THREAD, GEMV_COALESCED_THREADS_PER_ROW, GEMV_COALESCED_WORKGROUP, GEMV_COALESCED_X_CACHE_BYTES } from '../../src/ops/gemv-coalesced.js';
import { runOps, type ComputeDtype, type PreparedOp } from '../../src/ops/op.js';
import { asDtype, closeness, linearReference, outputBuffer, randomValues, readArray, uploadArray, uploadWeights } from './op-helpers.js';

/** A Linear launcher as the cases drive it: Matmul-shaped prepare (gemv ones through gemvAsLinear). */
export interface LinearOp {
  readonly dtype: ComputeDtype;
  readonly bias: boolean;
  readonly outF32: boolean;
  prepare(label: string, m: number, weight: GpuTensor, x: GPUBuffer, y: GPUBuffer, bias?: GpuTensor): PreparedOp;
}

/** A Gemv-shaped launcher (no row count: m is 1) as a LinearOp. */
export function gemvAsLinear(gemv: Omit<LinearOp, 'prepare'> & { prepare(label: string, weight: GpuTensor, x: GPUBuffer, y: GPUBuffer, bias?: GpuTensor): PreparedOp }): LinearOp {
  return { dtype: gemv.dtype, bias: gemv.bias, outF32: gemv.outF32, prepare: (label, _m, weight, x, y, bias) => gemv.prepare(label, weight, x, y, bias) };
}

/** Sentinel elements past y's end, which no kernel may write. */
/** GemvCoalesced's rows per workgroup with 32-lane row groups (16): what its tests' shapes straddle. */
export const COALESCED_ROWS = (GEMV_COALESCED_WORKGROUP / GEMV_COALESCED_THREADS_PER_ROW) * GEMV_COALESCED_ROWS_PER_THREAD;
/** K just past GemvCoalesced's x cache in each dtype (a multiple of 8): x streamed from the storage buffer. */
export const pastCoalescedCache = (dtype: ComputeDtype): number => GEMV_COALESCED_X_CACHE_BYTES / (dtype === 'F16' ? 2 : 4) + 8;

export const SPARE = 8;
const SENTINEL = 7;
export const untouched = (): number[] => new Array(SPARE).fill(SENTINEL);

/** Seeded W (N, K), x (M, K) in [-2, 2) and bias (N,) when the op takes one, rounded to the compute dtype. */
function operands(rng: () => number, op: LinearOp, [m, n, k]: readonly [number, number, number]) {
  const w = randomValues(rng, n * k);
  const x = asDtype(randomValues(rng, m * k, -2, 2), op.dtype);
  const b = op.bias ? randomValues(rng, n) : undefined;
  const tensors = { w: { shape: [n, k], values: w }, ...(b ? { b: { shape: [n], values: b } } : {}) };
  const want = linearReference(x, asDtype(w, op.dtype), [m, n, k], b && asDtype(b, op.dtype));
  return { x, tensors, want };
}

/**
 * Runs `op` on seeded operands, W in ~3 uneven row-chunks when `chunked`, into a y with
 * SPARE sentinels past M·N. got: what it wrote; want: the float64 reference.
 */
export async function linearCase(device: GPUDevice, rng: () => number, op: LinearOp, [m, n, k]: readonly [number, number, number], chunked: boolean) {
  const { x, tensors, want } = operands(rng, op, [m, n, k]);
  const maxChunkBytes = chunked ? alignUp(Math.ceil(n / 3) * k * (op.dtype === 'F16' ? 2 : 4), 16) : undefined;
  const weights = await uploadWeights(device, tensors, op.dtype, maxChunkBytes);
  const outDtype: ComputeDtype = op.outF32 ? 'F32' : op.dtype;
  const y = uploadArray(device, new Float32Array(m * n + SPARE).fill(SENTINEL), outDtype, 'test.linear.y');
  const xBuf = uploadArray(device, x, op.dtype, 'test.linear.x');
  const weight = weights.tensors.get('w')!;
  const prepared = op.prepare(`test.linear.${m}x${n}x${k}`, m, weight, xBuf, y, weights.tensors.get('b'));
  await runOps(device, [prepared]);
  const all = await readArray(device, y, m * n + SPARE, outDtype);
  prepared.destroy();
  weights.destroy();
  y.destroy();
  xBuf.destroy();
  return { got: all.subarray(0, m * n), want, spare: [...all.subarray(m * n)], chunks: weight.chunks.length };
}

/** Half an ulp at 1 in the compute dtype: what one rounding to it costs, relative. */
const unitRoundoff = (dtype: ComputeDtype): number => (dtype === 'F16' ? 2 ** -11 : 2 ** -24);

/**
 * The residual variant `fused` (y += x·Wᵀ (+ b)) against `plain` then an in-place Add on
 * one seeded case. fused and unfused: the two results (they must be equal, bit for bit);
 * off: null when fused is within two roundings of the float64 reference (the projection's,
 * bounded by the largest projection as the sum may cancel, then the sum's; 1e-5 of it more
 * for the f32 sum's order), else the first element out; spare: y's sentinels after it.
 */
export async function residualCase(device: GPUDevice, rng: () => number, fused: LinearOp, plain: LinearOp, [m, n, k]: readonly [number, number, number]) {
  const dtype = fused.dtype;
  const { x, tensors, want: projection } = operands(rng, fused, [m, n, k]);
  const residual = asDtype(randomValues(rng, m * n, -4, 4), dtype);
  const weights = await uploadWeights(device, tensors, dtype);
  const [wt, bt] = [weights.tensors.get('w')!, weights.tensors.get('b')];
  const withSpare = new Float32Array(m * n + SPARE).fill(SENTINEL);
  withSpare.set(residual);
  const yFused = uploadArray(device, withSpare, dtype, 'test.linear.y_fused');
  const yUnfused = uploadArray(device, residual, dtype, 'test.linear.y_unfused');
  const projected = outputBuffer(device, m * n, dtype === 'F16' ? 2 : 4);
  const xBuf = uploadArray(device, x, dtype, 'test.linear.x');
  const add = await Add.create(device, dtype, { inPlace: true });
  const ops = [
    fused.prepare('test.linear.residual', m, wt, xBuf, yFused, bt),
    plain.prepare('test.linear.projection', m, wt, xBuf, projected, bt),
    add.prepare('test.linear.add', m * n, yUnfused, projected),
  ];
  await runOps(device, ops);
  const got = await readArray(device, yFused, m * n + SPARE, dtype);
  const unfused = await readArray(device, yUnfused, m * n, dtype);
  for (const op of ops) op.destroy();
  for (const buffer of [yFused, yUnfused, projected, xBuf]) buffer.destroy();
  weights.destroy();
  const abs = (1.01 * unitRoundoff(dtype) + 1e-5) * projection.reduce((most, v) => Math.max(most, Math.abs(v)), 0);
  const off = closeness(got.subarray(0, m * n), projection.map((v, j) => v + residual[j]), abs, unitRoundoff(dtype));
  return { fused: [...got.subarray(0, m * n)], unfused: [...unfused], off, spare: [...got.subarray(m * n)] };
}

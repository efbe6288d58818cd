// What the dense Linear launchers' prepare() share: the checks on their operands (one-line
// errors naming the op's label and the tensor) and one dispatch per row-chunk of the weight.
// Used by both families (Gemv and GemvCoalesced, Matmul and MatmulTiled), so either family
// fails the same way, word for word.

import type { GpuTensor, GpuTensorChunk } from '../gpu/gpu-tensor.js';
import { SWIGLU_ACTS, type SwigluAct } from './swiglu.js';
import { bindBuffers, checkWeight, type ComputeDtype, computeBytes, type PreparedDispatch, type PreparedOp } from './op.js';

/** How a launcher was created: what its operands must be. */
export interface LinearCreated {
  readonly dtype: ComputeDtype;
  readonly bias: boolean;
  /** y is f32 whatever the compute dtype. */
  readonly outF32: boolean;
  /**
   * A gemv's GLU epilogue: W is [gate; up] (2I, K) in one chunk and y (I,) = act(gate·x) ·
   * (up·x) (shaders/common/glu.wgsl), the MLP's gate_up_proj and its activation in one dispatch.
   */
  readonly glu?: SwigluAct | null;
}

/**
 * Throws unless `device` computes in `dtype` and the options go together: residual writes
 * the compute dtype (the residual stream), so never with outF32. `op` names the kernel.
 */
export function checkLinearOptions(op: string, device: GPUDevice, dtype: ComputeDtype, options: EpilogueOptions & { bias?: boolean }): void {
  if (dtype === 'F16' && !device.features.has('shader-f16')) throw new Error(`${op}: F16 compute needs the device feature 'shader-f16'`);
  if (options.residual && options.outF32) throw new Error(`${op}: residual writes the compute dtype (the residual stream), not outF32`);
  if (options.glu && (options.bias || options.outF32 || options.residual)) {
    throw new Error(`${op}: the GLU epilogue (glu: '${options.glu}') takes no bias, outF32 or residual`);
  }
  checkEpilogueOptions(op, options);
}

/** The options of a linear's prologue and epilogues that exclude one another (GemvOptions' and QGemvOptions'). */
export interface EpilogueOptions {
  outF32?: boolean;
  residual?: boolean;
  glu?: SwigluAct | null;
  rmsNorm?: { eps: number } | null;
  ropeStore?: { scaled: boolean } | null;
}

/**
 * Throws unless the GLU's act is one there is, and the norm in the prologue and the
 * ROPE_STORE epilogue combine with the rest:
 * both write the projection in the compute dtype and add it to nothing, and the rope reads
 * q/k/v rows, not an MLP's.
 */
export function checkEpilogueOptions(op: string, options: EpilogueOptions): void {
  const { glu, rmsNorm, ropeStore } = options;
  // TypeScript stops an unknown act at compile time; a caller from JavaScript may not be
  if (glu != null && !SWIGLU_ACTS.includes(glu)) throw new Error(`${op}: glu must be one of ${SWIGLU_ACTS.join(', ')}, got ${String(glu)}`);
  if (rmsNorm && (options.residual || options.outF32)) throw new Error(`${op}: rmsNorm takes no residual or outF32`);
  if (rmsNorm && !(Number.isFinite(rmsNorm.eps) && rmsNorm.eps >= 0)) throw new Error(`${op}: rmsNorm's eps must be a finite number ≥ 0, not ${rmsNorm.eps}`);
  if (ropeStore && (options.glu || options.residual || options.outF32)) throw new Error(`${op}: ropeStore takes no glu, residual or outF32`);
}

/**
 * Throws unless y = x·Wᵀ (+ bias) can run: W (N, K) and bias (N,) in the compute dtype,
 * bias given exactly when created with one, x (m, K) and y (m, N) large enough and distinct.
 * `m` undefined: a gemv of `gemvTokens` rows (Gemv's tokens option; shapes written (K,) for
 * one row, (tokens, K) for more); else a matmul of m rows. yWidth: y's row width where it is
 * not N (a ROPE_STORE gemv writes only the q rows there). Returns [N, K].
 */
export function checkLinearOperands(
  label: string,
  created: LinearCreated,
  m: number | undefined,
  weight: GpuTensor,
  x: GPUBuffer,
  y: GPUBuffer,
  bias: GpuTensor | undefined,
  gemvTokens = 1,
  yWidth?: number,
): [n: number, k: number] {
  const op = m === undefined ? 'gemv' : 'matmul';
  if (weight.shape.length !== 2) throw new Error(`${label}: ${op} needs a 2-D weight, ${weight.name} is [${weight.shape.join(', ')}]`);
  const [n, k] = weight.shape;
  if (n < 1 || k < 1) throw new Error(`${label}: ${op} needs N ≥ 1 and K ≥ 1, ${weight.name} is [${n}, ${k}]`);
  if (m !== undefined && (!Number.isInteger(m) || m < 1)) throw new Error(`${label}: matmul needs M ≥ 1 rows, got ${m}`);
  checkWeight(label, weight, created.dtype, [n, k]);
  if (created.bias !== (bias !== undefined)) throw new Error(`${label}: ${op} was created ${created.bias ? 'with' : 'without'} bias, prepare got ${bias ? 'one' : 'none'}`);
  if (bias) checkWeight(label, bias, created.dtype, [n]);
  const rows = m ?? gemvTokens;
  if (rows * Math.max(n, k) > 2 ** 32 - 1) throw new Error(`${label}: ${op} (${rows}, ${k}) × (${n}, ${k}) has more elements than u32 indexes`);
  const shape = (d: number) => (rows === 1 && m === undefined ? `(${d},)` : `(${rows}, ${d})`);
  if (created.glu) {
    if (n % 2 !== 0) throw new Error(`${label}: a GLU gemv needs [gate; up] rows, an even N, ${weight.name} is [${n}, ${k}]`);
    if (weight.chunks.length !== 1) throw new Error(`${label}: a GLU gemv needs the gate and up rows in one chunk, ${weight.name} has ${weight.chunks.length}`);
  }
  const outN = yWidth ?? (created.glu ? n / 2 : n);
  const xBytes = rows * k * computeBytes(created.dtype);
  const yBytes = rows * outN * (created.outF32 ? 4 : computeBytes(created.dtype));
  if (x.size < xBytes) throw new Error(`${label}: ${op} x holds ${x.size} bytes, ${shape(k)} ${created.dtype} needs ${xBytes}`);
  if (y.size < yBytes) throw new Error(`${label}: ${op} y holds ${y.size} bytes, ${shape(outN)} needs ${yBytes}`);
  if (x === y) throw new Error(`${label}: ${op} cannot run in place (x and y are one buffer)`);
  return [n, k];
}

/** One chunk's dispatch, as a launcher describes it: its Params buffer, its bindings in order, its workgroups. */
export interface ChunkDispatch {
  params: GPUBuffer;
  /** null: a binding the variant lacks (bindBuffers leaves its number unused). */
  buffers: readonly (GPUBuffer | null)[];
  workgroups: readonly [number, number?, number?];
}

/**
 * One dispatch per row-chunk of `weight` (labelled `label.chunkI` when there are several),
 * each described by `each`; destroy() frees the Params buffers. Should `each` throw, the
 * Params buffers made so far are freed before the error goes on.
 */
export function prepareChunks(
  device: GPUDevice,
  pipeline: GPUComputePipeline,
  label: string,
  weight: GpuTensor,
  each: (chunk: GpuTensorChunk, name: string) => ChunkDispatch,
): PreparedOp {
  const paramBuffers: GPUBuffer[] = [];
  const destroy = () => paramBuffers.forEach((b) => b.destroy());
  try {
    const dispatches: PreparedDispatch[] = weight.chunks.map((chunk, i) => {
      const name = weight.chunks.length > 1 ? `${label}.chunk${i}` : label;
      const { params, buffers, workgroups } = each(chunk, name);
      paramBuffers.push(params);
      return { label: name, pipeline, bindGroup: bindBuffers(device, pipeline, name, [params, ...buffers]), workgroups };
    });
    return { label, dispatches, destroy };
  } catch (e) {
    destroy(); // a chunk `each` refused: the earlier chunks' Params go too
    throw e;
  }
}

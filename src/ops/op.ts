// What every op launcher shares. An op builds its pipeline once (create), then prepares
// dispatches once per set of buffers (bind groups and a Params buffer made at load time),
// which the model encodes every token without allocating anything.

import type { Dtype } from '../formats/dtypes.js';
import type { GpuTensor } from '../gpu/gpu-tensor.js';
import { quietWait } from '../gpu/quiet-wait.js';

/** What kernels compute in: F16 storage with F32 accumulation, or F32 throughout. */
export type ComputeDtype = 'F32' | 'F16';

/** One encodable dispatch: pipeline, bind group and workgroup counts, all built ahead. */
export interface PreparedDispatch {
  readonly label: string;
  readonly pipeline: GPUComputePipeline;
  readonly bindGroup: GPUBindGroup;
  readonly workgroups: readonly [number, number?, number?];
}

/** A prepared op: one or more dispatches (one per weight chunk, say) and its Params buffers. */
export interface PreparedOp {
  readonly label: string;
  readonly dispatches: readonly PreparedDispatch[];
  /** Frees the Params buffers the op made (not the caller's buffers). */
  destroy(): void;
}

/** A bind group of `buffers` at bindings 0, 1, 2, … of group 0, in order: each bound whole, or the range given; null leaves its number unbound (a variant without that binding). */
export function bindBuffers(device: GPUDevice, pipeline: GPUComputePipeline, label: string, buffers: readonly (BufferResource | null)[]): GPUBindGroup {
  return device.createBindGroup({
    label,
    layout: pipeline.getBindGroupLayout(0),
    entries: buffers.flatMap((b, binding) => (b === null ? [] : [{ binding, resource: isBinding(b) ? { ...b } : { buffer: b } }])),
  });
}

/** A whole buffer, or a range of one (e.g. a step's token ids: src/gpu/step.ts). */
export type BufferResource = GPUBuffer | Readonly<GPUBufferBinding>;

/** Whether `b` is a range ({ buffer, offset?, size? }) rather than a buffer. */
export function isBinding(b: BufferResource): b is Readonly<GPUBufferBinding> {
  return 'buffer' in b;
}

/** Encodes a prepared op's dispatches into a compute pass, in order. */
export function encodeOp(pass: GPUComputePassEncoder, op: PreparedOp): void {
  for (const d of op.dispatches) {
    pass.setPipeline(d.pipeline);
    pass.setBindGroup(0, d.bindGroup);
    pass.dispatchWorkgroups(d.workgroups[0], d.workgroups[1] ?? 1, d.workgroups[2] ?? 1);
  }
}

// Holds the last submitted command buffer until the next call (spent once submitted):
// emptying it would free its backing store, and the next call would allocate one again.
const oneCommandBuffer: GPUCommandBuffer[] = [];

/** Finishes `encoder` and submits its command buffer, through one array reused by every call (nothing allocated per token). */
export function submitOne(device: GPUDevice, encoder: GPUCommandEncoder): void {
  oneCommandBuffer[0] = encoder.finish();
  device.queue.submit(oneCommandBuffer);
}

/** Encodes ops in one compute pass of a new command encoder, submits it, and resolves when the GPU is done (tests, benchmarks). */
export async function runOps(device: GPUDevice, ops: readonly PreparedOp[], label = 'ops'): Promise<void> {
  const encoder = device.createCommandEncoder({ label });
  const pass = encoder.beginComputePass({ label });
  for (const op of ops) encodeOp(pass, op);
  pass.end();
  device.queue.submit([encoder.finish()]);
  await quietWait(device, () => device.queue.onSubmittedWorkDone());
}

/** Preprocessor flags of a compute dtype: kernels test `#ifdef F16`. */
export function dtypeFlags(dtype: ComputeDtype): string[] {
  return dtype === 'F16' ? ['F16'] : [];
}

/** Bytes per element of a compute dtype. */
export function computeBytes(dtype: ComputeDtype): number {
  return dtype === 'F16' ? 2 : 4;
}

/** Throws unless a weight tensor holds the compute dtype and the expected shape. */
export function checkWeight(op: string, tensor: GpuTensor, dtype: Dtype, shape: readonly number[]): void {
  const same = tensor.shape.length === shape.length && tensor.shape.every((d, i) => d === shape[i]);
  if (tensor.dtype !== dtype || !same) {
    throw new Error(`${op}: ${tensor.name} is ${tensor.dtype} [${tensor.shape.join(', ')}], expected ${dtype} [${shape.join(', ')}]`);
  }
}

// A tensor on the GPU: one buffer, or row-chunks when it is larger than one storage
// binding may be (a Llama-3 embedding table is 525 MB in bf16; lavapipe and many
// browsers bind at most 128 MiB). Kernels that read huge weights take the chunks.

import type { Dtype } from '../formats/dtypes.js';

export interface GpuTensorChunk {
  /** (rows, ...shape[1:]) in `dtype`, padded to a multiple of 16 bytes. */
  readonly buffer: GPUBuffer;
  /** Index of the chunk's first row (first dimension) in the tensor. */
  readonly firstRow: number;
  readonly rows: number;
  /** Bytes of the chunk's elements (the buffer may be larger: padding). */
  readonly byteLength: number;
}

export interface GpuTensor {
  readonly name: string;
  readonly shape: readonly number[];
  /** What the checkpoint holds. */
  readonly storageDtype: Dtype;
  /** What the buffers hold: the compute dtype for float tensors, else the storage dtype. */
  readonly dtype: Dtype;
  /** One chunk unless the tensor exceeds a binding; every chunk but the last has rowsPerChunk rows. */
  readonly chunks: readonly GpuTensorChunk[];
  readonly rowsPerChunk: number;
  /** Bytes of all elements in `dtype` (without padding). */
  readonly byteLength: number;
}

/** Buffers are padded to this, so kernels may read vec4<f32> and copies stay 4-byte aligned. */
export const BUFFER_ALIGNMENT = 16;

export function alignUp(n: number, alignment: number): number {
  return Math.ceil(n / alignment) * alignment;
}

/** The tensor's only buffer; throws for a chunked tensor, which the caller must handle. */
export function singleBuffer(tensor: GpuTensor): GPUBuffer {
  if (tensor.chunks.length !== 1) {
    throw new Error(`${tensor.name} is stored in ${tensor.chunks.length} chunks; this op needs one buffer`);
  }
  return tensor.chunks[0].buffer;
}

/** Elements of one row: the product of every dimension but the first (1 for 0-D and 1-D). */
export function rowElements(shape: readonly number[]): number {
  return shape.slice(1).reduce((a, b) => a * b, 1);
}

/** Rows: the first dimension (1 for a scalar). */
export function rowCount(shape: readonly number[]): number {
  return shape.length === 0 ? 1 : shape[0];
}

export function destroyTensor(tensor: GpuTensor): void {
  for (const chunk of tensor.chunks) chunk.buffer.destroy();
}

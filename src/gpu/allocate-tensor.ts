// The loader's device allocations: a tensor's buffers (dense chunks, or whatever `create`
// makes) created inside error scopes, so running out of GPU memory (or a size the device
// refuses) becomes one OUT_OF_MEMORY naming the tensor and the totals so far, its buffers freed.

import { SluiceError } from '../errors.js';
import { formatBytes } from '../units.js';
import type { GpuTensor, GpuTensorChunk } from './gpu-tensor.js';
import type { LoadProgress } from './load-tensors.js';
import type { TensorPlan } from './upload-plan.js';

type Progress = Pick<LoadProgress, 'tensorsDone' | 'tensorsTotal'>;

/** The GpuTensor of a dense plan once its chunks exist. */
export function tensorOf(plan: TensorPlan, chunks: GpuTensorChunk[]): GpuTensor {
  return {
    name: plan.info.name,
    shape: plan.info.shape,
    storageDtype: plan.info.dtype,
    dtype: plan.dtype,
    chunks,
    rowsPerChunk: plan.rowsPerChunk,
    byteLength: chunks.reduce((sum, c) => sum + c.byteLength, 0),
  };
}

/**
 * Creates a tensor's chunk buffers inside error scopes: running out of GPU memory (or a
 * size the device refuses) becomes OUT_OF_MEMORY naming the tensor and the totals so far.
 */
export function allocate(device: GPUDevice, plan: TensorPlan, label: string, progress: Progress, deviceBytes: number): Promise<GpuTensorChunk[]> {
  return allocateChecked(device, plan.info.name, progress, deviceBytes, () => {
    const chunks = plan.chunks.map((chunk, i) => ({
      buffer: device.createBuffer({
        label: `${label}.${plan.info.name}${plan.chunks.length > 1 ? `#${i}` : ''}`,
        size: chunk.bufferSize,
        // COPY_SRC: tests and `bench` read weights back; it costs nothing to allow.
        usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC,
      }),
      firstRow: chunk.firstRow,
      rows: chunk.rows,
      byteLength: chunk.byteLength,
    }));
    const bytes = plan.chunks.reduce((sum, c) => sum + c.bufferSize, 0);
    return { value: chunks, bytes, free: () => chunks.forEach((c) => c.buffer.destroy()) };
  });
}

/** Runs `create` inside error scopes; a device error becomes OUT_OF_MEMORY naming the tensor (its buffers freed). */
export async function allocateChecked<T>(
  device: GPUDevice,
  name: string,
  progress: Progress,
  deviceBytes: number,
  create: () => { value: T; bytes: number; free: () => void },
): Promise<T> {
  device.pushErrorScope('out-of-memory');
  device.pushErrorScope('validation');
  let made: ReturnType<typeof create>;
  try {
    made = create();
  } catch (e) {
    await device.popErrorScope();
    await device.popErrorScope();
    throw e;
  }
  const validation = await device.popErrorScope();
  const outOfMemory = await device.popErrorScope();
  const error = outOfMemory ?? validation;
  if (error) {
    made.free();
    throw new SluiceError(
      'OUT_OF_MEMORY',
      `out of GPU memory allocating tensor ${JSON.stringify(name)} (${formatBytes(made.bytes)}) ` +
        `after ${progress.tensorsDone} of ${progress.tensorsTotal} tensors, ${formatBytes(deviceBytes)} on the device: ` +
        `${error.message.replace(/\s*\n\s*/g, ' ').trim()}`,
    );
  }
  return made.value;
}

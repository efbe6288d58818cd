// Reading GPU buffers back to the host: for verification (tests, `bench load --verify`)
// and debugging, never on a per-token path.

import type { GpuTensor } from './gpu-tensor.js';
import { alignUp } from './gpu-tensor.js';
import { quietWait } from './quiet-wait.js';

/** `size` bytes of `buffer` from `offset` (both multiples of 4), copied out through a mappable buffer. */
export async function readBuffer(device: GPUDevice, buffer: GPUBuffer, offset = 0, size = buffer.size - offset): Promise<Uint8Array> {
  const padded = alignUp(size, 4);
  const staging = device.createBuffer({ label: `${buffer.label}.readback`, size: Math.max(padded, 4), usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  try {
    const encoder = device.createCommandEncoder({ label: `${buffer.label}.readback` });
    if (padded > 0) encoder.copyBufferToBuffer(buffer, offset, staging, 0, padded);
    device.queue.submit([encoder.finish()]);
    await quietWait(device, () => staging.mapAsync(GPUMapMode.READ));
    return new Uint8Array(staging.getMappedRange(0, Math.max(padded, 4)).slice(0, size));
  } finally {
    staging.destroy();
  }
}

/** A tensor's elements in its buffer dtype, chunks concatenated, padding dropped. */
export async function readTensor(device: GPUDevice, tensor: GpuTensor): Promise<Uint8Array> {
  const out = new Uint8Array(tensor.byteLength);
  let at = 0;
  for (const chunk of tensor.chunks) {
    const bytes = await readBuffer(device, chunk.buffer, 0, alignUp(chunk.byteLength, 4));
    out.set(bytes.subarray(0, chunk.byteLength), at);
    at += chunk.byteLength;
  }
  return out;
}

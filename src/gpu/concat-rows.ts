// Concatenating loaded tensors by rows into one, on the GPU (buffer copies, nothing through
// the host): the inverse of split-rows.ts. Separate gate_proj and up_proj (I, h) become one
// (2I, h) whose rows are [gate; up], the layout of Phi-3's gate_up_proj, so the MLP runs one
// linear into [gate | up] per token row and the fused SwiGLU/GeGLU reads it.

import { rowCount, type GpuTensor } from './gpu-tensor.js';
import { chunkedTensor, copyRows } from './split-rows.js';

/**
 * One tensor `name` holding the rows of `parts` in order, chunked like the loader chunks
 * (whole rows, at most `maxChunkBytes` a buffer). The parts must agree on their dtypes and
 * on every dimension past the first. Encodes the copies and submits them; the caller may
 * destroy the parts once the queue has finished them.
 */
export function concatRows(device: GPUDevice, name: string, parts: readonly GpuTensor[], maxChunkBytes = device.limits.maxStorageBufferBindingSize): GpuTensor {
  if (parts.length === 0) throw new Error(`${name}: nothing to concatenate`);
  const [first] = parts;
  const inner = first.shape.slice(1);
  for (const p of parts) {
    if (p.shape.length !== first.shape.length || p.shape.slice(1).some((d, i) => d !== inner[i])) {
      throw new Error(`${name}: ${p.name} is [${p.shape.join(', ')}], rows of [${first.shape.join(', ')}] expected`);
    }
    if (p.dtype !== first.dtype || p.storageDtype !== first.storageDtype) throw new Error(`${name}: ${p.name} is ${p.dtype}, ${first.name} is ${first.dtype}`);
  }
  const rows = parts.map((p) => rowCount(p.shape));
  const total = rows.reduce((a, b) => a + b, 0);
  const rowBytes = rows[0] === 0 ? 0 : first.byteLength / rows[0];
  if (rowBytes % 4 !== 0) throw new Error(`${name}: rows of ${rowBytes} bytes cannot be copied (4-byte copies)`);
  const starts = rows.map((_, i) => rows.slice(0, i).reduce((a, b) => a + b, 0));
  const encoder = device.createCommandEncoder({ label: `concat.${name}` });
  const like = { name, shape: [total, ...inner], storageDtype: first.storageDtype, dtype: first.dtype };
  const out = chunkedTensor(device, like, rowBytes, maxChunkBytes, (buffer, at, count) => {
    // Each part's share of rows [at, at + count) of the result, at its place in the chunk.
    parts.forEach((part, i) => {
      const a = Math.max(at, starts[i]);
      const b = Math.min(at + count, starts[i] + rows[i]);
      if (a < b) copyRows(encoder, part, a - starts[i], b - a, rowBytes, buffer, (a - at) * rowBytes);
    });
  });
  device.queue.submit([encoder.finish()]);
  return out;
}

/**
 * One 1-D tensor `name` holding `parts` end to end (q, k and v biases → the joined
 * projection's bias). concatRows cannot: an f16 element is a 2-byte row, and buffer copies
 * move 4-byte words; each part here is copied whole, so only its length must be a
 * multiple of 4 bytes (an even count of f16, any count of f32).
 */
export function concatVectors(device: GPUDevice, name: string, parts: readonly GpuTensor[]): GpuTensor {
  if (parts.length === 0) throw new Error(`${name}: nothing to concatenate`);
  const [first] = parts;
  for (const p of parts) {
    if (p.shape.length !== 1 || p.chunks.length !== 1) throw new Error(`${name}: ${p.name} is not a 1-D tensor in one buffer`);
    if (p.dtype !== first.dtype || p.storageDtype !== first.storageDtype) throw new Error(`${name}: ${p.name} is ${p.dtype}, ${first.name} is ${first.dtype}`);
    if (p.byteLength % 4 !== 0) throw new Error(`${name}: ${p.name} is ${p.byteLength} bytes (4-byte copies)`);
  }
  const total = parts.reduce((n, p) => n + p.shape[0], 0);
  const byteLength = parts.reduce((n, p) => n + p.byteLength, 0);
  const encoder = device.createCommandEncoder({ label: `concat.${name}` });
  const like = { name, shape: [total], storageDtype: first.storageDtype, dtype: first.dtype };
  // One chunk whatever maxChunkBytes says: a bias is a few kB.
  const out = chunkedTensor(device, like, byteLength / total, Infinity, (buffer) => {
    let at = 0;
    for (const p of parts) {
      encoder.copyBufferToBuffer(p.chunks[0].buffer, 0, buffer, at, p.byteLength);
      at += p.byteLength;
    }
  });
  device.queue.submit([encoder.finish()]);
  return out;
}

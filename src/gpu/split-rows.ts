// Splitting a loaded tensor by rows into consecutive tensors, on the GPU (buffer copies,
// nothing through the host). Phi-3 stores q, k and v as one qkv_proj whose rows are
// [q; k; v]; the forward pass wants them as three matrices, and this is cheaper than
// teaching every op a row stride: one copy per chunk piece at load, freed source after.

import { alignUp, BUFFER_ALIGNMENT, type GpuTensor, type GpuTensorChunk, rowCount } from './gpu-tensor.js';

export interface RowPart {
  name: string;
  rows: number;
}

/**
 * The parts of `tensor` (rows in order, summing to its row count), each chunked like the
 * loader chunks (whole rows, at most `maxChunkBytes` a buffer). Encodes the copies and
 * submits them; the caller may destroy `tensor` once the queue has finished them.
 */
export function splitRows(device: GPUDevice, tensor: GpuTensor, parts: readonly RowPart[], maxChunkBytes = device.limits.maxStorageBufferBindingSize): GpuTensor[] {
  const rows = rowCount(tensor.shape);
  const total = parts.reduce((n, p) => n + p.rows, 0);
  if (total !== rows) throw new Error(`${tensor.name}: parts of ${total} rows do not split its ${rows}`);
  const rowBytes = rows === 0 ? 0 : tensor.byteLength / rows;
  if (rowBytes % 4 !== 0) throw new Error(`${tensor.name}: rows of ${rowBytes} bytes cannot be copied (4-byte copies)`);
  const encoder = device.createCommandEncoder({ label: `split.${tensor.name}` });
  let first = 0;
  const out = parts.map((part) => {
    const from = first;
    first += part.rows;
    const like = { name: part.name, shape: [part.rows, ...tensor.shape.slice(1)], storageDtype: tensor.storageDtype, dtype: tensor.dtype };
    return chunkedTensor(device, like, rowBytes, maxChunkBytes, (buffer, at, count) => copyRows(encoder, tensor, from + at, count, rowBytes, buffer));
  });
  device.queue.submit([encoder.finish()]);
  return out;
}

/**
 * A tensor of `like`'s name, shape and dtypes in new buffers chunked as the loader chunks
 * (whole rows, at most `maxChunkBytes` a buffer); `fill(buffer, firstRow, rows)` encodes
 * the copies that fill each chunk.
 */
export function chunkedTensor(
  device: GPUDevice,
  like: Pick<GpuTensor, 'name' | 'shape' | 'storageDtype' | 'dtype'>,
  rowBytes: number,
  maxChunkBytes: number,
  fill: (buffer: GPUBuffer, firstRow: number, rows: number) => void,
): GpuTensor {
  const rows = like.shape[0];
  const rowsPerChunk = Math.max(1, Math.min(rows, Math.floor(maxChunkBytes / rowBytes)));
  const chunks: GpuTensorChunk[] = [];
  for (let at = 0; at < rows || chunks.length === 0; at += rowsPerChunk) {
    const chunkRows = Math.min(rowsPerChunk, rows - at);
    const byteLength = chunkRows * rowBytes;
    const buffer = device.createBuffer({
      label: `${like.name}.chunk${chunks.length}`,
      size: Math.max(BUFFER_ALIGNMENT, alignUp(byteLength, BUFFER_ALIGNMENT)),
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC,
    });
    fill(buffer, at, chunkRows);
    chunks.push({ buffer, firstRow: at, rows: chunkRows, byteLength });
  }
  return { ...like, chunks, rowsPerChunk, byteLength: rows * rowBytes };
}

/** Rows [from, from + count) of `src`, wherever its chunks hold them, to `dst` from byte `at` (default its start). */
export function copyRows(encoder: GPUCommandEncoder, src: GpuTensor, from: number, count: number, rowBytes: number, dst: GPUBuffer, at = 0): void {
  for (const chunk of src.chunks) {
    const a = Math.max(from, chunk.firstRow);
    const b = Math.min(from + count, chunk.firstRow + chunk.rows);
    if (a >= b) continue;
    encoder.copyBufferToBuffer(chunk.buffer, (a - chunk.firstRow) * rowBytes, dst, at + (a - from) * rowBytes, (b - a) * rowBytes);
  }
}

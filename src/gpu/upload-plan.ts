// How each tensor goes to the GPU, decided before any byte moves: its buffer dtype, its
// row-chunks (each within one storage binding) and the pieces (each within one staging
// slot) that stream it. Pure arithmetic, tested without a GPU.

import type { TensorInfo } from '../checkpoint/types.js';
import { SluiceError } from '../errors.js';
import { type Dtype, dtypeBytes } from '../formats/dtypes.js';
import { type ComputeDtype, ELEMENTS_PER_INVOCATION, needsConversion } from '../ops/convert.js';
import { alignUp, BUFFER_ALIGNMENT, rowCount, rowElements } from './gpu-tensor.js';

export interface ChunkPlan {
  firstRow: number;
  rows: number;
  /** Bytes of the chunk's elements in the buffer dtype. */
  byteLength: number;
  /** Buffer size: byteLength padded to BUFFER_ALIGNMENT (at least one unit). */
  bufferSize: number;
}

/** A byte range of the tensor in the checkpoint that fits one staging slot. */
export interface PiecePlan {
  chunk: number;
  /** Where the piece starts in the tensor's checkpoint bytes, and how many. */
  sourceOffset: number;
  sourceLength: number;
  /** Its first element within the chunk, and its element count. */
  chunkElement: number;
  elements: number;
}

export interface TensorPlan {
  info: TensorInfo;
  /** What the buffers hold. */
  dtype: Dtype;
  convert: boolean;
  rowsPerChunk: number;
  chunks: ChunkPlan[];
  pieces: PiecePlan[];
}

export interface PlanLimits {
  /** Largest chunk buffer: the device's maxStorageBufferBindingSize (and maxBufferSize). */
  maxChunkBytes: number;
  /** Staging slot size: no piece is larger. A multiple of 16. */
  pieceBytes: number;
}

/** The buffer dtype of a tensor: floats the kernel converts become the compute dtype. */
export function bufferDtype(storage: Dtype, compute: ComputeDtype): Dtype {
  return needsConversion(storage, compute) ? compute : storage;
}

export function planTensor(info: TensorInfo, compute: ComputeDtype, limits: PlanLimits): TensorPlan {
  const dtype = bufferDtype(info.dtype, compute);
  const convert = dtype !== info.dtype;
  const inBytes = dtypeBytes(info.dtype);
  const outBytes = dtypeBytes(dtype);
  const maxChunk = Math.floor(limits.maxChunkBytes / BUFFER_ALIGNMENT) * BUFFER_ALIGNMENT;
  const where = `tensor ${JSON.stringify(info.name)} (${info.dtype} [${info.shape.join(', ')}], ${info.file})`;

  if (inBytes === undefined || outBytes === undefined) {
    // Sub-byte dtypes (F4, F6) are copied as opaque bytes in one buffer; no kernel reads them.
    if (info.byteLength > maxChunk) throw tooLarge(where, info.byteLength, maxChunk, 'a sub-byte tensor cannot be split into rows');
    const chunk = { firstRow: 0, rows: rowCount(info.shape), byteLength: info.byteLength, bufferSize: bufferSize(info.byteLength) };
    return { info, dtype, convert, rowsPerChunk: chunk.rows, chunks: [chunk], pieces: bytePieces(0, info.byteLength, limits.pieceBytes) };
  }

  const rows = rowCount(info.shape);
  const perRow = rowElements(info.shape);
  const rowBytes = perRow * outBytes;
  if (rowBytes > maxChunk) throw tooLarge(where, rowBytes, maxChunk, 'one row is larger than a binding');
  const rowsPerChunk = rows === 0 || rowBytes === 0 ? Math.max(rows, 1) : Math.min(rows, Math.floor(maxChunk / rowBytes));

  // Pieces hold a multiple of 8 elements (the convert kernel's vector), so each one starts
  // on a 16-byte boundary of its chunk, in every dtype.
  const pieceElements = Math.floor(limits.pieceBytes / inBytes / ELEMENTS_PER_INVOCATION) * ELEMENTS_PER_INVOCATION;
  if (pieceElements < ELEMENTS_PER_INVOCATION) throw new Error(`staging slot of ${limits.pieceBytes} bytes is too small`);

  const chunks: ChunkPlan[] = [];
  const pieces: PiecePlan[] = [];
  for (let firstRow = 0, chunk = 0; chunk === 0 || firstRow < rows; firstRow += rowsPerChunk, chunk++) {
    const chunkRows = Math.min(rowsPerChunk, rows - firstRow);
    const elements = chunkRows * perRow;
    const byteLength = elements * outBytes;
    chunks.push({ firstRow, rows: chunkRows, byteLength, bufferSize: bufferSize(byteLength) });
    const firstElement = firstRow * perRow;
    for (let at = 0; at < elements; at += pieceElements) {
      const count = Math.min(pieceElements, elements - at);
      pieces.push({
        chunk,
        sourceOffset: (firstElement + at) * inBytes,
        sourceLength: count * inBytes,
        chunkElement: at,
        elements: count,
      });
    }
    if (rows === 0) break;
  }
  return { info, dtype, convert, rowsPerChunk, chunks, pieces };
}

function bytePieces(start: number, length: number, pieceBytes: number): PiecePlan[] {
  const pieces: PiecePlan[] = [];
  for (let at = 0; at < length; at += pieceBytes) {
    const n = Math.min(pieceBytes, length - at);
    pieces.push({ chunk: 0, sourceOffset: start + at, sourceLength: n, chunkElement: at, elements: n });
  }
  return pieces;
}

function bufferSize(byteLength: number): number {
  return Math.max(alignUp(byteLength, BUFFER_ALIGNMENT), BUFFER_ALIGNMENT);
}

function tooLarge(where: string, bytes: number, limit: number, why: string): SluiceError {
  return new SluiceError(
    'TENSOR_TOO_LARGE',
    `${where}: ${why} (${bytes} bytes; this GPU binds at most ${limit} bytes per buffer)`,
  );
}

// Quantize on load: the loader's path for the tensors `LoadOptions.quantize.select` picks.
// Each one streams through the staging ring like any tensor, but in pieces of whole rows,
// and never exists dense on the device:
//
//   staging slot ──copy──▶ convert scratch ──convert──▶ row scratch ──quantize──▶ QuantizedTensor
//   (source dtype)          (source dtype)    (BF16/F32   (rows, K) in the     (packed data, scales,
//                                               → compute)  compute dtype        zeros; row-chunked)
//
// (A piece already in the compute dtype is copied straight into the row scratch.) One piece
// = as many whole rows as fit one staging slot in both the source and the compute dtype, so
// the three steps of a piece go in one submit and read only that piece's rows. Submits run
// in queue order, so one row scratch serves every piece, however many are in flight: a later
// piece's copy never overtakes an earlier piece's quantize (the dense path shares its
// convert scratch the same way).
//
// Device memory, peak: the quantized tensors + the dense ones + one row scratch (≤ one slot,
// 8 MiB by default) + the convert scratch and staging slots the dense path has anyway. Not
// quantized + dense: a Llama-3.2-1B in q4 peaks at ~0.7 GB, not 0.7 + 2.5 GB.
// Host memory: unchanged, the staging ring (32 MiB by default).
//
// The values quantized are exactly the dense load's (the same convert kernel writes them),
// so quantizeReference over a dense load read back is bit-exact with what lands here.
//
// What stays dense (a note each, in GpuTensors.notes): a selected tensor that is not 2-D
// [N ≥ 1, K], not F32/F16/BF16, whose K is not a multiple of the group size, or whose one row
// does not fit a staging slot (K > 1 M elements at the default 8 MiB slots).

import type { TensorInfo } from '../checkpoint/types.js';
import { SluiceError } from '../errors.js';
import { dtypeBytes } from '../formats/dtypes.js';
import type { Converter } from '../ops/convert.js';
import { type ComputeDtype, computeBytes, encodeOp } from '../ops/op.js';
import type { Quantize } from '../ops/quantize.js';
import { alignUp } from './gpu-tensor.js';
import { DEFAULT_GROUP_SIZE, type QuantizedLayout, type QuantizedTensor, type QuantKind, rowBytes, type ScaleDtype } from './quantized-tensor.js';

export interface QuantizeOnLoad {
  kind: QuantKind;
  /** Which tensors to quantize (among those `filter` keeps): typically the linear weights. */
  select: (t: TensorInfo) => boolean;
  /** Elements per group along K (default 32; a multiple of 8). */
  groupSize?: number;
}

/** A range of whole rows of the tensor in the checkpoint that fits one staging slot. */
export interface RowPiece {
  sourceOffset: number;
  sourceLength: number;
  firstRow: number;
  rows: number;
}

export interface QuantizedPlan {
  info: TensorInfo;
  layout: QuantizedLayout & { groupSize: number };
  /** The source dtype differs from the compute dtype: the convert kernel runs. */
  convert: boolean;
  pieces: RowPiece[];
  /** Row scratch this tensor needs: its largest piece in the compute dtype. */
  scratchBytes: number;
}

export interface QuantizePlanLimits {
  /** Staging slot size (a multiple of 16). */
  pieceBytes: number;
  /** Largest buffer of one chunk. */
  maxChunkBytes: number;
  scaleDtype: ScaleDtype;
}

const FLOATS = ['F32', 'F16', 'BF16'];

/** Throws USAGE for a group size no layout accepts (before anything is allocated). */
export function checkGroupSize(groupSize: number): void {
  if (!Number.isInteger(groupSize) || groupSize < 8 || groupSize % 8 !== 0) {
    throw new SluiceError('USAGE', `quantize: the group size must be a positive multiple of 8, got ${groupSize}`);
  }
}

/** How a selected tensor streams in quantized, or why it stays dense (a one-line note). */
export function planQuantized(info: TensorInfo, compute: ComputeDtype, q: QuantizeOnLoad, limits: QuantizePlanLimits): QuantizedPlan | { dense: string } {
  const groupSize = q.groupSize ?? DEFAULT_GROUP_SIZE;
  const keep = (why: string) => ({ dense: `${info.name}: kept dense ${compute} (${why})` });
  if (info.shape.length !== 2 || info.shape[0] < 1 || info.shape[1] < 1) return keep(`shape [${info.shape.join(', ')}] is not a 2-D [N, K] matrix`);
  if (!FLOATS.includes(info.dtype)) return keep(`${info.dtype} is not a float dtype that quantizes`);
  const [n, k] = info.shape as [number, number];
  if (k % groupSize !== 0) return keep(`K = ${k} is not a multiple of the group size ${groupSize}`);
  const inBytes = dtypeBytes(info.dtype)!;
  const outBytes = computeBytes(compute);
  const scratchRowBytes = k * Math.max(inBytes, outBytes);
  const rowsPerPiece = Math.floor(limits.pieceBytes / scratchRowBytes);
  if (rowsPerPiece < 1) return keep(`one row of ${scratchRowBytes} bytes exceeds the ${limits.pieceBytes}-byte staging slot`);
  const layout = { kind: q.kind, shape: [n, k] as const, groupSize, scaleDtype: limits.scaleDtype, hasZeros: q.kind === 'q4' };
  const packedRow = rowBytes(q.kind, k, groupSize, limits.scaleDtype, layout.hasZeros).data;
  if (packedRow + 16 > limits.maxChunkBytes) return keep(`one packed row of ${packedRow} bytes exceeds the ${limits.maxChunkBytes}-byte chunk limit`);
  const pieces: RowPiece[] = [];
  for (let firstRow = 0; firstRow < n; firstRow += rowsPerPiece) {
    const rows = Math.min(rowsPerPiece, n - firstRow);
    pieces.push({ sourceOffset: firstRow * k * inBytes, sourceLength: rows * k * inBytes, firstRow, rows });
  }
  const scratchBytes = alignUp(Math.min(rowsPerPiece, n) * k * outBytes, 16);
  return { info, layout, convert: info.dtype !== compute, pieces, scratchBytes };
}

export interface QuantizeBuffers {
  /** (rows, K) source dtype: where the convert kernel reads a piece (when it runs). */
  convertScratch: GPUBuffer | null;
  /** (rows, K) compute dtype: what quantize reads. */
  rowScratch: GPUBuffer;
  /** The converter's 16-byte uniform. */
  convertParams: GPUBuffer;
}

/**
 * Encodes one piece: copy out of the staging slot, convert when needed, quantize its rows
 * into `dst`. Returns the Params buffers to free once the encoder is submitted.
 */
export function encodeQuantizedPiece(
  encoder: GPUCommandEncoder,
  label: string,
  slot: GPUBuffer,
  piece: RowPiece,
  dst: QuantizedTensor,
  bufs: QuantizeBuffers,
  quantize: Quantize,
  converter: Converter | undefined,
): () => void {
  const copyBytes = alignUp(piece.sourceLength, 4); // K is a multiple of 8: already aligned
  if (converter) {
    if (!bufs.convertScratch) throw new Error(`${label}: no convert scratch`);
    encoder.copyBufferToBuffer(slot, 0, bufs.convertScratch, 0, copyBytes);
    converter.encode(encoder, bufs.convertScratch, bufs.rowScratch, 0, piece.rows * dst.shape[1], bufs.convertParams);
  } else {
    encoder.copyBufferToBuffer(slot, 0, bufs.rowScratch, 0, copyBytes);
  }
  const op = quantize.prepareRows(`${label}.quantize`, bufs.rowScratch, piece.firstRow, piece.rows, dst);
  const pass = encoder.beginComputePass({ label: `${label}.quantize` });
  encodeOp(pass, op);
  pass.end();
  return () => op.destroy();
}

/** Bytes of a quantized tensor's buffers on the device (padding included). */
export function quantizedBufferBytes(t: QuantizedTensor): number {
  return t.chunks.reduce((sum, c) => sum + c.data.size + c.scales.size + (c.zeros?.size ?? 0), 0);
}

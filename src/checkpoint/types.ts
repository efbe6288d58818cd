// What every checkpoint looks like to the rest of sluice, whatever its format or source.
// Formats implement `Checkpoint`; the loader, `inspect` and `convert` only see this.

import type { Dtype } from '../formats/dtypes.js';

export interface TensorInfo {
  name: string;
  dtype: Dtype;
  /** Row-major dimensions; [] for a scalar. */
  shape: number[];
  /** Contiguous little-endian bytes of the tensor. */
  byteLength: number;
  /** The file (path, URL or File name) its bytes come from. */
  file: string;
}

/** Per dimension: [start, stop) like Python's `start:stop`. Missing trailing dims are taken whole. */
export type SliceRanges = ReadonlyArray<readonly [start: number, stop: number]>;

export interface TensorSlice {
  dtype: Dtype;
  shape: number[];
  data: Uint8Array;
}

export interface Checkpoint {
  readonly format: 'safetensors' | 'pytorch';
  /** Every file the checkpoint spans (shards in order), plus the index when there is one. */
  readonly files: string[];
  /** Free-form string metadata (safetensors `__metadata__`; merged across shards). */
  readonly metadata: Record<string, string>;
  /** Tensors in storage order (file by file, ascending offsets). */
  tensors(): TensorInfo[];
  has(name: string): boolean;
  /** Throws TENSOR_NOT_FOUND naming the tensor and the checkpoint. */
  info(name: string): TensorInfo;
  /** A tensor's whole bytes, read on demand. */
  read(name: string): Promise<Uint8Array>;
  /**
   * `length` bytes of a tensor starting `offset` bytes into it, for streaming in chunks;
   * into `into` when given (see ByteSource.read: no intermediate buffer where the source
   * can read in place).
   */
  readRange(name: string, offset: number, length: number, into?: Uint8Array): Promise<Uint8Array>;
  /** A sub-block, reading only the bytes it covers. */
  slice(name: string, ranges: SliceRanges): Promise<TensorSlice>;
  close(): Promise<void>;
}

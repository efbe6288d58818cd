import { SluiceError } from '../errors.js';
import type { ByteSource } from './byte-source.js';

/** Throws unless [offset, offset + length) lies within the source. */
export function checkRange(source: ByteSource, offset: number, length: number): void {
  if (
    !Number.isSafeInteger(offset) ||
    !Number.isSafeInteger(length) ||
    offset < 0 ||
    length < 0 ||
    offset + length > source.size
  ) {
    throw new SluiceError(
      'IO_ERROR',
      `${source.name}: read of ${length} bytes at offset ${offset} is outside the source (${source.size} bytes)`,
    );
  }
}

/** Copies `bytes` to the start of `into` (a read's destination); returns the filled view. */
export function copyInto(into: Uint8Array, bytes: Uint8Array): Uint8Array {
  if (into.length < bytes.length) throw new RangeError(`read destination of ${into.length} bytes is shorter than ${bytes.length}`);
  into.set(bytes);
  return into.subarray(0, bytes.length);
}

/** Throws SOURCE_CHANGED when a read came back shorter than asked. */
export function checkComplete(source: ByteSource, offset: number, wanted: number, got: number): void {
  if (got !== wanted) {
    throw new SluiceError(
      'SOURCE_CHANGED',
      `${source.name}: expected ${wanted} bytes at offset ${offset} but got ${got}; was the file truncated or replaced while reading?`,
    );
  }
}

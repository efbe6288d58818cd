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

/** Throws SOURCE_CHANGED when a read came back shorter than asked. */
export function checkComplete(source: ByteSource, offset: number, wanted: number, got: number): void {
  if (got !== wanted) {
    throw new SluiceError(
      'SOURCE_CHANGED',
      `${source.name}: expected ${wanted} bytes at offset ${offset} but got ${got}; was the file truncated or replaced while reading?`,
    );
  }
}

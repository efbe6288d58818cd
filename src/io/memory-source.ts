import { SluiceError } from '../errors.js';
import type { ByteSource } from './byte-source.js';
import { checkRange } from './range.js';

/** A ByteSource over bytes already in memory: tests, generated data, small downloads. */
export class MemorySource implements ByteSource {
  readonly size: number;
  private closed = false;

  constructor(
    private readonly bytes: Uint8Array,
    readonly name = 'memory',
  ) {
    this.size = bytes.byteLength;
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    if (this.closed) throw new SluiceError('IO_ERROR', `${this.name}: read after close`);
    checkRange(this, offset, length);
    return this.bytes.subarray(offset, offset + length);
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

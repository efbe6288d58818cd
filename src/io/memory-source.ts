import { SluiceError } from '../errors.js';
import type { ByteSource } from './byte-source.js';
import { checkRange, copyInto } from './range.js';

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

  async read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    if (this.closed) throw new SluiceError('IO_ERROR', `${this.name}: read after close`);
    checkRange(this, offset, length);
    const view = this.bytes.subarray(offset, offset + length);
    // A copy, like every other source: a caller that writes into its result (byte-swapping
    // a big-endian tensor) must not corrupt the data.
    return into ? copyInto(into, view) : view.slice();
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

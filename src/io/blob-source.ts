// A ByteSource over a Blob or File (a browser file picker, drag and drop, or a fetched
// Blob). Browser-safe: only the global Blob API. Each read slices the blob, so the file is
// never loaded whole; the browser reads just the sliced bytes from disk.

import { SluiceError } from '../errors.js';
import type { ByteSource } from './byte-source.js';
import { checkComplete, checkRange, copyInto } from './range.js';

export class BlobSource implements ByteSource {
  readonly name: string;
  readonly size: number;
  private blob: Blob | null;

  /** `name` defaults to File.name for a File, else "blob". */
  constructor(blob: Blob, name?: string) {
    // Duck-typed rather than `instanceof File`: File is missing from some workers and old
    // runtimes, and a File from another realm fails instanceof.
    const fileName = (blob as Partial<File>).name;
    this.name = name ?? (typeof fileName === 'string' && fileName !== '' ? fileName : 'blob');
    this.size = blob.size;
    this.blob = blob;
  }

  async read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    const blob = this.blob;
    if (!blob) throw new SluiceError('IO_ERROR', `${this.name}: read after close`);
    checkRange(this, offset, length);
    if (length === 0) return into ? into.subarray(0, 0) : new Uint8Array(0);
    let bytes: ArrayBuffer;
    try {
      bytes = await blob.slice(offset, offset + length).arrayBuffer();
    } catch (e) {
      // Browsers throw NotReadableError when the file on disk changed after it was picked.
      if ((e as Error)?.name === 'NotReadableError') {
        throw new SluiceError('SOURCE_CHANGED', `${this.name}: the file changed or became unreadable after it was opened`, { cause: e });
      }
      throw new SluiceError('IO_ERROR', `${this.name}: ${(e as Error)?.message ?? String(e)}`, { cause: e });
    }
    checkComplete(this, offset, length, bytes.byteLength);
    return into ? copyInto(into, new Uint8Array(bytes)) : new Uint8Array(bytes);
  }

  /** Drops the reference so the Blob can be collected; the data itself is the caller's. */
  async close(): Promise<void> {
    this.blob = null;
  }
}

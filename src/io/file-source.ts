import { open, type FileHandle } from 'node:fs/promises';
import { SluiceError } from '../errors.js';
import type { ByteSource } from './byte-source.js';
import { checkComplete, checkRange } from './range.js';

/**
 * A local file read with positional reads: never a whole-file buffer, no shared file
 * position, so concurrent reads are safe.
 */
export class FileSource implements ByteSource {
  private constructor(
    readonly name: string,
    readonly size: number,
    private handle: FileHandle | null,
  ) {}

  static async open(path: string): Promise<FileSource> {
    let handle: FileHandle;
    try {
      handle = await open(path, 'r');
    } catch (e) {
      throw fileError(path, e);
    }
    const stat = await handle.stat();
    if (!stat.isFile()) {
      await handle.close();
      throw new SluiceError('IO_ERROR', `${path}: not a regular file`);
    }
    return new FileSource(path, stat.size, handle);
  }

  async read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    const handle = this.handle;
    if (!handle) throw new SluiceError('IO_ERROR', `${this.name}: read after close`);
    checkRange(this, offset, length);
    if (into && into.length < length) throw new RangeError(`read destination of ${into.length} bytes is shorter than ${length}`);
    const out = into ? into.subarray(0, length) : new Uint8Array(length);
    let done = 0;
    // One pread may return less than asked (large reads, signals): loop until EOF.
    while (done < length) {
      const { bytesRead } = await handle.read(out, done, length - done, offset + done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    checkComplete(this, offset, length, done);
    return out;
  }

  async close(): Promise<void> {
    const handle = this.handle;
    this.handle = null;
    await handle?.close();
  }
}

/** Maps Node's file errors to one-line SluiceErrors naming the path. */
export function fileError(path: string, e: unknown): SluiceError {
  const code = (e as NodeJS.ErrnoException)?.code;
  if (code === 'ENOENT') return new SluiceError('NOT_FOUND', `${path}: no such file or directory`, { cause: e });
  if (code === 'EACCES' || code === 'EPERM') return new SluiceError('IO_ERROR', `${path}: permission denied`, { cause: e });
  if (code === 'EISDIR') return new SluiceError('IO_ERROR', `${path}: is a directory`, { cause: e });
  return new SluiceError('IO_ERROR', `${path}: ${(e as Error)?.message ?? String(e)}`, { cause: e });
}

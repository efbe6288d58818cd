// A local file read with positional reads: never a whole-file buffer, no shared file
// position, so concurrent reads are safe.
//
// Handles are a bounded resource: a checkpoint of 25,000 shards must not hold 25,000
// descriptors (EMFILE). Every FileSource takes its handle from one process-wide pool of at
// most MAX_OPEN_HANDLES; the least recently used idle handle is closed when a new one is
// needed, and reopened on that source's next read. A reopen must find the same file
// (device and inode) and the same size, else SOURCE_CHANGED: a path swapped meanwhile is
// never read as the file that was checked. (A file rewritten in place under an open
// handle is not caught by a handle either: that is what SOURCE_CHANGED on reads is for.)

import type { FileHandle } from 'node:fs/promises';
import { SluiceError } from '../errors.js';
import type { ByteSource } from './byte-source.js';
import { checkComplete, checkRange } from './range.js';
import { openRegularFile, type OpenRegularOptions } from './safe-open.js';

export { fileError } from './safe-open.js';

/** Open descriptors all FileSources of this process share (Node's soft limit is often 1024). */
export const MAX_OPEN_HANDLES = 128;

export class FileSource implements ByteSource {
  /** Open handle, or null when evicted (reopened on demand) or closed. */
  private handle: FileHandle | null;
  /** Reads in flight on `handle`: an in-use handle is never evicted. */
  private users = 0;
  private closed = false;

  private constructor(
    /** What messages and listings call the file (the path the user knows). */
    readonly name: string,
    /** What is opened: the same, or the resolved path inside a model folder. */
    private readonly path: string,
    readonly size: number,
    handle: FileHandle,
    private readonly identity: { dev: number; ino: number; ctimeMs: number },
    private readonly openOptions: OpenRegularOptions,
  ) {
    this.handle = handle;
  }

  /**
   * Opens a regular file (FIFOs, devices and sockets are refused without blocking).
   * `options.label` names it in messages and as `name`.
   */
  static async open(path: string, options: OpenRegularOptions = {}): Promise<FileSource> {
    const opened = await openRegularFile(path, options);
    const source = new FileSource(options.label ?? path, path, opened.size, opened.handle, opened, options);
    pool.opened(source);
    return source;
  }

  async read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    if (this.closed) throw new SluiceError('IO_ERROR', `${this.name}: read after close`);
    checkRange(this, offset, length);
    if (into && into.length < length) throw new RangeError(`read destination of ${into.length} bytes is shorter than ${length}`);
    const out = into ? into.subarray(0, length) : new Uint8Array(length);
    const handle = await this.acquire();
    let done = 0;
    try {
      // One pread may return less than asked (large reads, signals): loop until EOF.
      while (done < length) {
        const { bytesRead } = await handle.read(out, done, length - done, offset + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
    } finally {
      this.users--;
      pool.used(this);
    }
    checkComplete(this, offset, length, done);
    return out;
  }

  async close(): Promise<void> {
    this.closed = true;
    pool.forget(this);
    await this.release();
  }

  /** Closes the handle (idle ones only; the pool asks). The source stays usable. */
  async release(): Promise<void> {
    const handle = this.handle;
    this.handle = null;
    await handle?.close().catch(() => {});
  }

  get idle(): boolean {
    return this.handle !== null && this.users === 0;
  }

  private async acquire(): Promise<FileHandle> {
    this.users++;
    try {
      if (!this.handle) {
        const opened = await openRegularFile(this.path, this.openOptions);
        const same = opened.dev === this.identity.dev && opened.ino === this.identity.ino && opened.ctimeMs === this.identity.ctimeMs;
        if (!same || opened.size !== this.size) {
          await opened.handle.close();
          throw new SluiceError('SOURCE_CHANGED', `${this.name}: the file was replaced or resized since it was opened`);
        }
        if (this.closed) {
          await opened.handle.close();
          throw new SluiceError('IO_ERROR', `${this.name}: read after close`);
        }
        this.handle = opened.handle;
        pool.opened(this);
      }
      return this.handle;
    } catch (e) {
      this.users--;
      throw e;
    }
  }
}

/** The process-wide handle budget: sources with an open handle, least recently used first. */
class HandlePool {
  // A Map keeps insertion order: delete + set moves a source to the most recent end.
  private readonly open = new Map<FileSource, true>();

  constructor(private readonly max: number) {}

  opened(source: FileSource): void {
    this.open.delete(source);
    this.open.set(source, true);
    if (this.open.size <= this.max) return;
    for (const candidate of this.open.keys()) {
      if (this.open.size <= this.max) break;
      if (candidate === source || !candidate.idle) continue;
      this.open.delete(candidate);
      void candidate.release();
    }
  }

  used(source: FileSource): void {
    if (this.open.delete(source)) this.open.set(source, true);
  }

  forget(source: FileSource): void {
    this.open.delete(source);
  }

  get size(): number {
    return this.open.size;
  }
}

const pool = new HandlePool(MAX_OPEN_HANDLES);

/** Handles the pool holds open now (tests check the bound). */
export function openFileHandles(): number {
  return pool.size;
}

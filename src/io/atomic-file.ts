// Node: replacing a file so that a crash leaves either the old file or the new one, never
// a mix. The new content goes to a sibling temp file (same directory, so the rename stays
// on one filesystem), which is fsynced, renamed over the target, and then the directory
// is fsynced so the rename itself is durable.

import { randomBytes } from 'node:crypto';
import { type FileHandle, open, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { SluiceError, isSluiceError } from '../errors.js';
import { fileError } from './file-source.js';

export interface AtomicWriteOptions {
  /**
   * Permission bits of the new file. Default: those of the file being replaced, or
   * 0o666 less the umask for a new file.
   */
  mode?: number;
}

/** One positional write of at most this much: Node refuses single writes over 2 GiB. */
const MAX_WRITE = 1 << 30;

/**
 * The temp name for `path`: `.<base>.tmp-<pid>-<random>` in the same directory (`base`
 * cut to 200 characters so the name stays under the usual 255-byte limit).
 */
export function tempPathFor(path: string): string {
  return join(dirname(path), `.${basename(path).slice(0, 200)}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`);
}

/**
 * Writes `path` atomically: `write` fills a fresh temp file through its handle, which is
 * then fsynced, closed and renamed over `path`; the directory is fsynced last. On any
 * error (from `write` too) the temp file is removed and the error rethrown; `path` is
 * left as it was. Errors of Node's own file calls become SluiceErrors naming the file;
 * errors thrown by `write` pass through unchanged. Returns what `write` returns.
 */
export async function writeFileAtomic<T = void>(
  path: string,
  write: (handle: FileHandle) => Promise<T>,
  options: AtomicWriteOptions = {},
): Promise<T> {
  const temp = tempPathFor(path);
  const mode = options.mode ?? (await existingMode(path));
  let handle: FileHandle | null = null;
  let renamed = false;
  try {
    handle = await fsCall(temp, () => open(temp, 'wx', mode ?? 0o666));
    const h = handle;
    // open()'s mode passes through the umask; an explicit chmod keeps the old file's bits.
    if (mode !== undefined) await fsCall(temp, () => h.chmod(mode));
    const result = await write(h);
    await fsCall(temp, () => h.sync());
    handle = null;
    await fsCall(temp, () => h.close());
    await fsCall(path, () => rename(temp, path));
    renamed = true;
    await fsyncDir(dirname(path));
    return result;
  } catch (e) {
    await handle?.close().catch(() => {});
    if (!renamed) await unlink(temp).catch(() => {});
    throw e;
  }
}

/**
 * Makes a directory's entries (a rename, a new or removed file) durable. A no-op where the
 * platform cannot open or sync a directory (Windows, some network filesystems).
 */
export async function fsyncDir(dir: string): Promise<void> {
  let handle: FileHandle | null = null;
  try {
    handle = await open(dir, 'r');
    await handle.sync();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException)?.code;
    if (!code || !UNSYNCABLE_DIR.has(code)) throw fileError(dir, e);
  } finally {
    await handle?.close().catch(() => {});
  }
}

const UNSYNCABLE_DIR = new Set(['EISDIR', 'EPERM', 'EACCES', 'EINVAL', 'ENOTSUP', 'EOPNOTSUPP', 'EBADF']);

/**
 * Writes all of `bytes` at `position` (or at the handle's current position when null),
 * looping over short writes and splitting writes over 1 GiB. Failures are SluiceErrors
 * naming `name` (the file's path).
 */
export async function writeAll(handle: FileHandle, bytes: Uint8Array, position: number | null, name = 'file'): Promise<void> {
  let done = 0;
  while (done < bytes.byteLength) {
    const length = Math.min(bytes.byteLength - done, MAX_WRITE);
    const at = position === null ? null : position + done;
    const { bytesWritten } = await fsCall(name, () => handle.write(bytes, done, length, at));
    if (bytesWritten <= 0) throw new SluiceError('IO_ERROR', `${name}: a write made no progress at byte ${done} of ${bytes.byteLength}`);
    done += bytesWritten;
  }
}

/** The permission bits of an existing file, or undefined when there is none. */
async function existingMode(path: string): Promise<number | undefined> {
  try {
    return (await stat(path)).mode & 0o7777;
  } catch {
    return undefined;
  }
}

async function fsCall<T>(path: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (e) {
    throw isSluiceError(e) ? e : fileError(path, e);
  }
}

// Node: opening files a model folder names without trusting what they are. A name in an
// untrusted folder may be a FIFO (an open for reading blocks until a writer comes, i.e.
// forever), a device (endless bytes) or a socket; and a symlink may be swapped between a
// check and the open. So files are opened with O_NONBLOCK (which only matters for FIFOs
// and devices: reads of regular files are unaffected) and checked with fstat on the open
// handle itself, never with a stat of the path before it.

import { constants } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import { SluiceError } from '../errors.js';
import { formatBytes } from '../units.js';

export interface OpenRegularOptions {
  /** Open for writing too ('r+'). */
  write?: boolean;
  /** Refuse a symlink as the last path component (ELOOP) instead of following it. */
  noFollow?: boolean;
  /** The name errors give (default `path`): the path the user knows, not a resolved one. */
  label?: string;
}

export interface OpenedFile {
  handle: FileHandle;
  size: number;
  /**
   * The file's identity, to tell a reopened path from a swapped one: device and inode,
   * and the change time, since a deleted file's inode number is often reused at once.
   */
  dev: number;
  ino: number;
  ctimeMs: number;
}

/** Opens `path` if it is a regular file; anything else is refused without blocking. */
export async function openRegularFile(path: string, options: OpenRegularOptions = {}): Promise<OpenedFile> {
  const flags =
    (options.write ? constants.O_RDWR : constants.O_RDONLY) | constants.O_NONBLOCK | (options.noFollow ? constants.O_NOFOLLOW : 0);
  const label = options.label ?? path;
  let handle: FileHandle;
  try {
    handle = await open(path, flags);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ELOOP' && options.noFollow) {
      throw new SluiceError('UNSAFE_PATH', `${label}: is a symlink; refusing to follow it here`, { cause: e });
    }
    throw fileError(label, e);
  }
  const stat = await handle.stat().catch(async (e: unknown) => {
    await handle.close();
    throw fileError(label, e);
  });
  if (!stat.isFile()) {
    await handle.close();
    throw new SluiceError('IO_ERROR', `${label}: not a regular file (${kindOf(stat)})`);
  }
  return { handle, size: stat.size, dev: stat.dev, ino: stat.ino, ctimeMs: stat.ctimeMs };
}

/**
 * The bytes of a small regular file (a config, a lock, a transaction record), refusing
 * one over `maxBytes` before reading it.
 */
export async function readSmallFile(path: string, maxBytes: number, options: OpenRegularOptions = {}): Promise<Buffer> {
  const { handle, size } = await openRegularFile(path, options);
  try {
    if (size > maxBytes) {
      throw new SluiceError('IO_ERROR', `${options.label ?? path}: ${formatBytes(size)} is too large for this file (at most ${formatBytes(maxBytes)})`);
    }
    const out = Buffer.allocUnsafe(size);
    let done = 0;
    while (done < size) {
      const { bytesRead } = await handle.read(out, done, size - done, done);
      if (bytesRead === 0) break; // shrank meanwhile: what there is
      done += bytesRead;
    }
    return out.subarray(0, done);
  } finally {
    await handle.close();
  }
}

function kindOf(stat: { isDirectory(): boolean; isFIFO(): boolean; isSocket(): boolean; isCharacterDevice(): boolean; isBlockDevice(): boolean }): string {
  if (stat.isDirectory()) return 'a directory';
  if (stat.isFIFO()) return 'a FIFO';
  if (stat.isSocket()) return 'a socket';
  if (stat.isCharacterDevice() || stat.isBlockDevice()) return 'a device';
  return 'not a file';
}

/** Maps Node's file errors to one-line SluiceErrors naming the path. */
export function fileError(path: string, e: unknown): SluiceError {
  if (e instanceof SluiceError) return e;
  const code = (e as NodeJS.ErrnoException)?.code;
  if (code === 'ENOENT') return new SluiceError('NOT_FOUND', `${path}: no such file or directory`, { cause: e });
  if (code === 'EACCES' || code === 'EPERM') return new SluiceError('IO_ERROR', `${path}: permission denied`, { cause: e });
  if (code === 'EISDIR') return new SluiceError('IO_ERROR', `${path}: is a directory`, { cause: e });
  if (code === 'EMFILE' || code === 'ENFILE') return new SluiceError('IO_ERROR', `${path}: too many open files`, { cause: e });
  return new SluiceError('IO_ERROR', `${path}: ${(e as Error)?.message ?? String(e)}`, { cause: e });
}

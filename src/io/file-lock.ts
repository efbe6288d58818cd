// An exclusive, cross-process lock on a file: `<file>.lock`, holding who took it.
//
// Taking it: the content is written to a private temp file first and then hard-linked to
// the lock name. link() fails with EEXIST when the lock exists, so the lock appears
// atomically and always with its content (no window where it exists but is empty).
//
// Stale locks: a lock whose process is gone (same host, pid not alive) is broken. Two
// waiters may both see the same stale lock; each renames it aside first and only deletes
// what it renamed if that is still the stale lock it saw, so a fresh lock taken meanwhile
// by a third process is put back rather than deleted.

import { link, rename, unlink, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { basename } from 'node:path';
import { SluiceError } from '../errors.js';
import { readSmallFile } from './safe-open.js';

export interface LockOptions {
  /** Give up after this long (default 60 s) with LOCKED. */
  timeoutMs?: number;
  /** Called once when the lock is busy and we start waiting. */
  onWait?: (holder: LockOwner) => void;
}

export interface LockOwner {
  pid: number;
  host: string;
  since: string;
  token: string;
}

export interface FileLock {
  readonly path: string;
  release(): Promise<void>;
}

const POLL_MIN_MS = 5;
const POLL_MAX_MS = 100;

/** Locks in this process, so two async callers of one process also take turns. */
const local = new Map<string, Promise<void>>();

export function lockPathOf(file: string): string {
  return `${file}.lock`;
}

export async function acquireLock(file: string, options: LockOptions = {}): Promise<FileLock> {
  const path = lockPathOf(file);
  // In-process queue first: the file lock below cannot tell our own callers apart.
  const previous = local.get(path) ?? Promise.resolve();
  let releaseLocal!: () => void;
  const mine = new Promise<void>((resolve) => (releaseLocal = resolve));
  const chained = previous.then(() => mine);
  local.set(path, chained);
  // One deadline for both waits: a caller of this process holding the lock counts too.
  const deadline = Date.now() + (options.timeoutMs ?? 60_000);
  try {
    if (!(await settlesBefore(previous, deadline))) throw lockedError(path, await readOwner(path));
    const owner = await takeFileLock(path, options, deadline);
    return {
      path,
      release: async () => {
        await releaseFileLock(path, owner);
        releaseLocal();
        if (local.get(path) === chained) local.delete(path);
      },
    };
  } catch (e) {
    // Those queued behind us now wait only for `previous` (chained settles with it).
    releaseLocal();
    void chained.then(() => local.get(path) === chained && local.delete(path));
    throw e;
  }
}

/** Whether `p` settles before `deadline` (ms since the epoch). */
async function settlesBefore(p: Promise<void>, deadline: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), Math.max(0, deadline - Date.now()))));
  try {
    return await Promise.race([p.then(() => true), late]);
  } finally {
    clearTimeout(timer);
  }
}

function lockedError(path: string, holder: LockOwner | null): SluiceError {
  const who = holder ? `process ${holder.pid} on ${holder.host} since ${holder.since}` : 'another process';
  return new SluiceError('LOCKED', `${path.slice(0, -'.lock'.length)}: locked by ${who}; try again later, or remove ${basename(path)} if that process is gone`);
}

/** Runs `body` holding the lock of `file`. */
export async function withLock<T>(file: string, body: () => Promise<T>, options?: LockOptions): Promise<T> {
  const lock = await acquireLock(file, options);
  try {
    return await body();
  } finally {
    await lock.release();
  }
}

async function takeFileLock(path: string, options: LockOptions, deadline: number): Promise<LockOwner> {
  const owner: LockOwner = {
    pid: process.pid,
    host: hostname(),
    since: new Date().toISOString(),
    token: Math.random().toString(36).slice(2),
  };
  const temp = `${path}.${owner.pid}.${owner.token}`;
  await writeFile(temp, JSON.stringify(owner));
  let delay = POLL_MIN_MS;
  let warned = false;
  try {
    for (;;) {
      try {
        await link(temp, path);
        return owner;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
      const holder = await readOwner(path);
      if (holder && isStale(holder)) {
        await breakStale(path, holder);
        continue;
      }
      if (Date.now() > deadline) throw lockedError(path, holder);
      if (holder && !warned) {
        warned = true;
        options.onWait?.(holder);
      }
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, POLL_MAX_MS);
    }
  } finally {
    await unlink(temp).catch(() => {});
  }
}

async function releaseFileLock(path: string, owner: LockOwner): Promise<void> {
  // Only remove it if it is still ours (it could have been broken as stale by mistake).
  const holder = await readOwner(path);
  if (holder?.token === owner.token && holder.pid === owner.pid) await unlink(path).catch(() => {});
}

/**
 * Whether `file`'s lock is held by a live process, without taking it. An unreadable lock is
 * not held: a real one is always written whole (see above), so only a stray file is.
 */
export async function isLockHeld(file: string): Promise<boolean> {
  const owner = await readOwner(lockPathOf(file));
  return owner !== null && !isStale(owner);
}

/** Bytes a lock file has: one small JSON object. */
const MAX_LOCK_BYTES = 4096;

async function readOwner(path: string): Promise<LockOwner | null> {
  try {
    // A lock file sits in a folder that may be untrusted: never a FIFO or a symlink.
    const parsed = JSON.parse((await readSmallFile(path, MAX_LOCK_BYTES, { noFollow: true })).toString('utf8')) as LockOwner;
    return typeof parsed.pid === 'number' && typeof parsed.token === 'string' ? parsed : null;
  } catch {
    return null; // vanished meanwhile, or not ours to understand: treat as held
  }
}

function isStale(owner: LockOwner): boolean {
  if (owner.host !== hostname()) return false; // cannot see another machine's processes
  try {
    process.kill(owner.pid, 0);
    return false;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

async function breakStale(path: string, stale: LockOwner): Promise<void> {
  const aside = `${path}.stale-${process.pid}-${Math.random().toString(36).slice(2)}`;
  try {
    await rename(path, aside);
  } catch {
    return; // someone else broke it first
  }
  const moved = await readOwner(aside);
  if (moved && moved.token !== stale.token) {
    // We moved a fresh lock taken after we looked: put it back (unless yet another exists).
    await link(aside, path).catch(() => {});
  }
  await unlink(aside).catch(() => {});
}

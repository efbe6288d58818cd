// One repo file → the HF cache, as huggingface_hub lays it out:
//   blobs/<etag>                      the bytes (etag = LFS sha256, else the git blob sha1)
//   blobs/<etag>.incomplete           a download in progress
//   snapshots/<commit>/<path>         a relative symlink to ../../blobs/<etag>
//
// `@huggingface/hub` finds the file (fileDownloadInfo: the resolve URL, its size, a Xet
// reconstruction when the Hub stores it so) and streams it (downloadFile → a Blob whose
// slice() turns into a Range request). Its own downloadFileToCacheDir is not used: it
// restarts `.incomplete` from zero, checks neither size nor hash, and logs to the
// console. What this file adds:
//   resume    an `.incomplete` left by an interrupted run is continued with
//             blob.slice(bytesAlready) (a Range request); within a run, a dropped
//             connection is retried the same way a few times
//   verify    size always; sha256 against the listing's lfs.oid for LFS files, git's blob
//             sha1 against its oid for the others (size only for a Xet file listed without
//             an lfs entry). A mismatch deletes the partial file and fails naming the file:
//             nothing unverified ever becomes a blob
//   lock      one process per blob (<cache>/.locks/models--org--name/<etag>.sluice.lock),
//             so two pulls of one model never append to the same partial file

import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, mkdir, open, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { dirname, isAbsolute, join, normalize, relative } from 'node:path';
import { downloadFile, fileDownloadInfo, type FileDownloadInfoOutput } from '@huggingface/hub';
import { isSluiceError, SluiceError } from '../errors.js';
import { withLock } from '../io/file-lock.js';
import type { RepoFile } from './file-choice.js';
import type { HubContext } from './hub-fetch.js';

export interface FetchTarget {
  ctx: HubContext;
  fetch: typeof fetch;
  commit: string;
  /** `<cache>/models--org--name`. */
  storage: string;
  /** `<cache>/.locks/models--org--name`. */
  locks: string;
  /** Attempts after the first when the connection drops (default 3). */
  retries?: number;
  /** Wait before retry n: n × this (default 500 ms). */
  retryDelayMs?: number;
  /** Bytes of this file present so far (the resumed part included). */
  onBytes?: (done: number) => void;
  /** Said when another process holds this file's lock. */
  onNote?: (note: string) => void;
}

export interface FetchedFile {
  path: string;
  size: number;
  /** The blob the snapshot's symlink points at. */
  blob: string;
  /** False: the blob was already in the cache, nothing was fetched. */
  downloaded: boolean;
  /** Bytes an interrupted download had left, continued rather than fetched again. */
  resumedFrom: number;
  verified: 'sha256' | 'git-sha1' | 'size';
}

/** Codes no retry can fix. */
const FINAL = ['ACCESS_DENIED', 'NOT_FOUND', 'CHECKSUM_MISMATCH', 'USAGE'] as const;
/** Long enough for another process to finish a large file; under setTimeout's 2^31 ms. */
const LOCK_WAIT_MS = 12 * 3600_000;

export async function fetchFile(file: RepoFile, t: FetchTarget): Promise<FetchedFile> {
  const etag = file.lfs?.oid ?? file.xetHash ?? file.oid; // the library's choice of blob name
  if (!etag || !/^[\w-]+$/.test(etag)) throw new SluiceError('INVALID_INDEX', `${t.ctx.repo}: ${file.path}: the Hub's listing gives no usable hash to name its blob`);
  const pointer = join(t.storage, 'snapshots', t.commit, checkedRelative(t.ctx.repo, file.path));
  const blob = join(t.storage, 'blobs', etag);
  const size = file.lfs?.size ?? file.size;
  const verified = file.lfs ? 'sha256' : gitOidOf(file) ? 'git-sha1' : 'size';
  const result = { path: file.path, size, blob, verified } as const;

  // Already complete (this revision, or the same bytes under another): nothing to fetch.
  if ((await sizeOf(pointer)) === size) return { ...result, downloaded: false, resumedFrom: 0 };
  await mkdir(dirname(blob), { recursive: true });
  await mkdir(dirname(pointer), { recursive: true });
  await mkdir(t.locks, { recursive: true });
  const fetched = await withLock(
    join(t.locks, `${etag}.sluice`),
    async () => {
      if ((await sizeOf(blob)) === size) return { downloaded: false, resumedFrom: 0 };
      await rm(blob, { force: true }); // a wrong-sized blob (cut short outside sluice) is not trusted
      return { downloaded: true, resumedFrom: await download(file, size, blob, t) };
    },
    { timeoutMs: LOCK_WAIT_MS, onWait: (h) => t.onNote?.(`${file.path}: waiting for process ${h.pid}, which is downloading it too`) },
  );
  await linkPointer(pointer, blob);
  return { ...result, ...fetched };
}

/** Downloads into `<blob>.incomplete` (continuing what is there), verifies, renames. Returns the bytes resumed. */
async function download(file: RepoFile, size: number, blob: string, t: FetchTarget): Promise<number> {
  const where = `${t.ctx.repo}: ${file.path}`;
  const partial = `${blob}.incomplete`;
  const retries = t.retries ?? 3;
  let info: FileDownloadInfoOutput | null = null;
  let resumedFrom = -1;
  for (let attempt = 0; ; attempt++) {
    let have = (await sizeOf(partial)) ?? 0;
    if (have > size) {
      await rm(partial, { force: true });
      have = 0;
    }
    if (resumedFrom < 0) resumedFrom = have;
    const hash = hasher(file, size);
    try {
      await hashPrefix(partial, have, hash);
      t.onBytes?.(have);
      if (have < size) {
        info ??= await fileDownloadInfo({ repo: { type: 'model', name: t.ctx.repo }, path: file.path, revision: t.commit, hubUrl: t.ctx.endpoint, accessToken: t.ctx.token, fetch: t.fetch });
        if (!info) throw new SluiceError('NOT_FOUND', `${where}: not found on the Hub at ${t.commit}`);
        if (info.size !== size) throw new SluiceError('CHECKSUM_MISMATCH', `${where}: the Hub lists ${size} bytes but serves ${info.size}`);
        const remote = await downloadFile({ repo: { type: 'model', name: t.ctx.repo }, path: file.path, revision: t.commit, hubUrl: t.ctx.endpoint, accessToken: t.ctx.token, fetch: t.fetch, downloadInfo: info });
        if (!remote) throw new SluiceError('NOT_FOUND', `${where}: not found on the Hub at ${t.commit}`);
        have = await append(remote.slice(have).stream(), partial, have, size, hash, t.onBytes);
        if (have < size) throw new Error(`the connection closed after ${have} bytes`);
      }
      if (size === 0) await writeFile(partial, new Uint8Array()); // nothing to fetch; the (empty) bytes still get their hash checked
      check(where, file, hash);
      await rename(partial, blob);
      return resumedFrom;
    } catch (e) {
      // A corrupt download goes, so nothing unverified stays; so does one the server sent
      // whole although a Range was asked (it is appended to the wrong place): start over.
      if (e instanceof Overflow || isSluiceError(e, 'CHECKSUM_MISMATCH')) await rm(partial, { force: true });
      if (FINAL.some((code) => isSluiceError(e, code))) throw e;
      if (attempt < retries) {
        await new Promise((r) => setTimeout(r, (attempt + 1) * (t.retryDelayMs ?? 500)));
        continue;
      }
      const got = (await sizeOf(partial)) ?? 0;
      throw new SluiceError(
        'HTTP_ERROR',
        `${where}: download interrupted at ${got} of ${size} bytes after ${attempt + 1} attempts (${reason(e)}); the part is kept, run the pull again to resume`,
        { cause: e },
      );
    }
  }
}

class Overflow extends Error {}

/** Appends the stream to `partial`, hashing as it goes; returns the bytes now in the file. */
async function append(stream: ReadableStream<Uint8Array>, partial: string, have: number, size: number, hash: Hash, onBytes?: (n: number) => void): Promise<number> {
  const reader = stream.getReader();
  const out = await open(partial, 'a');
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return have;
      if (have + value.length > size) throw new Overflow(`more than the ${size} bytes listed arrived`);
      await out.write(value);
      hash.update(value);
      have += value.length;
      onBytes?.(have);
    }
  } catch (e) {
    await reader.cancel().catch(() => {}); // stop the transfer we no longer read
    throw e;
  } finally {
    await out.close();
    reader.releaseLock();
  }
}

function hasher(file: RepoFile, size: number): Hash {
  if (file.lfs) return createHash('sha256');
  // git's object id: sha1 over "blob <size>\0" and the bytes.
  return createHash('sha1').update(`blob ${size}\0`);
}

function check(where: string, file: RepoFile, hash: Hash): void {
  const want = file.lfs?.oid ?? gitOidOf(file);
  if (!want) return; // size only: the listing gives no content hash (checked by the byte count)
  const got = hash.digest('hex');
  if (got !== want) {
    const kind = file.lfs ? 'sha256' : 'git sha1';
    throw new SluiceError('CHECKSUM_MISMATCH', `${where}: corrupt download: ${kind} ${got.slice(0, 16)}… differs from the Hub's ${want.slice(0, 16)}…; discarded, run the pull again`);
  }
}

/**
 * The git blob id to check a non-LFS file against. Not for a Xet file the listing gives no
 * lfs entry for: its oid is then that of a pointer, not of the bytes (size only).
 */
function gitOidOf(file: RepoFile): string | undefined {
  return !file.xetHash && file.oid && /^[0-9a-f]{40}$/.test(file.oid) ? file.oid : undefined;
}

async function hashPrefix(path: string, bytes: number, hash: Hash): Promise<void> {
  if (bytes === 0) return;
  for await (const chunk of createReadStream(path, { start: 0, end: bytes - 1 })) hash.update(chunk as Buffer);
}

async function linkPointer(pointer: string, blob: string): Promise<void> {
  await rm(pointer, { force: true });
  try {
    await symlink(relative(dirname(pointer), blob), pointer);
  } catch {
    await copyFile(blob, pointer); // no symlinks (Windows without developer mode): a copy, as huggingface_hub does
  }
}

async function sizeOf(path: string): Promise<number | null> {
  try {
    return (await stat(path)).size;
  } catch {
    return null;
  }
}

/** A listed path, refused if it would leave the snapshot folder. */
function checkedRelative(repo: string, path: string): string {
  const n = normalize(path);
  if (path === '' || isAbsolute(path) || n.startsWith('..') || path.includes('\0')) {
    throw new SluiceError('INVALID_INDEX', `${repo}: the Hub lists a file outside the repo: ${JSON.stringify(path)}`);
  }
  return n;
}

function reason(e: unknown): string {
  if (typeof e === 'string') return e;
  const err = e as Error & { cause?: { code?: string; message?: string } };
  return err.cause?.code ?? err.cause?.message ?? err.message ?? String(e);
}

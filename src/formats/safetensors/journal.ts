// The rollback journal of an in-place update (like SQLite's rollback journal).
//
// Before any byte of FILE is overwritten, the original bytes of every range to be written
// go to `FILE.sluice-journal`: written under a temp name, fsynced, then renamed into place
// and the directory fsynced, so a journal under its real name is always complete. A
// journal that exists means "FILE may be half-updated: put these bytes back".
//
// Layout (all little-endian):
//   "SLUICEJ1"                      8-byte magic
//   u32 H                           header length
//   H bytes of JSON                 {version, target, fileSize, txn, ranges: [{offset, length, crc32}]}
//   original bytes of each range, back to back
//   32-byte sha256 of the magic, length and header
// The trailing digest seals the header, and the header's per-range CRC-32s seal the data,
// so together they tell a torn or corrupted journal from a complete one; `target` and
// `fileSize` tell a foreign one (another file's, or a file changed since). CRC-32, not a
// cryptographic hash, for the data: it catches torn and corrupted writes, which is its job
// here, at 6 GB/s against sha256's 2.5 GB/s, and the journal is on an update's hot path.
//
// One pass: the originals are copied and checksummed together, and the header (whose
// length does not depend on the checksum values) is written after the data it describes.

import { createHash } from 'node:crypto';
import { type FileHandle, lstat, open, readdir, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { crc32 } from 'node:zlib';
import { isSluiceError, quote, SluiceError } from '../../errors.js';
import { fsyncDir, writeAll } from '../../io/atomic-file.js';
import { openRegularFile } from '../../io/safe-open.js';

export const JOURNAL_SUFFIX = '.sluice-journal';
const MAGIC = 'SLUICEJ1';
const MAX_JOURNAL_HEADER = 16 * 1024 * 1024;
const DIGEST_BYTES = 32;
/** Bytes copied per step, so journaling a multi-GB tensor needs one chunk of memory. */
export const COPY_CHUNK = 8 * 1024 * 1024;

export interface ByteRange {
  offset: number;
  length: number;
}

export interface JournalHeader {
  version: 1;
  /** Base name of the file this journal restores. */
  target: string;
  /** Its size: in-place updates never change it. */
  fileSize: number;
  /** Base name of the multi-file transaction record, or null for a one-file update. */
  txn: string | null;
  ranges: Array<ByteRange & { crc32: number }>;
}

export interface Journal {
  path: string;
  header: JournalHeader;
  /** Where the original bytes start in the journal file. */
  dataStart: number;
}

export function journalPathOf(file: string): string {
  return `${file}${JOURNAL_SUFFIX}`;
}

/** Copies the current bytes of `ranges` of `file` into its journal, durably. */
export async function writeJournal(file: string, target: FileHandle, ranges: ByteRange[], txn: string | null): Promise<void> {
  const fileSize = (await target.stat()).size;
  const headerFor = (crcs: number[]): Buffer => {
    const header: JournalHeader = {
      version: 1,
      target: basename(file),
      fileSize,
      txn,
      ranges: ranges.map((r, i) => ({ offset: r.offset, length: r.length, crc32: crcs[i] })),
    };
    return Buffer.from(JSON.stringify(header));
  };
  // The header's length must not depend on the checksums: they are written as fixed-width
  // numbers (10 digits at most), so a placeholder of 4294967295 gives the final length and
  // the real header is padded with spaces to it.
  const headerLength = headerFor(ranges.map(() => 0xffffffff)).length;
  const dataStart = 12 + headerLength;

  const path = journalPathOf(file);
  const temp = `${path}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
  const out = await open(temp, 'wx');
  try {
    const crcs: number[] = [];
    let at = dataStart;
    for (const r of ranges) {
      let crc = 0;
      await copyChunks(target, r.offset, r.length, async (chunk) => {
        crc = crc32(chunk, crc);
        await writeAll(out, chunk, at);
        at += chunk.byteLength;
      });
      crcs.push(crc);
    }
    const header = Buffer.alloc(headerLength, ' ');
    headerFor(crcs).copy(header);
    const sealed = Buffer.concat([journalPrefix(headerLength), header]);
    await writeAll(out, sealed, 0);
    await writeAll(out, createHash('sha256').update(sealed).digest(), at);
    await out.sync();
  } catch (e) {
    await out.close().catch(() => {});
    await unlink(temp).catch(() => {});
    throw e;
  }
  await out.close();
  await rename(temp, path);
  await fsyncDir(dirname(path));
}

function journalPrefix(headerLength: number): Buffer {
  const prefix = Buffer.alloc(12);
  prefix.write(MAGIC, 0, 'latin1');
  prefix.writeUInt32LE(headerLength, 8);
  return prefix;
}

/**
 * The journal of `file`, fully validated, or null when there is none. A journal that is
 * torn, corrupted, forged or belongs to another file throws JOURNAL_INVALID and changes
 * nothing. Neither the journal nor `file` may be a symlink or anything but a regular file:
 * a journal is untrusted input (a model folder may come with one), and rolling back
 * "through" a symlink would write to whatever it points at.
 */
export async function readJournal(file: string): Promise<Journal | null> {
  const path = journalPathOf(file);
  const bad = (what: string): never => {
    throw new SluiceError('JOURNAL_INVALID', `${path}: ${what}; ${basename(file)} was left as it is (move the journal away once you have checked the file)`);
  };
  let opened;
  try {
    opened = await openRegularFile(path, { noFollow: true });
  } catch (e) {
    if (isSluiceError(e, 'NOT_FOUND')) return null;
    return bad(isSluiceError(e) ? e.message.slice(path.length + 2) : String(e));
  }
  const { handle, size } = opened;
  try {
    if (size < 12 + DIGEST_BYTES) bad('torn journal (too short)');
    const prefix = await readExactly(handle, 0, 12);
    if (prefix.toString('latin1', 0, 8) !== MAGIC) bad('not a sluice journal (bad magic)');
    const h = prefix.readUInt32LE(8);
    if (h > MAX_JOURNAL_HEADER || 12 + h + DIGEST_BYTES > size) bad('torn journal (header length)');
    const sealed = await readExactly(handle, 0, 12 + h);
    const trailer = await readExactly(handle, size - DIGEST_BYTES, DIGEST_BYTES);
    if (!createHash('sha256').update(sealed).digest().equals(trailer)) bad('torn or corrupted journal (header checksum mismatch)');
    let parsed: unknown;
    try {
      parsed = JSON.parse(sealed.subarray(12).toString('utf8'));
    } catch {
      return bad('journal header is not JSON');
    }
    const header = checkHeader(parsed, bad);
    if (header.target !== basename(file)) bad(`journal belongs to ${quote(header.target)}, not this file`);
    const fileSize = await regularFileSize(file, bad);
    if (header.fileSize !== fileSize) bad(`journal is for a file of ${header.fileSize} bytes, this one has ${fileSize}`);
    let total = 0;
    for (const r of header.ranges) {
      if (r.offset + r.length > fileSize) bad(`journal range at ${r.offset} (${r.length} bytes) is outside the file`);
      total += r.length;
    }
    if (12 + h + total + DIGEST_BYTES !== size) bad('journal data length does not match its ranges');
    // The data, range by range, against the checksums the sealed header holds.
    let at = 12 + h;
    for (const r of header.ranges) {
      let crc = 0;
      await copyChunks(handle, at, r.length, (chunk) => void (crc = crc32(chunk, crc)));
      if (crc !== r.crc32) bad(`torn or corrupted journal (range at ${r.offset} does not match its checksum)`);
      at += r.length;
    }
    return { path, header, dataStart: 12 + h };
  } finally {
    await handle.close();
  }
}

/**
 * A transaction record's name (commitInPlace makes `.sluice-txn-<pid>-<random>.json`): a
 * forged journal cannot name, say, package.json as its record and have recovery delete it.
 */
export const TXN_RECORD_NAME = /^\.sluice-txn-[\w-]+\.json$/;

/** The parsed header, every field checked for type and range (the seal proves only that it is whole). */
function checkHeader(value: unknown, bad: (what: string) => never): JournalHeader {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return bad('journal header is not an object');
  const h = value as Record<string, unknown>;
  if (h.version !== 1) bad(`unknown journal version ${quote(String(h.version))}`);
  if (typeof h.target !== 'string' || h.target === '') bad('journal header names no target file');
  if (!Number.isSafeInteger(h.fileSize) || (h.fileSize as number) < 0) bad('journal header has no valid file size');
  // The record is a sibling of this file or, for shards in subfolders, of the index: a
  // relative path ending in a record name. Where it may point is checked by the recovery.
  const txn = h.txn;
  if (txn !== null && (typeof txn !== 'string' || !TXN_RECORD_NAME.test(txn.split('/').pop()!))) {
    bad(`journal names ${quote(String(txn))} as its transaction record, which is not a record name`);
  }
  if (!Array.isArray(h.ranges)) return bad('journal header has no ranges');
  const u32 = (n: unknown) => Number.isInteger(n) && (n as number) >= 0 && (n as number) <= 0xffffffff;
  for (const r of h.ranges as unknown[]) {
    const range = r as Record<string, unknown> | null;
    const ok =
      typeof range === 'object' && range !== null &&
      Number.isSafeInteger(range.offset) && (range.offset as number) >= 0 &&
      Number.isSafeInteger(range.length) && (range.length as number) >= 0 &&
      u32(range.crc32);
    if (!ok) bad(`journal range ${quote(JSON.stringify(r) ?? String(r))} is not {offset, length, crc32}`);
  }
  return h as unknown as JournalHeader;
}

/** Size of `file`, which must be a regular file and not a symlink. */
async function regularFileSize(file: string, bad: (what: string) => never): Promise<number> {
  const info = await lstat(file).catch(() => bad(`${basename(file)} is missing`));
  if (info.isSymbolicLink()) bad(`${basename(file)} is a symlink; refusing to roll back through it`);
  if (!info.isFile()) bad(`${basename(file)} is not a regular file`);
  return info.size;
}

/** Writes the journaled original bytes back into `file` and fsyncs it. Idempotent. */
export async function rollBack(file: string, journal: Journal): Promise<number> {
  // No symlink at either end (a swap since readJournal looked), and the same file size.
  const source = (await openRegularFile(journal.path, { noFollow: true })).handle;
  let target: FileHandle;
  try {
    const opened = await openRegularFile(file, { write: true, noFollow: true });
    target = opened.handle;
    if (opened.size !== journal.header.fileSize) {
      await target.close();
      throw new SluiceError('JOURNAL_INVALID', `${journal.path}: ${basename(file)} changed size since its journal was checked; left as it is`);
    }
  } catch (e) {
    await source.close();
    throw e;
  }
  let bytes = 0;
  try {
    let at = journal.dataStart;
    for (const r of journal.header.ranges) {
      let crc = 0;
      let done = 0;
      await copyChunks(source, at, r.length, async (chunk) => {
        crc = crc32(chunk, crc);
        await writeAll(target, chunk, r.offset + done);
        done += chunk.byteLength;
      });
      if (crc !== r.crc32) {
        throw new SluiceError('JOURNAL_INVALID', `${journal.path}: range at ${r.offset} does not match its checksum`);
      }
      at += r.length;
      bytes += r.length;
    }
    await target.sync();
  } finally {
    await source.close();
    await target.close();
  }
  return bytes;
}

/**
 * Removes journal temp files an update killed mid-journal left (as large as what it was
 * replacing). Only under the lock of `file`: then no one can be writing one.
 */
export async function removeJournalTemps(file: string): Promise<void> {
  const prefix = `${basename(journalPathOf(file))}.tmp-`;
  const dir = dirname(file);
  for (const name of await readdir(dir)) {
    if (name.startsWith(prefix)) await unlink(join(dir, name)).catch(() => {});
  }
}

export async function removeJournal(file: string): Promise<void> {
  await unlink(journalPathOf(file)).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== 'ENOENT') throw e;
  });
  await fsyncDir(dirname(file));
}

/** Calls `onChunk` with successive chunks of [offset, offset + length) of `handle`. */
export async function copyChunks(
  handle: FileHandle,
  offset: number,
  length: number,
  onChunk: (chunk: Buffer) => void | Promise<void>,
): Promise<void> {
  const buffer = Buffer.allocUnsafe(Math.min(COPY_CHUNK, Math.max(length, 1)));
  for (let done = 0; done < length; ) {
    const n = Math.min(buffer.length, length - done);
    const chunk = await readExactly(handle, offset + done, n, buffer);
    await onChunk(chunk);
    done += n;
  }
}

async function readExactly(handle: FileHandle, offset: number, length: number, into?: Buffer): Promise<Buffer> {
  const buffer = into ?? Buffer.allocUnsafe(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(buffer, done, length - done, offset + done);
    if (bytesRead === 0) throw new SluiceError('SOURCE_CHANGED', `unexpected end of file at offset ${offset + done}`);
    done += bytesRead;
  }
  return buffer.subarray(0, length);
}

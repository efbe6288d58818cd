// Crash-safe in-place writes to one or several files, all or nothing.
//
// One file:  journal (durable) → overwrite → fsync → delete journal. Deleting the journal
//            is the commit; a crash before it rolls back, after it keeps the new bytes.
// Several:   a transaction record `.sluice-txn-<id>.json` is written first, each file's
//            journal names it, and deleting the record is the single commit point. A
//            journal whose record is gone belongs to a committed update: it is discarded,
//            not replayed. Recovering any file of an uncommitted transaction rolls that file
//            back; the record goes once no journal of it is left.
//
// Callers hold the files' locks (file-lock.ts). Readers never recover: see checkNoPendingUpdate.

import { lstat, unlink } from 'node:fs/promises';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { isSluiceError, quote, SluiceError } from '../../errors.js';
import { fsyncDir, writeAll, writeFileAtomic } from '../../io/atomic-file.js';
import { isLockHeld } from '../../io/file-lock.js';
import { isInside } from '../../io/model-folder.js';
import { openRegularFile, readSmallFile } from '../../io/safe-open.js';
import { type ByteRange, journalPathOf, readJournal, removeJournal, removeJournalTemps, rollBack, writeJournal } from './journal.js';

/** Bytes to put at `offset` of `file`, produced chunk by chunk by `read`. */
export interface PlannedWrite extends ByteRange {
  file: string;
  /** Reads `length` bytes of the new content starting `at` bytes into this write. */
  read: (at: number, length: number) => Promise<Uint8Array>;
}

export interface RecoveryReport {
  file: string;
  /** rolled-back: an interrupted update was undone; discarded: a committed update's leftover journal was removed. */
  action: 'rolled-back' | 'discarded';
  ranges: number;
  bytes: number;
}

const CHUNK = 8 * 1024 * 1024;

/** Applies `writes` (non-overlapping) atomically across their files. Locks must be held. */
export async function commitInPlace(writes: PlannedWrite[]): Promise<void> {
  const byFile = new Map<string, PlannedWrite[]>();
  for (const w of writes) byFile.set(w.file, [...(byFile.get(w.file) ?? []), w]);
  const files = [...byFile.keys()].sort();
  if (files.length === 0) return;

  let record: string | null = null;
  if (files.length > 1) {
    record = join(dirname(files[0]), `.sluice-txn-${process.pid}-${Math.random().toString(36).slice(2)}.json`);
    const listed = files.map((f) => relative(dirname(record!), f));
    await writeFileAtomic(record, (handle) => writeAll(handle, Buffer.from(JSON.stringify({ files: listed })), 0));
  }
  const journaled: string[] = [];
  try {
    for (const file of files) {
      const { handle } = await openRegularFile(file, { write: true, noFollow: true });
      try {
        await writeJournal(file, handle, byFile.get(file)!, record && relative(dirname(file), record));
        journaled.push(file);
        for (const w of byFile.get(file)!) {
          for (let at = 0; at < w.length; at += CHUNK) {
            const chunk = await w.read(at, Math.min(CHUNK, w.length - at));
            await writeAll(handle, chunk, w.offset + at);
          }
        }
        await handle.sync();
      } finally {
        await handle.close();
      }
    }
  } catch (e) {
    // Undo what was written so far, so a failed update (a bad patch read, a full disk)
    // leaves the files as they were without waiting for the next open.
    for (const file of journaled) {
      const journal = await readJournal(file);
      if (journal) await rollBack(file, journal);
      await removeJournal(file);
    }
    if (record) await unlink(record).catch(() => {});
    throw e;
  }
  // Commit point.
  if (record) {
    await unlink(record);
    await fsyncDir(dirname(record));
  }
  for (const file of files) await removeJournal(file);
}

/**
 * Undoes an interrupted update of `file`, if its journal says there is one. Lock must be
 * held. `root` is the checkpoint's folder: the journal's transaction record must lie
 * inside it, and so must every file the record lists. Anything a forged journal or record
 * could use to reach elsewhere is refused with JOURNAL_INVALID before a byte is written.
 */
export async function recoverFile(file: string, root: string = dirname(file)): Promise<RecoveryReport | null> {
  await removeJournalTemps(file);
  const journal = await readJournal(file);
  if (!journal) return null;
  const ranges = journal.header.ranges.length;
  const invalid = (what: string) => new SluiceError('JOURNAL_INVALID', `${journal.path}: ${what}; ${basename(file)} was left as it is`);
  let record: string | null = null;
  if (journal.header.txn !== null) {
    record = resolve(dirname(file), journal.header.txn);
    if (!isInside(resolve(root), record)) throw invalid(`its transaction record ${quote(journal.header.txn)} is outside ${root}`);
  }
  const listed = record && (await readRecord(record, root, invalid));
  if (record && !listed) {
    await removeJournal(file);
    return { file, action: 'discarded', ranges, bytes: 0 };
  }
  if (listed && !listed.includes(resolve(file))) throw invalid(`its transaction record does not list ${basename(file)}`);
  const bytes = await rollBack(file, journal);
  await removeJournal(file);
  if (record && listed) await dropRecordIfDone(record, listed);
  return { file, action: 'rolled-back', ranges, bytes };
}

/** Bytes a transaction record may have: a list of shard names (Llama-405B has 191). */
const MAX_RECORD_BYTES = 1024 * 1024;

/**
 * The files a transaction record lists (absolute), or null when the record is gone (the
 * transaction committed). A record that is a symlink, not JSON, or lists a file outside
 * `root` is refused.
 */
async function readRecord(record: string, root: string, invalid: (what: string) => SluiceError): Promise<string[] | null> {
  let bytes: Buffer;
  try {
    bytes = await readSmallFile(record, MAX_RECORD_BYTES, { noFollow: true });
  } catch (e) {
    if (isSluiceError(e, 'NOT_FOUND')) return null;
    throw invalid(`its transaction record is unusable (${(e as Error).message})`);
  }
  let files: unknown;
  try {
    files = (JSON.parse(bytes.toString('utf8')) as { files?: unknown })?.files;
  } catch {
    throw invalid('its transaction record is not JSON');
  }
  if (!Array.isArray(files) || files.length === 0 || !files.every((f) => typeof f === 'string')) {
    throw invalid('its transaction record has no "files" list of names');
  }
  const paths = (files as string[]).map((f) => resolve(dirname(record), f));
  const outside = paths.find((p) => !isInside(resolve(root), p));
  if (outside) throw invalid(`its transaction record lists ${quote(outside)}, outside ${root}`);
  return paths;
}

/**
 * What every read-only open of a local safetensors file does first: one lstat. A journal
 * beside the file means an update is running or was interrupted. A running one (its lock
 * held by a live process) is waited for, without taking the lock; an interrupted one is
 * reported, not rolled back: opening a model folder never writes to it (like a read-only
 * SQLite connection, which refuses a hot journal rather than replaying it). `sluice update
 * --recover`, or any update, rolls it back under the lock.
 */
export async function checkNoPendingUpdate(file: string, options: { timeoutMs?: number } = {}): Promise<void> {
  const journal = journalPathOf(file);
  const deadline = Date.now() + (options.timeoutMs ?? 60_000);
  for (let delay = 5; await lexists(journal); delay = Math.min(delay * 2, 100)) {
    if (!(await isLockHeld(file))) {
      throw new SluiceError(
        'JOURNAL_PENDING',
        `${file}: an update was interrupted (${basename(journal)} is beside it), so the file may be half-written; run 'sluice update ${file} --recover' to roll it back`,
      );
    }
    if (Date.now() > deadline) throw new SluiceError('LOCKED', `${file}: an update has been running for over ${Math.round((options.timeoutMs ?? 60_000) / 1000)} s; try again later`);
    await new Promise((r) => setTimeout(r, delay));
  }
}

/** Removes the record once no file it lists has a journal left. */
async function dropRecordIfDone(record: string, files: string[]): Promise<void> {
  for (const f of files) {
    if (await lexists(journalPathOf(f))) return;
  }
  await unlink(record).catch(() => {});
  await fsyncDir(dirname(record));
}

async function lexists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch {
    return false;
  }
}

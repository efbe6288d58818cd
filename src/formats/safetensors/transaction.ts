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
// Callers hold the files' locks (file-lock.ts); recoverIfNeeded takes one itself.

import { access, open, readFile, unlink } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { fsyncDir, writeAll, writeFileAtomic } from '../../io/atomic-file.js';
import { withLock, type LockOptions } from '../../io/file-lock.js';
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
      const handle = await open(file, 'r+');
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

/** Undoes an interrupted update of `file`, if its journal says there is one. Lock must be held. */
export async function recoverFile(file: string): Promise<RecoveryReport | null> {
  await removeJournalTemps(file);
  const journal = await readJournal(file);
  if (!journal) return null;
  const ranges = journal.header.ranges.length;
  const record = journal.header.txn === null ? null : resolve(dirname(file), journal.header.txn);
  if (record && !(await exists(record))) {
    await removeJournal(file);
    return { file, action: 'discarded', ranges, bytes: 0 };
  }
  const bytes = await rollBack(file, journal);
  await removeJournal(file);
  if (record) await dropRecordIfDone(record);
  return { file, action: 'rolled-back', ranges, bytes };
}

/**
 * What every open of a local safetensors file does first: one stat; only when a journal
 * exists, take the lock (an update may still be running) and recover.
 */
export async function recoverIfNeeded(file: string, options?: LockOptions): Promise<RecoveryReport | null> {
  if (!(await exists(journalPathOf(file)))) return null;
  return withLock(file, () => recoverFile(file), options);
}

async function dropRecordIfDone(record: string): Promise<void> {
  let files: string[] = [];
  try {
    files = (JSON.parse(await readFile(record, 'utf8')) as { files: string[] }).files;
  } catch {
    return; // unreadable: leave it; it only makes later recoveries roll back, never lose data
  }
  for (const f of files) {
    if (await exists(journalPathOf(resolve(dirname(record), f)))) return;
  }
  await unlink(record).catch(() => {});
  await fsyncDir(dirname(record));
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}


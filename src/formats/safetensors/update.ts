// `sluice update`: replace tensors of a safetensors checkpoint in place (journaled, all or
// nothing, cost proportional to the bytes replaced), or delete/rename tensors by an atomic
// rewrite. Works on one file, a directory, or a sharded index (each tensor in its shard).

import { lstat, stat } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { resolveDirectory, SAFETENSORS_INDEX } from '../../checkpoint/resolve.js';
import type { Checkpoint } from '../../checkpoint/types.js';
import { SluiceError } from '../../errors.js';
import { fileError, FileSource } from '../../io/file-source.js';
import { acquireLock, type FileLock, type LockOptions } from '../../io/file-lock.js';
import { SafetensorsFile } from './file.js';
import { MAX_INDEX_BYTES, parseShardIndex } from '../shard-index.js';
import { ModelFolder } from '../../io/model-folder.js';
import { ShardedSafetensors } from './sharded.js';
import { commitInPlace, type PlannedWrite, recoverFile, type RecoveryReport } from './transaction.js';
import { rewriteShards } from './rewrite.js';

export interface UpdateOptions {
  /** Tensors to replace: a patch checkpoint (same names, dtypes and shapes as in the target). */
  from?: Checkpoint;
  delete?: string[];
  /** [old, new] pairs. */
  rename?: Array<[string, string]>;
  lock?: LockOptions;
}

export interface UpdateReport {
  target: string;
  mode: 'in-place' | 'rewrite' | 'none';
  files: string[];
  replaced: Array<{ name: string; file: string; bytes: number }>;
  deleted: string[];
  renamed: Array<{ from: string; to: string }>;
  recovered: RecoveryReport[];
  bytesWritten: number;
}

/** The files of a local safetensors checkpoint, as an update must lock them. */
export interface Target {
  /** The checkpoint's folder: journals and records may name nothing outside it. */
  root: string;
  /** The index, when the checkpoint has one. */
  index: string | null;
  files: string[];
}

export async function resolveTarget(path: string): Promise<Target> {
  let info;
  try {
    info = await stat(path);
  } catch (e) {
    throw fileError(path, e);
  }
  // A directory resolves as every reader resolves it, so an update edits what a load reads.
  const files = info.isDirectory() ? (await resolveDirectory(path)).files : [path];
  const notSafetensors = files.find((f) => !f.endsWith('.safetensors') && !f.endsWith(SAFETENSORS_INDEX));
  if (notSafetensors) {
    throw new SluiceError('UNSUPPORTED_FORMAT', `${notSafetensors}: only safetensors files can be updated; convert it first (sluice convert)`);
  }
  if (files.length === 1 && files[0].endsWith('.json')) {
    const index = files[0];
    const root = dirname(index);
    const source = await FileSource.open(index, { noFollow: true });
    if (source.size > MAX_INDEX_BYTES) {
      await source.close();
      throw new SluiceError('INVALID_INDEX', `${index}: ${source.size} bytes is too large for a shard index`);
    }
    const parsed = parseShardIndex(await source.read(0, source.size).finally(() => source.close()), index).shards;
    const shards = parsed.map((s) => join(root, s));
    await checkWritable(root, shards);
    return { root, index, files: shards };
  }
  const root = info.isDirectory() ? path : dirname(path);
  await checkWritable(root, files);
  return { root, index: null, files };
}

/**
 * An update writes only regular files inside the checkpoint's folder, never through a
 * symlink: a symlink in a folder (an HF cache snapshot is made of them) would redirect the
 * write to wherever it points. Update a real copy instead (`sluice convert`).
 */
async function checkWritable(root: string, files: string[]): Promise<void> {
  const folder = await ModelFolder.open(root);
  for (const file of files) {
    const info = await lstat(file).catch((e: unknown) => {
      throw fileError(file, e);
    });
    if (info.isSymbolicLink()) {
      throw new SluiceError('UNSAFE_PATH', `${file}: is a symlink; updates write only regular files, never through a symlink (update a copy: sluice convert)`);
    }
    await folder.resolve(relative(root, file));
  }
}

/** Recovers (if needed) every file of `path` under its lock and reports what it did. */
export async function recoverCheckpoint(path: string, lock?: LockOptions): Promise<RecoveryReport[]> {
  const target = await resolveTarget(path);
  return withTargetLocks(target, lock, async () => recoverAll(target));
}

export async function updateCheckpoint(path: string, options: UpdateOptions): Promise<UpdateReport> {
  const target = await resolveTarget(path);
  return withTargetLocks(target, options.lock, async () => {
    const recovered = await recoverAll(target);
    const checkpoint = await openLocked(target);
    try {
      const report: UpdateReport = {
        target: path,
        mode: 'none',
        files: [],
        replaced: [],
        deleted: [],
        renamed: [],
        recovered,
        bytesWritten: 0,
      };
      const writes = planReplacements(checkpoint, options.from, report);
      validateLayoutChanges(checkpoint, options, report);
      if (report.deleted.length || report.renamed.length) {
        report.mode = 'rewrite';
        report.files = await rewriteShards(checkpoint, target.index, options.from, options.delete ?? [], options.rename ?? []);
        report.bytesWritten = report.files.length ? await sizeOf(report.files) : 0;
      } else if (writes.length) {
        report.mode = 'in-place';
        await commitInPlace(writes);
        report.files = [...new Set(writes.map((w) => w.file))];
        report.bytesWritten = writes.reduce((a, w) => a + w.length, 0);
      }
      return report;
    } finally {
      await Promise.all(checkpoint.shards.map((s) => s.close()));
    }
  });
}

/** Checks every patch tensor against the target and plans its bytes' writes. */
function planReplacements(checkpoint: LockedCheckpoint, patch: Checkpoint | undefined, report: UpdateReport): PlannedWrite[] {
  if (!patch) return [];
  const writes: PlannedWrite[] = [];
  for (const p of patch.tensors()) {
    const shard = checkpoint.owner.get(p.name);
    if (!shard) {
      throw new SluiceError('TENSOR_NOT_FOUND', `${p.file}: tensor ${JSON.stringify(p.name)} is not in ${checkpoint.name}; an update can only replace existing tensors`);
    }
    const t = shard.info(p.name);
    if (t.dtype !== p.dtype) {
      throw new SluiceError('DTYPE_MISMATCH', `tensor ${JSON.stringify(p.name)}: ${t.file} holds ${t.dtype} but ${p.file} has ${p.dtype}`);
    }
    if (t.shape.length !== p.shape.length || t.shape.some((d, i) => d !== p.shape[i])) {
      throw new SluiceError('SHAPE_MISMATCH', `tensor ${JSON.stringify(p.name)}: ${t.file} holds [${t.shape}] but ${p.file} has [${p.shape}]`);
    }
    const entry = shard.header.tensors.find((e) => e.name === p.name)!;
    writes.push({
      file: shard.source.name,
      offset: shard.header.dataStart + entry.begin,
      length: t.byteLength,
      read: (at, length) => patch.readRange(p.name, at, length),
    });
    report.replaced.push({ name: p.name, file: shard.source.name, bytes: t.byteLength });
  }
  return writes;
}

function validateLayoutChanges(checkpoint: LockedCheckpoint, options: UpdateOptions, report: UpdateReport): void {
  const names = new Set(checkpoint.owner.keys());
  for (const name of options.delete ?? []) {
    if (!names.delete(name)) throw new SluiceError('TENSOR_NOT_FOUND', `${checkpoint.name}: cannot delete ${JSON.stringify(name)}: no such tensor`);
    report.deleted.push(name);
  }
  for (const [from, to] of options.rename ?? []) {
    if (!names.delete(from)) throw new SluiceError('TENSOR_NOT_FOUND', `${checkpoint.name}: cannot rename ${JSON.stringify(from)}: no such tensor`);
    if (names.has(to)) throw new SluiceError('DUPLICATE_KEY', `${checkpoint.name}: cannot rename ${JSON.stringify(from)} to ${JSON.stringify(to)}: that name exists`);
    names.add(to);
    report.renamed.push({ from, to });
  }
}

export interface LockedCheckpoint {
  name: string;
  shards: SafetensorsFile[];
  owner: Map<string, SafetensorsFile>;
}

/** Opens the target's files directly: their locks are held and recovery is done. */
async function openLocked(target: Target): Promise<LockedCheckpoint> {
  const name = target.index ?? (target.files.length === 1 ? target.files[0] : dirname(target.files[0]));
  let shards: SafetensorsFile[];
  if (target.index) {
    const dir = dirname(target.index);
    const open = (file: string) => FileSource.open(file, { noFollow: true });
    shards = (await ShardedSafetensors.fromIndex(await open(target.index), (n) => open(join(dir, n)))).shards;
  } else {
    shards = [...(await ShardedSafetensors.fromFiles(await Promise.all(target.files.map((f) => FileSource.open(f, { noFollow: true }))))).shards];
  }
  const owner = new Map<string, SafetensorsFile>();
  for (const s of shards) for (const t of s.header.tensors) owner.set(t.name, s);
  return { name, shards, owner };
}

async function recoverAll(target: Target): Promise<RecoveryReport[]> {
  const out: RecoveryReport[] = [];
  for (const file of target.files) {
    const r = await recoverFile(file, target.root);
    if (r) out.push(r);
  }
  return out;
}

/** Locks the index (serialising whole-checkpoint updaters) and then each file, in one order. */
async function withTargetLocks<T>(target: Target, options: LockOptions | undefined, body: () => Promise<T>): Promise<T> {
  const order = [...(target.index ? [target.index] : []), ...[...target.files].sort()];
  const held: FileLock[] = [];
  try {
    for (const file of order) held.push(await acquireLock(file, options));
    return await body();
  } finally {
    for (const lock of held.reverse()) await lock.release();
  }
}

async function sizeOf(files: string[]): Promise<number> {
  let total = 0;
  for (const f of files) total += (await stat(f)).size;
  return total;
}


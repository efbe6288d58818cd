// Node: a checkpoint from what a user types: a file, an index, a directory or a URL.
// For a directory, which files to load is decided in resolve.ts; the choice is reported
// through `onNote` when it is not the only possibility.

import { stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileError, FileSource } from '../io/file-source.js';
import type { UrlSourceOptions } from '../io/url-source.js';
import { ShardedCheckpoint } from '../formats/sharded.js';
import { recoverIfNeeded } from '../formats/safetensors/transaction.js';
import { isUrl, openCheckpointSource, openCheckpointUrl, openFile } from './open.js';
import { resolveDirectory } from './resolve.js';
import type { Checkpoint } from './types.js';

export interface OpenOptions {
  /** For URLs: headers (e.g. Authorization), retries, concurrency. */
  url?: UrlSourceOptions;
  /** Told which files of a directory were chosen, and what was passed over. */
  onNote?: (message: string) => void;
}

/**
 * Opens PATH as `sluice inspect`, `convert` and the loader take it:
 * - an `http(s)://` URL to a checkpoint file or a shard index,
 * - a `.safetensors`, `.pth`/`.pt`/`.bin` file, or an index `.json` (shards resolved beside it),
 * - a directory: safetensors preferred, else PyTorch files (see resolve.ts).
 */
export async function openCheckpoint(path: string, options: OpenOptions = {}): Promise<Checkpoint> {
  if (isUrl(path)) return openCheckpointUrl(path, options.url);
  let info;
  try {
    info = await stat(path);
  } catch (e) {
    throw fileError(path, e);
  }
  if (!info.isDirectory()) return openLocalPath(path);
  const choice = await resolveDirectory(path);
  if (choice.note) options.onNote?.(choice.note);
  if (choice.files.length === 1) return openLocalPath(choice.files[0]);
  const sources: FileSource[] = [];
  try {
    for (const f of choice.files) sources.push(await openLocalFile(f));
  } catch (e) {
    await Promise.all(sources.map((s) => s.close()));
    throw e;
  }
  return ShardedCheckpoint.fromFiles(sources, openFile);
}

async function openLocalPath(path: string): Promise<Checkpoint> {
  const dir = dirname(path);
  const source = path.endsWith('.json') ? await FileSource.open(path) : await openLocalFile(path);
  return openCheckpointSource(source, (name) => openLocalFile(join(dir, name)));
}

/**
 * A local checkpoint file, after rolling back an update that a crash interrupted (a
 * journal beside it): every open sees the file whole, old or new, never half-written.
 * (Only safetensors files are ever updated in place; for others this is one stat.)
 */
export async function openLocalFile(path: string): Promise<FileSource> {
  await recoverIfNeeded(path);
  return FileSource.open(path);
}

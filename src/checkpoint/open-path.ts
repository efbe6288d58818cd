// Node: a checkpoint from what a user types: a file, an index, a directory or a URL.
// For a directory, which files to load is decided in resolve.ts; the choice is reported
// through `onNote` when it is not the only possibility.
//
// What the user names is followed wherever it points; what the folder names (its
// entries, an index's shards) must stay inside the folder (model-folder.ts). Opening
// never writes: a file with an interrupted update is refused (checkNoPendingUpdate).

import { stat } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { fileError, FileSource } from '../io/file-source.js';
import { ModelFolder } from '../io/model-folder.js';
import type { UrlSourceOptions } from '../io/url-source.js';
import { ShardedCheckpoint } from '../formats/sharded.js';
import { checkNoPendingUpdate } from '../formats/safetensors/transaction.js';
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
  const folder = await ModelFolder.open(path);
  const choice = await resolveDirectory(path);
  if (choice.note) options.onNote?.(choice.note);
  const names = choice.files.map((f) => basename(f));
  if (names.length === 1) return openInFolder(folder, names[0]);
  const sources: FileSource[] = [];
  try {
    for (const name of names) sources.push(await openFolderFile(folder, name));
  } catch (e) {
    await Promise.all(sources.map((s) => s.close()));
    throw e;
  }
  return ShardedCheckpoint.fromFiles(sources, openFile);
}

/** A file the user named: followed wherever it points; its shards stay beside it. */
async function openLocalPath(path: string): Promise<Checkpoint> {
  const folder = await ModelFolder.open(dirname(path));
  await checkNoPendingUpdate(path);
  return openCheckpointSource(await FileSource.open(path), (name) => openFolderFile(folder, name));
}

/** A checkpoint file or index the folder names, its shards beside it. */
async function openInFolder(folder: ModelFolder, name: string): Promise<Checkpoint> {
  return openCheckpointSource(await openFolderFile(folder, name), (shard) => openFolderFile(folder, shard));
}

/**
 * A file of a model folder, confined to it, once no update of it is pending: every open
 * sees the file whole, old or new, never half-written. (Only safetensors files are ever
 * updated in place; for others the check is one lstat.)
 */
export async function openFolderFile(folder: ModelFolder, name: string): Promise<FileSource> {
  await checkNoPendingUpdate(folder.pathOf(name));
  return folder.openSource(name);
}

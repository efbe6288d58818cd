// Node: a checkpoint from what a user types: a file, an index, a directory or a URL.

import { readdir, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { SluiceError } from '../errors.js';
import { FileSource, fileError } from '../io/file-source.js';
import type { UrlSourceOptions } from '../io/url-source.js';
import { ShardedSafetensors } from '../formats/safetensors/sharded.js';
import { recoverIfNeeded } from '../formats/safetensors/transaction.js';
import { isUrl, openCheckpointSource, openCheckpointUrl } from './open.js';
import type { Checkpoint } from './types.js';

export const SAFETENSORS_INDEX = 'model.safetensors.index.json';
const PYTORCH_FILE = /\.(pth|pt|bin)$/i;

export interface OpenOptions {
  /** For URLs: headers (e.g. Authorization), retries, concurrency. */
  url?: UrlSourceOptions;
}

/**
 * Opens PATH as `sluice inspect` and the loader take it:
 * - an `http(s)://` URL to a `.safetensors` file or an index,
 * - a `.safetensors` file, or an index `.json` (shards resolved beside it),
 * - a directory: its `model.safetensors.index.json`, else its `.safetensors` files.
 */
export async function openCheckpoint(path: string, options: OpenOptions = {}): Promise<Checkpoint> {
  if (isUrl(path)) return openCheckpointUrl(path, options.url);
  let info;
  try {
    info = await stat(path);
  } catch (e) {
    throw fileError(path, e);
  }
  if (info.isDirectory()) return openDirectory(path);
  if (PYTORCH_FILE.test(path)) throw pytorchNotYet(path);
  const dir = dirname(path);
  const source = path.endsWith('.json') ? await FileSource.open(path) : await openLocalSafetensors(path);
  return openCheckpointSource(source, (name) => openLocalSafetensors(join(dir, name)));
}

/**
 * A local safetensors file, after rolling back an update that a crash interrupted (a
 * journal beside it): every open sees the file whole, old or new, never half-written.
 */
export async function openLocalSafetensors(path: string): Promise<FileSource> {
  await recoverIfNeeded(path);
  return FileSource.open(path);
}

async function openDirectory(dir: string): Promise<Checkpoint> {
  const names = (await readdir(dir)).sort();
  if (names.includes(SAFETENSORS_INDEX)) {
    const index = await FileSource.open(join(dir, SAFETENSORS_INDEX));
    return openCheckpointSource(index, (name) => openLocalSafetensors(join(dir, name)));
  }
  const files = names.filter((n) => n.endsWith('.safetensors'));
  if (files.length === 1) return openCheckpointSource(await openLocalSafetensors(join(dir, files[0])));
  if (files.length > 1) {
    const sources = [];
    try {
      for (const f of files) sources.push(await openLocalSafetensors(join(dir, f)));
    } catch (e) {
      await Promise.all(sources.map((s) => s.close()));
      throw e;
    }
    return ShardedSafetensors.fromFiles(sources);
  }
  if (names.some((n) => PYTORCH_FILE.test(n))) throw pytorchNotYet(dir);
  throw new SluiceError('NOT_FOUND', `${dir}: no .safetensors files or ${SAFETENSORS_INDEX} in this directory`);
}

function pytorchNotYet(path: string): SluiceError {
  return new SluiceError('UNSUPPORTED_FORMAT', `${path}: PyTorch .pth/.bin/.pt checkpoints are not supported yet; convert to safetensors first`);
}

// Opening a checkpoint from sources, browser-safe: a safetensors file, an index with its
// shards, or a URL to either. `open-path.ts` adds local paths and directories for Node.

import { SluiceError } from '../errors.js';
import type { ByteSource, SourceOpener } from '../io/byte-source.js';
import { UrlSource, type UrlSourceOptions, urlSibling } from '../io/url-source.js';
import { SafetensorsFile } from '../formats/safetensors/file.js';
import { ShardedSafetensors } from '../formats/safetensors/sharded.js';
import type { Checkpoint } from './types.js';

export const INDEX_SUFFIX = '.index.json';

/**
 * A checkpoint from one source: an index (`*.json`, whose shards come from
 * `openSibling`) or a safetensors file. Takes ownership of `source`.
 */
export async function openCheckpointSource(source: ByteSource, openSibling?: SourceOpener): Promise<Checkpoint> {
  if (baseName(source.name).endsWith('.json')) {
    if (!openSibling) {
      await source.close();
      throw new SluiceError('UNSUPPORTED_FORMAT', `${source.name}: a shard index needs its shards beside it`);
    }
    return ShardedSafetensors.fromIndex(source, openSibling);
  }
  return SafetensorsFile.open(source);
}

export function isUrl(s: string): boolean {
  return /^https?:\/\//i.test(s);
}

/** A checkpoint behind an HTTP(S) URL: a `.safetensors` file or a `model.safetensors.index.json`. */
export async function openCheckpointUrl(url: string, options: UrlSourceOptions = {}): Promise<Checkpoint> {
  const source = await UrlSource.open(url, options);
  return openCheckpointSource(source, (name) => UrlSource.open(urlSibling(url, name), options));
}

function baseName(name: string): string {
  return name.replace(/[?#].*$/, '').split(/[\\/]/).pop() ?? name;
}

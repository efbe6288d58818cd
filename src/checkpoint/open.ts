// Opening a checkpoint from sources, browser-safe: a safetensors file, a torch.save file,
// an index with its shards, or a URL to any of them. `open-path.ts` adds local paths and
// directories for Node.

import { SluiceError } from '../errors.js';
import type { ByteSource, SourceOpener } from '../io/byte-source.js';
import { UrlSource, type UrlSourceOptions, urlOpener } from '../io/url-source.js';
import { PytorchCheckpoint } from '../formats/pytorch/checkpoint.js';
import { SafetensorsFile } from '../formats/safetensors/file.js';
import { ShardedCheckpoint } from '../formats/sharded.js';
import type { Checkpoint } from './types.js';

const PYTORCH_NAME = /\.(pth|pt|bin)$/i;

/**
 * A checkpoint from one source: an index (`*.json`, whose shards come from `openSibling`),
 * a torch.save file (`.pth`/`.pt`/`.bin`, or a zip by its magic) or a safetensors file.
 * Takes ownership of `source`.
 */
export async function openCheckpointSource(source: ByteSource, openSibling?: SourceOpener): Promise<Checkpoint> {
  if (baseName(source.name).endsWith('.json')) {
    if (!openSibling) {
      await source.close();
      throw new SluiceError('UNSUPPORTED_FORMAT', `${source.name}: a shard index needs its shards beside it`);
    }
    return ShardedCheckpoint.fromIndex(source, async (name) => openFile(await openSibling(name)));
  }
  return openFile(source);
}

/** One checkpoint file: by extension, else by content (torch.save files are zips: "PK"). */
export async function openFile(source: ByteSource): Promise<Checkpoint> {
  const name = baseName(source.name);
  if (name.endsWith('.safetensors')) return SafetensorsFile.open(source);
  if (PYTORCH_NAME.test(name)) return PytorchCheckpoint.open(source);
  const head = source.size >= 2 ? await source.read(0, 2) : new Uint8Array(0);
  return head[0] === 0x50 && head[1] === 0x4b ? PytorchCheckpoint.open(source) : SafetensorsFile.open(source);
}

export function isUrl(s: string): boolean {
  return /^https?:\/\//i.test(s);
}

/**
 * A checkpoint behind an HTTP(S) URL: a checkpoint file or a shard index. An index's shard
 * names are untrusted: urlOpener keeps them in the index's folder on its origin, and the
 * caller's headers (a token) never leave that origin, redirects included (io/http.ts).
 */
export async function openCheckpointUrl(url: string, options: UrlSourceOptions = {}): Promise<Checkpoint> {
  const source = await UrlSource.open(url, options);
  return openCheckpointSource(source, urlOpener(url, options));
}

function baseName(name: string): string {
  return name.replace(/[?#].*$/, '').split(/[\\/]/).pop() ?? name;
}

// Sharded safetensors: the generic ShardedCheckpoint with SafetensorsFile shards.

import type { ByteSource, SourceOpener } from '../../io/byte-source.js';
import { ShardedCheckpoint } from '../sharded.js';
import { SafetensorsFile } from './file.js';

export type ShardedSafetensors = ShardedCheckpoint<SafetensorsFile>;

export const ShardedSafetensors = {
  /** The shards of a `model.safetensors.index.json`, checked against it. Takes ownership of `index`. */
  fromIndex(index: ByteSource, openSibling: SourceOpener): Promise<ShardedSafetensors> {
    return ShardedCheckpoint.fromIndex(index, async (name) => SafetensorsFile.open(await openSibling(name)));
  },
  /** Several safetensors files without an index; tensor names must not repeat. */
  fromFiles(sources: ByteSource[]): Promise<ShardedSafetensors> {
    return ShardedCheckpoint.fromFiles(sources, (s) => SafetensorsFile.open(s));
  },
};

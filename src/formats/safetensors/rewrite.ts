// Layout changes (`--delete`, `--rename`) cannot be done in place: the header and the
// offsets change. Each affected shard is rewritten whole through writeSafetensors (temp
// file, fsync, rename), its tensors streamed from the old file, or from the patch for
// replaced ones, so untouched tensors keep their bytes exactly. The index follows last.
//
// Across shards this is per-file atomic, not one transaction: a crash between two shard
// renames leaves some shards rewritten. Each file is always whole, and the index is
// rewritten last, so an interrupted delete at worst leaves an index naming a tensor its
// shard no longer has, which opening reports as INVALID_INDEX.

import { basename, dirname, relative } from 'node:path';
import type { Checkpoint } from '../../checkpoint/types.js';
import { writeAll, writeFileAtomic } from '../../io/atomic-file.js';
import type { SafetensorsFile } from './file.js';
import { COPY_CHUNK } from './journal.js';
import { indexJson } from './sharded-writer.js';
import type { LockedCheckpoint } from './update.js';
import { writeSafetensors } from './write-file.js';
import type { TensorToWrite } from './writer.js';

/** Rewrites every shard a change touches, then the index; returns the files written. */
export async function rewriteShards(
  checkpoint: LockedCheckpoint,
  index: string | null,
  patch: Checkpoint | undefined,
  deletes: string[],
  renames: Array<[string, string]>,
): Promise<string[]> {
  const deleted = new Set(deletes);
  const renamed = new Map(renames);
  const patched = new Set(patch?.tensors().map((t) => t.name) ?? []);
  const written: string[] = [];
  const newOwner = new Map<string, string>(); // new name → shard path
  let totalSize = 0;
  for (const shard of checkpoint.shards) {
    const names = shard.header.tensors.map((t) => t.name);
    const touched = names.some((n) => deleted.has(n) || renamed.has(n) || patched.has(n));
    for (const t of shard.header.tensors) {
      if (deleted.has(t.name)) continue;
      newOwner.set(renamed.get(t.name) ?? t.name, shard.source.name);
      totalSize += t.end - t.begin;
    }
    if (!touched) continue;
    const tensors: TensorToWrite[] = shard.header.tensors
      .filter((t) => !deleted.has(t.name))
      .map((t) => ({
        name: renamed.get(t.name) ?? t.name,
        dtype: t.dtype,
        shape: t.shape,
        data: () => streamTensor(patched.has(t.name) ? patch! : shard, t.name, t.end - t.begin),
      }));
    await writeSafetensors(shard.source.name, tensors, { metadata: shard.header.metadata });
    written.push(shard.source.name);
  }
  if (index && (deleted.size || renamed.size)) {
    await rewriteIndex(index, newOwner, totalSize);
    written.push(index);
  }
  return written;
}

async function* streamTensor(from: Checkpoint | SafetensorsFile, name: string, length: number): AsyncIterable<Uint8Array> {
  for (let at = 0; at < length; at += COPY_CHUNK) yield await from.readRange(name, at, Math.min(COPY_CHUNK, length - at));
}

/** The index with the new weight_map and total_size, written as the sharded writer writes it. */
async function rewriteIndex(index: string, owner: Map<string, string>, totalSize: number): Promise<void> {
  const dir = dirname(index);
  const text = indexJson(totalSize, [...owner].map(([name, file]) => [name, relative(dir, file)] as const));
  await writeFileAtomic(index, (h) => writeAll(h, Buffer.from(text), 0, basename(index)));
}

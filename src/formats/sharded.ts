// Several checkpoint files seen as one: the shards of an index
// (`model.safetensors.index.json`, `pytorch_model.bin.index.json`), or every checkpoint
// file of a directory. Format-agnostic: each shard is a Checkpoint.

import type { Checkpoint, SliceRanges, TensorInfo, TensorSlice } from '../checkpoint/types.js';
import { SluiceError } from '../errors.js';
import type { ByteSource } from '../io/byte-source.js';
import { MAX_INDEX_BYTES, parseShardIndex } from './shard-index.js';

/** Shard headers opened at once: parallel for HTTP, bounded for file handles. */
const OPEN_CONCURRENCY = 8;

export class ShardedCheckpoint<S extends Checkpoint = Checkpoint> implements Checkpoint {
  readonly format: Checkpoint['format'];
  readonly files: string[];
  readonly metadata: Record<string, string>;
  private readonly owner = new Map<string, S>();

  private constructor(
    readonly shards: S[],
    /** The index's own `metadata` (total_size, …), {} without an index. */
    readonly indexMetadata: Record<string, unknown>,
    indexName: string | null,
  ) {
    this.format = shards[0]?.format ?? 'safetensors';
    this.files = [...(indexName ? [indexName] : []), ...shards.flatMap((s) => s.files)];
    // fromEntries, not Object.assign: a "__proto__" key must stay data.
    this.metadata = Object.fromEntries(shards.flatMap((s) => Object.entries(s.metadata)));
    for (const shard of shards) {
      for (const t of shard.tensors()) {
        const other = this.owner.get(t.name);
        if (other) {
          throw new SluiceError('INVALID_INDEX', `tensor ${JSON.stringify(t.name)} is in two shards: ${other.files[0]} and ${shard.files[0]}`);
        }
        this.owner.set(t.name, shard);
      }
    }
  }

  /**
   * Opens the shards an index names and checks the index against them: every listed
   * tensor is in its shard, and no shard holds a tensor the index omits. Takes ownership
   * of `index`.
   */
  static async fromIndex<S extends Checkpoint>(index: ByteSource, openShard: (name: string) => Promise<S>): Promise<ShardedCheckpoint<S>> {
    let bytes: Uint8Array;
    try {
      if (index.size > MAX_INDEX_BYTES) {
        throw new SluiceError('INVALID_INDEX', `${index.name}: ${index.size} bytes is too large for a shard index`);
      }
      bytes = await index.read(0, index.size);
    } finally {
      await index.close();
    }
    const parsed = parseShardIndex(bytes, index.name);
    const shards = await openAll(parsed.shards, openShard);
    try {
      const byName = new Map(parsed.shards.map((name, i) => [name, shards[i]]));
      for (const [tensor, shardName] of parsed.weightMap) {
        if (!byName.get(shardName)!.has(tensor)) {
          throw new SluiceError('INVALID_INDEX', `${index.name}: lists ${JSON.stringify(tensor)} in ${shardName}, which has no such tensor`);
        }
      }
      for (const [shardName, shard] of byName) {
        for (const t of shard.tensors()) {
          if (parsed.weightMap.get(t.name) !== shardName) {
            const listed = parsed.weightMap.get(t.name);
            const problem = listed ? `the index puts it in ${listed}` : 'the index does not list it';
            throw new SluiceError('INVALID_INDEX', `${index.name}: tensor ${JSON.stringify(t.name)} is in ${shardName} but ${problem}`);
          }
        }
      }
      return new ShardedCheckpoint(shards, parsed.metadata, index.name);
    } catch (e) {
      await Promise.all(shards.map((s) => s.close().catch(() => {})));
      throw e;
    }
  }

  /** Several files without an index (a directory of shards); names must not repeat. */
  static async fromFiles<S extends Checkpoint>(sources: ByteSource[], open: (source: ByteSource) => Promise<S>): Promise<ShardedCheckpoint<S>> {
    let shards: S[];
    try {
      shards = await openAll(sources, open);
    } catch (e) {
      // Sources a worker never reached are still open; closing twice is harmless.
      await Promise.all(sources.map((s) => s.close().catch(() => {})));
      throw e;
    }
    try {
      return new ShardedCheckpoint(shards, {}, null);
    } catch (e) {
      await Promise.all(shards.map((s) => s.close().catch(() => {})));
      throw e;
    }
  }

  tensors(): TensorInfo[] {
    return this.shards.flatMap((s) => s.tensors());
  }

  has(name: string): boolean {
    return this.owner.has(name);
  }

  info(name: string): TensorInfo {
    return this.shardOf(name).info(name);
  }

  async read(name: string): Promise<Uint8Array> {
    return this.shardOf(name).read(name);
  }

  async readRange(name: string, offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    return this.shardOf(name).readRange(name, offset, length, into);
  }

  async slice(name: string, ranges: SliceRanges): Promise<TensorSlice> {
    return this.shardOf(name).slice(name, ranges);
  }

  async close(): Promise<void> {
    await Promise.all(this.shards.map((s) => s.close()));
  }

  private shardOf(name: string): S {
    const shard = this.owner.get(name);
    if (!shard) throw new SluiceError('TENSOR_NOT_FOUND', `${this.files[0]}: no tensor named ${JSON.stringify(name)}`);
    return shard;
  }
}

/** Opens every item with bounded concurrency; on any failure closes what opened and rethrows. */
async function openAll<T, S extends Checkpoint>(items: T[], open: (item: T) => Promise<S>): Promise<S[]> {
  const out: S[] = new Array(items.length);
  let next = 0;
  let failure: unknown = null;
  const worker = async () => {
    while (next < items.length && failure === null) {
      const i = next++;
      try {
        out[i] = await open(items[i]);
      } catch (e) {
        failure ??= e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(OPEN_CONCURRENCY, items.length) }, worker));
  if (failure !== null) {
    await Promise.all(out.filter(Boolean).map((s) => s.close().catch(() => {})));
    throw failure;
  }
  return out;
}

// Node: a checkpoint directory written as transformers' `save_pretrained` writes one:
//   - one shard  → `model.safetensors`, no index;
//   - N shards   → `model-00001-of-0000N.safetensors` … + `model.safetensors.index.json`
//     ({"metadata": {"total_size"}, "weight_map"}, json.dumps(indent=2, sort_keys=True)).
// Tensors are split greedily in input order exactly as huggingface_hub's
// `split_state_dict_into_shards_factory` splits them, and every shard carries
// `{"format": "pt"}` metadata unless told otherwise.
//
// Crash safety: every shard is first written complete to a hidden temp name; only when all
// are written are they renamed into place, then the index is replaced atomically, then
// files of an earlier write that the new layout does not use are removed. A refusal or a
// producer error leaves the directory as it was.

import { mkdir, readdir, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { SluiceError } from '../../errors.js';
import { fsyncDir, tempPathFor, writeAll, writeFileAtomic } from '../../io/atomic-file.js';
import { fileError } from '../../io/file-source.js';
import type { Dtype } from '../dtypes.js';
import { withPath, writeSafetensorsPlan } from './write-file.js';
import { type SafetensorsPlan, type TensorToWrite, compareUtf8Bytes, planSafetensors, tensorByteLength } from './writer.js';

export interface ShardedWriteOptions {
  /** Largest shard, in bytes or as transformers spells it ("5GB", "500MiB"). Default 5 GB. */
  maxShardSize?: number | string;
  /** Each shard's `__metadata__`. Default {"format": "pt"}, as transformers writes. */
  metadata?: Record<string, string> | null;
  /** File name stem: `<prefix>.safetensors`, `<prefix>-00001-of-0000N.safetensors`. */
  prefix?: string;
}

export interface ShardedWriteResult {
  /** Paths of the shard files, in shard order. */
  files: string[];
  /** Path of the index, or null for a single file. */
  index: string | null;
  /** Sum of the tensors' byte sizes (the index's `total_size`). */
  totalSize: number;
}

export interface ShardItem {
  name: string;
  dtype: Dtype;
  shape: readonly number[];
}

const UNITS: Record<string, number> = { GIB: 2 ** 30, MIB: 2 ** 20, KIB: 2 ** 10, GB: 1e9, MB: 1e6, KB: 1e3 };

/**
 * A size as transformers' `convert_file_size_to_int` reads it: "5GB" = 5·10^9, "5GiB" =
 * 5·2^30 (units case-insensitive), "5Gb" with a lower-case b = gigabits (÷ 8, floored);
 * also a plain integer or integer string. Anything else, or ≤ 0, is a USAGE error.
 */
export function parseSize(s: string | number): number {
  const bad = (): never => {
    throw new SluiceError('USAGE', `invalid size ${JSON.stringify(s)}: use a number of bytes or an integer with a unit, e.g. 5GB, 500MB, 10GiB`);
  };
  let size: number;
  if (typeof s === 'number') {
    size = s;
  } else {
    const m = /^(\d+)\s*([kmg]i?b)?$/i.exec(String(s).trim()) ?? bad();
    size = Number(m[1]) * (m[2] ? UNITS[m[2].toUpperCase()] : 1);
    // transformers: a lower-case final "b" on a decimal unit means bits.
    if (m[2] && !/i/i.test(m[2]) && m[2].endsWith('b')) size = Math.floor(size / 8);
  }
  if (!Number.isSafeInteger(size) || size <= 0) bad();
  return size;
}

/**
 * Splits tensors into shards of at most `maxShardSize` bytes, greedily in input order, as
 * huggingface_hub does: a tensor larger than the limit gets a shard of its own, appended
 * at once (the shard being filled carries on); a tensor that would tip the current shard
 * over the limit closes it first. Never returns an empty shard.
 */
export function planShards<T extends ShardItem>(tensors: readonly T[], maxShardSize: number): T[][] {
  const shards: T[][] = [];
  let current: T[] = [];
  let currentSize = 0;
  for (const t of tensors) {
    const size = tensorByteLength(t.name, t.dtype, t.shape);
    if (size > maxShardSize) {
      shards.push([t]);
      continue;
    }
    if (currentSize + size > maxShardSize) {
      shards.push(current);
      current = [];
      currentSize = 0;
    }
    current.push(t);
    currentSize += size;
  }
  if (current.length > 0) shards.push(current);
  return shards;
}

/**
 * Writes `tensors` into `dir` (created if missing) as one `model.safetensors` or as shards
 * plus `model.safetensors.index.json`, removing the files of an earlier write of the same
 * prefix that the new layout does not use (other shard counts, a stale index or single file).
 */
export async function writeShardedSafetensors(dir: string, tensors: readonly TensorToWrite[], options: ShardedWriteOptions = {}): Promise<ShardedWriteResult> {
  const maxShardSize = parseSize(options.maxShardSize ?? 5_000_000_000);
  const metadata = options.metadata === undefined ? { format: 'pt' } : options.metadata;
  const prefix = options.prefix ?? 'model';
  if (prefix === '' || /[\\/\0]/.test(prefix)) throw new SluiceError('USAGE', `invalid file prefix ${JSON.stringify(prefix)}`);

  const seen = new Set<string>();
  for (const t of tensors) {
    if (seen.has(t.name)) throw new SluiceError('DUPLICATE_KEY', `${dir}: tensor ${JSON.stringify(t.name)} is given twice`);
    seen.add(t.name);
  }
  const groups = planShards(tensors, maxShardSize);
  if (groups.length === 0) groups.push([]);
  const n = groups.length;
  const names = n === 1 ? [`${prefix}.safetensors`] : groups.map((_, i) => `${prefix}-${pad5(i + 1)}-of-${pad5(n)}.safetensors`);
  // Every shard is planned (and so validated) before anything is written.
  const plans: SafetensorsPlan[] = groups.map((group, i) => {
    try {
      return planSafetensors(group, metadata);
    } catch (e) {
      throw withPath(join(dir, names[i]), e);
    }
  });
  const totalSize = plans.reduce((sum, p) => sum + p.size - p.dataStart, 0);

  await fsCall(dir, () => mkdir(dir, { recursive: true }));
  const files = names.map((name) => join(dir, name));
  const staged: string[] = [];
  try {
    for (let i = 0; i < n; i++) {
      staged.push(tempPathFor(files[i]));
      await writeSafetensorsPlan(staged[i], plans[i]);
    }
    for (let i = 0; i < n; i++) await fsCall(files[i], () => rename(staged[i], files[i]));
  } catch (e) {
    await Promise.all(staged.map((p) => unlink(p).catch(() => {})));
    throw e;
  }
  await fsyncDir(dir);

  const indexPath = join(dir, `${prefix}.safetensors.index.json`);
  if (n > 1) {
    const weightMap = groups.flatMap((group, i) => group.map((t) => [t.name, names[i]] as const));
    const text = indexJson(totalSize, weightMap);
    await writeFileAtomic(indexPath, (handle) => writeAll(handle, new TextEncoder().encode(text), 0, indexPath));
  }
  await removeStale(dir, prefix, new Set([...names, ...(n > 1 ? [`${prefix}.safetensors.index.json`] : [])]));
  return { files, index: n > 1 ? indexPath : null, totalSize };
}

/**
 * The index as transformers writes it: json.dumps(index, indent=2, sort_keys=True) + "\n".
 * Python's defaults: keys sorted by code point, ensure_ascii (non-ASCII and DEL as \uXXXX).
 */
export function indexJson(totalSize: number, weightMap: ReadonlyArray<readonly [tensor: string, file: string]>): string {
  const utf8 = new TextEncoder();
  const sorted = weightMap.map(([k, v]) => ({ k, v, key: utf8.encode(k) })).sort((a, b) => compareUtf8Bytes(a.key, b.key));
  const entries = sorted.map(({ k, v }) => `    ${pyString(k)}: ${pyString(v)}`);
  const map = entries.length === 0 ? '{}' : `{\n${entries.join(',\n')}\n  }`;
  return `{\n  "metadata": {\n    "total_size": ${totalSize}\n  },\n  "weight_map": ${map}\n}\n`;
}

/** A JSON string as Python's json.dumps writes it with ensure_ascii=True. */
function pyString(s: string): string {
  return JSON.stringify(s).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** Removes `<prefix>.safetensors`, its index and `<prefix>-NNNNN-of-NNNNN.safetensors` not in `keep`. */
async function removeStale(dir: string, prefix: string, keep: Set<string>): Promise<void> {
  const shard = new RegExp(`^${escapeRegExp(prefix)}-\\d{5}-of-\\d{5}\\.safetensors$`);
  const single = `${prefix}.safetensors`;
  const index = `${prefix}.safetensors.index.json`;
  const entries = await fsCall(dir, () => readdir(dir));
  // The index first: while it exists, readers take its shard list.
  const stale = entries.filter((f) => !keep.has(f) && (f === index || f === single || shard.test(f)));
  stale.sort((a, b) => Number(b === index) - Number(a === index));
  for (const f of stale) {
    await unlink(join(dir, f)).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'ENOENT') throw fileError(join(dir, f), e);
    });
  }
  if (stale.length > 0) await fsyncDir(dir);
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function pad5(i: number): string {
  return String(i).padStart(5, '0');
}

async function fsCall<T>(path: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (e) {
    throw fileError(path, e);
  }
}

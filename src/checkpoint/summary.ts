// What `sluice inspect` reports about a checkpoint, as data: the CLI prints it as a table
// or as JSON, and library users get the same numbers. Totals are bigint: a sum of doubles
// stops being exact past 2^53 (8 PiB, or that many parameters across shards), and a total
// must never be silently rounded.

import type { Checkpoint, TensorInfo } from './types.js';

export interface CheckpointSummary {
  format: Checkpoint['format'];
  files: string[];
  metadata: Record<string, string>;
  tensorCount: number;
  /** Total element count over all tensors. */
  parameters: bigint;
  bytes: bigint;
  bytesByDtype: Record<string, bigint>;
  parametersByDtype: Record<string, bigint>;
}

/**
 * A safetensors tensor with no elements may have a dim past 2^53 ([0, 2^64 − 1] is valid
 * for the reference); its TensorInfo then carries the exact dims beside the rounded shape.
 */
export interface ExactShape {
  exactShape?: readonly bigint[];
}

/** The exact dims of a tensor. */
export function dimsOf(t: Pick<TensorInfo, 'shape'> & ExactShape): ReadonlyArray<number | bigint> {
  return t.exactShape ?? t.shape;
}

/** The exact element count (a product of exact dims). */
export function elementCount(t: Pick<TensorInfo, 'shape'> & ExactShape): bigint {
  return dimsOf(t).reduce<bigint>((a, d) => a * BigInt(d), 1n);
}

/** `tensors`: checkpoint.tensors(), when the caller has it already (a header may list millions). */
export function summarize(checkpoint: Checkpoint, tensors: TensorInfo[] = checkpoint.tensors()): CheckpointSummary {
  const bytesByDtype: Record<string, bigint> = {};
  const parametersByDtype: Record<string, bigint> = {};
  let parameters = 0n;
  let bytes = 0n;
  for (const t of tensors) {
    const n = elementCount(t);
    const size = BigInt(t.byteLength);
    parameters += n;
    bytes += size;
    bytesByDtype[t.dtype] = (bytesByDtype[t.dtype] ?? 0n) + size;
    parametersByDtype[t.dtype] = (parametersByDtype[t.dtype] ?? 0n) + n;
  }
  return {
    format: checkpoint.format,
    files: checkpoint.files,
    metadata: checkpoint.metadata,
    tensorCount: tensors.length,
    parameters,
    bytes,
    bytesByDtype,
    parametersByDtype,
  };
}

export interface TensorGroup {
  /** The name with layer numbers replaced by `*` (or the name itself for a group of one). */
  pattern: string;
  members: TensorInfo[];
}

/**
 * Groups per-layer tensors (`model.layers.7.mlp.up_proj.weight`) whose names differ
 * only in their numbers and that share dtype and shape, in first-appearance order, so a
 * 32-layer model lists as ~12 rows instead of ~290.
 */
export function groupByLayer(tensors: TensorInfo[]): TensorGroup[] {
  const groups = new Map<string, TensorGroup>();
  for (const t of tensors) {
    const pattern = t.name.replace(/\.\d+\./g, '.*.');
    const key = `${pattern}|${t.dtype}|${t.shape.join('x')}|${pattern === t.name ? t.name : ''}`;
    const g = groups.get(key);
    if (g) g.members.push(t);
    else groups.set(key, { pattern, members: [t] });
  }
  return [...groups.values()].map((g) => (g.members.length === 1 ? { pattern: g.members[0].name, members: g.members } : g));
}

// What `sluice inspect` reports about a checkpoint, as data: the CLI prints it as a table
// or as JSON, and library users get the same numbers.

import type { Checkpoint, TensorInfo } from './types.js';

export interface CheckpointSummary {
  format: Checkpoint['format'];
  files: string[];
  metadata: Record<string, string>;
  tensorCount: number;
  /** Total element count over all tensors. */
  parameters: number;
  bytes: number;
  bytesByDtype: Record<string, number>;
  parametersByDtype: Record<string, number>;
}

export function elementCount(t: Pick<TensorInfo, 'shape'>): number {
  return t.shape.reduce((a, b) => a * b, 1);
}

export function summarize(checkpoint: Checkpoint): CheckpointSummary {
  const bytesByDtype: Record<string, number> = {};
  const parametersByDtype: Record<string, number> = {};
  let parameters = 0;
  let bytes = 0;
  const tensors = checkpoint.tensors();
  for (const t of tensors) {
    const n = elementCount(t);
    parameters += n;
    bytes += t.byteLength;
    bytesByDtype[t.dtype] = (bytesByDtype[t.dtype] ?? 0) + t.byteLength;
    parametersByDtype[t.dtype] = (parametersByDtype[t.dtype] ?? 0) + n;
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

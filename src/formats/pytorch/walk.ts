// Finds the tensors of an unpickled torch.save object: anywhere in nested dicts, lists and
// tuples, named by their dotted path (`model.layers.0.weight`). Everything else becomes
// string metadata (`epoch` → "3"), so `{"model": state_dict, "epoch": 3}` loads as the
// state_dict's tensors plus metadata, not as an error.

import type { PickleValue, TensorRef } from './types.js';

export interface Found {
  tensors: Map<string, TensorRef>;
  metadata: Record<string, string>;
}

export function findTensors(root: PickleValue): Found {
  const found: Found = { tensors: new Map(), metadata: {} };
  visit(root, '', found);
  return found;
}

/** Returns whether the subtree held a tensor; subtrees without one become one metadata entry. */
function visit(value: PickleValue, path: string, found: Found): boolean {
  if (isTensor(value)) {
    found.tensors.set(path || 'tensor', value);
    return true;
  }
  const children = childrenOf(value);
  if (!children || !hasTensor(value)) {
    if (path) found.metadata[path] = toText(value);
    return false;
  }
  for (const [key, child] of children) visit(child, path ? `${path}.${key}` : key, found);
  return true;
}

function childrenOf(value: PickleValue): Array<[string, PickleValue]> | null {
  if (value instanceof Map) return [...value].map(([k, v]) => [keyText(k), v]);
  if (Array.isArray(value)) return value.map((v, i) => [String(i), v]);
  if (isKind(value, 'tuple')) return value.items.map((v, i) => [String(i), v]);
  return null;
}

function hasTensor(value: PickleValue): boolean {
  // Iterative: a hostile pickle may nest deeply (the unpickler bounds depth, but stay safe).
  const stack: PickleValue[] = [value];
  while (stack.length) {
    const v = stack.pop()!;
    if (isTensor(v)) return true;
    const children = childrenOf(v);
    if (children) for (const [, c] of children) stack.push(c);
  }
  return false;
}

function keyText(k: PickleValue): string {
  if (typeof k === 'string') return k;
  if (typeof k === 'number' || typeof k === 'bigint' || typeof k === 'boolean') return String(k);
  return toText(k);
}

/** A leaf as text: JSON for data, `module.name` for globals, a size for bytes. */
export function toText(value: PickleValue): string {
  return typeof value === 'string' ? value : JSON.stringify(toJson(value));
}

function toJson(value: PickleValue): unknown {
  if (value === null || typeof value === 'boolean' || typeof value === 'string') return value;
  if (typeof value === 'number') return Number.isFinite(value) ? value : String(value);
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Uint8Array) return `<${value.byteLength} bytes>`;
  if (value instanceof Map) return Object.fromEntries([...value].map(([k, v]) => [keyText(k), toJson(v)]));
  if (Array.isArray(value)) return value.map(toJson);
  switch (value.kind) {
    case 'tuple':
      return value.items.map(toJson);
    case 'global':
      return `${value.module}.${value.name}`;
    case 'storage':
      return `<storage ${value.key}: ${value.numel} × ${value.dtype}>`;
    case 'tensor':
      return `<tensor [${value.shape}] ${value.storage.dtype}>`;
  }
}

function isTensor(v: PickleValue): v is TensorRef {
  return isKind(v, 'tensor');
}

function isKind<K extends string>(v: PickleValue, kind: K): v is Extract<PickleValue, { kind: K }> {
  return typeof v === 'object' && v !== null && !(v instanceof Map) && !Array.isArray(v) && !(v instanceof Uint8Array) && v.kind === kind;
}

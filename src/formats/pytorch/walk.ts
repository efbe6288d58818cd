// Finds the tensors of an unpickled torch.save object: anywhere in nested dicts, lists and
// tuples, named by their dotted path (`model.layers.0.weight`). Everything else becomes
// string metadata (`epoch` → "3"), so `{"model": state_dict, "epoch": 3}` loads as the
// state_dict's tensors plus metadata, not as an error.
//
// The unpickled value is a DAG, not a tree: the pickle's memo lets one object appear under
// many keys (tied weights saved with keep_vars=True; or, from a hostile file, 30 levels of
// [x] * 10, 10^30 paths in a kilobyte). Names are per path, as torch.load's dicts show
// them, so each object's count of tensor paths is computed first, once per object, and a
// file naming more than MAX_TENSORS is refused before any name is built. The walk itself
// then has budgets for its steps, the names' length and the metadata text (each object's
// text is printed once, bounded); a file past one is refused with INVALID_PICKLE.

import { SluiceError, quote } from '../../errors.js';
import {
  MAX_ALL_METADATA_CHARS, MAX_ALL_NAMES_CHARS, MAX_METADATA_ENTRIES, MAX_METADATA_TEXT, MAX_NAME_CHARS, MAX_TENSORS, MAX_WALK_STEPS,
} from './limits.js';
import { keyText, toText } from './metadata-text.js';
import type { PickleValue, TensorRef } from './types.js';

export { toText } from './metadata-text.js';

export interface Found {
  tensors: Map<string, TensorRef>;
  metadata: Record<string, string>;
}

/** `file` is named in errors. Throws INVALID_PICKLE past the bounds of limits.ts. */
export function findTensors(root: PickleValue, file = 'pickle'): Found {
  const walk = new Walk(file, tensorPaths(root));
  if (walk.paths(root) > MAX_TENSORS) walk.fail(`it names more than ${MAX_TENSORS} tensors (counting each path to a shared one)`);
  walk.visit(root, '');
  return walk.found;
}

type Container = Map<PickleValue, PickleValue> | PickleValue[] | { kind: 'tuple'; items: PickleValue[] };

function isContainer(v: PickleValue): v is Container {
  return v instanceof Map || Array.isArray(v) || isKind(v, 'tuple');
}

function values(c: Container): Iterable<PickleValue> {
  return c instanceof Map ? c.values() : Array.isArray(c) ? c : c.items;
}

/**
 * Per container, how many paths lead from it to a tensor (capped at MAX_TENSORS + 1): one
 * post-order pass over the DAG, each container once. Keys are not searched, as before.
 */
function tensorPaths(root: PickleValue): Map<object, number> {
  const count = new Map<object, number>();
  const open = new Set<object>(); // on the stack: a cycle (the unpickler refuses them) counts 0
  const stack: Container[] = isContainer(root) ? [root] : [];
  while (stack.length) {
    const c = stack[stack.length - 1];
    if (count.has(c)) {
      stack.pop(); // pushed by two parents before it was counted
      continue;
    }
    if (!open.has(c)) {
      open.add(c);
      for (const v of values(c)) if (isContainer(v) && !count.has(v) && !open.has(v)) stack.push(v);
      continue;
    }
    stack.pop();
    let n = 0;
    for (const v of values(c)) n = Math.min(MAX_TENSORS + 1, n + (isKind(v, 'tensor') ? 1 : (count.get(v as object) ?? 0)));
    count.set(c, n);
    open.delete(c);
  }
  return count;
}

class Walk {
  readonly found: Found = { tensors: new Map(), metadata: Object.create(null) as Record<string, string> };
  private steps = 0;
  private nameChars = 0;
  private metadataChars = 0;
  private metadataEntries = 0;
  private readonly texts = new Map<object, string>(); // each object's metadata text, printed once
  private readonly keys = new Map<object, string>(); // each non-primitive key's text, printed once

  constructor(
    private readonly file: string,
    private readonly count: Map<object, number>,
  ) {}

  fail(problem: string): never {
    throw new SluiceError('INVALID_PICKLE', `${this.file}: ${problem}`);
  }

  paths(v: PickleValue): number {
    return isKind(v, 'tensor') ? 1 : isContainer(v) ? (this.count.get(v) ?? 0) : 0;
  }

  visit(value: PickleValue, path: string): void {
    if (++this.steps > MAX_WALK_STEPS) this.fail(`its tensors and metadata take more than ${MAX_WALK_STEPS} steps to name`);
    if (isKind(value, 'tensor')) {
      this.found.tensors.set(this.name(path || 'tensor'), value);
      return;
    }
    if (!isContainer(value) || this.paths(value) === 0) {
      if (path) this.found.metadata[this.name(path)] = this.text(value);
      return;
    }
    if (value instanceof Map) {
      for (const [k, v] of value) this.visit(v, this.join(path, k));
    } else {
      const items = Array.isArray(value) ? value : value.items;
      for (let i = 0; i < items.length; i++) this.visit(items[i], this.join(path, i));
    }
  }

  /** `path.key`, refused once longer than a name may be (before a longer one is built). */
  private join(path: string, k: PickleValue): string {
    let key: string;
    if (typeof k === 'object' && k !== null) {
      key = this.keys.get(k) ?? '';
      if (!this.keys.has(k)) {
        key = keyText(k, MAX_NAME_CHARS + 1);
        this.charge(key.length);
        this.keys.set(k, key);
      }
    } else {
      key = keyText(k);
    }
    const name = path ? `${path}.${key}` : key; // a rope: nothing is copied until it is kept
    if (name.length > MAX_NAME_CHARS) this.fail(`a name longer than ${MAX_NAME_CHARS} characters (${quote(name)})`);
    return name;
  }

  private name(path: string): string {
    this.charge(path.length);
    return path;
  }

  private charge(chars: number): void {
    this.nameChars += chars;
    if (this.nameChars > MAX_ALL_NAMES_CHARS) this.fail(`its tensor names and metadata keys are longer than ${MAX_ALL_NAMES_CHARS} characters in all`);
  }

  private text(value: PickleValue): string {
    let t = typeof value === 'object' && value !== null ? this.texts.get(value) : undefined;
    if (t === undefined) {
      t = toText(value, MAX_METADATA_TEXT);
      if (typeof value === 'object' && value !== null) this.texts.set(value, t);
    }
    this.metadataChars += t.length;
    if (++this.metadataEntries > MAX_METADATA_ENTRIES) this.fail(`it holds more than ${MAX_METADATA_ENTRIES} metadata entries beside its tensors`);
    if (this.metadataChars > MAX_ALL_METADATA_CHARS) this.fail(`its metadata is longer than ${MAX_ALL_METADATA_CHARS} characters in all`);
    return t;
  }
}

function isKind<K extends string>(v: PickleValue, kind: K): v is Extract<PickleValue, { kind: K }> {
  return typeof v === 'object' && v !== null && !(v instanceof Map) && !Array.isArray(v) && !(v instanceof Uint8Array) && v.kind === kind;
}

// A non-tensor pickle value as one line of metadata text: JSON for data (dicts in their
// insertion order, tuples and sets as arrays), `module.name` for globals, a size for bytes.
// Bounded: the text stops at `max` characters with an ellipsis, and so does the work, so
// a structure that shares one list a billion times over (a DAG the pickle's memo builds
// in a kilobyte) or holds a 200 MB string costs `max` characters, not its expansion.

import { MAX_METADATA_TEXT } from './limits.js';
import type { PickleValue } from './types.js';

export const ELLIPSIS = '…';

/** `value` as text of at most `max` characters plus an ellipsis when cut. */
export function toText(value: PickleValue, max = MAX_METADATA_TEXT): string {
  if (typeof value === 'string') return value.length <= max ? value : value.slice(0, max) + ELLIPSIS;
  const p = new Printer(max);
  p.value(value);
  return p.text();
}

/** Text of a dict key inside a name: strings as they are, other keys as their text. */
export function keyText(k: PickleValue, max = MAX_METADATA_TEXT): string {
  if (typeof k === 'string') return k;
  if (typeof k === 'number' || typeof k === 'bigint' || typeof k === 'boolean') return String(k);
  return toText(k, max);
}

class Printer {
  private readonly parts: string[] = [];
  private length = 0;
  private cut = false;

  constructor(private readonly max: number) {}

  text(): string {
    return this.parts.join('') + (this.cut ? ELLIPSIS : '');
  }

  /** Appends `s`, or as much as fits; false once full (callers stop descending). */
  private emit(s: string): boolean {
    if (this.cut) return false;
    const room = this.max - this.length;
    if (s.length > room) {
      this.parts.push(s.slice(0, room));
      this.length = this.max;
      this.cut = true;
      return false;
    }
    this.parts.push(s);
    this.length += s.length;
    return true;
  }

  /** A JSON string of `s`, never stringifying more of it than could still be shown. */
  private string(s: string): boolean {
    const room = this.max - this.length;
    return this.emit(JSON.stringify(s.length > room ? s.slice(0, room) : s));
  }

  // Every value emits at least one character before it descends, so the work done before
  // the text is full is proportional to `max`, however much the value shares or holds.
  value(v: PickleValue): boolean {
    if (v === null || typeof v === 'boolean') return this.emit(String(v));
    if (typeof v === 'number') return Number.isFinite(v) ? this.emit(JSON.stringify(v)) : this.string(String(v));
    if (typeof v === 'string') return this.string(v);
    if (typeof v === 'bigint') return this.string(v.toString());
    if (v instanceof Uint8Array) return this.string(`<${v.byteLength} bytes>`);
    if (v instanceof Map) {
      if (!this.emit('{')) return false;
      let first = true;
      for (const [k, x] of v) {
        if (!first && !this.emit(',')) return false;
        first = false;
        const room = this.max - this.length;
        if (!this.string(keyText(k, room)) || !this.emit(':') || !this.value(x)) return false;
      }
      return this.emit('}');
    }
    if (Array.isArray(v) || v.kind === 'tuple') {
      const items = Array.isArray(v) ? v : v.items;
      if (!this.emit('[')) return false;
      for (let i = 0; i < items.length; i++) {
        if ((i > 0 && !this.emit(',')) || !this.value(items[i])) return false;
      }
      return this.emit(']');
    }
    switch (v.kind) {
      case 'global':
        return this.string(`${v.module}.${v.name}`);
      case 'storage':
        return this.string(`<storage ${v.key.length > 64 ? v.key.slice(0, 64) + ELLIPSIS : v.key}: ${v.numel} × ${v.dtype}>`);
      case 'tensor':
        return this.string(`<tensor [${v.shape}] ${v.storage.dtype}>`);
    }
  }
}

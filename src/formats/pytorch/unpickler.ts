// A restricted pickle interpreter (protocols 0-5, every opcode of CPython's pickletools)
// that never executes anything: globals resolve only against the allow-list in
// pickle-globals.ts, whose stand-ins build plain data. Python equivalent:
//   pickle.Unpickler(f, encoding='utf-8') with a find_class that refuses all but torch's data.
//
// Bounded for hostile input: every length is checked against the bytes left before
// anything is allocated; the stack, the memo and container nesting have limits; each
// opcode consumes at least one byte and nothing jumps back, so the loop ends within
// `bytes.length` steps. Every failure is a SluiceError; results share references as the
// pickle does (a memo GET is the same object, never a copy).
//
// Values: lists → arrays, tuples → PickleTuple, dicts and OrderedDicts → Map (insertion
// order; keys compare as JS Map keys do, so primitives by value and tuples by identity;
// a list or dict as a key is refused, as Python refuses it), sets and frozensets → arrays,
// ints → number when |v| < 2^53 else bigint, bytes and bytearray → Uint8Array (copies).
// A container may not change once it is inside another, so cyclic (self-referencing)
// structures are refused; Python's pickler never does that for acyclic data.

import { SluiceError } from '../../errors.js';
import {
  callGlobal, constructGlobal, describe, isKind, persistentLoad, printable, resolveGlobal, type Site,
} from './pickle-globals.js';
import type { PickleDict, PickleGlobal, PickleTuple, PickleValue, StorageRef } from './types.js';

export interface UnpickleOptions {
  /** The file, named in every error. */
  name: string;
  /** Memo entries; also bounds memo indices (Python numbers them from 0). */
  maxMemo?: number;
  /** Stack items plus open MARKs. */
  maxStack?: number;
  /** Container nesting (a flat list is 1). Consumers may recurse this deep. */
  maxDepth?: number;
  /** Opcodes. The input length bounds them anyway; this is a second fuse. */
  maxOps?: number;
}

const DEFAULTS = { maxMemo: 1_000_000, maxStack: 1_000_000, maxDepth: 1000, maxOps: 100_000_000 };

/** Python 3.11 refuses int() of longer decimal strings; so do we (and BigInt stays cheap). */
const MAX_DECIMAL_DIGITS = 4300;
/** LONG4 bytes: ~4900 decimal digits, past anything a checkpoint stores. */
const MAX_LONG_BYTES = 2048;

/** Parses a pickle into plain data. Throws SluiceError: INVALID_PICKLE, UNSAFE_PICKLE, UNSUPPORTED_DTYPE. */
export function unpickle(bytes: Uint8Array, options: UnpickleOptions): PickleValue {
  const { name, maxMemo = DEFAULTS.maxMemo, maxStack = DEFAULTS.maxStack, maxDepth = DEFAULTS.maxDepth, maxOps = DEFAULTS.maxOps } = options;
  return new Machine(bytes, { name, maxMemo, maxStack, maxDepth, maxOps }).run();
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

class Machine implements Site {
  readonly file: string;
  private pos = 0;
  private at = 0; // where the current opcode starts, for messages
  private readonly view: DataView;
  private readonly stack: PickleValue[] = [];
  private readonly marks: number[] = []; // stack heights at each open MARK
  private readonly memo = new Map<number, PickleValue>();
  private readonly depth = new Map<object, number>(); // containers deeper than 1
  private readonly sealed = new Set<object>(); // values already inside a container
  private readonly storages = new Map<string, StorageRef>();
  private readonly globals = new Map<string, PickleGlobal>();

  constructor(
    private readonly b: Uint8Array,
    private readonly limits: Required<UnpickleOptions>,
  ) {
    this.file = limits.name;
    this.view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  }

  fail(message: string): never {
    throw new SluiceError('INVALID_PICKLE', `${this.file}: bad pickle at byte ${this.at}: ${message}`);
  }

  run(): PickleValue {
    const { b, stack } = this;
    for (let ops = 0; this.pos < b.length; ops++) {
      if (ops >= this.limits.maxOps) this.fail(`more than ${this.limits.maxOps} opcodes`);
      this.at = this.pos;
      const op = b[this.pos++];
      switch (op) {
        // ─── framing ───────────────────────────────────────────────────────────────────
        case 0x80: { // PROTO
          const v = this.u8();
          if (v > 5) this.fail(`unsupported protocol ${v}`);
          break;
        }
        case 0x95: { // FRAME: a length hint; only checked against what is left
          const n = this.u64();
          if (n > this.b.length - this.pos) this.fail(`truncated: a frame of ${n} bytes, ${this.b.length - this.pos} left`);
          break;
        }
        case 0x2e: { // STOP
          const v = this.pop();
          if (stack.length || this.marks.length) this.fail(`STOP leaves ${stack.length} values and ${this.marks.length} MARKs behind`);
          return v;
        }
        // ─── stack ─────────────────────────────────────────────────────────────────────
        case 0x28: this.room(); this.marks.push(stack.length); break; // MARK
        case 0x30: // POP (pops an open MARK when one is on top, as CPython does)
          if (this.marks.length && this.marks[this.marks.length - 1] === stack.length) this.marks.pop();
          else this.pop();
          break;
        case 0x31: this.popMark(); break; // POP_MARK
        case 0x32: this.push(this.top()); break; // DUP
        // ─── scalars ───────────────────────────────────────────────────────────────────
        case 0x4e: this.push(null); break; // NONE
        case 0x88: this.push(true); break; // NEWTRUE
        case 0x89: this.push(false); break; // NEWFALSE
        case 0x49: { // INT: decimal text; I01 / I00 are True / False
          const t = this.text();
          this.push(t === '01' ? true : t === '00' ? false : this.decimal(t));
          break;
        }
        case 0x4a: this.push(this.view.getInt32(this.take(4), true)); break; // BININT
        case 0x4b: this.push(this.u8()); break; // BININT1
        case 0x4d: this.push(this.view.getUint16(this.take(2), true)); break; // BININT2
        case 0x4c: this.push(this.decimal(this.text().replace(/L$/, ''))); break; // LONG
        case 0x8a: this.push(this.long(this.u8())); break; // LONG1
        case 0x8b: { // LONG4
          const n = this.view.getInt32(this.take(4), true);
          if (n < 0 || n > MAX_LONG_BYTES) this.fail(`LONG4 of ${n} bytes`);
          this.push(this.long(n));
          break;
        }
        case 0x46: this.push(this.float(this.text())); break; // FLOAT
        case 0x47: this.push(this.view.getFloat64(this.take(8), false)); break; // BINFLOAT (big-endian)
        // ─── str and bytes ─────────────────────────────────────────────────────────────
        case 0x53: this.push(this.decode(escapeDecode(this.quoted(), this))); break; // STRING (Python 2 str)
        case 0x54: this.push(this.decode(this.bytes(this.i32len()))); break; // BINSTRING
        case 0x55: this.push(this.decode(this.bytes(this.u8()))); break; // SHORT_BINSTRING
        case 0x56: this.push(rawUnicodeEscape(this.line(), this)); break; // UNICODE
        case 0x58: this.push(this.decode(this.bytes(this.u32()))); break; // BINUNICODE
        case 0x8c: this.push(this.decode(this.bytes(this.u8()))); break; // SHORT_BINUNICODE
        case 0x8d: this.push(this.decode(this.bytes(this.u64()))); break; // BINUNICODE8
        case 0x42: this.push(this.bytes(this.u32()).slice()); break; // BINBYTES
        case 0x43: this.push(this.bytes(this.u8()).slice()); break; // SHORT_BINBYTES
        case 0x8e: // BINBYTES8
        case 0x96: this.push(this.bytes(this.u64()).slice()); break; // BYTEARRAY8
        case 0x97: // NEXT_BUFFER
        case 0x98: this.fail('out-of-band buffers (protocol 5 NEXT_BUFFER) are not supported'); // READONLY_BUFFER
        // ─── containers ────────────────────────────────────────────────────────────────
        case 0x5d: // EMPTY_LIST
        case 0x8f: this.push([]); break; // EMPTY_SET
        case 0x61: { // APPEND
          const v = this.pop();
          this.extend(this.top(), [v]);
          break;
        }
        case 0x65: // APPENDS
        case 0x90: { // ADDITEMS
          const items = this.popMark();
          this.extend(this.top(), items);
          break;
        }
        case 0x6c: // LIST
        case 0x91: { // FROZENSET
          const items = this.popMark();
          this.push(this.adopt(items, items));
          break;
        }
        case 0x29: this.push(this.tuple([])); break; // EMPTY_TUPLE
        case 0x74: this.push(this.tuple(this.popMark())); break; // TUPLE
        case 0x85: // TUPLE1
        case 0x86: // TUPLE2
        case 0x87: { // TUPLE3
          const items = Array.from({ length: op - 0x84 }, () => this.pop()).reverse();
          this.push(this.tuple(items));
          break;
        }
        case 0x7d: this.push(new Map()); break; // EMPTY_DICT
        case 0x64: { // DICT
          const items = this.popMark();
          const d: PickleDict = new Map();
          this.setItems(d, items);
          this.push(d);
          break;
        }
        case 0x73: { // SETITEM
          const v = this.pop();
          const k = this.pop();
          this.setItems(this.top(), [k, v]);
          break;
        }
        case 0x75: { // SETITEMS
          const items = this.popMark();
          this.setItems(this.top(), items);
          break;
        }
        // ─── memo ──────────────────────────────────────────────────────────────────────
        case 0x70: this.put(this.index(this.text())); break; // PUT
        case 0x71: this.put(this.u8()); break; // BINPUT
        case 0x72: this.put(this.u32()); break; // LONG_BINPUT
        case 0x94: this.put(this.memo.size); break; // MEMOIZE
        case 0x67: this.get(this.index(this.text())); break; // GET
        case 0x68: this.get(this.u8()); break; // BINGET
        case 0x6a: this.get(this.u32()); break; // LONG_BINGET
        // ─── globals and calls ─────────────────────────────────────────────────────────
        case 0x63: this.push(this.global(this.decode(this.line()), this.decode(this.line()))); break; // GLOBAL
        case 0x93: { // STACK_GLOBAL
          const name = this.pop();
          const module = this.pop();
          if (typeof module !== 'string' || typeof name !== 'string') this.fail(`STACK_GLOBAL of ${describe(module)} and ${describe(name)}`);
          this.push(this.global(module, name));
          break;
        }
        case 0x52: { // REDUCE: f(*args)
          const args = this.pop();
          this.push(this.call(this.pop(), this.args(args), callGlobal));
          break;
        }
        case 0x81: { // NEWOBJ: cls.__new__(cls, *args)
          const args = this.pop();
          this.push(this.call(this.pop(), this.args(args), constructGlobal));
          break;
        }
        case 0x92: { // NEWOBJ_EX: cls.__new__(cls, *args, **kwargs)
          const kwargs = this.pop();
          const args = this.pop();
          if (!(kwargs instanceof Map) || kwargs.size) this.fail(`NEWOBJ_EX keyword arguments ${describe(kwargs)}`);
          this.push(this.call(this.pop(), this.args(args), constructGlobal));
          break;
        }
        case 0x6f: { // OBJ: MARK cls args... → cls(*args)
          const [cls, ...args] = this.popMark();
          this.push(this.call(cls, args, callGlobal));
          break;
        }
        case 0x69: { // INST: module and name inline, MARK args... → cls(*args)
          const g = this.global(this.decode(this.line()), this.decode(this.line()));
          this.push(this.call(g, this.popMark(), callGlobal));
          break;
        }
        case 0x62: { // BUILD: state on an OrderedDict (state_dict `_metadata`) is dropped
          this.pop();
          const target = this.top();
          if (!(target instanceof Map)) this.fail(`BUILD (setstate) on ${describe(target)}`);
          break;
        }
        case 0x51: this.push(persistentLoad(this.pop(), this.storages, this)); break; // BINPERSID
        case 0x50: this.line(); this.fail('PERSID (a text persistent id): torch.save writes tuple ids'); // PERSID
        case 0x82: // EXT1
        case 0x83: // EXT2
        case 0x84: { // EXT4
          const code = op === 0x82 ? this.u8() : op === 0x83 ? this.view.getUint16(this.take(2), true) : this.view.getInt32(this.take(4), true);
          throw new SluiceError('UNSAFE_PICKLE', `${this.file}: refusing to load: the pickle references copyreg extension code ${code}, which is not a tensor or plain data (sluice never executes pickled code)`);
        }
        default:
          this.fail(`unknown opcode 0x${op.toString(16).padStart(2, '0')}${op >= 0x20 && op < 0x7f ? ` (${JSON.stringify(String.fromCharCode(op))})` : ''}`);
      }
    }
    return this.fail(this.pos === 0 ? 'truncated: empty input' : 'truncated: the input ends before STOP');
  }

  // ─── input ──────────────────────────────────────────────────────────────────────────

  /** Claims n bytes and returns where they start; checked before anything is allocated. */
  private take(n: number | bigint): number {
    const left = this.b.length - this.pos;
    if (n > left) this.fail(`truncated: needs ${n} bytes, ${left} left`);
    const start = this.pos;
    this.pos += Number(n);
    return start;
  }

  private u8(): number { return this.b[this.take(1)]; }
  private u32(): number { return this.view.getUint32(this.take(4), true); }
  private u64(): bigint { return this.view.getBigUint64(this.take(8), true); }

  private i32len(): number {
    const n = this.view.getInt32(this.take(4), true);
    if (n < 0) this.fail(`negative length ${n}`);
    return n;
  }

  private bytes(n: number | bigint): Uint8Array {
    const start = this.take(n);
    return this.b.subarray(start, this.pos);
  }

  /** The bytes up to the next newline (consumed, not returned). */
  private line(): Uint8Array {
    const nl = this.b.indexOf(0x0a, this.pos);
    if (nl < 0) this.fail('truncated: a text argument without its newline');
    const out = this.b.subarray(this.pos, nl);
    this.pos = nl + 1;
    return out;
  }

  /** A short ASCII argument (numbers): over-long text is refused before it is decoded. */
  private text(): string {
    const l = this.line();
    if (l.length > MAX_DECIMAL_DIGITS + 2) this.fail(`a ${l.length}-character number`);
    return String.fromCharCode(...l);
  }

  /** STRING's argument: the text between matching quotes. */
  private quoted(): Uint8Array {
    const l = this.line();
    const q = l[0];
    if (l.length < 2 || (q !== 0x27 && q !== 0x22) || l[l.length - 1] !== q) this.fail('STRING argument is not quoted');
    return l.subarray(1, l.length - 1);
  }

  private decode(bytes: Uint8Array): string {
    try {
      return utf8.decode(bytes);
    } catch {
      return this.fail('a string that is not valid UTF-8');
    }
  }

  // ─── numbers ────────────────────────────────────────────────────────────────────────

  /** INT / LONG text: Python's int(s, 0) for what Python writes (no prefixes, no leading zeros). */
  private decimal(t: string): number | bigint {
    if (!/^[+-]?(0|[1-9]\d*)$/.test(t)) this.fail(`${printable(JSON.stringify(t))} is not an integer`);
    return t.length <= 15 ? Number(t) : normalize(BigInt(t));
  }

  /** PUT / GET index: Python's int(s). */
  private index(t: string): number {
    if (!/^\d+$/.test(t)) this.fail(`memo index ${printable(JSON.stringify(t))}`);
    return t.length > 15 ? Infinity : Number(t);
  }

  /** LONG1 / LONG4: n bytes, little-endian two's complement. */
  private long(n: number): number | bigint {
    const at = this.take(n);
    if (n === 0) return 0;
    const bytes = this.b.subarray(at, at + n);
    const negative = bytes[n - 1] >= 0x80;
    if (n <= 6) {
      let v = 0;
      for (let i = n - 1; i >= 0; i--) v = v * 256 + bytes[i];
      return negative ? v - 2 ** (8 * n) : v;
    }
    let hex = '';
    for (let i = n - 1; i >= 0; i--) hex += bytes[i].toString(16).padStart(2, '0');
    const v = BigInt(`0x${hex}`);
    return normalize(negative ? v - (1n << BigInt(8 * n)) : v);
  }

  /** FLOAT text: repr(float), as CPython's PyOS_string_to_double reads it (overflow refused). */
  private float(t: string): number {
    const m = /^([+-]?)(?:(inf|infinity)|(nan)|(\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?))$/i.exec(t);
    if (!m) this.fail(`${printable(JSON.stringify(t))} is not a float`);
    const sign = m[1] === '-' ? -1 : 1;
    if (m[2]) return sign * Infinity;
    if (m[3]) return NaN;
    const v = Number(m[1] + m[4]);
    if (!Number.isFinite(v)) this.fail(`float ${t} overflows`);
    return v;
  }

  // ─── stack and memo ─────────────────────────────────────────────────────────────────

  private room(): void {
    if (this.stack.length + this.marks.length >= this.limits.maxStack) this.fail(`stack deeper than ${this.limits.maxStack}`);
  }

  private push(v: PickleValue): void {
    this.room();
    this.stack.push(v);
  }

  /** The bottom of the current MARK frame: nothing below it may be popped. */
  private fence(): number {
    return this.marks.length ? this.marks[this.marks.length - 1] : 0;
  }

  private pop(): PickleValue {
    if (this.stack.length <= this.fence()) this.fail('stack underflow');
    return this.stack.pop()!;
  }

  private top(): PickleValue {
    if (this.stack.length <= this.fence()) this.fail('stack underflow');
    return this.stack[this.stack.length - 1];
  }

  private popMark(): PickleValue[] {
    const m = this.marks.pop();
    if (m === undefined) this.fail('no MARK to pop to');
    return this.stack.splice(m);
  }

  private put(i: number): void {
    if (i >= this.limits.maxMemo) this.fail(`memo index ${i} beyond ${this.limits.maxMemo}`);
    this.memo.set(i, this.top());
  }

  private get(i: number): void {
    const v = this.memo.get(i);
    if (v === undefined) this.fail(`memo index ${i} was never stored`);
    this.push(v);
  }

  // ─── containers ─────────────────────────────────────────────────────────────────────

  private depthOf(v: PickleValue): number {
    return typeof v === 'object' && v !== null ? (this.depth.get(v) ?? 1) : 0;
  }

  /** Records `child` as inside `parent`: seals it, and deepens `parent` if need be. */
  private nest(parent: object, child: PickleValue): void {
    if (typeof child !== 'object' || child === null) return;
    if (child === parent) this.fail('a container inside itself (recursive structures are not supported)');
    this.sealed.add(child);
    const d = this.depthOf(child) + 1;
    if (d > (this.depth.get(parent) ?? 1)) {
      if (d > this.limits.maxDepth) this.fail(`containers nested deeper than ${this.limits.maxDepth}`);
      this.depth.set(parent, d);
    }
  }

  /** A new container over existing values. */
  private adopt<T extends object>(container: T, children: Iterable<PickleValue>): T {
    for (const c of children) this.nest(container, c);
    return container;
  }

  private tuple(items: PickleValue[]): PickleTuple {
    return this.adopt({ kind: 'tuple', items }, items);
  }

  private mutable(target: object): void {
    if (this.sealed.has(target)) this.fail('changes a container already inside another (recursive structures are not supported)');
  }

  private extend(target: PickleValue, items: PickleValue[]): void {
    if (!Array.isArray(target)) this.fail(`APPEND to ${describe(target)}`);
    this.mutable(target);
    for (const v of items) {
      this.nest(target, v);
      target.push(v);
    }
  }

  private setItems(target: PickleValue, items: PickleValue[]): void {
    if (!(target instanceof Map)) this.fail(`SETITEM on ${describe(target)}`);
    if (items.length % 2) this.fail('odd number of items for a dict');
    this.mutable(target);
    for (let i = 0; i < items.length; i += 2) {
      const k = items[i];
      if (Array.isArray(k) || k instanceof Map) this.fail(`unhashable dict key: ${describe(k)}`);
      this.nest(target, k);
      this.nest(target, items[i + 1]);
      target.set(k, items[i + 1]);
    }
  }

  // ─── globals ────────────────────────────────────────────────────────────────────────

  private global(module: string, name: string): PickleGlobal {
    const key = `${module}\n${name}`;
    let g = this.globals.get(key);
    if (!g) {
      g = resolveGlobal(module, name, this.file);
      this.globals.set(key, g);
    }
    return g;
  }

  private args(v: PickleValue): PickleValue[] {
    if (!isKind(v, 'tuple')) this.fail(`call arguments are ${describe(v)}, not a tuple`);
    return v.items;
  }

  private call(f: PickleValue | undefined, args: PickleValue[], how: typeof callGlobal): PickleValue {
    if (!isKind(f, 'global')) this.fail(`a call of ${describe(f)}, which is not an allow-listed global`);
    const out = how(f, args, this);
    // A fresh container from a stand-in (a set's list, an OrderedDict): record its depth.
    if (Array.isArray(out)) return this.adopt(out, out);
    if (isKind(out, 'tuple')) return this.adopt(out, out.items);
    return out;
  }
}

function normalize(v: bigint): number | bigint {
  return v >= -(2n ** 53n) + 1n && v <= 2n ** 53n - 1n ? Number(v) : v;
}

/** Python's codecs.escape_decode: the backslash escapes of a bytes literal. */
function escapeDecode(s: Uint8Array, site: Site): Uint8Array {
  const out: number[] = [];
  const simple: Record<number, number> = { 0x5c: 0x5c, 0x27: 0x27, 0x22: 0x22, 0x62: 8, 0x66: 12, 0x74: 9, 0x6e: 10, 0x72: 13, 0x76: 11, 0x61: 7 };
  const hex = (c: number | undefined): number => (c === undefined ? -1 : parseInt(String.fromCharCode(c), 16));
  for (let i = 0; i < s.length; i++) {
    if (s[i] !== 0x5c) { out.push(s[i]); continue; }
    const c = s[++i];
    if (c === undefined) site.fail('STRING ends in a lone backslash');
    if (c === 0x0a) continue; // backslash-newline: a line continuation
    if (simple[c] !== undefined) { out.push(simple[c]); continue; }
    if (c >= 0x30 && c <= 0x37) { // up to three octal digits
      let v = c - 0x30;
      for (let k = 0; k < 2 && s[i + 1] >= 0x30 && s[i + 1] <= 0x37; k++) v = v * 8 + (s[++i] - 0x30);
      out.push(v & 0xff);
      continue;
    }
    if (c === 0x78) { // \xhh
      const hi = hex(s[i + 1]);
      const lo = hex(s[i + 2]);
      if (!(hi >= 0) || !(lo >= 0)) site.fail('invalid \\x escape in STRING');
      out.push(hi * 16 + lo);
      i += 2;
      continue;
    }
    out.push(0x5c, c); // unknown escapes stay as written
  }
  return Uint8Array.from(out);
}

/** UNICODE's argument: latin-1 text with \uXXXX / \UXXXXXXXX escapes (raw-unicode-escape). */
function rawUnicodeEscape(s: Uint8Array, site: Site): string {
  const parts: string[] = [];
  for (let i = 0; i < s.length;) {
    if (s[i] !== 0x5c) { parts.push(String.fromCharCode(s[i++])); continue; }
    let run = 0; // an escape needs an odd run of backslashes; the last one starts it
    while (s[i] === 0x5c) { run++; i++; }
    const u = s[i];
    const escape = run % 2 === 1 && (u === 0x75 || u === 0x55);
    parts.push('\\'.repeat(escape ? run - 1 : run));
    if (!escape) continue;
    const n = u === 0x75 ? 4 : 8;
    const digits = String.fromCharCode(...s.subarray(i + 1, i + 1 + n));
    if (!new RegExp(`^[0-9a-fA-F]{${n}}$`).test(digits)) site.fail('truncated \\uXXXX escape in UNICODE');
    const cp = parseInt(digits, 16);
    if (cp > 0x10ffff) site.fail('\\U escape beyond U+10FFFF in UNICODE');
    parts.push(String.fromCodePoint(cp));
    i += 1 + n;
  }
  return parts.join('');
}

// A restricted pickle interpreter (protocols 0-5, every opcode of CPython's pickletools)
// that never executes anything: globals resolve only against the allow-list in
// pickle-globals.ts, whose stand-ins build plain data. Python equivalent:
//   pickle.Unpickler(f, encoding='utf-8') with a find_class that refuses all but torch's data.
//
// Bounded for hostile input: every length is checked against the bytes left before
// anything is allocated; the stack, the memo and container nesting have limits; each
// opcode consumes at least one byte and nothing jumps back, so the loop ends within
// `bytes.length` steps. What those steps may build is bounded too (limits.ts): objects
// created, container items in all, one container's length, tensors, bytes made, so a
// few MB of opcodes cannot fill the heap (an empty dict is one byte of pickle and ~250
// bytes of memory), nor can set() / bytearray() copy a shared object a million times. Every failure is a SluiceError; results share references as the
// pickle does (a memo GET is the same object, never a copy).
//
// Values: lists → arrays, tuples → PickleTuple, dicts and OrderedDicts → Map (insertion
// order; keys compare as JS Map keys do: primitives by value, True/False merged into 1/0
// as Python merges them, tuples by identity; unhashable keys are refused as Python
// refuses them), sets and frozensets → arrays (equal primitives once), ints → number when
// |v| < 2^53 else bigint, floats → number (so 1.0 and 1 look alike), str → string (UTF-8;
// Python 2 str too, as torch.load's encoding='utf-8'), bytes and bytearray → Uint8Array
// (copies). Bytes after STOP are ignored, as Python ignores them.
// A container may not change once it is inside another, so cyclic (self-referencing)
// structures are refused; Python's pickler never does that for acyclic data. That rule
// is what lets nesting depth be counted exactly as containers are built.
//
// Past ~400 lines on purpose: the opcode table and the container rules it enforces read
// as one unit; the Python-side semantics (allow-list, literals) live in pickle-globals.ts.

import { SluiceError } from '../../errors.js';
import {
  callGlobal, constructGlobal, describe, escapeDecode, intFromBytes, isKind, persistentLoad, printable, pyFloat, pyInt,
  rawUnicodeEscape, resolveGlobal, type Site,
} from './pickle-globals.js';
import { MAX_BYTES, MAX_CONTAINER, MAX_ITEMS, MAX_OBJECTS, MAX_TENSORS } from './limits.js';
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
  /** Containers, tensors, storages and bytes objects created. */
  maxObjects?: number;
  /** Items put into containers, in all (a dict entry counts 2). */
  maxItems?: number;
  /** Items of one container. */
  maxContainer?: number;
  /** Tensors rebuilt (torch._utils._rebuild_tensor*). */
  maxTensors?: number;
  /** Bytes of bytes / bytearray objects made, in all. */
  maxBytes?: number;
}

const DEFAULTS: Required<Omit<UnpickleOptions, 'name'>> = {
  maxMemo: 1_000_000, maxStack: 1_000_000, maxDepth: 1000, maxOps: 100_000_000,
  maxObjects: MAX_OBJECTS, maxItems: MAX_ITEMS, maxContainer: MAX_CONTAINER, maxTensors: MAX_TENSORS, maxBytes: MAX_BYTES,
};

/** Python 3.11 refuses int() of longer decimal strings; so do we (and BigInt stays cheap). */
const MAX_DECIMAL_DIGITS = 4300;
/** LONG4 bytes: ~4900 decimal digits, past anything a checkpoint stores. */
const MAX_LONG_BYTES = 2048;
/** str arguments: V8's longest string is ~2^29 UTF-16 units; refuse clearly well before. */
const MAX_STR_BYTES = 2 ** 28;

/** Parses a pickle into plain data. Throws SluiceError: INVALID_PICKLE, UNSAFE_PICKLE, UNSUPPORTED_DTYPE. */
export function unpickle(bytes: Uint8Array, options: UnpickleOptions): PickleValue {
  const limits = { ...DEFAULTS, ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)), name: options.name };
  return new Machine(bytes, limits).run();
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
  private readonly sets = new Map<object, { kind: 'set' | 'frozenset'; seen: Set<unknown> }>(); // arrays that are sets
  private readonly unhashable = new Set<PickleTuple>(); // tuples holding a list, dict or set
  private frameEnd = 0; // an opcode that starts before it must end by it
  private readonly storages = new Map<string, StorageRef>();
  private readonly globals = new Map<string, PickleGlobal>();
  private readonly made = { objects: 0, items: 0, tensors: 0, bytes: 0 }; // against limits.max*

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
        case 0x95: { // FRAME: the next n bytes hold whole opcodes
          if (this.at < this.frameEnd) this.fail('a FRAME inside another');
          const n = this.u64();
          if (n > this.b.length - this.pos) this.fail(`truncated: a frame of ${n} bytes, ${this.b.length - this.pos} left`);
          this.frameEnd = this.pos + Number(n);
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
          this.push(t === '01' ? true : t === '00' ? false : pyInt(t, this));
          break;
        }
        case 0x4a: this.push(this.view.getInt32(this.take(4), true)); break; // BININT
        case 0x4b: this.push(this.u8()); break; // BININT1
        case 0x4d: this.push(this.view.getUint16(this.take(2), true)); break; // BININT2
        case 0x4c: this.push(pyInt(this.text().replace(/L$/, ''), this)); break; // LONG
        case 0x8a: this.push(intFromBytes(this.bytes(this.u8()))); break; // LONG1
        case 0x8b: { // LONG4
          const n = this.view.getInt32(this.take(4), true);
          if (n < 0 || n > MAX_LONG_BYTES) this.fail(`LONG4 of ${n} bytes`);
          this.push(intFromBytes(this.bytes(n)));
          break;
        }
        case 0x46: this.push(pyFloat(this.text(), this)); break; // FLOAT
        case 0x47: this.push(this.view.getFloat64(this.take(8), false)); break; // BINFLOAT (big-endian)
        // ─── str and bytes ─────────────────────────────────────────────────────────────
        case 0x53: this.push(this.decode(escapeDecode(this.quoted(), this))); break; // STRING (Python 2 str)
        case 0x54: this.push(this.decode(this.bytes(this.i32len()))); break; // BINSTRING
        case 0x55: this.push(this.decode(this.bytes(this.u8()))); break; // SHORT_BINSTRING
        case 0x56: this.push(rawUnicodeEscape(this.strSize(this.line()), this)); break; // UNICODE
        case 0x58: this.push(this.decode(this.bytes(this.u32()))); break; // BINUNICODE
        case 0x8c: this.push(this.decode(this.bytes(this.u8()))); break; // SHORT_BINUNICODE
        case 0x8d: this.push(this.decode(this.bytes(this.u64()))); break; // BINUNICODE8
        case 0x42: this.push(this.newBytes(this.bytes(this.u32()).slice())); break; // BINBYTES
        case 0x43: this.push(this.newBytes(this.bytes(this.u8()).slice())); break; // SHORT_BINBYTES
        case 0x8e: // BINBYTES8
        case 0x96: this.push(this.newBytes(this.bytes(this.u64()).slice())); break; // BYTEARRAY8
        case 0x97: // NEXT_BUFFER
        case 0x98: this.fail('out-of-band buffers (protocol 5 NEXT_BUFFER) are not supported'); // READONLY_BUFFER
        // ─── containers ────────────────────────────────────────────────────────────────
        case 0x5d: this.push(this.object([])); break; // EMPTY_LIST
        case 0x8f: this.push(this.set([], 'set')); break; // EMPTY_SET
        case 0x61: this.extend([this.pop()], 'list'); break; // APPEND
        case 0x65: this.extend(this.popMark(), 'list'); break; // APPENDS
        case 0x90: this.extend(this.popMark(), 'set'); break; // ADDITEMS
        case 0x6c: this.push(this.list(this.popMark())); break; // LIST
        case 0x91: this.push(this.set(this.popMark(), 'frozenset')); break; // FROZENSET
        case 0x29: this.push(this.tuple([])); break; // EMPTY_TUPLE
        case 0x74: this.push(this.tuple(this.popMark())); break; // TUPLE
        case 0x85: // TUPLE1
        case 0x86: // TUPLE2
        case 0x87: this.push(this.tuple(this.pops(op - 0x84))); break; // TUPLE3
        case 0x7d: this.push(this.object(new Map())); break; // EMPTY_DICT
        case 0x64: this.push(this.setItems(this.object(new Map()), this.popMark())); break; // DICT
        case 0x73: this.addItems(this.pops(2)); break; // SETITEM
        case 0x75: this.addItems(this.popMark()); break; // SETITEMS
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
          const [module, name] = this.pops(2);
          if (typeof module !== 'string' || typeof name !== 'string') this.fail(`STACK_GLOBAL of ${describe(module)} and ${describe(name)}`);
          this.push(this.global(module, name));
          break;
        }
        case 0x52: { // REDUCE: f(*args)
          const [f, args] = this.pops(2);
          this.push(this.call(f, this.args(args), callGlobal));
          break;
        }
        case 0x81: { // NEWOBJ: cls.__new__(cls, *args)
          const [cls, args] = this.pops(2);
          this.push(this.call(cls, this.args(args), constructGlobal));
          break;
        }
        case 0x92: { // NEWOBJ_EX: cls.__new__(cls, *args, **kwargs)
          const [cls, args, kwargs] = this.pops(3);
          if (!(kwargs instanceof Map) || kwargs.size) this.fail(`NEWOBJ_EX keyword arguments ${describe(kwargs)}`);
          this.push(this.call(cls, this.args(args), constructGlobal));
          break;
        }
        case 0x6f: { // OBJ: MARK cls args... → cls(*args)
          const [cls, ...args] = this.popMark();
          this.push(this.call(cls, args, callGlobal));
          break;
        }
        case 0x69: { // INST: module and name inline (resolved first), MARK args... → cls(*args)
          const g = this.global(this.decode(this.line()), this.decode(this.line()));
          this.push(this.call(g, this.popMark(), callGlobal));
          break;
        }
        case 0x62: this.build(this.pop(), this.top()); break; // BUILD
        case 0x51: { // BINPERSID
          const known = this.storages.size;
          const storage = persistentLoad(this.pop(), this.storages, this);
          this.push(this.storages.size > known ? this.object(storage) : storage);
          break;
        }
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
    if (this.pos < this.frameEnd && n > this.frameEnd - this.pos) this.fail('an opcode runs past the end of its FRAME');
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
    if (this.pos < this.frameEnd && nl >= this.frameEnd) this.fail('an opcode runs past the end of its FRAME');
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
    this.strSize(bytes);
    try {
      return utf8.decode(bytes);
    } catch {
      return this.fail('a string that is not valid UTF-8');
    }
  }

  /** PUT / GET index: Python's int(s). */
  private index(t: string): number {
    if (!/^\d+$/.test(t)) this.fail(`memo index ${printable(JSON.stringify(t))}`);
    return t.length > 15 ? Infinity : Number(t);
  }

  private strSize(bytes: Uint8Array): Uint8Array {
    if (bytes.length > MAX_STR_BYTES) this.fail(`a ${bytes.length}-byte str, longer than sluice reads (${MAX_STR_BYTES})`);
    return bytes;
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

  /** The top n values, in stack order. */
  private pops(n: number): PickleValue[] {
    return Array.from({ length: n }, () => this.pop()).reverse();
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
  private adopt<T extends object>(container: T, children: PickleValue[]): T {
    this.object(container);
    this.grow(children.length, children.length);
    for (const c of children) this.nest(container, c);
    return container;
  }

  /** Counts a created object against maxObjects; a dict or set counts 2 (a Map costs twice a tuple). */
  private object<T>(v: T, weight = v instanceof Map ? 2 : 1): T {
    this.made.objects += weight;
    if (this.made.objects > this.limits.maxObjects) this.fail(`more than ${this.limits.maxObjects} objects (containers, tensors, storages, bytes)`);
    return v;
  }

  private newBytes(b: Uint8Array): Uint8Array {
    this.made.bytes += b.byteLength;
    if (this.made.bytes > this.limits.maxBytes) this.fail(`more than ${this.limits.maxBytes} bytes of bytes objects`);
    return this.object(b);
  }

  /** Counts `added` items against maxItems, for a container that will hold `length`. */
  private grow(added: number, length: number): void {
    this.made.items += added;
    if (this.made.items > this.limits.maxItems) this.fail(`more than ${this.limits.maxItems} container items`);
    if (length > this.limits.maxContainer) this.fail(`a container of more than ${this.limits.maxContainer} items`);
  }

  private list(items: PickleValue[]): PickleValue[] {
    return this.adopt(items, items);
  }

  private tuple(items: PickleValue[]): PickleTuple {
    const t = this.adopt<PickleTuple>({ kind: 'tuple', items }, items);
    if (items.some((v) => !this.isHashable(v))) this.unhashable.add(t);
    return t;
  }

  private mutable(target: object): void {
    if (this.sealed.has(target)) this.fail('changes a container already inside another (recursive structures are not supported)');
  }

  /** A set or frozenset (an array here) of existing values. */
  private set(items: PickleValue[], kind: 'set' | 'frozenset'): PickleValue[] {
    const out: PickleValue[] = this.object([], 2); // and its `seen` Set
    this.sets.set(out, { kind, seen: new Set() });
    this.addToSet(out, items);
    return out;
  }

  /** set.add: items must be hashable; equal primitives (1, 1.0, True) are added once. */
  private addToSet(target: PickleValue[], items: PickleValue[]): void {
    const { kind, seen } = this.sets.get(target)!;
    this.grow(items.length, target.length + items.length);
    for (const v of items) {
      this.hashable(v, `${kind} item`);
      if (typeof v !== 'object' || v === null) {
        const key = typeof v === 'boolean' ? Number(v) : v;
        if (seen.has(key)) continue;
        seen.add(key);
      }
      this.nest(target, v);
      target.push(v);
    }
  }

  /** Python's hash() refuses lists, dicts, sets, and tuples holding one (frozensets are fine). */
  private isHashable(v: PickleValue): boolean {
    if (v instanceof Map || (Array.isArray(v) && this.sets.get(v)?.kind !== 'frozenset')) return false;
    return !isKind(v, 'tuple') || !this.unhashable.has(v);
  }

  private hashable(v: PickleValue, what: string): void {
    if (!this.isHashable(v)) this.fail(`unhashable ${what}: ${describe(v)}`);
  }

  /** APPEND(S) on a list, ADDITEMS on a set: the value under the items. */
  private extend(items: PickleValue[], as: 'list' | 'set'): void {
    const target = this.top();
    if (!items.length) return; // as CPython: nothing to add, nothing checked
    const kind = Array.isArray(target) ? (this.sets.get(target)?.kind ?? 'list') : undefined;
    if (kind !== as) this.fail(`${as === 'list' ? 'APPEND to' : 'ADDITEMS on'} ${kind ? `a ${kind}` : describe(target)}`);
    const list = target as PickleValue[];
    this.mutable(list);
    if (as === 'set') return this.addToSet(list, items);
    this.grow(items.length, list.length + items.length);
    for (const v of items) {
      this.nest(list, v);
      list.push(v);
    }
  }

  /** SETITEM(S): into the dict under the items. */
  private addItems(items: PickleValue[]): void {
    const target = this.top();
    if (items.length) this.setItems(target, items); // as CPython: nothing to add, nothing checked
  }

  private setItems(target: PickleValue, items: PickleValue[]): PickleDict {
    if (!(target instanceof Map)) this.fail(`SETITEM on ${describe(target)}`);
    if (items.length % 2) this.fail('odd number of items for a dict');
    this.mutable(target);
    this.grow(items.length, 2 * target.size + items.length);
    for (let i = 0; i < items.length; i += 2) {
      let k = items[i];
      this.hashable(k, 'dict key');
      // Python: True == 1 and False == 0 are one key; the first spelling stays.
      if (typeof k === 'boolean' && target.has(Number(k))) k = Number(k);
      else if ((k === 0 || k === 1) && target.has(k === 1)) k = k === 1;
      this.nest(target, k);
      this.nest(target, items[i + 1]);
      target.set(k, items[i + 1]);
    }
    return target;
  }

  /** BUILD: attributes of an OrderedDict (a state_dict's `_metadata`) are checked, then dropped. */
  private build(state: PickleValue, target: PickleValue): void {
    if (!(target instanceof Map)) this.fail(`BUILD (setstate) on ${describe(target)}`);
    const [dict, slots = null] = isKind(state, 'tuple') && state.items.length === 2 ? state.items : [state];
    if (!(dict === null || dict instanceof Map) || !(slots === null || slots instanceof Map)) this.fail(`BUILD state ${describe(state)} is not a dict`);
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
    // A fresh container from a stand-in: record its depth (the only arrays are set() and frozenset()).
    // Stand-ins copy at most one container (maxContainer items) before this counts it.
    if (Array.isArray(out)) return this.set(out, f.name === 'frozenset' ? 'frozenset' : 'set');
    if (isKind(out, 'tuple')) return this.tuple(out.items);
    if (out instanceof Uint8Array) return this.newBytes(out);
    if (isKind(out, 'tensor') && f.name.startsWith('_rebuild_tensor') && ++this.made.tensors > this.limits.maxTensors) {
      this.fail(`more than ${this.limits.maxTensors} tensors`);
    }
    return typeof out === 'object' && out !== null ? this.object(out) : out;
  }
}

// The Python side of the restricted unpickler, in pure TypeScript: the allow-list (every
// global a torch.save pickle may name, each mapped to a stand-in that builds plain data),
// torch's persistent storage ids, and the Python literal forms the text opcodes carry
// (int(), float(), escape_decode, raw-unicode-escape). Nothing here imports, calls or
// evaluates anything the pickle names; a global outside the list is refused at the GLOBAL
// opcode itself. Python equivalent of the allow-list:
//   torch.load(f, weights_only=True), minus numpy, minus every tensor subclass.

import { quote, SluiceError } from '../../errors.js';
import type { Dtype } from '../dtypes.js';
import { MAX_RANK } from './limits.js';
import type { PickleGlobal, PickleTuple, PickleValue, StorageRef, TensorRef } from './types.js';

/** How a stand-in reports a malformed call: INVALID_PICKLE naming the file and byte. */
export interface Site {
  readonly file: string;
  fail(message: string): never;
}

type Call = (args: readonly PickleValue[], site: Site) => PickleValue;

interface Entry {
  /** REDUCE / OBJ / INST: `f(*args)`. Without it the global is data only (a dtype, a storage class). */
  call?: Call;
  /** NEWOBJ / NEWOBJ_EX: `cls.__new__(cls, *args)`. */
  construct?: Call;
}

// ─── dtypes ─────────────────────────────────────────────────────────────────────────────

/** torch.<Name>Storage → the dtype of its elements. UntypedStorage counts bytes. */
export const STORAGE_DTYPES: Readonly<Record<string, Dtype>> = {
  FloatStorage: 'F32',
  DoubleStorage: 'F64',
  HalfStorage: 'F16',
  BFloat16Storage: 'BF16',
  LongStorage: 'I64',
  IntStorage: 'I32',
  ShortStorage: 'I16',
  CharStorage: 'I8',
  ByteStorage: 'U8',
  BoolStorage: 'BOOL',
  ComplexFloatStorage: 'C64',
  UntypedStorage: 'U8',
};

/** torch.<dtype> (canonical names and aliases) → dtype; these load as PickleGlobal markers. */
export const TORCH_DTYPES: Readonly<Record<string, Dtype>> = {
  float32: 'F32', float: 'F32', float64: 'F64', double: 'F64', float16: 'F16', half: 'F16',
  bfloat16: 'BF16', int64: 'I64', long: 'I64', int32: 'I32', int: 'I32', int16: 'I16',
  short: 'I16', int8: 'I8', uint8: 'U8', bool: 'BOOL', complex64: 'C64', cfloat: 'C64',
  uint16: 'U16', uint32: 'U32', uint64: 'U64', float8_e4m3fn: 'F8_E4M3', float8_e5m2: 'F8_E5M2',
};

/** Real torch storages and dtypes sluice has no Dtype for: UNSUPPORTED_DTYPE, not UNSAFE_PICKLE. */
const UNSUPPORTED = new Set([
  'ComplexDoubleStorage', 'QUInt8Storage', 'QInt8Storage', 'QInt32Storage', 'QUInt4x2Storage', 'QUInt2x4Storage',
  'complex128', 'cdouble', 'complex32', 'chalf', 'qint8', 'quint8', 'qint32', 'quint4x2', 'quint2x4',
]);

// ─── the allow-list ─────────────────────────────────────────────────────────────────────

const ENTRIES = new Map<string, Entry>([
  // state_dicts: OrderedDict() then SETITEMS, then BUILD with {'_metadata': ...} (dropped).
  ['collections.OrderedDict', { call: orderedDict, construct: orderedDict }],
  ['torch._utils._rebuild_tensor_v2', { call: (a, s) => rebuildTensor(a, s, 6, 7) }],
  ['torch._utils._rebuild_tensor', { call: (a, s) => rebuildTensor(a, s, 4, 4) }],
  ['torch._utils._rebuild_parameter', { call: (a, s) => rebuildParameter(a, s, 3) }],
  ['torch._utils._rebuild_parameter_with_state', { call: (a, s) => rebuildParameter(a, s, 4) }],
  ['torch.Size', { call: torchSize }],
  ['torch.device', { call: torchDevice }],
  // Protocols 0-2 have no bytes opcode: bytes are codecs.encode(str, 'latin1').
  ['_codecs.encode', { call: codecsEncode }],
  ['builtins.bytes', { call: (a, s) => (arity(a, s, 'bytes', 0, 0), new Uint8Array(0)) }],
  ['builtins.bytearray', { call: bytearray }],
  ['builtins.set', { call: (a, s) => fromIterable(a, s, 'set') }],
  ['builtins.frozenset', { call: (a, s) => fromIterable(a, s, 'frozenset') }],
  ...Object.keys(STORAGE_DTYPES).map((n): [string, Entry] => [`torch.${n}`, {}]),
  ...Object.keys(TORCH_DTYPES).map((n): [string, Entry] => [`torch.${n}`, {}]),
]);

/** Python 2 module names that pickle's fix_imports maps, as `find_class` does. */
const PY2_MODULES: Readonly<Record<string, string>> = { __builtin__: 'builtins', copy_reg: 'copyreg' };

/**
 * The GLOBAL / STACK_GLOBAL / INST lookup (Python's `find_class`): an allow-listed global
 * as a marker, or UNSAFE_PICKLE. Matching is on the dotted path, so `torch` +
 * `_utils._rebuild_tensor_v2` (a protocol-4 qualname) is the same function.
 */
export function resolveGlobal(module: string, qualname: string, file: string): PickleGlobal {
  const full = `${Object.hasOwn(PY2_MODULES, module) ? PY2_MODULES[module] : module}.${qualname}`;
  const dot = full.lastIndexOf('.');
  if (ENTRIES.has(full)) return { kind: 'global', module: full.slice(0, dot), name: full.slice(dot + 1) };
  if (full.startsWith('torch.') && UNSUPPORTED.has(full.slice(6))) {
    throw new SluiceError('UNSUPPORTED_DTYPE', `${file}: the checkpoint holds ${full}, a dtype sluice does not support`);
  }
  throw new SluiceError(
    'UNSAFE_PICKLE',
    `${file}: refusing to load: the pickle references ${printable(full)}, which is not a tensor or plain data (sluice never executes pickled code)`,
  );
}

/** REDUCE, OBJ, INST: the stand-in's result; INVALID_PICKLE for globals that are data only. */
export function callGlobal(g: PickleGlobal, args: readonly PickleValue[], site: Site): PickleValue {
  const call = ENTRIES.get(`${g.module}.${g.name}`)?.call;
  if (!call) site.fail(`${g.module}.${g.name} is not something sluice calls`);
  return call(args, site);
}

/** NEWOBJ, NEWOBJ_EX. */
export function constructGlobal(g: PickleGlobal, args: readonly PickleValue[], site: Site): PickleValue {
  const construct = ENTRIES.get(`${g.module}.${g.name}`)?.construct;
  if (!construct) site.fail(`${g.module}.${g.name} is not something sluice constructs`);
  return construct(args, site);
}

/** The dtype of a storage-class marker (`torch.FloatStorage` → F32), else undefined. */
export function storageDtype(g: PickleGlobal): Dtype | undefined {
  return g.module === 'torch' && Object.hasOwn(STORAGE_DTYPES, g.name) ? STORAGE_DTYPES[g.name] : undefined;
}

/**
 * BINPERSID: torch's zip format names each storage by the tuple
 * ('storage', <storage class>, key, location, numel). The same key always yields the same
 * StorageRef object (tied weights share it); a key seen again with another dtype or size
 * is refused, as torch.save refuses to write one.
 */
export function persistentLoad(pid: PickleValue, storages: Map<string, StorageRef>, site: Site): StorageRef {
  const items = isKind(pid, 'tuple') ? pid.items : undefined;
  if (!items || items.length !== 5 || items[0] !== 'storage') {
    site.fail(`persistent id ${describe(pid)} is not torch's ('storage', class, key, location, numel)`);
  }
  const [, cls, key, location, numel] = items;
  const dtype = isKind(cls, 'global') ? storageDtype(cls) : undefined;
  if (!dtype) site.fail(`persistent id names ${describe(cls)}, not a storage class`);
  if (typeof key !== 'string' || typeof location !== 'string') site.fail('persistent id key and location must be strings');
  const n = count(numel, site, 'storage numel');
  const seen = storages.get(key);
  if (seen) {
    if (seen.dtype !== dtype || seen.numel !== n) {
      site.fail(`storage ${quote(key)} appears as ${seen.numel} × ${seen.dtype} and as ${n} × ${dtype}`);
    }
    return seen;
  }
  const ref: StorageRef = { kind: 'storage', key, dtype, location, numel: n };
  storages.set(key, ref);
  return ref;
}

// ─── stand-ins ──────────────────────────────────────────────────────────────────────────

function orderedDict(args: readonly PickleValue[], site: Site): PickleValue {
  arity(args, site, 'OrderedDict', 0, 0);
  return new Map();
}

/** _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata]). */
function rebuildTensor(args: readonly PickleValue[], site: Site, min: number, max: number): TensorRef {
  arity(args, site, '_rebuild_tensor', min, max);
  const [storage, offset, size, stride, requiresGrad = false, hooks = null] = args;
  if (!isKind(storage, 'storage')) site.fail(`tensor storage is ${describe(storage)}, not a persistent storage`);
  const shape = ints(size, site, 'tensor size');
  const strides = ints(stride, site, 'tensor stride');
  if (shape.length !== strides.length) site.fail(`tensor size ${dims(shape)} and stride ${dims(strides)} differ in length`);
  if (typeof requiresGrad !== 'boolean') site.fail(`requires_grad is ${describe(requiresGrad)}, not a bool`);
  if (hooks !== null && !(hooks instanceof Map)) site.fail(`backward_hooks is ${describe(hooks)}, not a dict`);
  const storageOffset = count(offset, site, 'storage offset');
  // Keep downstream arithmetic exact: element count and last element index fit in 2^53.
  const numel = shape.reduce((a, d) => a * d, 1);
  const last = shape.reduce((a, d, i) => a + (d - 1) * strides[i], storageOffset);
  if (!Number.isSafeInteger(numel) || (numel > 0 && !Number.isSafeInteger(last))) {
    site.fail(`tensor size ${dims(shape)} with stride ${dims(strides)} is too large`);
  }
  return { kind: 'tensor', storage, storageOffset, shape, stride: strides, requiresGrad };
}

/** _rebuild_parameter(data, requires_grad, backward_hooks[, state]): the tensor, flagged. */
function rebuildParameter(args: readonly PickleValue[], site: Site, n: number): TensorRef {
  arity(args, site, '_rebuild_parameter', n, n);
  const [data, requiresGrad] = args;
  if (!isKind(data, 'tensor')) site.fail(`parameter data is ${describe(data)}, not a tensor`);
  if (typeof requiresGrad !== 'boolean') site.fail(`requires_grad is ${describe(requiresGrad)}, not a bool`);
  return { ...data, shape: [...data.shape], stride: [...data.stride], requiresGrad };
}

/** torch.Size((2, 3)) → the tuple. */
function torchSize(args: readonly PickleValue[], site: Site): PickleTuple {
  arity(args, site, 'torch.Size', 0, 1);
  return { kind: 'tuple', items: args.length ? ints(args[0], site, 'torch.Size') : [] };
}

/** torch.device('cuda', 0) → 'cuda:0'; torch.device('cpu') → 'cpu'. */
function torchDevice(args: readonly PickleValue[], site: Site): string {
  arity(args, site, 'torch.device', 1, 2);
  const [type, index = null] = args;
  if (typeof type !== 'string' || !/^[a-z_]+(:\d+)?$/.test(type)) site.fail(`torch.device(${describe(type)})`);
  return index === null ? type : `${type}:${count(index, site, 'device index')}`;
}

function codecsEncode(args: readonly PickleValue[], site: Site): Uint8Array {
  arity(args, site, '_codecs.encode', 2, 2);
  const [text, encoding] = args;
  if (typeof text !== 'string' || (encoding !== 'latin1' && encoding !== 'latin-1')) {
    site.fail(`_codecs.encode(${describe(text)}, ${describe(encoding)}): only str → latin1 bytes is supported`);
  }
  return latin1(text, site);
}

/** bytearray(), bytearray(b'...'), bytearray('...', 'latin-1') (protocols 0-2). */
function bytearray(args: readonly PickleValue[], site: Site): Uint8Array {
  arity(args, site, 'bytearray', 0, 2);
  const [a, encoding] = args;
  if (a === undefined) return new Uint8Array(0);
  if (a instanceof Uint8Array && encoding === undefined) return a.slice();
  if (typeof a === 'string' && (encoding === 'latin1' || encoding === 'latin-1')) return latin1(a, site);
  return site.fail(`bytearray(${describe(a)}${encoding === undefined ? '' : `, ${describe(encoding)}`})`);
}

/** set(), set([1, 2]) → a fresh list (sets load as lists). */
function fromIterable(args: readonly PickleValue[], site: Site, what: string): PickleValue[] {
  arity(args, site, what, 0, 1);
  const [items = []] = args;
  if (Array.isArray(items)) return items.slice();
  if (isKind(items, 'tuple')) return items.items.slice();
  return site.fail(`${what}(${describe(items)})`);
}

// ─── Python literals (protocol 0 text, LONG1/LONG4) ─────────────────────────────────────

/** INT / LONG text: Python's int(s, 0) for what Python writes (no prefixes, no leading zeros). */
export function pyInt(t: string, site: Site): number | bigint {
  if (!/^[+-]?(0|[1-9]\d*)$/.test(t)) site.fail(`${printable(JSON.stringify(t))} is not an integer`);
  return t.length <= 15 ? Number(t) : normalize(BigInt(t));
}

/** FLOAT text: repr(float), as CPython's PyOS_string_to_double reads it (overflow refused). */
export function pyFloat(t: string, site: Site): number {
  const m = /^([+-]?)(?:(inf|infinity)|(nan)|(\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?))$/i.exec(t);
  if (!m) site.fail(`${printable(JSON.stringify(t))} is not a float`);
  if (m[2]) return m[1] === '-' ? -Infinity : Infinity;
  if (m[3]) return NaN;
  const v = Number(m[1] + m[4]);
  if (!Number.isFinite(v)) site.fail(`float ${t} overflows`);
  return v;
}

/** LONG1 / LONG4: int.from_bytes(b, 'little', signed=True). */
export function intFromBytes(b: Uint8Array): number | bigint {
  const n = b.length;
  const negative = n > 0 && b[n - 1] >= 0x80;
  if (n <= 6) { // exact in a double
    let v = 0;
    for (let i = n - 1; i >= 0; i--) v = v * 256 + b[i];
    return negative ? v - 2 ** (8 * n) : v;
  }
  let hex = '';
  for (let i = n - 1; i >= 0; i--) hex += b[i].toString(16).padStart(2, '0');
  const v = BigInt(`0x${hex}`);
  return normalize(negative ? v - (1n << BigInt(8 * n)) : v);
}

/** Ints are numbers below 2^53 in magnitude, bigints beyond. */
function normalize(v: bigint): number | bigint {
  return v >= -(2n ** 53n) + 1n && v <= 2n ** 53n - 1n ? Number(v) : v;
}

/** STRING: Python's codecs.escape_decode, the backslash escapes of a bytes literal. */
export function escapeDecode(s: Uint8Array, site: Site): Uint8Array {
  const out = new Uint8Array(s.length); // escapes only shrink
  let n = 0;
  const simple: Record<number, number> = { 0x5c: 0x5c, 0x27: 0x27, 0x22: 0x22, 0x62: 8, 0x66: 12, 0x74: 9, 0x6e: 10, 0x72: 13, 0x76: 11, 0x61: 7 };
  const hex = (c: number | undefined): number => (c === undefined ? NaN : parseInt(String.fromCharCode(c), 16));
  for (let i = 0; i < s.length; i++) {
    if (s[i] !== 0x5c) { out[n++] = s[i]; continue; }
    const c = s[++i];
    if (c === undefined) site.fail('STRING ends in a lone backslash');
    if (c === 0x0a) continue; // backslash-newline: a line continuation
    if (simple[c] !== undefined) { out[n++] = simple[c]; continue; }
    if (c >= 0x30 && c <= 0x37) { // up to three octal digits
      let v = c - 0x30;
      for (let k = 0; k < 2 && s[i + 1] >= 0x30 && s[i + 1] <= 0x37; k++) v = v * 8 + (s[++i] - 0x30);
      out[n++] = v & 0xff;
      continue;
    }
    if (c === 0x78) { // \xhh
      const v = hex(s[i + 1]) * 16 + hex(s[i + 2]);
      if (Number.isNaN(v)) site.fail('invalid \\x escape in STRING');
      out[n++] = v;
      i += 2;
      continue;
    }
    out[n++] = 0x5c; // unknown escapes stay as written
    out[n++] = c;
  }
  return out.subarray(0, n);
}

/** UNICODE: latin-1 text with \uXXXX / \UXXXXXXXX escapes (Python's raw-unicode-escape). */
export function rawUnicodeEscape(s: Uint8Array, site: Site): string {
  const parts: string[] = [];
  for (let i = 0; i < s.length;) {
    const bs = s.indexOf(0x5c, i);
    const end = bs < 0 ? s.length : bs;
    for (let k = i; k < end; k += 8192) parts.push(String.fromCharCode(...s.subarray(k, Math.min(end, k + 8192)))); // latin-1
    if (bs < 0) break;
    let run = 0; // an escape needs an odd run of backslashes; the last one starts it
    for (i = bs; s[i] === 0x5c; i++) run++;
    const escape = run % 2 === 1 && (s[i] === 0x75 || s[i] === 0x55);
    parts.push('\\'.repeat(escape ? run - 1 : run));
    if (!escape) continue;
    const n = s[i] === 0x75 ? 4 : 8;
    const digits = String.fromCharCode(...s.subarray(i + 1, i + 1 + n));
    if (!new RegExp(`^[0-9a-fA-F]{${n}}$`).test(digits)) site.fail('truncated \\uXXXX escape in UNICODE');
    const cp = parseInt(digits, 16);
    if (cp > 0x10ffff) site.fail('\\U escape beyond U+10FFFF in UNICODE');
    parts.push(String.fromCodePoint(cp));
    i += 1 + n;
  }
  return parts.join('');
}

// ─── helpers ────────────────────────────────────────────────────────────────────────────

function arity(args: readonly PickleValue[], site: Site, what: string, min: number, max: number): void {
  if (args.length < min || args.length > max) {
    site.fail(`${what} takes ${min === max ? min : `${min} to ${max}`} arguments, the pickle passes ${args.length}`);
  }
}

/** A non-negative integer below 2^53 (Python ints; bool is refused). */
function count(v: PickleValue | undefined, site: Site, what: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) site.fail(`${what} is ${describe(v)}, not a non-negative int`);
  return v;
}

/** A tuple (or list) of counts: a shape or strides, so at most MAX_RANK (checked before copying). */
function ints(v: PickleValue | undefined, site: Site, what: string): number[] {
  const items = Array.isArray(v) ? v : isKind(v, 'tuple') ? v.items : undefined;
  if (!items) site.fail(`${what} is ${describe(v)}, not a tuple of ints`);
  if (items.length > MAX_RANK) site.fail(`${what} has ${items.length} dimensions, more than ${MAX_RANK}`);
  return items.map((d) => count(d, site, `${what} entry`));
}

function latin1(text: string, site: Site): Uint8Array {
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c > 0xff) site.fail(`character U+${c.toString(16).toUpperCase()} does not encode as latin1`);
    out[i] = c;
  }
  return out;
}

type Kinded = Exclude<PickleValue, null | boolean | number | bigint | string | Uint8Array | PickleValue[] | Map<PickleValue, PickleValue>>;

/** Narrows to PickleTuple / PickleGlobal / StorageRef / TensorRef by `kind`. */
export function isKind<K extends Kinded['kind']>(v: PickleValue | undefined, kind: K): v is Extract<Kinded, { kind: K }> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Map) && !(v instanceof Uint8Array) && v.kind === kind;
}

/** A value's Python type, for messages: `str`, `tuple`, `torch.FloatStorage`. */
export function describe(v: PickleValue | undefined): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'None';
  if (typeof v === 'boolean') return 'a bool';
  if (typeof v === 'number') return Number.isInteger(v) ? `the int ${v}` : 'a float';
  if (typeof v === 'bigint') return 'a big int';
  if (typeof v === 'string') return v.length <= 40 ? `the str ${printable(JSON.stringify(v))}` : 'a str';
  if (v instanceof Uint8Array) return 'bytes';
  if (Array.isArray(v)) return 'a list';
  if (v instanceof Map) return 'a dict';
  if (v.kind === 'global') return `${v.module}.${v.name}`;
  return `a ${v.kind}`;
}

/** A shape or strides for a message: `[2,3]`, cut at 100 characters (64 dims of 16 digits would be 1 KB). */
export function dims(a: readonly number[]): string {
  const t = `[${a}]`;
  return t.length <= 100 ? t : `${t.slice(0, 100)}…]`;
}

/** Pickle-supplied text made safe for a one-line message: control characters escaped, capped. */
export function printable(s: string): string {
  // eslint-disable-next-line no-control-regex
  const t = s.slice(0, 201).replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  return t.length > 200 ? `${t.slice(0, 200)}…` : t;
}

// The restricted unpickler against CPython (fixtures from test/fixtures/make_pickles.py:
// plain data at protocols 0-5 and hand-assembled opcodes, each with the value Python
// loads), against a real torch.save data.pkl, against pickles that would run a command,
// and against malformed, oversized and mutated input. No Python is needed to run these.
//
// FUZZ_SEED=<n> runs another seed, FUZZ_CASES=<n> changes the number of mutated inputs.

import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { SluiceError } from '../../../src/errors.js';
import { STORAGE_DTYPES } from '../../../src/formats/pytorch/pickle-globals.js';
import type { PickleTuple, PickleValue, StorageRef, TensorRef } from '../../../src/formats/pytorch/types.js';
import { unpickle } from '../../../src/formats/pytorch/unpickler.js';
import { mulberry32, randInt } from '../../support/safetensors-bytes.js';

const NAME = 'test.pkl';
const FIXTURES = new URL('../../fixtures/pickle/', import.meta.url);
const fixture = (f: string): Buffer => readFileSync(new URL(f, FIXTURES));
const json = <T>(f: string): T => JSON.parse(fixture(f).toString('utf8')) as T;
const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s, 'hex'));

interface Case { name: string; protocol: number | null; hex: string; expected?: unknown; global?: string }
const plain = json<{ cases: Case[] }>('plain.json').cases;
const hostile = json<{ cases: Case[] }>('hostile.json').cases;
const torchExpected = json<{ torch: string; torch_state_dict: unknown; torch_checkpoint: unknown }>('torch_expected.json');
const stateDictPkl = new Uint8Array(fixture('torch_state_dict.pkl'));
const checkpointPkl = new Uint8Array(fixture('torch_checkpoint.pkl'));

/** Bytes from pickle text: a string is latin-1 (so '\x80' is one byte), numbers are bytes. */
function pk(...parts: Array<string | number[] | Uint8Array>): Uint8Array {
  return Uint8Array.from(parts.flatMap((p) => (typeof p === 'string' ? [...p].map((c) => c.charCodeAt(0)) : [...p])));
}

const load = (bytes: Uint8Array, opts: Partial<Parameters<typeof unpickle>[1]> = {}): PickleValue => unpickle(bytes, { name: NAME, ...opts });

/** The error unpickle throws (failing the test if it returns or throws anything else). */
function thrown(bytes: Uint8Array, opts: Partial<Parameters<typeof unpickle>[1]> = {}): SluiceError {
  try {
    load(bytes, opts);
  } catch (e) {
    if (e instanceof SluiceError) return e;
    throw e;
  }
  throw new Error('expected unpickle to throw');
}

/** A value in the generator's tagged JSON (ints past 2^53, nan/inf, bytes, tuples, dicts). */
function tagged(v: PickleValue): unknown {
  if (v === null || typeof v === 'boolean' || typeof v === 'string') return v;
  if (typeof v === 'number') return Number.isNaN(v) ? { float: 'nan' } : Number.isFinite(v) ? v : { float: v > 0 ? 'inf' : '-inf' };
  if (typeof v === 'bigint') return { bigint: v.toString() };
  if (v instanceof Uint8Array) return { bytes: Buffer.from(v).toString('hex') };
  if (Array.isArray(v)) return v.map(tagged);
  if (v instanceof Map) return { dict: [...v].map(([k, x]) => [tagged(k), tagged(x)]) };
  switch (v.kind) {
    case 'tuple': return { tuple: v.items.map(tagged) };
    case 'global': return { global: `${v.module}.${v.name}` };
    case 'storage': return { ...v };
    case 'tensor': return { ...v, storage: tagged(v.storage) };
  }
}

// ─── plain data vs CPython ──────────────────────────────────────────────────────────────

describe('plain data, as CPython loads it', () => {
  it('covers protocols 0-5 and the hand-assembled opcodes', () => {
    expect(new Set(plain.map((c) => c.protocol))).toEqual(new Set([0, 1, 2, 3, 4, 5, null]));
  });

  it.each(plain)('$name', ({ hex: h, expected }) => {
    expect(tagged(load(hex(h)))).toEqual(expected);
  });

  it.each(plain.filter((c) => c.name.startsWith('shared@')))('$name keeps shared references shared', ({ hex: h }) => {
    const v = load(hex(h)) as [PickleValue[], PickleValue[], Map<PickleValue, PickleValue>];
    expect(v[0]).toBe(v[1]);
    expect(v[2].get('x')).toBe(v[0]);
  });

  it.each(plain.filter((c) => /^(MEMOIZE_GET|LONG_BINPUT_GET|PUT_GET_text)$/.test(c.name)))('$name: a memo GET is the same object', ({ hex: h }) => {
    const t = load(hex(h)) as PickleTuple;
    expect(t.items[0]).toBe(t.items[1]);
  });

  it('an OrderedDict with _metadata (BUILD) keeps its entries and drops the state', () => {
    for (const c of plain.filter((p) => p.name.startsWith('ordered_dict_metadata@'))) {
      expect([...(load(hex(c.hex)) as Map<PickleValue, PickleValue>).keys()], c.name).toEqual(['w', 'b']);
    }
  });

  it('ints are numbers below 2^53 and bigints from there', () => {
    const v = load(hex(plain.find((c) => c.name === 'ints@2')!.hex)) as PickleValue[];
    expect(v.slice(10, 13)).toEqual([2 ** 53 - 1, 2n ** 53n, -(2n ** 53n)]);
  });
});

// ─── torch.save ─────────────────────────────────────────────────────────────────────────

describe(`a real torch.save data.pkl (torch ${torchExpected.torch})`, () => {
  it('the state_dict: TensorRefs with the shapes, strides, offsets and dtypes torch reports', () => {
    const sd = load(stateDictPkl);
    expect(tagged(sd)).toEqual(torchExpected.torch_state_dict);
    const t = sd as Map<string, TensorRef>;
    expect(t.get('param')!.requiresGrad).toBe(true);
    expect(t.get('i32')!.shape).toEqual([]);
    expect([...t.values()].map((r) => r.storage.dtype)).toEqual(expect.arrayContaining(['F32', 'BF16', 'F16', 'F64', 'I64', 'I32', 'I16', 'I8', 'U8', 'BOOL', 'C64']));
  });

  it('tied weights and views share one StorageRef object', () => {
    const t = load(stateDictPkl) as Map<string, TensorRef>;
    const storage = t.get('embed.weight')!.storage;
    for (const name of ['lm_head.weight', 'row', 'transposed', 'strided']) expect(t.get(name)!.storage, name).toBe(storage);
    expect(t.get('lm_head.weight')).toBe(t.get('embed.weight')); // the same tensor object, pickled once
    const keys = new Set([...t.values()].map((r) => r.storage.key));
    expect(new Set([...t.values()].map((r) => r.storage)).size).toBe(keys.size);
  });

  it('a checkpoint dict around it: nested state_dict, ints, a dtype marker, devices', () => {
    const v = load(checkpointPkl) as Map<string, PickleValue>;
    expect(tagged(v)).toEqual(torchExpected.torch_checkpoint);
    expect(v.get('devices')).toEqual(['cpu', 'cuda:0']);
    expect(v.get('dtype')).toEqual({ kind: 'global', module: 'torch', name: 'bfloat16' });
  });

  it('every storage class maps to a dtype; unsupported ones are named', () => {
    expect(STORAGE_DTYPES).toMatchObject({ FloatStorage: 'F32', BFloat16Storage: 'BF16', UntypedStorage: 'U8', ComplexFloatStorage: 'C64' });
    const e = thrown(pk('\x80\x02ctorch\nComplexDoubleStorage\n.'));
    expect([e.code, e.message]).toEqual(['UNSUPPORTED_DTYPE', expect.stringContaining('torch.ComplexDoubleStorage')]);
  });

  const storagePid = (cls: string, key: string, numel: number[]): string => `(X\x07\x00\x00\x00storagectorch\n${cls}\nX${String.fromCharCode(key.length)}\x00\x00\x00${key}X\x03\x00\x00\x00cpu` + `K${String.fromCharCode(...numel)}tQ`;
  const rebuild = (storage: string, args: string): Uint8Array => pk(`\x80\x02ctorch._utils\n_rebuild_tensor_v2\n(${storage}${args}\x89ccollections\nOrderedDict\n)Rtq\x00R.`);

  it('builds _rebuild_tensor_v2 from a hand-made pid, STACK_GLOBAL qualname spelling included', () => {
    const t = load(rebuild(storagePid('HalfStorage', 'k', [6]), 'K\x01K\x02K\x02\x86K\x02K\x01\x86')) as TensorRef;
    expect(t).toEqual({ kind: 'tensor', storage: { kind: 'storage', key: 'k', dtype: 'F16', location: 'cpu', numel: 6 }, storageOffset: 1, shape: [2, 2], stride: [2, 1], requiresGrad: false });
    const qual = pk('\x80\x04\x8c\x05torch\x8c\x19_utils._rebuild_tensor_v2\x93.');
    expect(load(qual)).toEqual({ kind: 'global', module: 'torch._utils', name: '_rebuild_tensor_v2' });
  });

  it.each([
    ['a negative size', 'K\x00J\xff\xff\xff\xff\x85K\x01\x85', /tensor size entry/],
    ['size and stride of different lengths', 'K\x00K\x02\x85K\x01K\x01\x86', /differ in length/],
    ['a float offset', 'G\x3f\xf8\x00\x00\x00\x00\x00\x00K\x02\x85K\x01\x85', /storage offset/],
    ['a size too large for 2^53', 'K\x00\x8a\x08\x00\x00\x00\x00\x00\x00\x10\x00\x8a\x08\x00\x00\x00\x00\x00\x00\x10\x00\x86K\x01K\x01\x86', /too large/],
  ])('refuses a tensor with %s', (_, args, message) => {
    const e = thrown(rebuild(storagePid('FloatStorage', 'k', [6]), args));
    expect([e.code, e.message]).toEqual(['INVALID_PICKLE', expect.stringMatching(message)]);
  });

  it.each([
    ['a string pid', pk('\x80\x02X\x01\x00\x00\x00kQ.')],
    ['a 4-tuple pid', pk("\x80\x02(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x00kK\x01tQ.")],
    ['a pid naming a dtype, not a storage class', pk(storagePid('float32', 'k', [1]), '.')],
    ['one key with two sizes', pk(`\x80\x02${storagePid('FloatStorage', 'k', [1])}${storagePid('FloatStorage', 'k', [2])}\x86.`)],
    ['a text PERSID', pk('Pstorage\n.')],
  ])('refuses %s', (_, bytes) => {
    expect(thrown(bytes).code).toBe('INVALID_PICKLE');
  });

  it('the other stand-ins: _rebuild_tensor, parameters, torch.Size, torch.device, UntypedStorage', () => {
    const v1 = `ctorch._utils\n_rebuild_tensor\n(${storagePid('UntypedStorage', 'u', [8])}K\x00K\x08\x85K\x01\x85tR`;
    expect(load(pk(`\x80\x02${v1}.`))).toMatchObject({ storage: { dtype: 'U8', numel: 8 }, shape: [8], stride: [1], requiresGrad: false });
    const param = pk(`\x80\x02ctorch._utils\n_rebuild_parameter_with_state\n(${v1}\x88ccollections\nOrderedDict\n)R}tR.`);
    expect(load(param)).toMatchObject({ kind: 'tensor', shape: [8], requiresGrad: true });
    expect(load(pk('\x80\x02ctorch\nSize\nK\x02K\x03\x86\x85R.'))).toEqual({ kind: 'tuple', items: [2, 3] });
    expect(load(pk('\x80\x02ctorch\ndevice\nX\x04\x00\x00\x00cudaK\x01\x86R.'))).toBe('cuda:1');
    expect(thrown(pk('\x80\x02ctorch\ndevice\nX\x03\x00\x00\x00a b\x85R.')).code).toBe('INVALID_PICKLE');
    expect(thrown(pk(`\x80\x02ctorch._utils\n_rebuild_parameter\n(K\x01\x88ccollections\nOrderedDict\n)RtR.`)).message).toMatch(/not a tensor/);
  });

  it('the same key twice is one StorageRef', () => {
    const t = load(pk(`\x80\x02${storagePid('FloatStorage', 'k', [4])}${storagePid('FloatStorage', 'k', [4])}\x86.`)) as PickleTuple;
    expect(t.items[0]).toBe(t.items[1]);
  });
});

// ─── hostile pickles ────────────────────────────────────────────────────────────────────

describe('pickles that would run code are refused at the global, and nothing runs', () => {
  it.each(hostile)('$name → UNSAFE_PICKLE naming $global', ({ hex: h, global }) => {
    const tag = randomBytes(4).toString('hex'); // the command would touch /tmp/sluice-pwned-<tag>
    const bytes = pk(Buffer.from(h, 'hex').toString('latin1').replaceAll('XXXXXXXX', tag));
    const e = thrown(bytes);
    expect(e.code).toBe('UNSAFE_PICKLE');
    expect(e.message).toBe(`${NAME}: refusing to load: the pickle references ${global}, which is not a tensor or plain data (sluice never executes pickled code)`);
    expect(existsSync(`/tmp/sluice-pwned-${tag}`)).toBe(false);
  });

  it.each([
    ['GLOBAL with nothing after it', pk('\x80\x02cposix\nsystem\n'), 'posix.system'],
    ['STACK_GLOBAL with nothing after it', pk('\x80\x04\x8c\x05posix\x8c\x06system\x93'), 'posix.system'],
    ['INST', pk('(X\x02\x00\x00\x00idiposix\nsystem\n.'), 'posix.system'],
    ['a Python 2 module name', pk('c__builtin__\neval\n'), 'builtins.eval'],
    ['numpy arrays', pk('\x80\x02cnumpy.core.multiarray\n_reconstruct\n'), 'numpy.core.multiarray._reconstruct'],
    ['a control character in the name', pk('\x80\x04\x8c\x02os\x8c\x07sys\ntem\x93'), 'os.sys\\u000atem'],
    ['an Object.prototype name', pk('cconstructor\n__proto__\n'), 'constructor.__proto__'],
  ])('%s', (_, bytes, global) => {
    const e = thrown(bytes);
    expect([e.code, e.message]).toEqual(['UNSAFE_PICKLE', expect.stringContaining(`references ${global},`)]);
  });

  it('refuses copyreg extension codes', () => {
    for (const ext of [pk('\x82\x01.'), pk('\x83\x01\x00.'), pk('\x84\x01\x00\x00\x00.')]) expect(thrown(ext).code).toBe('UNSAFE_PICKLE');
  });

  it.each([
    ['a str', pk('\x80\x02X\x01\x00\x00\x00x)R.')],
    ['a list', pk('\x80\x02])R.')],
    ['a storage class', pk('\x80\x02ctorch\nFloatStorage\n)R.')],
    ['a dtype', pk('\x80\x02ctorch\nfloat32\n)R.')],
    ['a global with non-tuple args', pk('\x80\x02ccollections\nOrderedDict\n]R.')],
    ['NEWOBJ of a tensor rebuild', pk('\x80\x02ctorch._utils\n_rebuild_tensor_v2\n)\x81.')],
    ['_codecs.encode to utf-8', pk('\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x05\x00\x00\x00utf-8\x86R.')],
  ])('REDUCE on %s is INVALID_PICKLE', (_, bytes) => {
    expect(thrown(bytes).code).toBe('INVALID_PICKLE');
  });
});

// ─── malformed and oversized ────────────────────────────────────────────────────────────

describe('malformed input', () => {
  it.each([
    ['an unknown opcode', pk('\x80\x02\xff.'), /byte 2: unknown opcode 0xff/],
    ['a NUL opcode', pk('\x00'), /byte 0: unknown opcode 0x00/],
    ['empty input', pk(''), /truncated/],
    ['no STOP', pk('K\x01'), /truncated/],
    ['protocol 6', pk('\x80\x06N.'), /unsupported protocol 6/],
    ['two values at STOP', pk('K\x01K\x02.'), /STOP leaves 1 values/],
    ['an open MARK at STOP', pk('(K\x01.'), /STOP leaves/],
    ['a pop below the MARK', pk('K\x01(a.'), /underflow/],
    ['a huge LONG_BINGET', pk('\x80\x02j\xff\xff\xff\xff.'), /never stored/],
    ['a huge LONG_BINPUT', pk('\x80\x02Nr\xff\xff\xff\xff.'), /memo index 4294967295 beyond/],
    ['a huge text PUT', pk('Np99999999999999999999\n.'), /memo index/],
    ['BINUNICODE8 of 2^63 bytes', pk('\x80\x04\x8d', [0, 0, 0, 0, 0, 0, 0, 0x80], 'abc.'), /truncated: needs 9223372036854775808 bytes, 4 left/],
    ['BINBYTES of 4 GiB', pk('\x80\x03B\xff\xff\xff\xff.'), /truncated/],
    ['a FRAME longer than the input', pk('\x80\x04\x95\xff\x00\x00\x00\x00\x00\x00\x00N.'), /truncated/],
    ['a negative BINSTRING', pk('T\xff\xff\xff\xff.'), /negative length/],
    ['a LONG4 of 1 MB', pk('\x8b\x00\x00\x10\x00.'), /LONG4/],
    ['a negative LONG4', pk('\x8b\xff\xff\xff\xff.'), /LONG4/],
    ['a 10,000-digit INT', pk(`I${'9'.repeat(10000)}\n.`), /number/],
    ['an octal-looking INT', pk('I010\n.'), /not an integer/],
    ['an overflowing FLOAT', pk('F1e999\n.'), /overflows/],
    ['invalid UTF-8', pk('X\x02\x00\x00\x00\xc3\x28.'), /UTF-8/],
    ['an unquoted STRING', pk("Sabc\n."), /not quoted/],
    ['a bad \\x in STRING', pk("S'\\xZZ'\n."), /\\x escape/],
    ['a truncated \\u in UNICODE', pk('V\\u12\n.'), /\\uXXXX/],
    ['a list appended to itself', pk(']q\x00h\x00a.'), /inside itself/],
    ['a cycle through two lists', pk(']q\x00]q\x01ah\x01h\x00a0.'), /recursive/],
    ['a list as a dict key', pk('}]K\x01s.'), /unhashable dict key: a list/],
    ['a tuple holding a list as a dict key', pk('}K\x01]\x86\x85K\x02s.'), /unhashable dict key: a tuple/],
    ['a set as a dict key', pk('\x80\x04}\x8fK\x01s.'), /unhashable dict key/],
    ['a list in a set', pk('\x80\x04\x8f(]\x90.'), /unhashable set item/],
    ['a dict in a frozenset', pk('\x80\x04(}\x91.'), /unhashable frozenset item/],
    ['a list in set()', pk('\x80\x02c__builtin__\nset\n]]a\x85R.'), /unhashable set item/],
    ['APPEND to a set', pk('\x80\x04\x8fK\x01a.'), /APPEND to a set/],
    ['ADDITEMS on a list', pk('\x80\x04](K\x01\x90.'), /ADDITEMS on a list/],
    ['ADDITEMS on a frozenset', pk('\x80\x04(\x91(K\x01\x90.'), /ADDITEMS on a frozenset/],
    ['an opcode across a FRAME end', pk('\x80\x04\x95\x02\x00\x00\x00\x00\x00\x00\x00J\x01\x00\x00\x00.'), /past the end of its FRAME/],
    ['a text opcode across a FRAME end', pk('\x95\x02\x00\x00\x00\x00\x00\x00\x00I12\n.'), /past the end of its FRAME/],
    ['a FRAME inside a FRAME', pk('\x95\x0a\x00\x00\x00\x00\x00\x00\x00\x95\x01\x00\x00\x00\x00\x00\x00\x00N.'), /FRAME inside another/],
    ['an odd DICT', pk('(K\x01d.'), /odd number/],
    ['APPEND to a dict', pk('}K\x01a.'), /APPEND to a dict/],
    ['APPEND to a str', pk('X\x00\x00\x00\x00K\x01a.'), /APPEND to the str ""/],
    ['BUILD on a list', pk(']}b.'), /BUILD/],
    ['BUILD with a list state', pk('\x80\x02ccollections\nOrderedDict\n)R]b.'), /BUILD state a list is not a dict/],
    ['out-of-band buffers', pk('\x80\x05\x97.'), /out-of-band/],
    ['a STACK_GLOBAL of ints', pk('\x80\x04K\x01K\x02\x93.'), /STACK_GLOBAL/],
  ])('%s → INVALID_PICKLE', (_, bytes, message) => {
    const e = thrown(bytes);
    expect(e.code).toBe('INVALID_PICKLE');
    expect(e.message).toMatch(new RegExp(`^${NAME}: bad pickle at byte \\d+: `));
    expect(e.message).toMatch(message);
  });

  it('every proper prefix of a real data.pkl is "truncated"', () => {
    for (let n = 0; n < stateDictPkl.length; n++) {
      const e = thrown(stateDictPkl.subarray(0, n));
      expect([n, e.code, e.message]).toEqual([n, 'INVALID_PICKLE', expect.stringContaining('truncated')]);
    }
  });

  it('sets add equal primitives once and dicts merge True with 1, as Python does', () => {
    expect(load(pk('\x80\x04\x8f(K\x01\x88G\x3f\xf0\x00\x00\x00\x00\x00\x00K\x02K\x01\x90.'))).toEqual([1, 2]);
    expect(load(pk('\x80\x04(K\x03K\x03\x91.'))).toEqual([3]);
    expect(load(pk('\x80\x02}(K\x01X\x01\x00\x00\x00a\x88X\x01\x00\x00\x00b\x89X\x01\x00\x00\x00cK\x00X\x01\x00\x00\x00du.'))).toEqual(new Map<PickleValue, PickleValue>([[1, 'b'], [false, 'd']]));
  });

  it('a large bytes opcode between frames (how the pickler writes >= 64 KiB objects) loads', () => {
    const frame = (body: string): string => `\x95${String.fromCharCode(body.length)}\x00\x00\x00\x00\x00\x00\x00${body}`;
    expect(load(pk('\x80\x05', frame(']\x94('), 'C\x03abc', frame('\x94e.')))).toEqual([pk('abc')]);
  });

  it('empty APPENDS / SETITEMS / ADDITEMS change nothing and check nothing, as CPython', () => {
    expect(load(pk('\x88(e.'))).toBe(true);
    expect(load(pk('K\x01(u.'))).toBe(1);
  });

  it('ignores bytes after STOP, as Python does', () => {
    expect(load(pk('K\x07.junk'))).toBe(7);
  });
});

describe('bounds', () => {
  const timed = (f: () => void): number => {
    const t0 = performance.now();
    f();
    return performance.now() - t0;
  };

  it('a million MARK + EMPTY_LIST pairs hit the stack bound, quickly', () => {
    const bytes = pk('(]'.repeat(1_000_000));
    expect(timed(() => expect(thrown(bytes).message).toMatch(/stack deeper than 1000000/))).toBeLessThan(2000);
  });

  it.each([
    ['EMPTY_LIST then APPEND', pk(']'.repeat(100_000) + 'a'.repeat(99_999) + '.')],
    ['MARK then LIST', pk('('.repeat(100_000) + 'l'.repeat(100_000) + '.')],
    ['TUPLE1', pk('N' + '\x85'.repeat(100_000) + '.')],
    ['MARK then DICT', pk('(K\x00'.repeat(100_000) + 'K\x01' + 'd'.repeat(100_000) + '.')],
  ])('deep nesting (%s) stops at maxDepth 1000', (_, bytes) => {
    expect(thrown(bytes).message).toMatch(/nested deeper than 1000/);
  });

  it('maxDepth is an option; depth 1000 itself loads', () => {
    expect(thrown(pk('N' + '\x85'.repeat(11) + '.'), { maxDepth: 10 }).message).toMatch(/nested deeper than 10/);
    expect(load(pk('N' + '\x85'.repeat(10) + '.'), { maxDepth: 10 })).toMatchObject({ kind: 'tuple' });
    expect(load(pk(']'.repeat(1000) + 'a'.repeat(999) + '.'))).toHaveLength(1);
  });

  it('a billion laughs of memo GETs and DUPs shares, never copies', () => {
    // L0 = []; Li = [L(i-1)] * 10 for 30 levels: 10^30 paths, 31 lists.
    let memo = '\x80\x02]q\x000';
    for (let i = 1; i <= 30; i++) memo += `(${`h${String.fromCharCode(i - 1)}`.repeat(10)}lq${String.fromCharCode(i)}0`;
    memo += 'h\x1e.';
    let v: PickleValue = null;
    expect(timed(() => (v = load(pk(memo))))).toBeLessThan(500);
    const top = v as unknown as PickleValue[][];
    expect(top).toHaveLength(10);
    expect(top[0]).toBe(top[9]);
    // X → (X, X, X), 300 times by DUP: 3^300 paths, depth 300.
    const dup = load(pk('N' + '22\x87'.repeat(300) + '.')) as PickleTuple;
    expect(dup.items[0]).toBe(dup.items[2]);
  });

  it('honours maxMemo, maxStack and maxOps', () => {
    expect(thrown(pk('Nq\x05.'), { maxMemo: 5 }).message).toMatch(/memo index 5 beyond 5/);
    expect(thrown(pk('NNN0.'), { maxStack: 2 }).message).toMatch(/stack deeper than 2/);
    expect(thrown(pk('NNN00.'), { maxOps: 4 }).message).toMatch(/more than 4 opcodes/);
    expect(load(pk('NNN00.'), { maxOps: 6 })).toBe(null);
  });
});

// ─── mutation fuzz ──────────────────────────────────────────────────────────────────────

describe('mutation fuzz', () => {
  const SEED = Number(process.env.FUZZ_SEED ?? 0x9e3779b9);
  const CASES = Number(process.env.FUZZ_CASES ?? 6000);
  const seeds = [...plain.map((c) => hex(c.hex)).filter((b) => b.length < 4096), stateDictPkl, checkpointPkl];
  const OPCODES = [...'(.012FGIJKLMNPQRSTUVXabcdeghijlopqrstu}])'].map((c) => c.charCodeAt(0)).concat(Array.from({ length: 0x99 - 0x80 }, (_, i) => 0x80 + i));

  function mutate(rng: () => number, src: Uint8Array): Uint8Array {
    const b = [...src];
    for (let n = randInt(rng, 1, 4); n > 0; n--) {
      const at = randInt(rng, 0, Math.max(0, b.length - 1));
      switch (randInt(rng, 0, 5)) {
        case 0: b[at] = randInt(rng, 0, 255); break; // byte flip
        case 1: b[at] = OPCODES[randInt(rng, 0, OPCODES.length - 1)]; break; // another opcode
        case 2: b.length = at; break; // truncate
        case 3: b.splice(at, randInt(rng, 1, 8)); break; // delete
        case 4: b.splice(at, 0, ...Array.from({ length: randInt(rng, 1, 8) }, () => randInt(rng, 0, 255))); break; // insert
        case 5: b[at] = [0x00, 0x7f, 0x80, 0xff][randInt(rng, 0, 3)]; break; // length-field extremes
      }
    }
    return Uint8Array.from(b);
  }

  it(`${CASES} mutated pickles: each loads or throws a SluiceError (seed ${SEED})`, () => {
    const rng = mulberry32(SEED);
    const outcomes = new Map<string, number>();
    const t0 = performance.now();
    for (let i = 0; i < CASES; i++) {
      const input = mutate(rng, seeds[randInt(rng, 0, seeds.length - 1)]);
      let outcome = 'loaded';
      try {
        load(input);
      } catch (e) {
        if (!(e instanceof SluiceError)) {
          throw new Error(`seed ${SEED} case ${i}: ${String(e)}\ninput ${Buffer.from(input).toString('hex')}`);
        }
        outcome = e.code;
      }
      outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
    }
    if (process.env.FUZZ_STATS) console.log(outcomes, `${(performance.now() - t0).toFixed(0)} ms`);
    expect(outcomes.get('INVALID_PICKLE')).toBeGreaterThan(CASES / 4);
    expect(outcomes.get('loaded')).toBeGreaterThan(0);
  });
});

// A corpus of malformed safetensors files and shard indexes, at least one per rule of
// huggingface/safetensors' tensor.rs validation (plus ours: duplicates, 2^53, rank, index
// paths). Each asserts the exact SluiceError code and that the message names the file,
// and the tensor where there is one.

import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openCheckpoint } from '../../../src/checkpoint/open-path.js';
import { type ErrorCode, SluiceError } from '../../../src/errors.js';
import { SafetensorsFile } from '../../../src/formats/safetensors/file.js';
import { MemorySource } from '../../../src/io/memory-source.js';
import {
  CountingSource, assemble, buildSafetensors, buildValid, mulberry32, randomBytes, toJson,
} from '../../support/safetensors-bytes.js';

const FILE = 'bad-model.safetensors';
const rng = mulberry32(0xbadf11e);

/** Opens `bytes`; expects a SluiceError with `code` whose message names the file (and tensor). */
async function expectRefused(bytes: Uint8Array, code: ErrorCode, tensor?: string): Promise<SluiceError> {
  const src = new CountingSource(new MemorySource(bytes, FILE));
  let caught: unknown = null;
  try {
    await SafetensorsFile.open(src);
  } catch (e) {
    caught = e;
  }
  const n = bytes.byteLength >= 8 ? Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true)) : 0;
  const what = `${bytes.byteLength}-byte file, header ${JSON.stringify(new TextDecoder().decode(bytes.subarray(8, 8 + Math.min(n, 300))))}`;
  expect(caught, what).toBeInstanceOf(SluiceError);
  const e = caught as SluiceError;
  expect(e.code, `${what}: ${e.message}`).toBe(code);
  expect(e.message).toContain(FILE);
  if (tensor !== undefined) expect(e.message).toContain(JSON.stringify(tensor));
  expect(src.violations).toEqual([]);
  expect(src.closed, 'the source is closed on failure').toBe(true);
  return e;
}

/** One header entry. */
const ent = (dtype: unknown, shape: unknown, offsets: unknown) => ({ dtype, shape, data_offsets: offsets });
/** A file with the given header (object or raw JSON) and `n` data bytes. */
const file = (header: object | string, n = 0) => buildSafetensors({ header, data: randomBytes(rng, n) });
const prefix = (n: bigint, rest = new Uint8Array(0)) => assemble(rest, new Uint8Array(0), n);

describe('the 8-byte prefix', () => {
  it.for([0, 1, 7])('HEADER_TOO_SMALL: a %i-byte file', async (n) => {
    await expectRefused(new Uint8Array(n), 'HEADER_TOO_SMALL');
  });

  it.for([100_000_001n, 2n ** 63n, 2n ** 64n - 1n])('HEADER_TOO_LARGE: N = %s', async (n) => {
    await expectRefused(prefix(n, new Uint8Array(64)), 'HEADER_TOO_LARGE');
  });

  it('INVALID_HEADER_LENGTH: N = 100,000,000 (at the limit) in a small file', async () => {
    await expectRefused(prefix(100_000_000n, new Uint8Array(64)), 'INVALID_HEADER_LENGTH');
  });

  it('INVALID_HEADER_LENGTH: 8 + N one past the end, and N = 1 in an 8-byte file', async () => {
    await expectRefused(buildSafetensors({ header: '{}', data: new Uint8Array(0), lengthOverride: 3n }), 'INVALID_HEADER_LENGTH');
    await expectRefused(prefix(1n), 'INVALID_HEADER_LENGTH');
  });
});

describe('header text', () => {
  const enc = (s: string) => new TextEncoder().encode(s);
  it.for([
    ['a 0xFF byte', [0x7b, 0xff, 0x7d]],
    ['an overlong NUL (C0 80)', [0x7b, 0x22, 0xc0, 0x80, 0x22, 0x3a, 0x31, 0x7d]],
    ['a UTF-16 surrogate (ED A0 80)', [0x7b, 0x22, 0xed, 0xa0, 0x80, 0x22, 0x3a, 0x31, 0x7d]],
    ['a truncated 3-byte sequence at the end', [0x7b, 0x7d, 0xe6, 0x97]],
  ] as Array<[string, number[]]>)('INVALID_UTF8: %s', async ([, bytes]) => {
    await expectRefused(assemble(Uint8Array.from(bytes), new Uint8Array(0)), 'INVALID_UTF8');
  });

  it.for([
    ['not JSON', 'not json'],
    ['empty', ''],
    ['truncated', '{"w": {"dtype": "F32"'],
    ['a trailing comma', '{"w": {"dtype": "F32", "shape": [], "data_offsets": [0, 0]},}'],
    ['trailing garbage', '{} x'],
    ['NUL padding', '{}\u0000\u0000'],
    ['a byte-order mark', '\ufeff{}'],
    ['single quotes', "{'w': 1}"],
    ['10,000 nested arrays', `{"w": ${'['.repeat(10_000)}${']'.repeat(10_000)}}`],
  ])('INVALID_JSON: %s', async ([, text]) => {
    await expectRefused(assemble(enc(text), new Uint8Array(0)), 'INVALID_JSON');
  });

  // serde_json (the reference) refuses unpaired surrogate escapes: they are not UTF-8.
  it('INVALID_JSON: tensor names with a lone surrogate escape (\\ud800, \\udc00, a\\ud83d)', async () => {
    for (const name of ['\\ud800', '\\udc00', 'a\\ud83d']) {
      await expectRefused(file(`{"${name}": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}}`, 1), 'INVALID_JSON');
    }
  });

  it.for(['[]', '[{"dtype": "F32"}]', '12', '"a string"', 'null', 'true'])('HEADER_NOT_OBJECT: %s', async (text) => {
    await expectRefused(file(text), 'HEADER_NOT_OBJECT');
  });

  it('DUPLICATE_KEY: a tensor listed twice', async () => {
    const w = '"w": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}';
    const e = await expectRefused(file(`{${w}, ${w}}`, 2), 'DUPLICATE_KEY', 'w');
    expect(e.message).toMatch(/twice/);
  });

  // serde ignores unknown fields of an entry (no deny_unknown_fields): skipped, never built.
  it('unknown fields in an entry are skipped, whatever they hold', async () => {
    const f = await SafetensorsFile.open(new MemorySource(file('{"w": {"dtype": "U8", "x": [{"a": {}}, [1.5e9], null], "shape": [1], "data_offsets": [0, 1], "y": "z", "x2": {"k": 1, "k": 2}}}', 1), FILE));
    expect(f.info('w')).toMatchObject({ dtype: 'U8', shape: [1], byteLength: 1 });
    await expectRefused(file(`{"w": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1], "x": ${'['.repeat(100)}${']'.repeat(100)}}}`, 1), 'INVALID_JSON');
  });

  it('DUPLICATE_KEY: __metadata__ twice, and a field twice inside an entry', async () => {
    await expectRefused(file('{"__metadata__": {}, "__metadata__": null}'), 'DUPLICATE_KEY', '__metadata__');
    await expectRefused(file('{"w": {"dtype": "U8", "dtype": "U8", "shape": [2], "data_offsets": [0, 2]}}', 2), 'DUPLICATE_KEY', 'dtype');
  });
});

describe('tensor entries', () => {
  it.for(['F128', 'f32', 'Bf16', 'float32', '', 'F8_E4M3FN', 'U4'])('UNKNOWN_DTYPE: "%s"', async (dtype) => {
    await expectRefused(file({ w: ent(dtype, [1], [0, 4]) }, 4), 'UNKNOWN_DTYPE', 'w');
  });

  const bad: Array<[string, unknown]> = [
    ['entry is a number', 1],
    ['entry is null', null],
    ['entry is an array', ['F32', [1], [0, 4]]],
    ['missing dtype', { shape: [1], data_offsets: [0, 4] }],
    ['missing shape', { dtype: 'F32', data_offsets: [0, 4] }],
    ['missing data_offsets', { dtype: 'F32', shape: [1] }],
    ['dtype a number', ent(32, [1], [0, 4])],
    ['dtype null', ent(null, [1], [0, 4])],
    ['shape a number', ent('F32', 1, [0, 4])],
    ['shape of strings', ent('F32', ['1'], [0, 4])],
    ['shape with a negative dim', ent('F32', [-1], [0, 4])],
    ['shape with a fraction', ent('F32', [1.5], [0, 4])],
    ['shape with a nested array', ent('F32', [[1]], [0, 4])],
    ['shape with null', ent('F32', [null], [0, 4])],
    ['data_offsets of length 1', ent('F32', [1], [4])],
    ['data_offsets of length 3', ent('F32', [1], [0, 4, 4])],
    ['data_offsets empty', ent('F32', [1], [])],
    ['data_offsets an object', ent('F32', [1], { begin: 0, end: 4 })],
    ['a negative offset', ent('F32', [1], [-4, 0])],
    ['a huge negative offset', ent('F32', [1], [-(2n ** 60n), 4])],
    ['a fractional offset', ent('F32', [1], [0, 4.5])],
    ['a string offset', ent('F32', [1], [0, '4'])],
  ];
  it.for(bad)('INVALID_TENSOR_INFO: %s', async ([, entry]) => {
    await expectRefused(file({ w: entry }, 4), 'INVALID_TENSOR_INFO', 'w');
  });

  // The reference (serde_json into usize) refuses float syntax even when the value is whole.
  it('INVALID_TENSOR_INFO: dims and offsets in float syntax (1.0, 4e0, -0)', async () => {
    for (const [text, n] of [
      ['{"w": {"dtype": "F32", "shape": [1.0], "data_offsets": [0, 4]}}', 4],
      ['{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4e0]}}', 4],
      ['{"w": {"dtype": "F32", "shape": [-0], "data_offsets": [0, 0]}}', 0],
    ] as const) {
      await expectRefused(file(text, n), 'INVALID_TENSOR_INFO', 'w');
    }
  });

  it.for([
    ['[2^40, 2^40] U8', ent('U8', [2 ** 40, 2 ** 40], [0, 0])],
    ['[2^32, 2^32] BOOL (2^64 elements)', ent('BOOL', [2 ** 32, 2 ** 32], [0, 0])],
    ['[2^31, 2^31] F64 (elements fit, bits do not)', ent('F64', [2 ** 31, 2 ** 31], [0, 0])],
    ['a dim of 2^64', ent('U8', [2n ** 64n], [0, 0])],
    ['a dim of 2^53', ent('U8', [2n ** 53n], [0, 0])],
  ] as Array<[string, unknown]>)('SHAPE_OVERFLOW: %s', async ([, entry]) => {
    await expectRefused(file({ w: entry }), 'SHAPE_OVERFLOW', 'w');
  });

  it('a zero dim keeps a huge shape from overflowing (0 bytes, accepted)', async () => {
    const f = await SafetensorsFile.open(new MemorySource(file({ w: ent('U8', [0, 2 ** 40, 2 ** 40], [0, 0]) }), FILE));
    expect(f.info('w').byteLength).toBe(0);
  });

  // tensor.rs Metadata::validate: shape.iter().try_fold(1usize, usize::checked_mul), left to
  // right: an overflow before the zero is refused, a zero before (or after) a huge dim is not.
  it.for([
    ['[2^40, 2^40, 0]', [2n ** 40n, 2n ** 40n, 0n]],
    ['[2^32, 2^32, 0]', [2n ** 32n, 2n ** 32n, 0n]],
    ['[2^64 − 1, 2, 0]', [2n ** 64n - 1n, 2n, 0n]],
  ] as Array<[string, bigint[]]>)('SHAPE_OVERFLOW: %s overflows before its zero, as the reference', async ([, shape]) => {
    await expectRefused(file({ w: ent('U8', shape, [0, 0]) }), 'SHAPE_OVERFLOW', 'w');
  });

  it.for([
    ['[0, 2^60]', [0n, 2n ** 60n]],
    ['[2^62, 0]', [2n ** 62n, 0n]],
    ['[0, 2^64 − 1]', [0n, 2n ** 64n - 1n]],
    ['[2^32, 2^31, 0] (2^63: no overflow yet)', [2n ** 32n, 2n ** 31n, 0n]],
  ] as Array<[string, bigint[]]>)('accepted with 0 elements and its exact dims: %s', async ([, shape]) => {
    const f = await SafetensorsFile.open(new MemorySource(file({ w: ent('F32', shape, [0, 0]) }), FILE));
    const info = f.info('w') as { shape: number[]; exactShape?: bigint[]; byteLength: number };
    expect(info.byteLength).toBe(0);
    expect(info.shape).toEqual(shape.map(Number));
    expect(info.exactShape ?? info.shape.map(BigInt)).toEqual(shape);
  });

  it('INVALID_TENSOR_INFO: more than 64 dims (64 are fine)', async () => {
    const f = await SafetensorsFile.open(new MemorySource(file({ w: ent('U8', Array(64).fill(1), [0, 1]) }, 1), FILE));
    expect(f.info('w').shape).toHaveLength(64);
    const e = await expectRefused(file({ w: ent('U8', Array(65).fill(1), [0, 1]) }, 1), 'INVALID_TENSOR_INFO', 'w');
    expect(e.message).toMatch(/more than 64 dims/);
  });

  it('messages quote at most ~200 characters of a hostile name, dtype or number', async () => {
    const long = 'n'.repeat(10_000);
    const cases: Array<[Uint8Array, ErrorCode]> = [
      [file(`{"${long}": 1}`), 'INVALID_TENSOR_INFO'],
      [file({ w: ent('X'.repeat(10_000), [1], [0, 1]) }, 1), 'UNKNOWN_DTYPE'],
      [file(`{"w": {"dtype": "U8", "shape": [${'9'.repeat(10_000)}], "data_offsets": [0, 1]}}`, 1), 'SHAPE_OVERFLOW'],
      [file(`{"w": {"dtype": "U8", "shape": [1], "data_offsets": [0, ${'9'.repeat(10_000)}]}}`, 1), 'OFFSET_TOO_LARGE'],
      [file(`{"__metadata__": {"${long}": 1}}`), 'INVALID_METADATA'],
      [file(`{"${long}": {"dtype": "U8", "shape": [2], "data_offsets": [0, 1]}}`, 1), 'SIZE_MISMATCH'],
    ];
    for (const [bytes, code] of cases) {
      const e = await expectRefused(bytes, code);
      expect(e.message.length, e.message.slice(0, 300)).toBeLessThan(400);
      expect(e.message).toMatch(/… \(10000 characters\)/);
    }
  });

  it.for([
    ['F32 [2] spanning 4 bytes', ent('F32', [2], [0, 4]), 4],
    ['F32 [2] spanning 12 bytes', ent('F32', [2], [0, 12]), 12],
    ['BF16 [3] spanning 4 bytes', ent('BF16', [3], [0, 4]), 4],
    ['F32 [] spanning 0 bytes', ent('F32', [], [0, 0]), 0],
    ['F4 [4] spanning 4 bytes', ent('F4', [4], [0, 4]), 4],
    ['U8 [0] spanning 1 byte', ent('U8', [0], [0, 1]), 1],
  ] as Array<[string, unknown, number]>)('SIZE_MISMATCH: %s', async ([, entry, n]) => {
    await expectRefused(file({ w: entry }, n), 'SIZE_MISMATCH', 'w');
  });

  it.for([
    ['F4 [3]', ent('F4', [3], [0, 2]), 2],
    ['F4 scalar', ent('F4', [], [0, 1]), 1],
    ['F6_E2M3 [3]', ent('F6_E2M3', [3], [0, 3]), 3],
    ['F6_E3M2 [1, 5]', ent('F6_E3M2', [1, 5], [0, 4]), 4],
  ] as Array<[string, unknown, number]>)('MISALIGNED_SUB_BYTE: %s', async ([, entry, n]) => {
    await expectRefused(file({ w: entry }, n), 'MISALIGNED_SUB_BYTE', 'w');
  });
});

describe('data offsets', () => {
  const f32 = (a: number, b: number) => ent('F32', [(b - a) / 4], [a, b]);
  it.for([
    ['a gap between tensors', { a: f32(0, 4), b: f32(8, 12) }, 12, 'b'],
    ['overlapping tensors', { a: f32(0, 8), b: f32(4, 12) }, 12, 'b'],
    ['the same range twice', { a: f32(0, 4), b: f32(0, 4) }, 4, 'b'],
    ['reversed offsets', { a: ent('F32', [1], [4, 0]) }, 4, 'a'],
    ['reversed after a valid tensor', { a: f32(0, 4), b: ent('F32', [1], [8, 4]) }, 8, 'b'],
    ['past the end of the file', { a: f32(0, 8) }, 4, 'a'],
    ['not starting at 0', { a: f32(4, 8) }, 8, 'a'],
  ] as Array<[string, object, number, string]>)('INVALID_OFFSETS: %s', async ([, header, n, tensor]) => {
    await expectRefused(file(header, n), 'INVALID_OFFSETS', tensor);
  });

  it('INVALID_OFFSETS: trailing bytes after the last tensor (and after no tensor)', async () => {
    const e = await expectRefused(file({ a: f32(0, 4) }, 6), 'INVALID_OFFSETS');
    expect(e.message).toMatch(/2 trailing bytes/);
    await expectRefused(file({}, 3), 'INVALID_OFFSETS');
    await expectRefused(file({ e: ent('U8', [0], [0, 0]) }, 1), 'INVALID_OFFSETS');
  });

  it.for([
    ['end at 2^53', [0n, 2n ** 53n]],
    ['end at 2^53 + 1', [0n, 2n ** 53n + 1n]],
    ['begin and end past 2^60', [2n ** 60n, 2n ** 60n + 4n]],
    ['end at 2^64 − 1', [0n, 2n ** 64n - 1n]],
    ['end past u64', [0n, 2n ** 70n]],
  ] as Array<[string, bigint[]]>)('OFFSET_TOO_LARGE: %s', async ([, offsets]) => {
    await expectRefused(file({ w: ent('U8', [4], offsets) }, 4), 'OFFSET_TOO_LARGE', 'w');
  });
});

describe('__metadata__', () => {
  const w = { w: ent('U8', [2], [0, 2]) };
  it.for([
    ['a number value', { k: 1 }],
    ['a null value', { k: null }],
    ['an object value', { k: {} }],
    ['an array value', { k: ['a'] }],
    ['a bool value among strings', { a: 'x', k: true }],
    ['an array', ['a', 'b']],
    ['a string', 'meta'],
    ['a number', 5],
  ] as Array<[string, unknown]>)('INVALID_METADATA: %s', async ([, metadata]) => {
    await expectRefused(file({ __metadata__: metadata, ...w }, 2), 'INVALID_METADATA');
  });
});

// ─── sharded checkpoints on disk ───────────────────────────────────────────────────────

const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

/** A temp dir holding `files` (bytes, or objects written as JSON). */
async function tempDir(files: Record<string, Uint8Array | object | string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-shards-'));
  dirs.push(dir);
  for (const [name, content] of Object.entries(files)) {
    await mkdir(join(dir, name, '..'), { recursive: true });
    const bytes = content instanceof Uint8Array || typeof content === 'string' ? content : toJson(content);
    await writeFile(join(dir, name), bytes);
  }
  return dir;
}

const u8 = (name: string, n: number) => ({ name, dtype: 'U8' as const, shape: [n], data: randomBytes(rng, n) });
const S1 = 'model-00001-of-00002.safetensors';
const S2 = 'model-00002-of-00002.safetensors';
const INDEX = 'model.safetensors.index.json';
const [A, B, C] = [u8('a', 3), u8('b', 5), u8('c', 2)];
const shards = { [S1]: buildValid([A, B], { format: 'pt' }), [S2]: buildValid([C], { other: 'x' }) };
const indexOf = (map: Record<string, string>) => ({ metadata: { total_size: 10 }, weight_map: map });

async function expectOpenRefused(path: string, code: ErrorCode, names: string): Promise<void> {
  const e = await openCheckpoint(path).then(
    (c) => c.close().then(() => null),
    (err: unknown) => err,
  );
  expect(e, path).toBeInstanceOf(SluiceError);
  expect((e as SluiceError).code, (e as Error).message).toBe(code);
  expect((e as Error).message).toContain(names);
}

describe('sharded checkpoints', () => {
  it('opens a valid index + 2 shards (by directory and by index path)', async () => {
    const dir = await tempDir({ ...shards, [INDEX]: indexOf({ a: S1, b: S1, c: S2 }) });
    for (const path of [dir, join(dir, INDEX)]) {
      const ckpt = await openCheckpoint(path);
      try {
        expect(ckpt.files).toEqual([join(dir, INDEX), join(dir, S1), join(dir, S2)]);
        expect(ckpt.tensors().map((t) => [t.name, t.file])).toEqual([['a', join(dir, S1)], ['b', join(dir, S1)], ['c', join(dir, S2)]]);
        for (const t of [A, B, C]) expect(await ckpt.read(t.name), t.name).toEqual(t.data);
        expect(await ckpt.readRange('b', 1, 3)).toEqual(B.data.subarray(1, 4));
        expect(ckpt.metadata).toEqual({ format: 'pt', other: 'x' });
        expect(ckpt.has('zzz')).toBe(false);
        expect(() => ckpt.info('zzz')).toThrow(/no tensor named "zzz"/);
      } finally {
        await ckpt.close();
      }
    }
  });

  it('TENSOR_NOT_FOUND: read/readRange/slice of an unknown tensor reject (Promise API, no synchronous throw)', async () => {
    const dir = await tempDir({ ...shards, [INDEX]: indexOf({ a: S1, b: S1, c: S2 }) });
    const ckpt = await openCheckpoint(dir);
    try {
      for (const call of [() => ckpt.read('zzz'), () => ckpt.readRange('zzz', 0, 0), () => ckpt.slice('zzz', [])]) {
        let promise: Promise<unknown> | undefined;
        expect(() => (promise = call()), call.toString()).not.toThrow();
        await expect(promise, call.toString()).rejects.toMatchObject({ code: 'TENSOR_NOT_FOUND' });
      }
    } finally {
      await ckpt.close();
    }
  });

  it('opens a directory of 2 shards without an index', async () => {
    const dir = await tempDir(shards);
    const ckpt = await openCheckpoint(dir);
    expect(ckpt.files).toEqual([join(dir, S1), join(dir, S2)]);
    expect(await ckpt.read('c')).toEqual(C.data);
    await ckpt.close();
  });

  it('INVALID_INDEX: the index lists a tensor its shard does not have', async () => {
    const dir = await tempDir({ ...shards, [INDEX]: indexOf({ a: S1, b: S1, c: S2, ghost: S2 }) });
    await expectOpenRefused(dir, 'INVALID_INDEX', '"ghost"');
  });

  it('INVALID_INDEX: a shard holds a tensor the index does not list', async () => {
    const dir = await tempDir({ ...shards, [INDEX]: indexOf({ a: S1, c: S2 }) });
    await expectOpenRefused(dir, 'INVALID_INDEX', '"b"');
  });

  it('INVALID_INDEX: a tensor in two shards (with an index, and in a directory without one)', async () => {
    const twice = { [S1]: buildValid([A, B]), [S2]: buildValid([C, B]) };
    await expectOpenRefused(await tempDir({ ...twice, [INDEX]: indexOf({ a: S1, b: S1, c: S2 }) }), 'INVALID_INDEX', '"b"');
    await expectOpenRefused(await tempDir(twice), 'INVALID_INDEX', '"b"');
  });

  it.for(['../x.safetensors', '/etc/passwd', 'a/../../b', './x.safetensors', 'a//b', 'C:\\x', '', 'sub/..'])(
    'INVALID_INDEX: a shard path escaping the directory: %j',
    async (shard) => {
      const dir = await tempDir({ 'sub/inner.safetensors': buildValid([A]), [INDEX]: indexOf({ a: shard }) });
      await expectOpenRefused(dir, 'INVALID_INDEX', JSON.stringify(shard));
    },
  );

  it('accepts a shard in a subdirectory of the index', async () => {
    const dir = await tempDir({ 'sub/inner.safetensors': buildValid([A]), [INDEX]: indexOf({ a: 'sub/inner.safetensors' }) });
    const ckpt = await openCheckpoint(dir);
    expect(await ckpt.read('a')).toEqual(A.data);
    await ckpt.close();
  });

  it.for([
    ['not JSON', 'weight_map: {}'],
    ['no weight_map', { metadata: {} }],
    ['weight_map an array', { weight_map: [S1] }],
    ['a shard name that is not a string', { weight_map: { a: 1 } }],
    ['a tensor listed twice', `{"weight_map": {"a": "${S1}", "a": "${S1}"}}`],
    ['metadata an array', { metadata: [], weight_map: { a: S1 } }],
    ['an array root', [S1]],
    ['an empty weight_map', { weight_map: {} }],
    ['invalid UTF-8', new Uint8Array([0x7b, 0xff, 0xfe, 0x7d])],
  ] as Array<[string, object | string | Uint8Array]>)('INVALID_INDEX: an index with %s', async ([, index]) => {
    const dir = await tempDir({ ...shards, [INDEX]: index });
    await expectOpenRefused(join(dir, INDEX), 'INVALID_INDEX', INDEX);
  });

  it('NOT_FOUND: a shard the index names is missing on disk', async () => {
    const dir = await tempDir({ [S1]: shards[S1], [INDEX]: indexOf({ a: S1, b: S1, c: S2 }) });
    await expectOpenRefused(dir, 'NOT_FOUND', S2);
  });

  it('a malformed shard fails with its own code, naming the shard', async () => {
    const dir = await tempDir({ [S1]: shards[S1], [S2]: new Uint8Array(5), [INDEX]: indexOf({ a: S1, b: S1, c: S2 }) });
    await expectOpenRefused(dir, 'HEADER_TOO_SMALL', S2);
  });
});

// The safetensors writer: byte-exact layout against hand-worked files and the reference
// writer's own test vectors (huggingface/safetensors tensor.rs), round trips of every
// dtype through the reader, producers, refusals, and atomic replacement on disk.

import { chmod, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openCheckpoint } from '../../../src/checkpoint/open-path.js';
import { SluiceError } from '../../../src/errors.js';
import { DTYPES, type Dtype } from '../../../src/formats/dtypes.js';
import { SafetensorsFile } from '../../../src/formats/safetensors/file.js';
import { writeSafetensors } from '../../../src/formats/safetensors/write-file.js';
import { type TensorToWrite, planSafetensors, serializeSafetensors, streamSafetensors } from '../../../src/formats/safetensors/writer.js';
import { writeAll, writeFileAtomic } from '../../../src/io/atomic-file.js';
import { MemorySource } from '../../../src/io/memory-source.js';
import { buildValid, byteSize, concat, mulberry32, randInt, randomBytes, errorCode } from '../../support/safetensors-bytes.js';

const SEED = 0x3217e5;
const rng = mulberry32(SEED);
const utf8 = new TextEncoder();

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-writer-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const tensor = (name: string, dtype: Dtype, shape: number[]): TensorToWrite & { data: Uint8Array } => ({
  name, dtype, shape, data: randomBytes(rng, byteSize(dtype, shape)),
});

/** Shapes that end on a byte for every dtype (F4 needs an even count, F6 a multiple of 4). */
const SHAPE_FOR: Partial<Record<Dtype, number[]>> = { F4: [3, 2], F6_E2M3: [2, 4], F6_E3M2: [4] };


async function errorOf(p: Promise<unknown> | (() => unknown)): Promise<SluiceError> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    if (e instanceof SluiceError) return e;
    throw e;
  }
  throw new Error('expected a SluiceError');
}

/** Chunks of `bytes` in the given sizes, cycling; empty chunks included when a size is 0. */
function producer(bytes: Uint8Array, sizes: number[], calls = { n: 0 }): () => AsyncIterable<Uint8Array> {
  return async function* () {
    calls.n++;
    for (let at = 0, i = 0; at < bytes.byteLength; i++) {
      const n = sizes[i % sizes.length];
      yield bytes.slice(at, at + n);
      at += n;
    }
  };
}

/** The header text (N bytes after the prefix, padding included). */
const header = (file: Uint8Array): string => {
  const n = Number(new DataView(file.buffer, file.byteOffset, 8).getBigUint64(0, true));
  return new TextDecoder().decode(file.subarray(8, 8 + n));
};

describe('layout, byte for byte', () => {
  it('matches a hand-worked file: F32 before F16 before U8, names sorted within a dtype', async () => {
    const [u, h, w2, w1] = [tensor('u', 'U8', [5]), tensor('h', 'F16', [3]), tensor('w2', 'F32', [2]), tensor('w1', 'F32', [1])];
    const json =
      '{"__metadata__":{"format":"pt"},' +
      '"w1":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},' +
      '"w2":{"dtype":"F32","shape":[2],"data_offsets":[4,12]},' +
      '"h":{"dtype":"F16","shape":[3],"data_offsets":[12,18]},' +
      '"u":{"dtype":"U8","shape":[5],"data_offsets":[18,23]}}';
    // 250 bytes of JSON + 6 spaces = N = 256; data starts at 264 and is 23 bytes.
    const expected = concat([new Uint8Array([0, 1, 0, 0, 0, 0, 0, 0]), utf8.encode(json + '      '), w1.data, w2.data, h.data, u.data]);
    const out = await serializeSafetensors([u, h, w2, w1], { format: 'pt' });
    expect(out).toEqual(expected);
    expect(out.byteLength).toBe(8 + 256 + 23);

    const plan = planSafetensors([u, h, w2, w1], { format: 'pt' });
    expect(plan.order.map((t) => t.name)).toEqual(['w1', 'w2', 'h', 'u']);
    expect(plan.offsets).toEqual([[0, 4], [4, 12], [12, 18], [18, 23]]);
    expect(plan.dataStart).toBe(264);
    expect(plan.size).toBe(287);
  });

  it('reproduces the reference writer’s own test vectors', async () => {
    // tensor.rs test_serialization: 64 bytes of JSON, no padding.
    const f32 = new Uint8Array(new Float32Array([0, 1, 2, 3, 4, 5]).buffer);
    const a = await serializeSafetensors([{ name: 'attn.0', dtype: 'F32', shape: [1, 2, 3], data: f32 }]);
    expect(a).toEqual(concat([new Uint8Array([64, 0, 0, 0, 0, 0, 0, 0]), utf8.encode('{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}'), f32]));
    // test_serialization_forced_alignement: 65 bytes of JSON + 7 spaces.
    const b = await serializeSafetensors([{ name: 'attn0', dtype: 'F32', shape: [1, 1, 2, 3], data: f32 }]);
    expect(b).toEqual(concat([new Uint8Array([72, 0, 0, 0, 0, 0, 0, 0]), utf8.encode('{"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}}       '), f32]));
    // test_empty: no tensors, without and with metadata.
    expect(await serializeSafetensors([])).toEqual(new Uint8Array([8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32]));
    expect(await serializeSafetensors([], { framework: 'pt' })).toEqual(
      concat([new Uint8Array([40, 0, 0, 0, 0, 0, 0, 0]), utf8.encode('{"__metadata__":{"framework":"pt"}}     ')]),
    );
  });

  it('orders names by UTF-8 bytes as Rust does, not by UTF-16 code units', async () => {
    // U+FF61 is EF BD A1 in UTF-8, U+1F600 is F0 9F 98 80: byte order puts U+FF61 first,
    // while JS's default sort (UTF-16 units D83D < FF61) would put the emoji first.
    const names = ['\u{1F600}', '\uFF61', 'layer.2', 'layer.10', 'a', 'a.b', 'B', 'é', 'z'];
    const plan = planSafetensors(names.map((n) => tensor(n, 'F16', [1])));
    expect(plan.order.map((t) => t.name)).toEqual(['B', 'a', 'a.b', 'layer.10', 'layer.2', 'z', 'é', '\uFF61', '\u{1F600}']);
    expect([...names].sort()).not.toEqual(plan.order.map((t) => t.name));
  });

  it('orders all 20 dtypes by descending reference enum position', () => {
    const plan = planSafetensors(DTYPES.map((d) => tensor(`t_${d}`, d, SHAPE_FOR[d] ?? [2])));
    expect(plan.order.map((t) => t.dtype)).toEqual([...DTYPES].reverse());
  });

  it('writes header keys in order: __metadata__, then tensors in write order, each dtype/shape/data_offsets', async () => {
    const out = await serializeSafetensors([tensor('b', 'U8', [1]), tensor('a', 'I64', []), tensor('c', 'BF16', [0, 3])], { z: '1', a: 'é"\n' });
    const text = header(out);
    expect(text.trimEnd()).toBe(
      '{"__metadata__":{"z":"1","a":"é\\"\\n"},"a":{"dtype":"I64","shape":[],"data_offsets":[0,8]},' +
        '"c":{"dtype":"BF16","shape":[0,3],"data_offsets":[8,8]},"b":{"dtype":"U8","shape":[1],"data_offsets":[8,9]}}',
    );
    expect(utf8.encode(text).byteLength % 8).toBe(0);
    const parsed = JSON.parse(text);
    expect(Object.keys(parsed)).toEqual(['__metadata__', 'a', 'c', 'b']);
    for (const k of ['a', 'b', 'c']) expect(Object.keys(parsed[k])).toEqual(['dtype', 'shape', 'data_offsets']);
  });

  it('omits __metadata__ for null/undefined and writes {} for empty metadata', async () => {
    const t = tensor('x', 'U8', [2]);
    expect(header(await serializeSafetensors([t]))).not.toContain('__metadata__');
    expect(header(await serializeSafetensors([t], null))).not.toContain('__metadata__');
    expect(header(await serializeSafetensors([t], {}))).toMatch(/^\{"__metadata__":\{\},"x":/);
  });

  it.for(Array.from({ length: 16 }, (_, i) => i))('random file %i equals the hand-laid reference layout', async (i) => {
    const r = mulberry32(SEED + i);
    const specs = Array.from({ length: randInt(r, 0, 12) }, (_, j) => {
      const dtype = DTYPES[randInt(r, 0, DTYPES.length - 1)];
      const shape = SHAPE_FOR[dtype] ?? Array.from({ length: randInt(r, 0, 3) }, () => randInt(r, 0, 5));
      return { name: `t.${randInt(r, 0, 99)}.${j}`, dtype, shape, data: randomBytes(r, byteSize(dtype, shape)) };
    });
    const metadata = r() < 0.5 ? null : { seed: String(SEED + i) };
    // The reference order, computed independently: dtype position descending, then UTF-8 bytes.
    const sorted = [...specs].sort((a, b) => DTYPES.indexOf(b.dtype) - DTYPES.indexOf(a.dtype) || Buffer.compare(Buffer.from(a.name), Buffer.from(b.name)));
    expect(await serializeSafetensors(specs, metadata), `seed ${SEED + i}`).toEqual(buildValid(sorted, metadata ?? undefined));
  });
});

describe('round trips through the reader', () => {
  it.for(DTYPES)('%s alone, in memory', async (dtype) => {
    const t = tensor('t', dtype, SHAPE_FOR[dtype] ?? [2, 3]);
    const file = await SafetensorsFile.open(new MemorySource(await serializeSafetensors([t], { dtype })));
    expect(file.tensors()).toEqual([{ name: 't', dtype, shape: t.shape, byteLength: t.data.byteLength, file: 'memory' }]);
    expect(await file.read('t')).toEqual(t.data);
    expect(file.metadata).toEqual({ dtype });
  });

  it('every dtype, scalars and empty tensors in one file on disk, read back with openCheckpoint', async () => {
    const specs = [
      ...DTYPES.map((d, i) => tensor(`layer.${i}.${d.toLowerCase()}`, d, SHAPE_FOR[d] ?? [i + 1, 2])),
      tensor('scalar', 'F64', []),
      tensor('empty', 'BF16', [0, 4]),
      tensor('empty4', 'F4', [0]),
    ];
    const path = join(dir, 'all.safetensors');
    const meta = { format: 'pt', note: 'ünïcode ✓' };
    const written = await writeSafetensors(path, specs, { metadata: meta });
    expect(written).toEqual({ path, bytes: (await stat(path)).size });
    const ckpt = await openCheckpoint(path);
    try {
      expect(ckpt.metadata).toEqual(meta);
      expect(ckpt.tensors().map((t) => t.name).sort()).toEqual(specs.map((t) => t.name).sort());
      for (const t of specs) {
        expect(ckpt.info(t.name), t.name).toEqual({ name: t.name, dtype: t.dtype, shape: t.shape, byteLength: t.data.byteLength, file: path });
        expect(await ckpt.read(t.name), t.name).toEqual(t.data);
      }
    } finally {
      await ckpt.close();
    }
    expect(await readFile(path)).toEqual(Buffer.from(await serializeSafetensors(specs, meta)));
  });
});

describe('producers', () => {
  it('streams chunks of odd sizes (and empty ones), calling each producer once, at write time', async () => {
    const a = tensor('a', 'F32', [7, 3]);
    const b = tensor('b', 'U8', [13]);
    const calls = { n: 0 };
    const streamed: TensorToWrite[] = [
      { ...a, data: producer(a.data, [1, 0, 7, 3, 64], calls) },
      { ...b, data: producer(b.data, [5], calls) },
    ];
    const plan = planSafetensors(streamed);
    expect(calls.n).toBe(0);
    const path = join(dir, 'produced.safetensors');
    await writeSafetensors(path, streamed);
    expect(calls.n).toBe(2);
    expect(await readFile(path)).toEqual(Buffer.from(await serializeSafetensors([a, b])));
    expect(plan.size).toBe((await stat(path)).size);
  });

  it('passes large chunks through and gathers many small ones into the same bytes', async () => {
    const big = tensor('big', 'U8', [3 << 20]);
    const small = tensor('small', 'I8', [5000]);
    const path = join(dir, 'mixed-chunks.safetensors');
    await writeSafetensors(path, [
      { ...big, data: producer(big.data, [1 << 20, 3, 700_001, 1 << 19]) },
      { ...small, data: producer(small.data, [1, 2, 3]) },
    ]);
    // Buffer.equals: vitest's deep equality walks 3 MB byte by byte (seconds).
    expect((await readFile(path)).equals(await serializeSafetensors([big, small]))).toBe(true);
  });

  it.for([
    ['too few', 23],
    ['too many', 25],
  ] as const)('a producer yielding %s bytes is refused, naming the tensor, leaving no file', async ([, n]) => {
    const path = join(dir, `bad-${n}.safetensors`);
    const bad: TensorToWrite = { name: 'layers.0.w', dtype: 'F32', shape: [6], data: producer(randomBytes(rng, n), [4, 5]) };
    const e = await errorOf(writeSafetensors(path, [tensor('ok', 'U8', [3]), bad]));
    expect(e.code).toBe('SIZE_MISMATCH');
    expect(e.message).toContain('"layers.0.w"');
    expect(e.message).toContain(path);
    expect((await readdir(dir)).filter((f) => f.includes(`bad-${n}`))).toEqual([]);
    // Same check on the stream alone: the excess is refused before it is yielded.
    const chunks: number[] = [];
    const stream = streamSafetensors(planSafetensors([bad]));
    expect(await errorCode(async () => { for await (const c of stream) chunks.push(c.byteLength); })).toBe('SIZE_MISMATCH');
    expect(chunks.slice(1).reduce((x, y) => x + y, 0)).toBeLessThanOrEqual(24);
  });

  it('a producer that throws midway leaves the previous file intact and no temp file', async () => {
    const path = join(dir, 'keep.safetensors');
    const before = await serializeSafetensors([tensor('old', 'F16', [4])]);
    await writeFile(path, before);
    const boom = new Error('disk producer failed');
    const failing: TensorToWrite = {
      name: 'new', dtype: 'U8', shape: [1 << 20],
      data: async function* () {
        yield new Uint8Array(1 << 19);
        throw boom;
      },
    };
    await expect(writeSafetensors(path, [failing])).rejects.toBe(boom);
    expect(new Uint8Array(await readFile(path))).toEqual(before);
    expect((await readdir(dir)).filter((f) => f.includes('keep.safetensors'))).toEqual(['keep.safetensors']);
  });
});

describe('refusals', () => {
  const t = (over: Partial<TensorToWrite>): TensorToWrite => ({ name: 'w', dtype: 'F32', shape: [2], data: new Uint8Array(8), ...over });

  it.for([
    ['duplicate names', 'DUPLICATE_KEY', [t({}), t({ dtype: 'U8', data: new Uint8Array(2) })]],
    ['bytes shorter than shape × dtype', 'SIZE_MISMATCH', [t({ data: new Uint8Array(7) })]],
    ['bytes longer than shape × dtype', 'SIZE_MISMATCH', [t({ data: new Uint8Array(9) })]],
    ['a sub-byte tensor not ending on a byte', 'MISALIGNED_SUB_BYTE', [t({ dtype: 'F4', shape: [3], data: new Uint8Array(2) })]],
    ['F6 with 2 elements (12 bits)', 'MISALIGNED_SUB_BYTE', [t({ dtype: 'F6_E3M2', shape: [2], data: new Uint8Array(2) })]],
    ['a negative dimension', 'INVALID_TENSOR_INFO', [t({ shape: [-2] })]],
    ['a fractional dimension', 'INVALID_TENSOR_INFO', [t({ shape: [1.5] })]],
    ['a string dimension', 'INVALID_TENSOR_INFO', [t({ shape: ['2' as unknown as number] })]],
    ['an unknown dtype', 'INVALID_TENSOR_INFO', [t({ dtype: 'F128' as Dtype })]],
    ['the name __metadata__', 'INVALID_TENSOR_INFO', [t({ name: '__metadata__' })]],
    ['a lone surrogate in a name', 'INVALID_TENSOR_INFO', [t({ name: 'w\uD800' })]],
    ['data that is neither bytes nor a producer', 'INVALID_TENSOR_INFO', [t({ data: [1, 2] as unknown as Uint8Array })]],
    ['a shape too large for a JS number', 'SHAPE_OVERFLOW', [t({ shape: [2 ** 40, 2 ** 20] })]],
  ] as const)('%s → %s', async ([, code, tensors]) => {
    const e = await errorOf(() => planSafetensors(tensors as readonly TensorToWrite[]));
    expect(e.code).toBe(code);
    expect(e.message).toMatch(/^tensor "/);
  });

  it('names the tensor and, for files, the path', async () => {
    const path = join(dir, 'refused.safetensors');
    const e = await errorOf(writeSafetensors(path, [t({ name: 'model.embed', data: new Uint8Array(3) })]));
    expect(e.code).toBe('SIZE_MISMATCH');
    expect(e.message).toBe(`${path}: tensor "model.embed": shape [2] of F32 is 8 bytes but 3 were given`);
    await expect(stat(path)).rejects.toThrow();
  });

  it('refuses metadata that is not string → string', async () => {
    expect(await errorCode(() => planSafetensors([], { n: 1 as unknown as string }))).toBe('INVALID_METADATA');
    expect(await errorCode(() => planSafetensors([], { k: 'x\uDC00' }))).toBe('INVALID_METADATA');
  });

  it('refuses a header over 100,000,000 bytes and accepts one of exactly that size', () => {
    // '{"__metadata__":{"k":""}}' is 25 bytes; the value fills the rest.
    const atLimit = planSafetensors([], { k: 'x'.repeat(100_000_000 - 25) });
    expect(atLimit.dataStart).toBe(8 + 100_000_000);
    const e = (() => {
      try {
        planSafetensors([], { k: 'x'.repeat(100_000_000 - 24) });
      } catch (err) {
        return err as SluiceError;
      }
      throw new Error('expected HEADER_TOO_LARGE');
    })();
    expect(e.code).toBe('HEADER_TOO_LARGE');
    // UTF-8 bytes count, not UTF-16 units: 49,999,990 × 'é' is ~50 M units but 99,999,980 bytes.
    expect(() => planSafetensors([], { k: 'é'.repeat(49_999_990) })).toThrow(/would be 100000008 bytes/);
  });
});

describe('writeFileAtomic', () => {
  it('writes through a sibling temp file, keeps the old file’s mode, and leaves nothing behind', async () => {
    const path = join(dir, 'atomic.bin');
    await writeFile(path, 'old');
    await chmod(path, 0o640);
    let seen: string[] = [];
    await writeFileAtomic(path, async (handle) => {
      seen = (await readdir(dir)).filter((f) => f.startsWith('.atomic.bin.tmp-'));
      // Sequential writes (null) move the file position; positional ones do not.
      await writeAll(handle, utf8.encode('hello '), null);
      await writeAll(handle, utf8.encode('world'), null);
      await writeAll(handle, utf8.encode('W'), 6);
    });
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatch(new RegExp(`^\\.atomic\\.bin\\.tmp-${process.pid}-[0-9a-f]+$`));
    expect(await readFile(path, 'utf8')).toBe('hello World');
    if (process.platform !== 'win32') expect((await stat(path)).mode & 0o777).toBe(0o640);
    expect((await readdir(dir)).filter((f) => f.includes('atomic.bin'))).toEqual(['atomic.bin']);
  });

  it('removes the temp file and rethrows when the write fails, leaving the target as it was', async () => {
    const path = join(dir, 'atomic2.bin');
    await writeFile(path, 'keep me');
    const err = new Error('nope');
    await expect(writeFileAtomic(path, async (h) => { await writeAll(h, utf8.encode('partial'), 0); throw err; })).rejects.toBe(err);
    expect(await readFile(path, 'utf8')).toBe('keep me');
    expect((await readdir(dir)).filter((f) => f.includes('atomic2.bin'))).toEqual(['atomic2.bin']);
  });

  it('maps a missing directory to a SluiceError naming the temp path', async () => {
    expect(await errorCode(writeFileAtomic(join(dir, 'no', 'such', 'x.bin'), async () => {}))).toBe('NOT_FOUND');
  });
});

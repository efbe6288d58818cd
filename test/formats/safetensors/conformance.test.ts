// Valid safetensors files, built by hand, read back byte-exact: every dtype, scalars,
// empty tensors, padded headers, metadata, out-of-order JSON, the two-read open, and
// read/readRange/slice checked against a plain element-by-element reference slicer.

import { mkdtemp, open, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openCheckpoint } from '../../../src/checkpoint/open-path.js';
import { SluiceError } from '../../../src/errors.js';
import { DTYPES, type Dtype, dtypeBytes } from '../../../src/formats/dtypes.js';
import { HEADER_PREFETCH, SafetensorsFile } from '../../../src/formats/safetensors/file.js';
import { MemorySource } from '../../../src/io/memory-source.js';
import {
  CountingSource, type TensorSpec, buildSafetensors, buildValid, byteSize, concat, dataStartOf,
  mulberry32, randInt, randomBytes, toJson, validHeader, errorCode,
} from '../../support/safetensors-bytes.js';

const SEED = 0x5afe7e25;
const rng = mulberry32(SEED);
const NAME = 'conformance.safetensors';

const spec = (name: string, dtype: Dtype, shape: number[]): TensorSpec => ({ name, dtype, shape, data: randomBytes(rng, byteSize(dtype, shape)) });

async function openBytes(bytes: Uint8Array): Promise<{ file: SafetensorsFile; src: CountingSource }> {
  const src = new CountingSource(new MemorySource(bytes, NAME));
  return { file: await SafetensorsFile.open(src), src };
}

/** Opens, checks every tensor's info and bytes against the specs, returns the file. */
async function roundTrip(bytes: Uint8Array, specs: readonly TensorSpec[]): Promise<SafetensorsFile> {
  const { file, src } = await openBytes(bytes);
  expect(file.tensors().map((t) => t.name).sort()).toEqual(specs.map((t) => t.name).sort());
  for (const t of specs) {
    expect(file.info(t.name), t.name).toEqual({ name: t.name, dtype: t.dtype, shape: t.shape, byteLength: t.data.byteLength, file: NAME });
    expect(await file.read(t.name), t.name).toEqual(t.data);
  }
  expect(src.violations).toEqual([]);
  return file;
}


/** Shapes that end on a byte for every dtype (F4 needs an even count, F6 a multiple of 4). */
const SHAPE_FOR: Partial<Record<Dtype, number[]>> = { F4: [3, 2], F6_E2M3: [2, 4], F6_E3M2: [4] };

describe('every dtype reads back byte-exact', () => {
  it.for(DTYPES)('%s alone in a file', async (dtype) => {
    const t = spec('t', dtype, SHAPE_FOR[dtype] ?? [2, 3]);
    await roundTrip(buildValid([t]), [t]);
  });

  it(`all ${DTYPES.length} dtypes side by side in one file`, async () => {
    const specs = DTYPES.map((d, i) => spec(`layer.${i}.${d.toLowerCase()}`, d, SHAPE_FOR[d] ?? [i + 1]));
    const file = await roundTrip(buildValid(specs), specs);
    expect(file.tensors().map((t) => t.dtype)).toEqual(DTYPES);
  });
});

describe('scalars and empty tensors', () => {
  it('reads scalars (shape [])', async () => {
    const specs = (['F32', 'BF16', 'I64', 'BOOL', 'U8', 'C64'] as Dtype[]).map((d) => spec(`s_${d}`, d, []));
    const file = await roundTrip(buildValid(specs), specs);
    const s = await file.slice('s_F32', []);
    expect(s).toEqual({ dtype: 'F32', shape: [], data: specs[0].data });
  });

  it('reads empty tensors, several at the same offset, one at the very end of the file', async () => {
    const specs = [spec('e0', 'F32', [0]), spec('e30', 'BF16', [3, 0]), spec('e05', 'F4', [0, 5]), spec('w', 'F32', [2]), spec('tail', 'I8', [0])];
    const file = await roundTrip(buildValid(specs), specs);
    expect(file.info('e0').byteLength).toBe(0);
    expect(await file.readRange('tail', 0, 0)).toEqual(new Uint8Array(0));
    expect(await file.slice('e30', [])).toEqual({ dtype: 'BF16', shape: [3, 0], data: new Uint8Array(0) });
    expect(await file.slice('e30', [[1, 3]])).toEqual({ dtype: 'BF16', shape: [2, 0], data: new Uint8Array(0) });
  });

  it('reads a file whose tensors are all empty (no data bytes at all)', async () => {
    const specs = [spec('a', 'F16', [0]), spec('b', 'U8', [0, 0, 4])];
    const bytes = buildValid(specs);
    expect(bytes.byteLength).toBe(dataStartOf(bytes));
    await roundTrip(bytes, specs);
  });

  it('reads a file with no tensors', async () => {
    await roundTrip(buildValid([], { note: 'empty' }), []);
    await roundTrip(buildSafetensors({ header: '{}', data: new Uint8Array(0) }), []);
  });
});

describe('header layout', () => {
  const specs = [spec('a', 'F32', [3]), spec('b', 'I16', [5])];
  const json = toJson(validHeader(specs, { k: 'v' }));
  const data = concat(specs.map((t) => t.data));

  it.for([0, 1, 7, 8, 100])('accepts %i trailing spaces of padding', async (pad) => {
    await roundTrip(buildSafetensors({ header: json, data, headerPad: pad }), specs);
  });

  it('accepts leading whitespace before the JSON object', async () => {
    await roundTrip(buildSafetensors({ header: ` \n\t\r${json}`, data }), specs);
  });

  it('pads the header to a multiple of 8 like the reference writer', () => {
    expect(dataStartOf(buildValid(specs)) % 8).toBe(0);
  });

  it('accepts tensors listed in the JSON out of offset order and lists them by offset', async () => {
    const header = validHeader(specs);
    const reversed = Object.fromEntries(Object.entries(header).reverse());
    expect(Object.keys(reversed)).toEqual(['b', 'a']);
    const file = await roundTrip(buildSafetensors({ header: reversed, data }), specs);
    expect(file.tensors().map((t) => t.name)).toEqual(['a', 'b']);
  });

  it('decodes escapes in tensor names (\\u, \\", \\/) and a surrogate pair', async () => {
    const header = '{"w\\u00e9\\"\\/\\ud83d\\ude00": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}}';
    const t = spec('w\u00e9"/\ud83d\ude00', 'U8', [2]);
    await roundTrip(buildSafetensors({ header, data: t.data }), [t]);
  });

  it('accepts non-ASCII tensor names and metadata', async () => {
    const t = spec('模型.层/权重 😀', 'F16', [2]);
    const file = await roundTrip(buildValid([t], { 'clé': 'välue ✓' }), [t]);
    expect(file.metadata).toEqual({ 'clé': 'välue ✓' });
  });
});

describe('__metadata__', () => {
  const t = spec('w', 'U8', [4]);

  it('present: exposed as a string map', async () => {
    const file = await roundTrip(buildValid([t], { format: 'pt', '': '' }), [t]);
    expect(file.metadata).toEqual({ format: 'pt', '': '' });
  });

  it.for([
    ['absent', undefined],
    ['null', null],
    ['an empty object', {}],
  ] as const)('%s: metadata is {}', async ([, meta]) => {
    const file = await roundTrip(buildValid([t], meta as Record<string, string> | null | undefined), [t]);
    expect(file.metadata).toEqual({});
  });

  it('keeps a "__proto__" metadata key as data', async () => {
    const header = `{"__metadata__":{"__proto__":"x","a":"b"},"w":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}`;
    const { file } = await openBytes(buildSafetensors({ header, data: t.data }));
    expect(Object.keys(file.metadata).sort()).toEqual(['__proto__', 'a']);
    expect(Object.getOwnPropertyDescriptor(file.metadata, '__proto__')?.value).toBe('x');
  });
});

describe('open costs at most two reads', () => {
  it('a small header: one read of the prefix and 64 KiB (or the whole file)', async () => {
    const specs = [spec('a', 'F32', [4])];
    const bytes = buildValid(specs);
    const { file, src } = await openBytes(bytes);
    expect(src.reads).toEqual([{ offset: 0, length: bytes.byteLength }]);
    await file.read('a');
    expect(src.reads[1]).toEqual({ offset: dataStartOf(bytes), length: 16 });
  });

  it('a header of exactly 64 KiB: still one read', async () => {
    const specs = [spec('a', 'U8', [1 << 17])];
    const json = toJson(validHeader(specs));
    const bytes = buildSafetensors({ header: json, data: specs[0].data, headerPad: HEADER_PREFETCH - json.length });
    const { src } = await openBytes(bytes);
    expect(src.reads).toEqual([{ offset: 0, length: 8 + HEADER_PREFETCH }]);
  });

  it('a header one byte over 64 KiB: two reads, the second exactly the header', async () => {
    const specs = [spec('a', 'U8', [8])];
    const json = toJson(validHeader(specs));
    const bytes = buildSafetensors({ header: json, data: specs[0].data, headerPad: HEADER_PREFETCH + 1 - json.length });
    const { src } = await openBytes(bytes);
    expect(src.reads).toEqual([{ offset: 0, length: 8 + HEADER_PREFETCH }, { offset: 8, length: HEADER_PREFETCH + 1 }]);
  });

  it('a 300 KB header of 3,000 tensors: two reads, all tensors correct', async () => {
    const specs = Array.from({ length: 3000 }, (_, i) => spec(`model.layers.${i}.self_attn.q_proj.weight`, 'BF16', [i % 5]));
    const bytes = buildValid(specs, { blob: 'x'.repeat(100_000) });
    expect(dataStartOf(bytes)).toBeGreaterThan(8 + HEADER_PREFETCH);
    const { file, src } = await openBytes(bytes);
    expect(src.count).toBe(2);
    expect(src.reads[1]).toEqual({ offset: 8, length: dataStartOf(bytes) - 8 });
    for (const t of specs.filter((_, i) => i % 97 === 0)) expect(await file.read(t.name), t.name).toEqual(t.data);
  });
});

// ─── read / readRange / slice against a reference slicer ─────────────────────────────────

type Ranges = Array<[number, number]>;

/** tensor[ranges] element by element over the whole tensor's bytes. */
function refSlice(bytes: Uint8Array, shape: number[], eb: number, ranges: Ranges): { shape: number[]; data: Uint8Array } {
  const full = shape.map((d, i): [number, number] => ranges[i] ?? [0, d]);
  const strides = shape.map((_, i) => shape.slice(i + 1).reduce((a, b) => a * b, 1) * eb);
  const out: number[] = [];
  const walk = (dim: number, base: number): void => {
    if (dim === shape.length) {
      for (let k = 0; k < eb; k++) out.push(bytes[base + k]);
      return;
    }
    for (let i = full[dim][0]; i < full[dim][1]; i++) walk(dim + 1, base + i * strides[dim]);
  };
  walk(0, 0);
  return { shape: full.map(([a, b]) => b - a), data: Uint8Array.from(out) };
}

interface SliceCase {
  label: string;
  dtype: Dtype;
  shape: number[];
  ranges: Ranges;
}

const NAMED: SliceCase[] = [
  { label: '1-D middle', dtype: 'F32', shape: [10], ranges: [[3, 7]] },
  { label: '1-D full', dtype: 'I64', shape: [6], ranges: [[0, 6]] },
  { label: '1-D empty', dtype: 'F16', shape: [6], ranges: [[4, 4]] },
  { label: '2-D rows', dtype: 'BF16', shape: [5, 4], ranges: [[1, 3]] },
  { label: '2-D columns', dtype: 'F32', shape: [5, 4], ranges: [[0, 5], [1, 3]] },
  { label: '2-D block', dtype: 'U16', shape: [6, 7], ranges: [[2, 5], [3, 6]] },
  { label: '2-D no ranges (full)', dtype: 'I8', shape: [3, 3], ranges: [] },
  { label: '2-D empty columns', dtype: 'F32', shape: [4, 4], ranges: [[0, 4], [2, 2]] },
  { label: '3-D rows', dtype: 'F16', shape: [4, 3, 2], ranges: [[1, 2]] },
  { label: '3-D middle dim', dtype: 'F32', shape: [3, 4, 5], ranges: [[0, 3], [1, 3]] },
  { label: '3-D last dim', dtype: 'C64', shape: [2, 3, 4], ranges: [[0, 2], [0, 3], [1, 2]] },
  { label: '3-D block', dtype: 'U8', shape: [5, 5, 5], ranges: [[1, 4], [2, 5], [0, 3]] },
  { label: '3-D full', dtype: 'F64', shape: [2, 2, 2], ranges: [[0, 2], [0, 2], [0, 2]] },
];

function randomCase(r: () => number, i: number): SliceCase {
  const byteTypes = DTYPES.filter((d) => dtypeBytes(d) !== undefined);
  const dtype = byteTypes[randInt(r, 0, byteTypes.length - 1)];
  const shape = Array.from({ length: randInt(r, 1, 4) }, () => randInt(r, 0, 7));
  const ranges: Ranges = shape.slice(0, randInt(r, 0, shape.length)).map((d) => {
    const kind = r();
    if (kind < 0.25) return [0, d];
    const a = randInt(r, 0, d);
    return kind < 0.35 ? [a, a] : [a, randInt(r, a, d)];
  });
  return { label: `random #${i}`, dtype, shape, ranges };
}

/** `F32 [3,4] [1:3, 0:2]`: what a failing case prints in its name. */
function describeCase(c: SliceCase): string {
  return `${c.label}: ${c.dtype} [${c.shape}] [${c.ranges.map(([a, b]) => `${a}:${b}`).join(', ')}]`;
}

const caseRng = mulberry32(SEED ^ 0x51ce);
const CASES = [...NAMED, ...Array.from({ length: 16 }, (_, i) => randomCase(caseRng, i))].map((c) => ({ ...c, name: describeCase(c) }));

describe('read, readRange and slice match a reference slicer', () => {
  for (const c of CASES) it(c.name, async () => {
    const where = `case ${JSON.stringify(c)} (seed ${SEED})`;
    const t = spec('t', c.dtype, c.shape);
    const { file, src } = await openBytes(buildValid([spec('before', 'U8', [3]), t, spec('after', 'F32', [2])]));
    expect(await file.read('t'), where).toEqual(t.data);

    const eb = dtypeBytes(c.dtype)!;
    const want = refSlice(t.data, c.shape, eb, c.ranges);
    const readsBefore = src.count;
    const got = await file.slice('t', c.ranges);
    expect(got.dtype, where).toBe(c.dtype);
    expect(got.shape, where).toEqual(want.shape);
    expect(got.data, where).toEqual(want.data);
    // A slice reads only the bytes it covers.
    const sliceReads = src.reads.slice(readsBefore);
    expect(sliceReads.reduce((a, x) => a + x.length, 0), where).toBe(want.data.byteLength);

    const rr = mulberry32(SEED + c.shape.length * 131 + t.data.byteLength);
    for (let k = 0; k < 8; k++) {
      const off = randInt(rr, 0, t.data.byteLength);
      const len = randInt(rr, 0, t.data.byteLength - off);
      expect(await file.readRange('t', off, len), `${where} readRange(${off}, ${len})`).toEqual(t.data.subarray(off, off + len));
    }
    expect(src.violations).toEqual([]);
  });
});

describe('slice and lookup refusals', () => {
  const specs = [spec('m', 'F32', [4, 6]), spec('f4', 'F4', [4, 2]), spec('f6a', 'F6_E2M3', [4]), spec('f6b', 'F6_E3M2', [8])];
  const bytes = buildValid(specs);

  it.for([
    ['stop past the dimension', [[0, 5]]],
    ['start past stop', [[3, 2]]],
    ['negative start', [[-1, 2]]],
    ['stop past the second dimension', [[0, 4], [0, 7]]],
    ['a non-integer bound', [[0.5, 2]]],
    ['more ranges than dimensions', [[0, 1], [0, 1], [0, 1]]],
  ] as Array<[string, Ranges]>)('slice refuses %s with INVALID_SLICE', async ([, ranges]) => {
    const { file } = await openBytes(bytes);
    expect(await errorCode(file.slice('m', ranges))).toBe('INVALID_SLICE');
  });

  it.for(['f4', 'f6a', 'f6b'])('slice refuses the sub-byte tensor %s with INVALID_SLICE, read works', async (name) => {
    const { file } = await openBytes(bytes);
    await expect(file.slice(name, [])).rejects.toThrow(/sub-byte/);
    expect(await errorCode(file.slice(name, [[0, 1]]))).toBe('INVALID_SLICE');
    expect(await file.read(name)).toEqual(specs.find((s) => s.name === name)!.data);
  });

  it('readRange refuses ranges outside the tensor with INVALID_SLICE', async () => {
    const { file, src } = await openBytes(bytes);
    for (const [o, l] of [[0, 97], [96, 1], [-1, 2], [1, -1], [0.5, 1], [Number.MAX_SAFE_INTEGER, 1]]) {
      expect(await errorCode(file.readRange('m', o, l)), `readRange(${o}, ${l})`).toBe('INVALID_SLICE');
    }
    expect(src.violations).toEqual([]);
  });

  it('unknown names are TENSOR_NOT_FOUND naming the file and the tensor', async () => {
    const { file } = await openBytes(bytes);
    expect(file.has('nope')).toBe(false);
    expect(file.has('m')).toBe(true);
    for (const call of [() => file.info('nope'), () => file.read('nope'), () => file.readRange('nope', 0, 0), () => file.slice('nope', []), () => file.read('__proto__')]) {
      expect(await errorCode(call)).toBe('TENSOR_NOT_FOUND');
    }
    await expect(file.read('nope')).rejects.toThrow(new RegExp(`${NAME}.*"nope"`));
  });
});

// ─── files over 4 GiB ──────────────────────────────────────────────────────────────────

describe('files over 4 GiB', () => {
  it('opens a sparse 4.3 GB file and reads bytes past 2^32 exactly', async (ctx) => {
    const BIG = 4_300_000_003; // U8 elements, past 2^32 = 4,294,967,296
    const small = spec('small', 'I32', [4]);
    const json = toJson({ small: { dtype: 'I32', shape: [4], data_offsets: [0, 16] }, big: { dtype: 'U8', shape: [BIG], data_offsets: [16, 16 + BIG] } });
    const head = buildSafetensors({ header: json, data: small.data, headerPad: (8 - (json.length % 8)) % 8 });
    const dataStart = dataStartOf(head);
    const size = dataStart + 16 + BIG;
    const tail = randomBytes(rng, 64);
    const across = randomBytes(rng, 32); // straddles file offset 2^32
    const acrossAt = 2 ** 32 - 16;

    const dir = await mkdtemp(join(tmpdir(), 'sluice-4g-'));
    const path = join(dir, 'big.safetensors');
    try {
      const fh = await open(path, 'w');
      try {
        await fh.truncate(size);
        await fh.write(head, 0, head.byteLength, 0);
        await fh.write(across, 0, across.byteLength, acrossAt);
        await fh.write(tail, 0, tail.byteLength, size - tail.byteLength);
      } finally {
        await fh.close();
      }
      const st = await stat(path);
      if (st.blocks * 512 > 64 * 1024 * 1024) {
        ctx.skip(`the temp file system (${dir}) does not keep sparse files sparse`);
      }
      const ckpt = await openCheckpoint(path);
      try {
        expect(ckpt.info('big')).toEqual({ name: 'big', dtype: 'U8', shape: [BIG], byteLength: BIG, file: path });
        expect(await ckpt.read('small')).toEqual(small.data);
        expect(await ckpt.readRange('big', BIG - 64, 64)).toEqual(tail);
        const inBig = acrossAt - dataStart - 16;
        expect(await ckpt.readRange('big', inBig, 32)).toEqual(across);
        expect((await ckpt.slice('big', [[BIG - 10, BIG]])).data).toEqual(tail.subarray(54));
        expect(await errorCode(ckpt.readRange('big', BIG - 1, 2))).toBe('INVALID_SLICE');
      } finally {
        await ckpt.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

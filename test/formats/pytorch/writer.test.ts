// writeTorchCheckpoint against sluice's own reader: every dtype, scalars, empty tensors,
// odd byte lengths, many uneven chunks; the zip layout torch writes (64-byte aligned
// stored entries, ZIP64 end records); and the errors. Torch itself was checked by hand
// (torch.load of a written file): tests do not need Python.

import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openCheckpoint } from '../../../src/checkpoint/open-path.js';
import { type Dtype, dtypeBytes } from '../../../src/formats/dtypes.js';
import { SluiceError } from '../../../src/errors.js';
import { type TorchTensorToWrite, picklePayload, writeTorchCheckpoint } from '../../../src/formats/pytorch/writer.js';
import { unpickle } from '../../../src/formats/pytorch/unpickler.js';
import { ZipReader } from '../../../src/formats/pytorch/zip.js';
import { FileSource } from '../../../src/io/file-source.js';
import { mulberry32, randomBytes } from '../../support/safetensors-bytes.js';

const dir = mkdtempSync(join(tmpdir(), 'sluice-torch-writer-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Spec {
  name: string;
  dtype: Dtype;
  shape: number[];
  bytes: Uint8Array;
}

const rand = mulberry32(11);

function spec(name: string, dtype: Dtype, shape: number[]): Spec {
  const bytes = randomBytes(rand, shape.reduce((a, d) => a * d, 1) * dtypeBytes(dtype)!);
  if (dtype === 'BOOL') bytes.forEach((b, i) => (bytes[i] = b & 1));
  return { name, dtype, shape, bytes };
}

/** Hands the bytes out in chunks of the given sizes (cycled), as a sync or async iterable. */
function tensor(s: Spec, chunkSizes: number[] = [s.bytes.byteLength], async = false): TorchTensorToWrite {
  function* chunks() {
    for (let at = 0, k = 0; at < s.bytes.byteLength; k++) {
      const n = Math.max(1, chunkSizes[k % chunkSizes.length]);
      yield s.bytes.slice(at, at + n);
      at += n;
    }
  }
  const data = async
    ? async function* () {
        for (const c of chunks()) yield c;
      }
    : chunks;
  return { name: s.name, dtype: s.dtype, shape: s.shape, byteLength: s.bytes.byteLength, data };
}

async function expectReadBack(path: string, specs: Spec[]): Promise<void> {
  const ckpt = await openCheckpoint(path);
  try {
    expect(ckpt.format).toBe('pytorch');
    expect(ckpt.tensors().map((t) => [t.name, t.dtype, t.shape])).toEqual(specs.map((s) => [s.name, s.dtype, s.shape]));
    for (const s of specs) expect(await ckpt.read(s.name)).toEqual(s.bytes);
    expect(ckpt.metadata).toEqual({});
  } finally {
    await ckpt.close();
  }
}

const ALL: Dtype[] = ['F64', 'F32', 'F16', 'BF16', 'I64', 'I32', 'I16', 'I8', 'U8', 'BOOL'];

describe('writeTorchCheckpoint', () => {
  it('round-trips every dtype, scalars, empty tensors, odd lengths and uneven chunks', async () => {
    const specs: Spec[] = [];
    for (const d of ALL) {
      specs.push(spec(`m.${d}.weight`, d, [5, 7]), spec(`m.${d}.scalar`, d, []), spec(`m.${d}.empty`, d, [3, 0]));
    }
    specs.push(spec('odd.f16', 'F16', [3]), spec('rank5', 'F32', [2, 1, 3, 2, 2]), spec('zero.first', 'I8', [0, 4]));
    specs.push(spec('big.chunky', 'BF16', [257, 129])); // streamed in many uneven chunks
    const path = join(dir, 'all.pth');
    const tensors = specs.map((s, i) => (s.name === 'big.chunky' ? tensor(s, [1, 7, 4096, 3, 999, 64], true) : tensor(s, [5, 1], i % 2 === 0)));
    const { bytes } = await writeTorchCheckpoint(path, tensors);
    expect(readFileSync(path).byteLength).toBe(bytes);
    await expectReadBack(path, specs);
    expect(readdirSync(dir).filter((f) => f.includes('.tmp-'))).toEqual([]);
  });

  it('lays the zip out as torch does: entry names, stored, 64-byte aligned data, ZIP64 end records', async () => {
    const specs = [spec('a', 'F32', [3, 3]), spec('b', 'U8', [5]), spec('c', 'I64', [])];
    const path = join(dir, 'layout.pth');
    await writeTorchCheckpoint(path, specs.map((s) => tensor(s)), { archiveName: 'layout' });
    const zip = await ZipReader.open(await FileSource.open(path));
    try {
      const names = ['data.pkl', 'byteorder', 'data/0', 'data/1', 'data/2', 'version'].map((n) => `layout/${n}`);
      expect(zip.entries().map((e) => e.name)).toEqual(names);
      for (const e of zip.entries()) {
        expect(e.method).toBe(0);
        expect((await zip.dataRange(e)).offset % 64).toBe(0);
        await zip.read(e); // checks the CRC-32 patched into the header
      }
      expect(new TextDecoder().decode(await zip.read(zip.entry('layout/version')!))).toBe('3\n');
      expect(new TextDecoder().decode(await zip.read(zip.entry('layout/byteorder')!))).toBe('little');
      const pickled = unpickle(await zip.read(zip.entry('layout/data.pkl')!), { name: path });
      expect(pickled).toBeInstanceOf(Map);
      expect([...(pickled as Map<unknown, unknown>).keys()]).toEqual(['a', 'b', 'c']);
    } finally {
      await zip.close();
    }
    const file = readFileSync(path);
    const eocd = file.byteLength - 22;
    expect(file.readUInt32LE(eocd)).toBe(0x06054b50);
    expect(file.readUInt32LE(eocd - 20)).toBe(0x07064b50); // ZIP64 locator, as torch always writes
  });

  it('writes torch-style pickles: contiguous strides (0 dims count as 1), big numels as LONG1', () => {
    const pkl = picklePayload([{ name: 'x', dtype: 'U8', shape: [3, 0, 2], byteLength: 0, data: () => [] }]);
    const t = (unpickle(pkl, { name: 'x.pkl' }) as Map<string, unknown>).get('x');
    expect(t).toMatchObject({ shape: [3, 0, 2], stride: [2, 2, 1], storageOffset: 0, requiresGrad: false });
    const huge = [2 ** 31 + 5];
    const big = picklePayload([{ name: 'y', dtype: 'U8', shape: huge, byteLength: huge[0], data: () => [] }]);
    expect((unpickle(big, { name: 'y.pkl' }) as Map<string, unknown>).get('y')).toMatchObject({ shape: huge, storage: { numel: huge[0], key: '0', dtype: 'U8' } });
  });

  it('refuses a data() that yields more or fewer bytes than byteLength, naming the tensor and file, leaving nothing', async () => {
    const s = spec('w', 'F32', [4]);
    const path = join(dir, 'short.pth');
    writeFileSync(path, 'old');
    const short = { ...tensor(s), data: () => [s.bytes.subarray(0, 15)] };
    const long = { ...tensor(s), data: () => [s.bytes, new Uint8Array(1)] };
    for (const bad of [short, long]) {
      const err = await writeTorchCheckpoint(path, [tensor(spec('ok', 'I8', [2])), bad]).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SluiceError);
      expect((err as SluiceError).code).toBe('SIZE_MISMATCH');
      expect((err as SluiceError).message).toMatch(/short\.pth: tensor "w"/);
    }
    expect(readFileSync(path, 'utf8')).toBe('old'); // the target is untouched
    expect(readdirSync(dir).filter((f) => f.includes('.tmp-'))).toEqual([]);
  });

  it('refuses bad input before writing anything', async () => {
    const path = join(dir, 'bad.pth');
    const f32 = spec('w', 'F32', [2]);
    const cases: Array<[TorchTensorToWrite[], string]> = [
      [[{ ...tensor(f32), byteLength: 7 }], 'SIZE_MISMATCH'],
      [[{ ...tensor(f32), dtype: 'U16', byteLength: 4, shape: [2] }], 'UNSUPPORTED_DTYPE'],
      [[tensor(f32), tensor(f32)], 'DUPLICATE_KEY'],
      [[{ ...tensor(f32), shape: [-2] }], 'INVALID_TENSOR_INFO'],
    ];
    for (const [tensors, code] of cases) {
      await expect(writeTorchCheckpoint(path, tensors)).rejects.toMatchObject({ code, message: expect.stringContaining('bad.pth') });
    }
    await expect(writeTorchCheckpoint(path, [tensor(f32)], { archiveName: 'a/b' })).rejects.toMatchObject({ code: 'USAGE' });
  });

  it('writes an empty state_dict', async () => {
    const path = join(dir, 'empty.pth');
    await writeTorchCheckpoint(path, []);
    await expectReadBack(path, []);
  });
});

// ZipReader against archives built here (laid out like torch.save's, ZIP64, deflate,
// comments), the torch-made fixtures, a malformed corpus with one case per validation
// rule, and seeded mutation fuzzing. FUZZ_SEED=<n> / FUZZ_CASES=<n> run other cases;
// FUZZ_STATS=1 prints how the cases ended (opened, or which error code).

import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SluiceError } from '../../../src/errors.js';
import { MAX_READ_BYTES, ZipReader } from '../../../src/formats/pytorch/zip.js';
import { FileSource } from '../../../src/io/file-source.js';
import { MemorySource } from '../../../src/io/memory-source.js';
import { CountingSource, mulberry32, randInt, randomBytes } from '../../support/safetensors-bytes.js';
import { type ZipEntrySpec, type ZipOptions, SparseSource, buildZip, buildZipParts, patch } from '../../support/zip-bytes.js';

const enc = new TextEncoder();
const FILE = 'bad.pth';

function torchEntries(root = 'archive/'): ZipEntrySpec[] {
  const r = mulberry32(7);
  return [
    { name: `${root}data.pkl`, data: enc.encode('\x80\x02}q\x00.'), align: 64 },
    { name: `${root}byteorder`, data: enc.encode('little'), align: 64 },
    { name: `${root}data/0`, data: randomBytes(r, 300), align: 64 },
    { name: `${root}data/1`, data: randomBytes(r, 0), align: 64 },
    { name: `${root}version`, data: enc.encode('3\n'), align: 64 },
    { name: `${root}.data/serialization_id`, data: enc.encode('0123456789'), align: 64 },
  ];
}

async function openBytes(bytes: Uint8Array, name = 'model.pth'): Promise<{ zip: ZipReader; src: CountingSource }> {
  const src = new CountingSource(new MemorySource(bytes, name));
  return { zip: await ZipReader.open(src), src };
}

/** Every entry reads back as built, and its dataRange holds exactly its (stored) bytes. */
async function expectRoundTrip(specs: ZipEntrySpec[], options: ZipOptions = {}): Promise<CountingSource> {
  const { bytes, layout } = buildZip(specs, options);
  const { zip, src } = await openBytes(bytes);
  expect(zip.entries().map((e) => e.name)).toEqual(specs.map((s) => (typeof s.name === 'string' ? s.name : expect.any(String))));
  for (const [i, s] of specs.entries()) {
    const e = zip.entry(zip.entries()[i].name)!;
    const data = s.data as Uint8Array;
    expect(e.size).toBe(data.byteLength);
    expect(await zip.read(e)).toEqual(data);
    const range = await zip.dataRange(e);
    expect(range).toEqual({ offset: layout.entries[i].dataOffset, length: layout.entries[i].dataLength });
    if (s.align) expect(range.offset % s.align).toBe(0);
    if (!s.method) expect(bytes.subarray(range.offset, range.offset + range.length)).toEqual(data);
  }
  expect(src.violations).toEqual([]);
  return src;
}

describe('ZipReader: valid archives', () => {
  it('round-trips a torch-like archive: names, bytes, 64-aligned data ranges', async () => {
    await expectRoundTrip(torchEntries());
    await expectRoundTrip(torchEntries(), { zip64Records: true }); // torch always writes the ZIP64 records
  });

  it('opens a small archive in one read and caches each local header', async () => {
    const { zip, src } = await openBytes(buildZip(torchEntries()).bytes);
    expect(src.count).toBe(1);
    const e = zip.entry('archive/data/0')!;
    const first = await zip.dataRange(e);
    const reads = src.count;
    expect(await zip.dataRange(e)).toEqual(first);
    expect(src.count).toBe(reads);
    expect(zip.entry('archive/missing')).toBeUndefined();
    await expect(zip.dataRange({ ...e, name: 'archive/missing' })).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await zip.close();
    expect(src.closed).toBe(true);
  });

  it('reads a directory larger than the tail window in at most three reads', async () => {
    const specs = Array.from({ length: 1500 }, (_, i) => ({ name: `ckpt/data/${i}_${'x'.repeat(40)}`, data: enc.encode(`${i}`) }));
    for (const options of [{}, { zip64: true }]) {
      const { zip, src: big } = await openBytes(buildZip(specs, options).bytes);
      expect(big.count).toBeLessThanOrEqual(3);
      expect(zip.entries()).toHaveLength(1500);
    }
  });

  it.each([
    ['archive/', 'archive/'],
    ['resnet18_weights/', 'resnet18_weights/'],
    ['a/b/', 'a/'],
    ['', ''],
  ])('root of entries under %j is %j', async (prefix, root) => {
    const { zip } = await openBytes(buildZip(torchEntries(prefix)).bytes);
    expect(zip.root()).toBe(root);
    expect(zip.entry(`${prefix}data.pkl`)).toBeDefined();
  });

  it('root of an empty archive is empty', async () => {
    const { zip } = await openBytes(buildZip([]).bytes);
    expect(zip.entries()).toEqual([]);
    expect(zip.root()).toBe('');
  });

  it('reads forced ZIP64 fields, extras and records', async () => {
    await expectRoundTrip(torchEntries(), { zip64: true });
  });

  it('reads an archive past 4 GiB (sparse): 64-bit offsets and sizes', async () => {
    const big = 5 * 2 ** 30;
    const { parts, layout } = buildZipParts([
      { name: 'big/data.pkl', data: enc.encode('pickle'), align: 64 },
      { name: 'big/data/0', data: big, align: 64 },
      { name: 'big/version', data: enc.encode('3\n'), align: 64 },
    ], { zip64: true });
    const src = new CountingSource(new SparseSource(parts, 'big.pth'));
    const zip = await ZipReader.open(src);
    expect(zip.entry('big/data/0')!.size).toBe(big);
    expect(await zip.dataRange(zip.entry('big/data/0')!)).toEqual({ offset: layout.entries[1].dataOffset, length: big });
    const version = zip.entry('big/version')!;
    expect(version.localHeaderOffset).toBeGreaterThan(2 ** 32);
    expect(new TextDecoder().decode(await zip.read(version))).toBe('3\n');
    await expect(zip.read(zip.entry('big/data/0')!)).rejects.toMatchObject({ code: 'UNSUPPORTED_FORMAT' });
    expect(big).toBeGreaterThan(MAX_READ_BYTES);
    expect(src.violations).toEqual([]);
  });

  it('inflates deflate entries (dataRange is the compressed range)', async () => {
    const text = enc.encode('tensor '.repeat(5000));
    await expectRoundTrip([{ name: 'z/a', data: text, method: 8 }, { name: 'z/b', data: enc.encode('x'), align: 64 }, { name: 'z/c', data: new Uint8Array(0), method: 8 }]);
    await expectRoundTrip([{ name: 'z/a', data: text, method: 8, align: 64 }], { zip64: true });
  });

  it('finds the end record behind a 64 KiB comment, even one holding another zip', async () => {
    const fake = buildZip([{ name: 'evil/x', data: enc.encode('no') }]).bytes;
    const comment = new Uint8Array(0xffff).fill(0x20);
    comment.set(fake, 100); // a whole zip in the comment: its EOCD fits, but ends before the file does
    await expectRoundTrip(torchEntries(), { comment });
    await expectRoundTrip(torchEntries(), { comment: 'PK\x05\x06 saved by sluice', zip64: true });
    expect((await openBytes(buildZip([], { comment: 'empty' }).bytes)).zip.entries()).toEqual([]);
  });

  it('decodes UTF-8 names with flag bit 11 and CP437 without', async () => {
    const { zip } = await openBytes(buildZip([
      { name: '模型/数据.pkl', data: enc.encode('a') },
      { name: new Uint8Array([0x61, 0x80, 0xe1, 0xff]), data: enc.encode('b') },
    ]).bytes);
    expect(zip.entries().map((e) => e.name)).toEqual(['模型/数据.pkl', 'aÇß\u00a0']);
    expect(zip.root()).toBe('模型/');
  });
});

// ─── the torch-made fixtures ────────────────────────────────────────────────────────────

const FIXTURES = 'test/fixtures/pytorch';
function fixtureFiles(): string[] {
  try {
    return readdirSync(FIXTURES, { recursive: true, encoding: 'utf8' }).filter((f) => /\.(pth|bin)$/.test(f)).sort();
  } catch {
    return [];
  }
}
const fixtures = fixtureFiles();

describe('ZipReader: torch.save fixtures', () => {
  if (fixtures.length === 0) it.skip(`no ${FIXTURES}/*.pth (written by test/fixtures/make_pytorch_fixtures.py with torch)`, () => {});
  it.each(fixtures)('%s', async (file) => {
    const path = join(FIXTURES, file);
    const src = new CountingSource(await FileSource.open(path));
    if (file === 'legacy.pth') {
      // torch's pre-1.6 format: a bare pickle stream. The checkpoint layer names it.
      await expect(ZipReader.open(src)).rejects.toMatchObject({ code: 'INVALID_ZIP', message: expect.stringContaining('not a zip archive') });
      return;
    }
    const zip = await ZipReader.open(src);
    try {
      const root = zip.root();
      expect(root).toMatch(/^[^/]+\/$/);
      expect(zip.entries().every((e) => e.name.startsWith(root) && e.method === 0)).toBe(true);
      const pkl = await zip.read(zip.entry(`${root}data.pkl`)!);
      expect([pkl[0], pkl[pkl.byteLength - 1]]).toEqual([0x80, 0x2e]); // PROTO … STOP
      for (const e of zip.entries()) {
        const range = await zip.dataRange(e);
        expect(range.offset % 64).toBe(0); // torch aligns every record
        await zip.read(e); // CRC-checked
      }
      expect(src.violations).toEqual([]);
    } finally {
      await zip.close();
    }
  });
});

// ─── malformed corpus ─────────────────────────────────────────────────────────────────────

const three = (): ZipEntrySpec[] => [
  { name: 'archive/data.pkl', data: enc.encode('pickle-ish'), align: 64 },
  { name: 'archive/data/0', data: enc.encode('0123456789abcdef'), align: 64 },
  { name: 'archive/version', data: enc.encode('3\n') },
];
const built = (specs = three(), options: ZipOptions = {}) => buildZip(specs, options);
/** Offset of entry i's ZIP64 extra body (forced ZIP64 archives: it follows the name). */
const zip64Body = (b: ReturnType<typeof built>, i: number, name: string) => b.layout.entries[i].centralOffset + 46 + enc.encode(name).byteLength + 4;

type Step = 'open' | 'dataRange' | 'read';
interface Bad { what: string; bytes: () => Uint8Array; code: SluiceError['code']; step?: Step; entry?: number; says?: string }

const corpus: Bad[] = [
  { what: 'an empty file', bytes: () => new Uint8Array(0), code: 'INVALID_ZIP', says: 'not a zip archive' },
  { what: 'random bytes', bytes: () => randomBytes(mulberry32(1), 5000), code: 'INVALID_ZIP', says: 'not a zip archive' },
  { what: 'a comment length past the end', bytes: () => { const b = built(); return patch(b.bytes, b.layout.eocdOffset + 20, 2, 9); }, code: 'INVALID_ZIP', says: 'not a zip archive' },
  { what: 'a central directory past the end of the file', bytes: () => { const b = built(); return patch(b.bytes, b.layout.eocdOffset + 16, 4, b.layout.size); }, code: 'INVALID_ZIP', says: 'past the end' },
  { what: 'a central directory overlapping the EOCD', bytes: () => { const b = built(); return patch(b.bytes, b.layout.eocdOffset + 12, 4, b.layout.cdSize + 1); }, code: 'INVALID_ZIP', says: 'into the end record' },
  { what: 'more entries claimed than parsed', bytes: () => { const b = built(torchEntries()); patch(b.bytes, b.layout.eocdOffset + 8, 2, 7); return patch(b.bytes, b.layout.eocdOffset + 10, 2, 7); }, code: 'INVALID_ZIP', says: 'holds 6' },
  { what: 'fewer entries claimed than parsed', bytes: () => { const b = built(); patch(b.bytes, b.layout.eocdOffset + 8, 2, 2); return patch(b.bytes, b.layout.eocdOffset + 10, 2, 2); }, code: 'INVALID_ZIP', says: 'claims 2' },
  { what: 'more entries than the directory can hold', bytes: () => { const b = built(); patch(b.bytes, b.layout.eocdOffset + 8, 2, 60000); return patch(b.bytes, b.layout.eocdOffset + 10, 2, 60000); }, code: 'INVALID_ZIP', says: 'at most' },
  { what: 'a bad central directory signature', bytes: () => { const b = built(); return patch(b.bytes, b.layout.entries[1].centralOffset, 4, 0); }, code: 'INVALID_ZIP', says: 'bad signature' },
  { what: 'a name running past the directory', bytes: () => { const b = built(); return patch(b.bytes, b.layout.entries[2].centralOffset + 28, 2, 0xffff); }, code: 'INVALID_ZIP', says: 'run past the central directory' },
  { what: 'a local header offset past the entries', bytes: () => { const b = built(); return patch(b.bytes, b.layout.entries[2].centralOffset + 42, 4, b.layout.cdOffset); }, code: 'INVALID_ZIP', says: 'local header at offset' },
  { what: 'entry data past the end of the file', bytes: () => { const b = built(); patch(b.bytes, b.layout.entries[0].centralOffset + 20, 4, 0xfffffff0); return patch(b.bytes, b.layout.entries[0].centralOffset + 24, 4, 0xfffffff0); }, code: 'INVALID_ZIP', says: 'runs past the end' },
  { what: 'a name that is not UTF-8 under flag bit 11', bytes: () => built([{ name: new Uint8Array([0x61, 0xff, 0xfe]), data: enc.encode('x'), flags: 0x800 }]).bytes, code: 'INVALID_ZIP', says: 'UTF-8' },
  { what: 'duplicate names', bytes: () => built([...three(), { name: 'archive/data/0', data: enc.encode('again') }]).bytes, code: 'INVALID_ZIP', says: 'duplicate' },
  { what: 'an entry size over 2^53', bytes: () => { const b = built(three(), { zip64: true }); return patch(b.bytes, zip64Body(b, 1, 'archive/data/0'), 8, 2n ** 60n); }, code: 'INVALID_ZIP', says: 'over 2^53' },
  { what: 'a ZIP64 directory size over 2^53', bytes: () => { const b = built(three(), { zip64: true }); return patch(b.bytes, b.layout.zip64EocdOffset! + 40, 8, 2n ** 60n); }, code: 'INVALID_ZIP', says: 'over 2^53' },
  { what: '0xFFFFFFFF without a ZIP64 extra', bytes: () => { const b = built(); return patch(b.bytes, b.layout.entries[0].centralOffset + 20, 4, 0xffffffff); }, code: 'INVALID_ZIP', says: 'no ZIP64 extra' },
  { what: 'a ZIP64 extra too short', bytes: () => { const b = built(three(), { zip64: true }); return patch(b.bytes, zip64Body(b, 0, 'archive/data.pkl') - 2, 2, 8); }, code: 'INVALID_ZIP', says: 'too short' },
  { what: 'a ZIP64 locator pointing at no record', bytes: () => { const b = built(three(), { zip64: true }); return patch(b.bytes, b.layout.locatorOffset! + 8, 8, 0); }, code: 'INVALID_ZIP', says: 'no ZIP64 end' },
  { what: 'a ZIP64 record overlapping its locator', bytes: () => { const b = built(three(), { zip64: true }); return patch(b.bytes, b.layout.locatorOffset! + 8, 8, b.layout.locatorOffset! - 10); }, code: 'INVALID_ZIP', says: 'overlaps' },
  { what: 'a multi-disk end record', bytes: () => { const b = built(); return patch(b.bytes, b.layout.eocdOffset + 4, 2, 1); }, code: 'UNSUPPORTED_FORMAT', says: 'multi-disk' },
  { what: 'a multi-disk ZIP64 record', bytes: () => { const b = built(three(), { zip64Records: true }); return patch(b.bytes, b.layout.zip64EocdOffset! + 20, 4, 2); }, code: 'UNSUPPORTED_FORMAT', says: 'multi-disk' },
  { what: 'an entry on another disk', bytes: () => { const b = built(); return patch(b.bytes, b.layout.entries[1].centralOffset + 34, 2, 1); }, code: 'UNSUPPORTED_FORMAT', says: 'multi-disk' },
  { what: 'an encrypted entry', bytes: () => built([{ name: 'archive/data.pkl', data: enc.encode('x'), flags: 0x809 }]).bytes, code: 'UNSUPPORTED_FORMAT', says: 'encrypted' },
  { what: 'no local header', step: 'dataRange', entry: 1, bytes: () => { const b = built(); return patch(b.bytes, b.layout.entries[1].localHeaderOffset, 4, 0); }, code: 'INVALID_ZIP', says: 'no local file header' },
  { what: 'a local header naming another file', step: 'dataRange', entry: 1, bytes: () => { const b = built(); return patch(b.bytes, b.layout.entries[1].localHeaderOffset + 30, 1, 0x41); }, code: 'INVALID_ZIP', says: 'different file' },
  { what: 'a local header with another method', step: 'dataRange', entry: 1, bytes: () => { const b = built(); return patch(b.bytes, b.layout.entries[1].localHeaderOffset + 8, 2, 8); }, code: 'INVALID_ZIP', says: 'method 8' },
  { what: 'a local extra field pushing data into the directory', step: 'dataRange', entry: 2, bytes: () => { const b = built(); return patch(b.bytes, b.layout.entries[2].localHeaderOffset + 28, 2, 0xffff); }, code: 'INVALID_ZIP', says: 'run past the entries' },
  { what: 'a stored entry whose sizes disagree', step: 'dataRange', entry: 0, bytes: () => built([{ name: 'archive/data.pkl', data: enc.encode('abc'), size: 2 }]).bytes, code: 'INVALID_ZIP', says: 'compressed size 3' },
  { what: 'a CRC mismatch', step: 'read', entry: 0, bytes: () => built([{ name: 'archive/data.pkl', data: enc.encode('abc'), crc: 1234 }]).bytes, code: 'INVALID_ZIP', says: 'CRC-32' },
  { what: 'deflate longer than declared', step: 'read', entry: 0, bytes: () => built([{ name: 'a/x', data: enc.encode('a'.repeat(100)), method: 8, size: 99 }]).bytes, code: 'INVALID_ZIP', says: 'more than its declared 99' },
  { what: 'deflate shorter than declared', step: 'read', entry: 0, bytes: () => built([{ name: 'a/x', data: enc.encode('a'.repeat(100)), method: 8, size: 101 }]).bytes, code: 'INVALID_ZIP', says: 'inflates to 100' },
  { what: 'corrupt deflate data', step: 'read', entry: 0, bytes: () => { const b = built([{ name: 'a/x', data: enc.encode('hello'), method: 8 }]); return patch(b.bytes, b.layout.entries[0].dataOffset, 1, 0xff); }, code: 'INVALID_ZIP', says: 'corrupt deflate' },
  { what: 'an unsupported method', step: 'read', entry: 0, bytes: () => built([{ name: 'a/x', data: enc.encode('bz'), method: 12 }]).bytes, code: 'UNSUPPORTED_FORMAT', says: 'method 12' },
];

describe('ZipReader: malformed archives', () => {
  it.each(corpus)('refuses $what', async ({ bytes, code, step = 'open', entry = 0, says }) => {
    const src = new CountingSource(new MemorySource(bytes(), FILE));
    let error: unknown;
    try {
      const zip = await ZipReader.open(src);
      expect(step).not.toBe('open');
      const e = zip.entries()[entry];
      await (step === 'dataRange' ? zip.dataRange(e) : zip.read(e));
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(SluiceError);
    const { code: got, message } = error as SluiceError;
    expect({ code: got, message }).toMatchObject({ code, message: expect.stringContaining(FILE) });
    expect(message).toContain(says!);
    expect(message).not.toContain('\n');
    if (step === 'open') expect(src.closed).toBe(true);
    expect(src.violations).toEqual([]);
  });
});

// ─── mutation fuzzing ─────────────────────────────────────────────────────────────────────

const SEED = Number(process.env.FUZZ_SEED ?? 0x5a1f);
const CASES = Number(process.env.FUZZ_CASES ?? 3000);

describe('ZipReader: mutation fuzz', () => {
  it(`${CASES} truncations, flips and field overwrites end in success or a SluiceError`, async () => {
    const r = mulberry32(SEED);
    const seeds = [
      built(torchEntries(), { zip64Records: true }),
      built(torchEntries(), { zip64: true, comment: 'c PK\x05\x06' }),
      built([{ name: 'd/a', data: enc.encode('deflate me '.repeat(40)), method: 8 }, { name: 'd/b', data: randomBytes(r, 50), align: 64 }]),
      built([{ name: new Uint8Array([0x80, 0x2f, 0x61]), data: enc.encode('cp') }, { name: 'x/y', data: enc.encode('stored'), method: 8 }], { zip64: true }),
    ];
    const interesting = [0, 1, 0x2e, 0xff, 0xffff, 0xffffffff, 2 ** 53, 2 ** 60];
    const started = Date.now();
    const stats = new Map<string, number>();
    const count = (k: string) => stats.set(k, (stats.get(k) ?? 0) + 1);
    for (let c = 0; c < CASES; c++) {
      const seed = seeds[c % seeds.length];
      const bytes = seed.bytes.slice();
      const n = bytes.byteLength;
      const kind = randInt(r, 0, 3);
      let input = bytes;
      if (kind === 0) input = bytes.slice(0, randInt(r, 0, n - 1)); // truncation
      else if (kind === 1) for (let k = randInt(r, 1, 4); k > 0; k--) bytes[randInt(r, 0, n - 1)] = randInt(r, 0, 255);
      else if (kind === 2) for (let k = randInt(r, 1, 3); k > 0; k--) bytes[randInt(r, seed.layout.cdOffset, n - 1)] = randInt(r, 0, 255); // directory and end records
      else {
        const width = ([2, 4, 8] as const)[randInt(r, 0, 2)];
        const at = randInt(r, seed.layout.entries[0].localHeaderOffset, n - width);
        const value = interesting[randInt(r, 0, interesting.length - 1)];
        const max = 2 ** (8 * width) - 1;
        patch(bytes, at, width, width === 8 ? BigInt(value) : Math.min(value, max));
      }
      const src = new CountingSource(new MemorySource(input, 'fuzz.pth'));
      const where = `seed ${SEED}, case ${c}, kind ${kind}`;
      try {
        const zip = await ZipReader.open(src);
        count('opened');
        for (const e of zip.entries()) {
          try {
            const range = await zip.dataRange(e);
            expect(range.offset + range.length, where).toBeLessThanOrEqual(input.byteLength);
            await zip.read(e);
            count('entry read');
          } catch (err) {
            if (!(err instanceof SluiceError)) throw new Error(`${where}: ${String(err)}`, { cause: err });
            count(`entry ${err.code}`);
          }
        }
      } catch (err) {
        if (!(err instanceof SluiceError)) throw new Error(`${where}: ${String(err)}`, { cause: err });
        count(`open ${err.code}`);
        expect(src.closed, where).toBe(true);
      }
      expect(src.violations, where).toEqual([]);
    }
    if (process.env.FUZZ_STATS) console.log(Object.fromEntries(stats));
    expect(Date.now() - started).toBeLessThan(20_000);
  }, 30_000);
});

// Test-only zip builder: archives laid out like torch.save writes them (stored entries,
// data 64-byte aligned by "FB" padding in the local extra field only, optional ZIP64
// records), plus deflate, forced ZIP64 fields, comments and lies for malformed cases.
// Returns the layout (where each record starts) so tests can patch single fields.
//
// Checked against CPython's zipfile while writing it (testzip() and read() of every
// entry, ZIP64 and comments included); the tests themselves need no Python.

import { deflateRawSync } from 'node:zlib';
import type { ByteSource } from '../../src/io/byte-source.js';
import { crc32 } from '../../src/formats/pytorch/zip.js';
import { concat } from './safetensors-bytes.js';

export interface ZipEntrySpec {
  /** A string (UTF-8) or raw name bytes (for CP437 or invalid UTF-8 names). */
  name: string | Uint8Array;
  /** The bytes, or a count of zero bytes that is never materialised (see SparseSource). */
  data: Uint8Array | number;
  /** 0 stored (default), 8 deflate (node:zlib), anything else written as is over the bytes. */
  method?: number;
  /** Pad the local extra field ("FB" + 'Z's, as torch does) so the data starts at a multiple of this. */
  align?: number;
  /** `data` is already raw deflate (method 8), written as is: give `size` and `crc` of what it inflates to. */
  raw?: boolean;
  /** General purpose flags; default 0x0808 when the name is a string (UTF-8 + data descriptor, like torch), 0 for raw bytes. */
  flags?: number;
  /** Lies written into the central record. */
  crc?: number;
  size?: number;
  compressedSize?: number;
}

export interface ZipOptions {
  /** Write 0xFFFFFFFF/0xFFFF in every 32/16-bit size, offset and count, with ZIP64 extras and records. */
  zip64?: boolean;
  /** Write the ZIP64 EOCD record + locator but plain 32-bit fields (what torch does for small files). */
  zip64Records?: boolean;
  comment?: string | Uint8Array;
}

export interface EntryLayout {
  localHeaderOffset: number;
  dataOffset: number;
  dataLength: number;
  centralOffset: number;
}

export interface ZipLayout {
  entries: EntryLayout[];
  cdOffset: number;
  cdSize: number;
  zip64EocdOffset?: number;
  locatorOffset?: number;
  eocdOffset: number;
  size: number;
}

/** Parts: real bytes, or a number of zero bytes left out (a sparse multi-GiB archive). */
export type ZipPart = Uint8Array | number;

const U16 = 0xffff;
const U32 = 0xffffffff;
const utf8 = new TextEncoder();

/** Little-endian fields: [width in bytes, value]. */
export function fields(...spec: Array<[1 | 2 | 4 | 8, number | bigint]>): Uint8Array {
  const out = new Uint8Array(spec.reduce((a, [w]) => a + w, 0));
  const v = new DataView(out.buffer);
  let at = 0;
  for (const [w, x] of spec) {
    if (w === 1) v.setUint8(at, Number(x));
    else if (w === 2) v.setUint16(at, Number(x), true);
    else if (w === 4) v.setUint32(at, Number(x), true);
    else v.setBigUint64(at, BigInt(x), true);
    at += w;
  }
  return out;
}

/** Overwrites one little-endian field of `bytes` in place (for malformed cases). */
export function patch(bytes: Uint8Array, offset: number, width: 1 | 2 | 4 | 8, value: number | bigint): Uint8Array {
  bytes.set(fields([width, value]), offset);
  return bytes;
}

export function buildZipParts(specs: readonly ZipEntrySpec[], options: ZipOptions = {}): { parts: ZipPart[]; layout: ZipLayout } {
  const parts: ZipPart[] = [];
  let at = 0;
  const push = (p: ZipPart) => {
    parts.push(p);
    at += typeof p === 'number' ? p : p.byteLength;
  };
  const force = options.zip64 === true;
  const entries: EntryLayout[] = [];
  const centrals: Uint8Array[] = [];

  for (const spec of specs) {
    const nameBytes = typeof spec.name === 'string' ? utf8.encode(spec.name) : spec.name;
    const flags = spec.flags ?? (typeof spec.name === 'string' ? 0x0808 : 0);
    const method = spec.method ?? 0;
    const raw = spec.data;
    const stored: ZipPart = method === 8 && typeof raw !== 'number' && !spec.raw ? new Uint8Array(deflateRawSync(raw)) : raw;
    const size = typeof raw === 'number' ? raw : raw.byteLength;
    const csize = typeof stored === 'number' ? stored : stored.byteLength;
    const crc = typeof raw === 'number' ? 0 : crc32(raw);
    const localHeaderOffset = at;

    let localExtra = force ? concat([fields([2, 1], [2, 16], [8, size], [8, csize])]) : new Uint8Array(0);
    if (spec.align) {
      const base = at + 30 + nameBytes.byteLength + localExtra.byteLength + 4;
      const pad = (spec.align - (base % spec.align)) % spec.align;
      localExtra = concat([localExtra, utf8.encode('FB'), fields([2, pad]), new Uint8Array(pad).fill(0x5a)]);
    }
    // Like torch: bit 3 set → crc and sizes 0 here, in a data descriptor after the data.
    const descriptor = (flags & 8) !== 0;
    const lsize = (v: number) => (force ? U32 : descriptor ? 0 : v);
    push(concat([
      fields([4, 0x04034b50], [2, force ? 45 : 20], [2, flags], [2, method], [2, 0], [2, 0x21],
        [4, descriptor ? 0 : crc], [4, lsize(csize)], [4, lsize(size)], [2, nameBytes.byteLength], [2, localExtra.byteLength]),
      nameBytes, localExtra,
    ]));
    const dataOffset = at;
    push(stored);
    if (descriptor) push(force ? fields([4, 0x08074b50], [4, crc], [8, csize], [8, size]) : fields([4, 0x08074b50], [4, crc], [4, csize], [4, size]));

    const cSize = spec.size ?? size;
    const cCsize = spec.compressedSize ?? csize;
    const centralExtra = force ? fields([2, 1], [2, 24], [8, cSize], [8, cCsize], [8, localHeaderOffset]) : new Uint8Array(0);
    centrals.push(concat([
      fields([4, 0x02014b50], [2, force ? 45 : 20], [2, force ? 45 : 20], [2, flags], [2, method], [2, 0], [2, 0x21],
        [4, spec.crc ?? crc], [4, force ? U32 : cCsize], [4, force ? U32 : cSize], [2, nameBytes.byteLength],
        [2, centralExtra.byteLength], [2, 0], [2, 0], [2, 0], [4, 0], [4, force ? U32 : localHeaderOffset]),
      nameBytes, centralExtra,
    ]));
    entries.push({ localHeaderOffset, dataOffset, dataLength: csize, centralOffset: 0 });
  }

  const cdOffset = at;
  for (const [i, c] of centrals.entries()) {
    entries[i].centralOffset = at;
    push(c);
  }
  const cdSize = at - cdOffset;
  const n = specs.length;
  let zip64EocdOffset: number | undefined;
  let locatorOffset: number | undefined;
  if (force || options.zip64Records) {
    zip64EocdOffset = at;
    push(fields([4, 0x06064b50], [8, 44], [2, 45], [2, 45], [4, 0], [4, 0], [8, n], [8, n], [8, cdSize], [8, cdOffset]));
    locatorOffset = at;
    push(fields([4, 0x07064b50], [4, 0], [8, zip64EocdOffset], [4, 1]));
  }
  const comment = typeof options.comment === 'string' ? utf8.encode(options.comment) : (options.comment ?? new Uint8Array(0));
  const eocdOffset = at;
  push(concat([
    fields([4, 0x06054b50], [2, 0], [2, 0], [2, force ? U16 : n], [2, force ? U16 : n], [4, force ? U32 : cdSize],
      [4, force ? U32 : cdOffset], [2, comment.byteLength]),
    comment,
  ]));
  return { parts, layout: { entries, cdOffset, cdSize, zip64EocdOffset, locatorOffset, eocdOffset, size: at } };
}

/** A whole archive in memory. */
export function buildZip(specs: readonly ZipEntrySpec[], options: ZipOptions = {}): { bytes: Uint8Array; layout: ZipLayout } {
  const { parts, layout } = buildZipParts(specs, options);
  return { bytes: concat(parts.map((p) => (typeof p === 'number' ? new Uint8Array(p) : p))), layout };
}

/** A ByteSource over zip parts whose zero runs are never allocated: archives past 4 GiB in a test. */
export class SparseSource implements ByteSource {
  readonly size: number;
  private readonly starts: number[] = [];

  constructor(
    private readonly parts: readonly ZipPart[],
    readonly name = 'sparse',
  ) {
    let at = 0;
    for (const p of parts) {
      this.starts.push(at);
      at += typeof p === 'number' ? p : p.byteLength;
    }
    this.size = at;
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    if (offset < 0 || length < 0 || offset + length > this.size) throw new Error(`SparseSource: read ${offset}+${length} past ${this.size}`);
    if (length > 1 << 28) throw new Error(`SparseSource: refusing to materialise ${length} bytes`);
    const out = new Uint8Array(length);
    this.parts.forEach((p, i) => {
      const start = this.starts[i];
      if (typeof p === 'number' || start >= offset + length || start + p.byteLength <= offset) return;
      const from = Math.max(offset, start);
      const to = Math.min(offset + length, start + p.byteLength);
      out.set(p.subarray(from - start, to - start), from - offset);
    });
    return out;
  }

  async close(): Promise<void> {}
}

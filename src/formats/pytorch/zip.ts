// The zip container of a `torch.save` file (PyTorch ≥ 1.6), read lazily through a
// ByteSource: the directory on open (the tail read, the central directory, maybe the ZIP64
// record: at most three reads, often one), an entry's local header only when asked for.
// Browser-safe: no node: imports; CRC-32 by table, deflate by `DecompressionStream`.
//
// Layout (APPNOTE.TXT 6.3.x), as torch's writer (miniz) lays it out:
//   [local header 30 + name + extra ("FB" padding: data 64-byte aligned)][data][descriptor]
//   ... one per entry ...
//   [central directory: 46 + name + extra + comment per entry]
//   [ZIP64 EOCD record 56][ZIP64 EOCD locator 20]   (torch writes these always)
//   [EOCD 22 + comment]

import { quote, SluiceError } from '../../errors.js';
import type { ByteSource } from '../../io/byte-source.js';

export interface ZipEntry {
  readonly name: string;
  /** 0 = stored, 8 = deflate; anything else is refused by `read`. */
  readonly method: number;
  readonly crc32: number;
  readonly compressedSize: number;
  readonly size: number;
  readonly localHeaderOffset: number;
}

const SIG_LOCAL = 0x04034b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_EOCD = 0x06054b50;
const SIG_ZIP64_EOCD = 0x06064b50;
const SIG_ZIP64_LOCATOR = 0x07064b50;
const EOCD_BYTES = 22;
const LOCATOR_BYTES = 20;
const ZIP64_EOCD_BYTES = 56;
const CENTRAL_BYTES = 46;
const LOCAL_BYTES = 30;
const MAX_COMMENT = 0xffff;
/** One read covers the EOCD search window plus a ZIP64 locator and record before it. */
const TAIL_BYTES = EOCD_BYTES + MAX_COMMENT + LOCATOR_BYTES + ZIP64_EOCD_BYTES;
/** `read` is for small entries (data.pkl, version); tensor bytes go through `dataRange`. */
export const MAX_READ_BYTES = 1 << 30;
const U16 = 0xffff;
const U32 = 0xffffffff;

/** Bytes 0x80–0xFF of code page 437, the zip default for names without the UTF-8 flag. */
const CP437_HIGH =
  'ÇüéâäàåçêëèïîìÄÅÉæÆôöòûùÿÖÜ¢£¥₧ƒáíóúñÑªº¿⌐¬½¼¡«»░▒▓│┤╡╢╖╕╣║╗╝╜╛┐└┴┬├─┼╞╟╚╔╩╦╠═╬╧╨╤╥╙╘╒╓╫╪┘┌█▄▌▐▀' +
  'αßΓπΣσµτΦΘΩδ∞φε∩≡±≥≤⌠⌡÷≈°∙·√ⁿ²■\u00a0';

interface Internal {
  entry: ZipEntry;
  nameBytes: Uint8Array;
  range?: Promise<{ offset: number; length: number }>;
}

export class ZipReader {
  private readonly byName = new Map<string, Internal>();

  private constructor(
    readonly source: ByteSource,
    private readonly list: Internal[],
    /** Where the central directory starts: every entry's header and data lie before it. */
    private readonly dataEnd: number,
  ) {
    for (const e of list) this.byName.set(e.entry.name, e);
  }

  /** Reads and validates the directory. Takes ownership of `source` (closed on failure). */
  static async open(source: ByteSource): Promise<ZipReader> {
    try {
      const { list, dataEnd } = await openDirectory(source);
      return new ZipReader(source, list, dataEnd);
    } catch (e) {
      await source.close().catch(() => {});
      throw e;
    }
  }

  entries(): ZipEntry[] {
    return this.list.map((e) => e.entry);
  }

  entry(name: string): ZipEntry | undefined {
    return this.byName.get(name)?.entry;
  }

  /** The first entry's top folder with its '/' (torch's archive name: `archive/`, the stem); '' if none. */
  root(): string {
    const first = this.list[0]?.entry.name ?? '';
    const slash = first.indexOf('/');
    return slash < 0 ? '' : first.slice(0, slash + 1);
  }

  /**
   * Where the entry's bytes lie in the source (compressed bytes for deflate). For a stored
   * entry these are the file's bytes themselves, to be streamed like a safetensors tensor.
   */
  async dataRange(entry: ZipEntry): Promise<{ offset: number; length: number }> {
    const e = this.internal(entry);
    e.range ??= this.readLocalHeader(e);
    return e.range;
  }

  /**
   * The whole entry, decompressed and CRC-checked. For small entries only: `limit` (at most
   * 1 GiB) bounds what it may inflate to. The declared size is checked against it before
   * anything is read, and `inflate` stops as soon as the output passes the declared size,
   * which may lie, so a deflate bomb costs at most `limit` bytes and never its full size.
   */
  async read(asked: ZipEntry, limit = MAX_READ_BYTES): Promise<Uint8Array> {
    const entry = this.internal(asked).entry; // this reader's record, not the caller's copy
    const where = this.where(entry);
    if (entry.method !== 0 && entry.method !== 8) {
      throw new SluiceError('UNSUPPORTED_FORMAT', `${where}: compression method ${entry.method} is not supported (only stored and deflate)`);
    }
    const max = Math.min(limit, MAX_READ_BYTES);
    // Deflate never needs much more than its output (stored blocks: 5 bytes per 64 KiB).
    const maxCompressed = entry.method === 0 ? max : max + Math.ceil(max / 1024) + 1024;
    if (entry.size > max || entry.compressedSize > maxCompressed) {
      throw new SluiceError('UNSUPPORTED_FORMAT', `${where}: ${entry.size} bytes (${entry.compressedSize} compressed) is more than sluice reads whole for this entry (${max})`);
    }
    const { offset, length } = await this.dataRange(entry);
    const raw = await this.source.read(offset, length);
    const data = entry.method === 0 ? raw : await inflate(raw, entry.size, where);
    const crc = crc32(data);
    if (crc !== entry.crc32) {
      throw new SluiceError('INVALID_ZIP', `${where}: CRC-32 is ${hex(crc)} but the directory says ${hex(entry.crc32)}`);
    }
    return data;
  }

  async close(): Promise<void> {
    await this.source.close();
  }

  /** Looked up by name: entries are frozen, and the same objects `entries()` returns. */
  private internal(entry: ZipEntry): Internal {
    const e = this.byName.get(entry.name);
    if (!e) throw new SluiceError('NOT_FOUND', `${this.source.name}: no zip entry named ${quote(entry.name)}`);
    return e;
  }

  private where(entry: ZipEntry): string {
    return `${this.source.name}: zip entry ${quote(entry.name)}`;
  }

  private async readLocalHeader(e: Internal): Promise<{ offset: number; length: number }> {
    const { entry, nameBytes } = e;
    const where = this.where(entry);
    if (entry.method === 0 && entry.compressedSize !== entry.size) {
      throw new SluiceError('INVALID_ZIP', `${where}: stored entry with compressed size ${entry.compressedSize} ≠ size ${entry.size}`);
    }
    const at = entry.localHeaderOffset;
    const headerEnd = at + LOCAL_BYTES + nameBytes.byteLength; // ≤ dataEnd, checked on open
    const b = await this.source.read(at, headerEnd - at);
    const v = view(b);
    if (v.getUint32(0, true) !== SIG_LOCAL) throw new SluiceError('INVALID_ZIP', `${where}: no local file header at offset ${at}`);
    if (v.getUint16(8, true) !== entry.method) {
      throw new SluiceError('INVALID_ZIP', `${where}: local header says method ${v.getUint16(8, true)}, the directory ${entry.method}`);
    }
    const nameLength = v.getUint16(26, true);
    if (nameLength !== nameBytes.byteLength || !b.subarray(LOCAL_BYTES).every((x, i) => x === nameBytes[i])) {
      throw new SluiceError('INVALID_ZIP', `${where}: the local header at offset ${at} names a different file`);
    }
    const offset = headerEnd + v.getUint16(28, true);
    if (offset + entry.compressedSize > this.dataEnd) {
      throw new SluiceError('INVALID_ZIP', `${where}: ${entry.compressedSize} bytes at offset ${offset} run past the entries into the central directory at ${this.dataEnd}`);
    }
    return { offset, length: entry.compressedSize };
  }
}

// ─── directory ──────────────────────────────────────────────────────────────────────────

async function openDirectory(source: ByteSource): Promise<{ list: Internal[]; dataEnd: number }> {
  const name = source.name;
  const bad = (problem: string) => new SluiceError('INVALID_ZIP', `${name}: ${problem}`);
  const multiDisk = () => new SluiceError('UNSUPPORTED_FORMAT', `${name}: multi-disk (split) zip archives are not supported`);

  const tailStart = Math.max(0, source.size - TAIL_BYTES);
  const tail = await source.read(tailStart, source.size - tailStart);
  const tv = view(tail);
  const at = findEocd(tail);
  if (at < 0) throw bad('not a zip archive (no end of central directory record)');
  const eocdOffset = tailStart + at;
  if (tv.getUint16(at + 4, true) !== 0 || tv.getUint16(at + 6, true) !== 0) throw multiDisk();
  let diskEntries = tv.getUint16(at + 8, true);
  let count = tv.getUint16(at + 10, true);
  let cdSize = tv.getUint32(at + 12, true);
  let cdOffset = tv.getUint32(at + 16, true);
  let cdLimit = eocdOffset; // the directory must end before this

  // ZIP64: a locator right before the EOCD points at the 64-bit record, whose values win.
  const loc = at - LOCATOR_BYTES;
  if (loc >= 0 && tv.getUint32(loc, true) === SIG_ZIP64_LOCATOR) {
    if (tv.getUint32(loc + 4, true) !== 0 || tv.getUint32(loc + 16, true) > 1) throw multiDisk();
    const recordOffset = u64(tv, loc + 8, 'ZIP64 end of central directory offset', bad);
    const locatorOffset = tailStart + loc;
    if (recordOffset + ZIP64_EOCD_BYTES > locatorOffset) throw bad(`ZIP64 end of central directory record at ${recordOffset} overlaps its locator at ${locatorOffset}`);
    const record = recordOffset >= tailStart ? tail.subarray(recordOffset - tailStart) : await source.read(recordOffset, ZIP64_EOCD_BYTES);
    const rv = view(record);
    if (rv.getUint32(0, true) !== SIG_ZIP64_EOCD) throw bad(`no ZIP64 end of central directory record at offset ${recordOffset}`);
    if (rv.getUint32(16, true) !== 0 || rv.getUint32(20, true) !== 0) throw multiDisk();
    diskEntries = u64(rv, 24, 'ZIP64 entry count', bad);
    count = u64(rv, 32, 'ZIP64 entry count', bad);
    cdSize = u64(rv, 40, 'ZIP64 central directory size', bad);
    cdOffset = u64(rv, 48, 'ZIP64 central directory offset', bad);
    cdLimit = recordOffset;
  }
  if (diskEntries !== count) throw multiDisk();
  if (cdOffset + cdSize > cdLimit) {
    throw bad(`central directory (${cdSize} bytes at offset ${cdOffset}) runs past the end of the file or into the end record at ${cdLimit}`);
  }
  if (count > Math.floor(cdSize / CENTRAL_BYTES)) {
    throw bad(`the end record claims ${count} entries but a ${cdSize}-byte central directory holds at most ${Math.floor(cdSize / CENTRAL_BYTES)}`);
  }
  const cd = cdOffset >= tailStart ? tail.subarray(cdOffset - tailStart, cdOffset - tailStart + cdSize) : await source.read(cdOffset, cdSize);
  const list = parseCentralDirectory(cd, cdOffset, name, bad, multiDisk);
  if (list.length !== count) throw bad(`the end record claims ${count} entries but the central directory holds ${list.length}`);
  return { list, dataEnd: cdOffset };
}

/** The EOCD's index in `tail` (which ends at the end of the file), or −1. */
function findEocd(tail: Uint8Array): number {
  const v = view(tail);
  const length = tail.byteLength;
  let fits = -1;
  for (let i = length - EOCD_BYTES; i >= 0 && i >= length - EOCD_BYTES - MAX_COMMENT; i--) {
    if (v.getUint32(i, true) !== SIG_EOCD) continue;
    const end = i + EOCD_BYTES + v.getUint16(i + 20, true);
    if (end === length) return i; // the comment ends exactly at the end of the file
    if (end < length && fits < 0) fits = i; // trailing bytes after the comment: accept the last such
  }
  return fits;
}

function parseCentralDirectory(
  cd: Uint8Array,
  cdOffset: number,
  file: string,
  bad: (problem: string) => SluiceError,
  multiDisk: () => SluiceError,
): Internal[] {
  const v = view(cd);
  const list: Internal[] = [];
  const seen = new Set<string>();
  let p = 0;
  while (p < cd.byteLength) {
    const here = `central directory entry ${list.length} (offset ${cdOffset + p})`;
    if (p + CENTRAL_BYTES > cd.byteLength || v.getUint32(p, true) !== SIG_CENTRAL) throw bad(`${here}: bad signature or truncated`);
    const flags = v.getUint16(p + 8, true);
    const method = v.getUint16(p + 10, true);
    const crc = v.getUint32(p + 16, true);
    let compressedSize = v.getUint32(p + 20, true);
    let size = v.getUint32(p + 24, true);
    const nameLength = v.getUint16(p + 28, true);
    const extraLength = v.getUint16(p + 30, true);
    const commentLength = v.getUint16(p + 32, true);
    let disk = v.getUint16(p + 34, true);
    let localHeaderOffset = v.getUint32(p + 42, true);
    const next = p + CENTRAL_BYTES + nameLength + extraLength + commentLength;
    if (next > cd.byteLength) throw bad(`${here}: name, extra field and comment run past the central directory`);
    const nameBytes = cd.slice(p + CENTRAL_BYTES, p + CENTRAL_BYTES + nameLength);
    const name = decodeName(nameBytes, (flags & 0x800) !== 0, () => bad(`${here}: name is not valid UTF-8`));
    const what = `zip entry ${quote(name)}`;
    if (flags & 1) throw new SluiceError('UNSUPPORTED_FORMAT', `${file}: ${what} is encrypted`);

    // ZIP64 extended information (0x0001): 64-bit values for the fields that are all ones, in this order.
    if (size === U32 || compressedSize === U32 || localHeaderOffset === U32 || disk === U16) {
      const extra = findExtra(v, p + CENTRAL_BYTES + nameLength, extraLength, 0x0001);
      if (!extra) throw bad(`${what}: 32-bit fields are 0xFFFFFFFF but there is no ZIP64 extra field`);
      let q = extra.start;
      const take = (n: number, label: string): number => {
        if (q + n > extra.end) throw bad(`${what}: ZIP64 extra field too short for the ${label}`);
        const value = n === 8 ? u64(v, q, `${what}: ${label}`, bad) : v.getUint32(q, true);
        q += n;
        return value;
      };
      if (size === U32) size = take(8, 'size');
      if (compressedSize === U32) compressedSize = take(8, 'compressed size');
      if (localHeaderOffset === U32) localHeaderOffset = take(8, 'local header offset');
      if (disk === U16) disk = take(4, 'disk number');
    }
    if (disk !== 0) throw multiDisk();
    if (localHeaderOffset + LOCAL_BYTES + nameLength + compressedSize > cdOffset) {
      throw bad(`${what}: local header at offset ${localHeaderOffset} with ${compressedSize} bytes of data runs past the end of the entries (offset ${cdOffset})`);
    }
    if (seen.has(name)) throw bad(`duplicate ${what}`);
    seen.add(name);
    list.push({ entry: Object.freeze({ name, method, crc32: crc, compressedSize, size, localHeaderOffset }), nameBytes });
    p = next;
  }
  return list;
}

/** The body of the extra field `id` within [start, start + length), or undefined. */
function findExtra(v: DataView, start: number, length: number, id: number): { start: number; end: number } | undefined {
  const end = start + length;
  for (let q = start; q + 4 <= end; ) {
    const bodyEnd = q + 4 + v.getUint16(q + 2, true);
    if (bodyEnd > end) return undefined;
    if (v.getUint16(q, true) === id) return { start: q + 4, end: bodyEnd };
    q = bodyEnd;
  }
  return undefined;
}

function decodeName(bytes: Uint8Array, utf8: boolean, invalid: () => SluiceError): string {
  if (utf8) {
    try {
      return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
    } catch {
      throw invalid();
    }
  }
  let s = '';
  for (const b of bytes) s += b < 0x80 ? String.fromCharCode(b) : CP437_HIGH[b - 0x80];
  return s;
}

// ─── helpers ────────────────────────────────────────────────────────────────────────────

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

/** A little-endian u64 as a number; over 2^53 is INVALID_ZIP. */
function u64(v: DataView, at: number, label: string, bad: (problem: string) => SluiceError): number {
  const x = v.getBigUint64(at, true);
  if (x > BigInt(Number.MAX_SAFE_INTEGER)) throw bad(`${label} ${x} is over 2^53`);
  return Number(x);
}

function hex(x: number): string {
  return `0x${x.toString(16).padStart(8, '0')}`;
}

/** Raw deflate → exactly `size` bytes, via the web-standard DecompressionStream. */
async function inflate(compressed: Uint8Array, size: number, where: string): Promise<Uint8Array> {
  const stream = new DecompressionStream('deflate-raw');
  const writer = stream.writable.getWriter();
  writer.write(new Uint8Array(compressed)).catch(() => {}); // a copy: the source keeps its buffer; failures surface on the reading side
  writer.close().catch(() => {});
  const reader = stream.readable.getReader();
  const chunks: Uint8Array[] = []; // not one buffer of the declared size: that may be a lie
  let at = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (at + value.byteLength > size) throw new SluiceError('INVALID_ZIP', `${where}: inflates to more than its declared ${size} bytes`);
      chunks.push(value);
      at += value.byteLength;
    }
  } catch (e) {
    await reader.cancel().catch(() => {});
    if (e instanceof SluiceError) throw e;
    throw new SluiceError('INVALID_ZIP', `${where}: corrupt deflate data (${e instanceof Error ? e.message : String(e)})`, { cause: e });
  }
  if (at !== size) throw new SluiceError('INVALID_ZIP', `${where}: inflates to ${at} bytes, not its declared ${size}`);
  const out = new Uint8Array(size);
  chunks.reduce((o, c) => (out.set(c, o), o + c.byteLength), 0);
  return out;
}

const CRC_TABLE = Uint32Array.from({ length: 256 }, (_, n) => {
  for (let k = 0; k < 8; k++) n = n & 1 ? 0xedb88320 ^ (n >>> 1) : n >>> 1;
  return n >>> 0;
});

/** CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320), as zip stores it; `crc` continues a running one. */
export function crc32(data: Uint8Array, crc = 0): number {
  let c = ~crc >>> 0;
  for (let i = 0; i < data.byteLength; i++) c = CRC_TABLE[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

// Node: writes a `torch.save` checkpoint (the zip format of PyTorch ≥ 1.6) of a flat
// state_dict, streaming each tensor's bytes straight to disk, so a multi-GiB file never
// sits in memory. Laid out as torch's PyTorchStreamWriter lays it out:
//   <root>/data.pkl, <root>/byteorder, <root>/data/0 … <root>/data/N-1, <root>/version
// every entry stored (method 0) with its data 64-byte aligned by an "FB" padding extra
// field, and ZIP64 end records always present. ZIP64 is supported, not refused: an entry
// of ≥ 4 GiB gets a ZIP64 extra field in both headers, an offset past 4 GiB one in the
// central directory, and > 65535 entries are counted in the ZIP64 record.
// Sizes are known up front, so only the CRC-32 is unknown until a tensor has streamed: it
// is patched into the local header by position (no data descriptors).

import type { FileHandle } from 'node:fs/promises';
import { crc32 } from 'node:zlib';
import { SluiceError } from '../../errors.js';
import { writeAll, writeFileAtomic } from '../../io/atomic-file.js';
import { type Dtype, dtypeBytes } from '../dtypes.js';

export interface TorchTensorToWrite {
  /** state_dict key. */
  name: string;
  dtype: Dtype;
  shape: number[];
  /** Contiguous little-endian bytes: numel × element size. */
  byteLength: number;
  /** Produces the tensor's bytes; called once; the chunks, in order, must total byteLength. */
  data: () => AsyncIterable<Uint8Array> | Iterable<Uint8Array>;
}

export interface TorchWriteOptions {
  /** The archive's top folder. Default `archive` (torch names it after the file's stem). */
  archiveName?: string;
}

const STORAGE_CLASSES: Partial<Record<Dtype, string>> = {
  F64: 'DoubleStorage', F32: 'FloatStorage', F16: 'HalfStorage', BF16: 'BFloat16Storage', I64: 'LongStorage',
  I32: 'IntStorage', I16: 'ShortStorage', I8: 'CharStorage', U8: 'ByteStorage', BOOL: 'BoolStorage',
};

const U16 = 0xffff;
const U32 = 0xffffffff;
const ALIGN = 64;
/** Small chunks are gathered up to this before a write; bigger ones go straight through. */
const BUFFER_BYTES = 4 << 20;
const enc = new TextEncoder();

/**
 * Writes `tensors` as a torch.save checkpoint at `path`, atomically (temp file, fsync,
 * rename; on failure the temp file is removed and `path` left as it was). Returns the
 * file's size. `torch.load(path)` gives an OrderedDict of the tensors, in this order.
 */
export async function writeTorchCheckpoint(path: string, tensors: TorchTensorToWrite[], options: TorchWriteOptions = {}): Promise<{ bytes: number }> {
  const root = options.archiveName ?? 'archive';
  if (!root || /[/\\\0]/.test(root)) throw new SluiceError('USAGE', `${path}: archive name ${JSON.stringify(root)} must be a non-empty name without slashes`);
  check(path, tensors);
  return writeFileAtomic(path, async (handle) => {
    const zip = new ZipSink(handle, path);
    await zip.add(`${root}/data.pkl`, picklePayload(tensors));
    await zip.add(`${root}/byteorder`, enc.encode('little'));
    for (const [i, t] of tensors.entries()) await zip.addStream(`${root}/data/${i}`, t, path);
    await zip.add(`${root}/version`, enc.encode('3\n'));
    return { bytes: await zip.finish() };
  });
}

function check(path: string, tensors: TorchTensorToWrite[]): void {
  const seen = new Set<string>();
  for (const t of tensors) {
    const where = `${path}: tensor ${JSON.stringify(t.name)}`;
    if (seen.has(t.name)) throw new SluiceError('DUPLICATE_KEY', `${where} appears twice`);
    seen.add(t.name);
    if (!STORAGE_CLASSES[t.dtype]) throw new SluiceError('UNSUPPORTED_DTYPE', `${where}: torch.save writer does not support dtype ${t.dtype}`);
    if (!t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) throw new SluiceError('INVALID_TENSOR_INFO', `${where}: shape [${t.shape}] is not a list of non-negative integers`);
    const bytes = numel(t.shape) * dtypeBytes(t.dtype)!;
    if (!Number.isSafeInteger(bytes) || bytes !== t.byteLength) {
      throw new SluiceError('SIZE_MISMATCH', `${where}: byteLength ${t.byteLength} ≠ ${bytes} (shape [${t.shape}] × ${t.dtype})`);
    }
  }
}

const numel = (shape: readonly number[]): number => shape.reduce((a, d) => a * d, 1);

// ─── zip ────────────────────────────────────────────────────────────────────────────────

interface Written {
  name: Uint8Array;
  offset: number;
  size: number;
  crc: number;
}

class ZipSink {
  private readonly entries: Written[] = [];
  private readonly buffer = new Uint8Array(BUFFER_BYTES);
  private buffered = 0;
  /** File position of buffer[0]. */
  private flushed = 0;

  constructor(private readonly handle: FileHandle, private readonly path: string) {}

  private get at(): number {
    return this.flushed + this.buffered;
  }

  private async write(bytes: Uint8Array): Promise<void> {
    if (this.buffered + bytes.byteLength > BUFFER_BYTES) await this.flush();
    if (bytes.byteLength >= BUFFER_BYTES) {
      await writeAll(this.handle, bytes, this.flushed, this.path);
      this.flushed += bytes.byteLength;
    } else {
      this.buffer.set(bytes, this.buffered); // a copy: the producer may reuse its chunk
      this.buffered += bytes.byteLength;
    }
  }

  private async flush(): Promise<void> {
    await writeAll(this.handle, this.buffer.subarray(0, this.buffered), this.flushed, this.path);
    this.flushed += this.buffered;
    this.buffered = 0;
  }

  /** Local header: sizes final, CRC possibly a placeholder, extra = [ZIP64] + FB padding. */
  private async header(e: Written): Promise<void> {
    const big = e.size >= U32;
    const start = this.at + 30 + e.name.byteLength + (big ? 20 : 0) + 4;
    const pad = (ALIGN - (start % ALIGN)) % ALIGN;
    const h = new Bytes(30 + e.name.byteLength + (big ? 20 : 0) + 4 + pad);
    h.u32(0x04034b50).u16(big ? 45 : 20).u16(0x800).u16(0).u16(0).u16(0x21).u32(e.crc); // UTF-8 names; 1980-01-01
    h.u32(big ? U32 : e.size).u32(big ? U32 : e.size).u16(e.name.byteLength).u16(h.length - 30 - e.name.byteLength);
    h.raw(e.name);
    if (big) h.u16(1).u16(16).u64(e.size).u64(e.size);
    h.u16(0x4246).u16(pad).raw(new Uint8Array(pad).fill(0x5a)); // 'FB' + 'Z'…, as torch pads
    await this.write(h.bytes);
  }

  async add(name: string, data: Uint8Array): Promise<void> {
    const e = { name: enc.encode(name), offset: this.at, size: data.byteLength, crc: crc32(data) };
    this.entries.push(e);
    await this.header(e);
    await this.write(data);
  }

  async addStream(name: string, t: TorchTensorToWrite, path: string): Promise<void> {
    const e = { name: enc.encode(name), offset: this.at, size: t.byteLength, crc: 0 };
    this.entries.push(e);
    await this.header(e);
    const where = `${path}: tensor ${JSON.stringify(t.name)}`;
    let got = 0;
    for await (const chunk of t.data()) {
      if (!(chunk instanceof Uint8Array)) throw new SluiceError('INVALID_TENSOR_INFO', `${where}: data() yielded something other than a Uint8Array`);
      got += chunk.byteLength;
      if (got > t.byteLength) throw new SluiceError('SIZE_MISMATCH', `${where}: data() yielded more than its byteLength ${t.byteLength}`);
      e.crc = crc32(chunk, e.crc);
      await this.write(chunk);
    }
    if (got !== t.byteLength) throw new SluiceError('SIZE_MISMATCH', `${where}: data() yielded ${got} bytes, not its byteLength ${t.byteLength}`);
    // The header may still be in the buffer: flush first, or the flush would undo the patch.
    await this.flush();
    await writeAll(this.handle, new Bytes(4).u32(e.crc).bytes, e.offset + 14, this.path);
  }

  /** Central directory, ZIP64 end record and locator (torch always writes them), EOCD. */
  async finish(): Promise<number> {
    const cdOffset = this.at;
    for (const e of this.entries) {
      const big = e.size >= U32;
      const far = e.offset >= U32;
      const z64 = (big ? 16 : 0) + (far ? 8 : 0);
      const c = new Bytes(46 + e.name.byteLength + (z64 ? 4 + z64 : 0));
      c.u32(0x02014b50).u16(z64 ? 45 : 20).u16(z64 ? 45 : 20).u16(0x800).u16(0).u16(0).u16(0x21).u32(e.crc);
      c.u32(big ? U32 : e.size).u32(big ? U32 : e.size).u16(e.name.byteLength).u16(z64 ? 4 + z64 : 0);
      c.u16(0).u16(0).u16(0).u32(0).u32(far ? U32 : e.offset).raw(e.name);
      if (z64) c.u16(1).u16(z64); // ZIP64 extra: the all-ones fields, in header order
      if (big) c.u64(e.size).u64(e.size);
      if (far) c.u64(e.offset);
      await this.write(c.bytes);
    }
    const cdSize = this.at - cdOffset;
    const n = this.entries.length;
    const recordOffset = this.at;
    const end = new Bytes(56 + 20 + 22);
    end.u32(0x06064b50).u64(44).u16(45).u16(45).u32(0).u32(0).u64(n).u64(n).u64(cdSize).u64(cdOffset);
    end.u32(0x07064b50).u32(0).u64(recordOffset).u32(1);
    end.u32(0x06054b50).u16(0).u16(0).u16(Math.min(n, U16)).u16(Math.min(n, U16));
    end.u32(Math.min(cdSize, U32)).u32(Math.min(cdOffset, U32)).u16(0);
    await this.write(end.bytes);
    await this.flush();
    return this.flushed;
  }
}

/** A little-endian byte builder of a known length. */
class Bytes {
  readonly bytes: Uint8Array;
  private readonly view: DataView;
  private p = 0;
  constructor(readonly length: number) {
    this.bytes = new Uint8Array(length);
    this.view = new DataView(this.bytes.buffer);
  }
  u16(v: number): this {
    this.view.setUint16(this.p, v, true);
    this.p += 2;
    return this;
  }
  u32(v: number): this {
    this.view.setUint32(this.p, v >>> 0, true);
    this.p += 4;
    return this;
  }
  u64(v: number): this {
    this.view.setBigUint64(this.p, BigInt(v), true);
    this.p += 8;
    return this;
  }
  raw(b: Uint8Array): this {
    this.bytes.set(b, this.p);
    this.p += b.byteLength;
    return this;
  }
}

// ─── data.pkl ───────────────────────────────────────────────────────────────────────────

/**
 * Protocol 2, as torch.save (pickle.Pickler, protocol 2) writes an OrderedDict of tensors:
 *   OrderedDict() + SETITEMS of name → _rebuild_tensor_v2(BINPERSID ('storage', torch.XStorage,
 *   key, 'cpu', numel), 0, size, stride, False, OrderedDict())
 * Globals are memoized (BINPUT once, BINGET after), the rest written out each time.
 */
export function picklePayload(tensors: readonly TorchTensorToWrite[]): Uint8Array {
  const out: number[] = [0x80, 2];
  const memo = new Map<string, number>();
  const op = (...bytes: number[]) => out.push(...bytes);
  const global = (module: string, name: string) => {
    const at = memo.get(`${module}.${name}`);
    if (at !== undefined) return op(0x68, at); // BINGET
    op(0x63, ...enc.encode(`${module}\n${name}\n`)); // GLOBAL
    memo.set(`${module}.${name}`, memo.size);
    op(0x71, memo.size - 1); // BINPUT (at most 13 globals: one byte suffices)
  };
  const str = (s: string) => {
    const b = enc.encode(s);
    op(0x58, ...u32le(b.byteLength)); // BINUNICODE
    for (const x of b) out.push(x); // not push(...b): names may be long
  };
  const int = (v: number) => {
    if (v < 0x100) return op(0x4b, v); // BININT1
    if (v < 0x10000) return op(0x4d, v & 0xff, v >>> 8); // BININT2
    if (v < 0x80000000) return op(0x4a, ...u32le(v)); // BININT
    const b: number[] = []; // LONG1: minimal little-endian two's complement (v > 0 here)
    for (let x = BigInt(v); x > 0n; x >>= 8n) b.push(Number(x & 0xffn));
    if (b[b.length - 1] >= 0x80) b.push(0);
    op(0x8a, b.length, ...b);
  };
  const tuple = (items: readonly number[]) => {
    if (items.length === 0) return op(0x29); // EMPTY_TUPLE
    if (items.length > 3) op(0x28); // MARK
    items.forEach(int);
    op(items.length > 3 ? 0x74 : 0x84 + items.length); // TUPLE / TUPLE1-3
  };
  const emptyOrderedDict = () => (global('collections', 'OrderedDict'), op(0x29, 0x52)); // () REDUCE

  emptyOrderedDict();
  tensors.forEach((t, i) => {
    if (i % 1000 === 0) op(0x28); // MARK: batches of 1000, as pickle's _batch_setitems
    str(t.name);
    global('torch._utils', '_rebuild_tensor_v2');
    op(0x28); // MARK: the call's arguments
    op(0x28); // MARK: the persistent id
    str('storage');
    global('torch', STORAGE_CLASSES[t.dtype]!);
    str(String(i));
    str('cpu');
    int(numel(t.shape));
    op(0x74, 0x51); // TUPLE BINPERSID
    int(0); // storage_offset
    tuple(t.shape);
    tuple(contiguousStrides(t.shape));
    op(0x89); // NEWFALSE: requires_grad
    emptyOrderedDict(); // backward_hooks
    op(0x74, 0x52); // TUPLE REDUCE
    if (i % 1000 === 999 || i === tensors.length - 1) op(0x75); // SETITEMS
  });
  op(0x2e); // STOP
  return Uint8Array.from(out);
}

/** Row-major strides as torch computes them: a 0 dimension counts as 1 (torch.empty(3, 0).stride() is (1, 1)). */
function contiguousStrides(shape: readonly number[]): number[] {
  const strides = new Array<number>(shape.length);
  for (let i = shape.length - 1, s = 1; i >= 0; i--) {
    strides[i] = s;
    s *= Math.max(shape[i], 1);
  }
  return strides;
}

function u32le(v: number): number[] {
  return [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24];
}

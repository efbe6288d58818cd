// Test-only pickle assembler and torch.save archive builder, for hostile checkpoints made
// in the test itself: a few opcodes per helper, in the spelling torch's pickler uses
// (protocol 2, BINUNICODE strings, BININT ints, LONG_BINPUT / LONG_BINGET memo), so a
// reproducer reads as the structure it builds. Also deflate streams of a repeated chunk
// built without materialising their output (a 256 MiB bomb in a few hundred KB, made in
// milliseconds).

import { constants, crc32, deflateRawSync } from 'node:zlib';
import { buildZip, type ZipEntrySpec } from './zip-bytes.js';
import { concat } from './safetensors-bytes.js';

export type PicklePart = string | Uint8Array | number[];

const utf8 = new TextEncoder();

/** Bytes from parts: a string is latin-1 (one byte per char, so '\x80' is one byte). */
export function pk(...parts: PicklePart[]): Uint8Array {
  return concat(parts.map((p) => (typeof p === 'string' ? new Uint8Array(Buffer.from(p, 'latin1')) : p instanceof Uint8Array ? p : Uint8Array.from(p))));
}

const u32 = (n: number): number[] => [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];

/** BINUNICODE: a str of any length. */
export const str = (s: string): Uint8Array => {
  const b = utf8.encode(s);
  return pk('X', u32(b.byteLength), b);
};
/** BININT (signed 32-bit) or LONG1 beyond it. */
export function int(n: number): Uint8Array {
  if (Number.isInteger(n) && n >= -(2 ** 31) && n < 2 ** 31) return pk('J', u32(n >>> 0));
  let v = BigInt(n);
  const bytes: number[] = [];
  while (v !== 0n && v !== -1n) {
    bytes.push(Number(v & 0xffn));
    v >>= 8n;
  }
  if ((bytes.at(-1)! & 0x80) !== (n < 0 ? 0x80 : 0)) bytes.push(n < 0 ? 0xff : 0);
  return pk('\x8a', [bytes.length], bytes);
}
/** LONG_BINPUT / LONG_BINGET. */
export const put = (i: number): Uint8Array => pk('r', u32(i));
export const get = (i: number): Uint8Array => pk('j', u32(i));
/** MARK items... TUPLE. */
export const tuple = (...items: PicklePart[]): Uint8Array => pk('(', ...items, 't');
/** MARK items... LIST. */
export const list = (...items: PicklePart[]): Uint8Array => pk('(', ...items, 'l');
/** EMPTY_DICT MARK k v ... SETITEMS. */
export const dict = (...kv: PicklePart[]): Uint8Array => pk('}', ...(kv.length ? ['(', ...kv, 'u'] : []));

export interface TensorSpec {
  key: string;
  /** torch storage class: FloatStorage, DoubleStorage, HalfStorage, ... */
  storage?: string;
  numel: number;
  shape: number[];
  /** Default: contiguous. */
  stride?: number[];
  offset?: number;
}

export function contiguousStride(shape: readonly number[]): number[] {
  const out = new Array<number>(shape.length);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    out[i] = s;
    s *= shape[i];
  }
  return out;
}

/** Pushes `_rebuild_tensor_v2(pid storage, offset, size, stride, False, OrderedDict())`, as torch writes it. */
export function tensor(t: TensorSpec): Uint8Array {
  const pid = tuple(str('storage'), `ctorch\n${t.storage ?? 'FloatStorage'}\n`, str(t.key), str('cpu'), int(t.numel));
  return pk(
    'ctorch._utils\n_rebuild_tensor_v2\n',
    '(', pid, 'Q', int(t.offset ?? 0), tuple(...t.shape.map(int)), tuple(...(t.stride ?? contiguousStride(t.shape)).map(int)),
    '\x89', 'ccollections\nOrderedDict\n)R', 't', 'R',
  );
}

/** A whole protocol-2 pickle: PROTO 2, the body (which must leave one value), STOP. */
export const pickle = (...body: PicklePart[]): Uint8Array => pk('\x80\x02', ...body, '.');

export interface TorchZipSpec {
  /** data.pkl's bytes, or a prebuilt deflate stream of it (see `repeatedDeflate`). */
  pkl: Uint8Array | Deflated;
  /** Storage entries `data/<key>`: bytes or a count of zero bytes. */
  storages?: Record<string, Uint8Array | number>;
  /** byteorder's bytes (default 'little'), a deflate stream, or null for none. */
  byteorder?: Uint8Array | Deflated | null;
  /** Deflate data.pkl (method 8) instead of storing it. */
  compressPkl?: boolean;
  /** Lie about an entry's inflated size in the central directory. */
  declare?: { pkl?: number; byteorder?: number };
  root?: string;
}

/** A raw deflate stream with the size and CRC of what it inflates to. */
export interface Deflated {
  deflated: Uint8Array;
  size: number;
  crc: number;
}

/**
 * Runs of `[chunk, times]` back to back, deflated without building the repetition: a full
 * flush ends each chunk on a byte boundary with no back-references, so a chunk's
 * compressed bytes are the same every time and can be repeated, then closed by an empty
 * final block. 256 MiB of pickle opcodes become a few hundred KB in milliseconds.
 */
export function repeatedDeflate(...runs: Array<[Uint8Array, number]>): Deflated {
  const blocks = runs.map(([chunk]) => new Uint8Array(deflateRawSync(chunk, { finishFlush: constants.Z_FULL_FLUSH, level: 9 })));
  const out = new Uint8Array(blocks.reduce((a, b, i) => a + b.byteLength * runs[i][1], 2));
  let at = 0;
  let crc = 0;
  let size = 0;
  runs.forEach(([chunk, times], i) => {
    for (let n = 0; n < times; n++) {
      out.set(blocks[i], at);
      at += blocks[i].byteLength;
      crc = crc32(chunk, crc);
    }
    size += chunk.byteLength * times;
  });
  out.set([0x03, 0x00], at); // final fixed-Huffman block with no symbols
  return { deflated: out, size, crc };
}

const isDeflated = (x: unknown): x is Deflated => typeof x === 'object' && x !== null && 'deflated' in x;

function entry(name: string, data: Uint8Array | Deflated, compress: boolean, declared?: number): ZipEntrySpec {
  if (isDeflated(data)) return { name, data: data.deflated, method: 8, raw: true, size: declared ?? data.size, crc: data.crc };
  return { name, data, method: compress ? 8 : 0, align: compress ? undefined : 64, size: declared };
}

/** A torch.save-shaped archive (data.pkl, byteorder, data/<key>..., version). */
export function torchZip(spec: TorchZipSpec): Uint8Array {
  const root = spec.root ?? 'archive';
  const specs: ZipEntrySpec[] = [entry(`${root}/data.pkl`, spec.pkl, spec.compressPkl === true, spec.declare?.pkl)];
  if (spec.byteorder !== null) {
    specs.push(entry(`${root}/byteorder`, spec.byteorder ?? utf8.encode('little'), false, spec.declare?.byteorder));
  }
  for (const [key, data] of Object.entries(spec.storages ?? {})) {
    specs.push({ name: `${root}/data/${key}`, data: typeof data === 'number' ? new Uint8Array(data) : data, align: 64 });
  }
  specs.push({ name: `${root}/version`, data: utf8.encode('3\n') });
  return buildZip(specs).bytes;
}

// Test-only helpers: raw safetensors bytes built by hand (valid and malformed), a
// ByteSource wrapper that counts reads and fails loudly on any read outside the source,
// and a seeded PRNG so random cases are reproducible from a printed seed.
//
// Layout: [u64 LE header length N][N bytes JSON][data]. `buildSafetensors` writes exactly
// what it is told (for malformed files); `buildValid` lays tensors out like the reference
// writer: back to back from offset 0, header padded with spaces to a multiple of 8.

import { SluiceError } from '../../src/errors.js';
import type { ByteSource } from '../../src/io/byte-source.js';
import { DTYPE_BITS, type Dtype } from '../../src/formats/dtypes.js';

// ─── PRNG ─────────────────────────────────────────────────────────────────────────────

/** mulberry32: a tiny seeded PRNG, uniform in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Integer in [lo, hi] inclusive. */
export function randInt(rng: () => number, lo: number, hi: number): number {
  return lo + Math.floor(rng() * (hi - lo + 1));
}

export function randomBytes(rng: () => number, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.floor(rng() * 256);
  return out;
}

// ─── JSON with bigints ────────────────────────────────────────────────────────────────

const BIG = '\u0000bigint:';

/** JSON.stringify that writes bigints as bare integers (2^64 − 1 and friends). */
export function toJson(value: unknown): string {
  const text = JSON.stringify(value, (_k, v) => (typeof v === 'bigint' ? `${BIG}${v}` : v));
  return text.replace(/"\\u0000bigint:(-?\d+)"/g, '$1');
}

// ─── raw builder ──────────────────────────────────────────────────────────────────────

export interface RawFile {
  /** A header object (serialised with `toJson`), or raw JSON text for malformed cases. */
  header: object | string;
  data: Uint8Array;
  /** Spaces appended to the JSON (counted in N). */
  headerPad?: number;
  /** Written as N instead of the JSON's real length. */
  lengthOverride?: bigint;
}

const utf8 = new TextEncoder();

/** Exactly the bytes described: prefix (N or the override), header JSON, padding, data. */
export function buildSafetensors(file: RawFile): Uint8Array {
  const text = typeof file.header === 'string' ? file.header : toJson(file.header);
  return assemble(utf8.encode(text + ' '.repeat(file.headerPad ?? 0)), file.data, file.lengthOverride);
}

/** Prefix + header bytes (already encoded, so invalid UTF-8 can be written) + data. */
export function assemble(headerBytes: Uint8Array, data: Uint8Array, lengthOverride?: bigint): Uint8Array {
  const out = new Uint8Array(8 + headerBytes.byteLength + data.byteLength);
  new DataView(out.buffer).setBigUint64(0, lengthOverride ?? BigInt(headerBytes.byteLength), true);
  out.set(headerBytes, 8);
  out.set(data, 8 + headerBytes.byteLength);
  return out;
}

// ─── valid files ──────────────────────────────────────────────────────────────────────

export interface TensorSpec {
  name: string;
  dtype: Dtype;
  shape: number[];
  data: Uint8Array;
}

/** Bytes of `shape` × `dtype` (sub-byte dtypes must end on a byte). */
export function byteSize(dtype: Dtype, shape: readonly number[]): number {
  const bits = shape.reduce((a, b) => a * b, 1) * DTYPE_BITS[dtype];
  if (bits % 8 !== 0) throw new Error(`test bug: ${shape} × ${dtype} does not end on a byte`);
  return bits / 8;
}

/** The header object `buildValid` writes: tensors back to back in the given order. */
export function validHeader(tensors: readonly TensorSpec[], metadata?: Record<string, string> | null): Record<string, unknown> {
  const header: Record<string, unknown> = {};
  if (metadata !== undefined) header.__metadata__ = metadata;
  let at = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [at, at + t.data.byteLength] };
    at += t.data.byteLength;
  }
  return header;
}

/** A valid file, laid out like the reference writer (header padded to a multiple of 8). */
export function buildValid(tensors: readonly TensorSpec[], metadata?: Record<string, string> | null): Uint8Array {
  const json = toJson(validHeader(tensors, metadata));
  const n = utf8.encode(json).byteLength;
  const data = concat(tensors.map((t) => t.data));
  return buildSafetensors({ header: json, data, headerPad: (8 - (n % 8)) % 8 });
}

export function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

/** Where the data buffer starts in a file built here: 8 + N. */
export function dataStartOf(file: Uint8Array): number {
  return 8 + Number(new DataView(file.buffer, file.byteOffset, 8).getBigUint64(0, true));
}

// ─── CountingSource ───────────────────────────────────────────────────────────────────

/**
 * Wraps a ByteSource: records every read and throws a plain Error (never a SluiceError,
 * so a caller's `catch` for SluiceError cannot swallow it) on a read outside [0, size).
 * A zero-length read at `size` is allowed (an empty tensor at the end of the file).
 */
export class CountingSource implements ByteSource {
  readonly reads: Array<{ offset: number; length: number }> = [];
  readonly violations: string[] = [];
  closed = false;

  constructor(private readonly inner: ByteSource) {}

  get name(): string {
    return this.inner.name;
  }
  get size(): number {
    return this.inner.size;
  }
  get count(): number {
    return this.reads.length;
  }
  get maxReadLength(): number {
    return this.reads.reduce((m, r) => Math.max(m, r.length), 0);
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    this.reads.push({ offset, length });
    const ok =
      Number.isSafeInteger(offset) &&
      Number.isSafeInteger(length) &&
      offset >= 0 &&
      length >= 0 &&
      offset + length <= this.size &&
      (offset < this.size || length === 0);
    if (!ok) {
      const what = `CountingSource(${this.name}): read of ${length} bytes at ${offset} is outside [0, ${this.size})`;
      this.violations.push(what);
      throw new Error(what);
    }
    if (this.closed) {
      const what = `CountingSource(${this.name}): read after close`;
      this.violations.push(what);
      throw new Error(what);
    }
    const out = await this.inner.read(offset, length);
    if (out.byteLength !== length) throw new Error(`CountingSource(${this.name}): inner source returned ${out.byteLength} of ${length} bytes`);
    return out;
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.inner.close();
  }
}

/** Seeded bytes, 4 at a time (a byte-wise PRNG takes seconds for tens of MiB); `bytes` % 4 = 0. */
export function seededBytes(seed: number, bytes: number): Uint8Array {
  const rng = mulberry32(seed);
  const words = new Uint32Array(bytes / 4);
  for (let i = 0; i < words.length; i++) words[i] = (rng() * 2 ** 32) >>> 0;
  return new Uint8Array(words.buffer);
}

/** The SluiceError code a call or promise fails with, or 'no error'; other errors rethrow. */
export async function errorCode(p: Promise<unknown> | (() => unknown)): Promise<string> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    if (e instanceof SluiceError) return e.code;
    throw e;
  }
  return 'no error';
}

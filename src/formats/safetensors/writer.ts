// Writing safetensors, byte for byte as the reference writer (huggingface/safetensors,
// tensor.rs `prepare` + `serialize`) lays a file out:
//   - tensors sorted by dtype, largest alignment first (descending position in DTYPES, the
//     reference enum order), then by name in byte order (Rust compares UTF-8 bytes);
//   - data packed back to back from offset 0, no gaps;
//   - header JSON compact, `__metadata__` first (absent when metadata is null/undefined),
//     then one {"dtype","shape","data_offsets"} entry per tensor in write order;
//   - header padded with spaces to a multiple of 8, so the data buffer starts 8-aligned.
// Browser-safe: planning and streaming only; Node's file writing is in write-file.ts.

import { SluiceError } from '../../errors.js';
import { DTYPES, type Dtype, dtypeBits, isDtype } from '../dtypes.js';
import { MAX_HEADER_SIZE, PREFIX_BYTES } from './header.js';

export interface TensorToWrite {
  name: string;
  dtype: Dtype;
  /** Row-major dimensions; [] for a scalar. */
  shape: number[];
  /**
   * The tensor's contiguous little-endian bytes, or a producer called once, when the
   * tensor is written, yielding them in chunks (each chunk is consumed before the next
   * is pulled, so a producer may reuse its buffer).
   */
  data: Uint8Array | (() => AsyncIterable<Uint8Array>);
}

export interface SafetensorsPlan {
  /** 8-byte LE header length + header JSON padded with spaces to a multiple of 8. */
  prefix: Uint8Array;
  /** Tensors in write order (the order of their bytes in the file). */
  order: TensorToWrite[];
  /** Per tensor of `order`: [begin, end) within the data buffer. */
  offsets: Array<[begin: number, end: number]>;
  /** Where the data buffer starts: prefix.byteLength (8 + N). */
  dataStart: number;
  /** Total file size in bytes. */
  size: number;
}

const utf8 = new TextEncoder();
const dtypeRank = new Map<Dtype, number>(DTYPES.map((d, i) => [d, i]));

const where = (name: string) => `tensor ${JSON.stringify(name)}`;

/**
 * Bytes of `shape` × `dtype`, validating the shape: non-negative integer dimensions, a
 * size that fits in a JS number, and sub-byte dtypes ending on a byte.
 */
export function tensorByteLength(name: string, dtype: Dtype, shape: readonly number[]): number {
  if (typeof dtype !== 'string' || !isDtype(dtype)) {
    throw new SluiceError('INVALID_TENSOR_INFO', `${where(name)}: unknown dtype ${JSON.stringify(dtype)}`);
  }
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new SluiceError('INVALID_TENSOR_INFO', `${where(name)}: shape ${JSON.stringify(shape)} must be an array of non-negative integers`);
  }
  // BigInt: the element count of a large shape passes 2^53 long before it is refused.
  const bits = shape.reduce((n, d) => n * BigInt(d), 1n) * BigInt(dtypeBits(dtype));
  if (bits % 8n !== 0n) {
    throw new SluiceError('MISALIGNED_SUB_BYTE', `${where(name)}: shape [${shape}] of ${dtype} does not end on a byte boundary`);
  }
  if (bits / 8n > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new SluiceError('SHAPE_OVERFLOW', `${where(name)}: shape [${shape}] of ${dtype} is too large`);
  }
  return Number(bits / 8n);
}

/** Lays the tensors out as the reference writer does; refuses anything a reader would. */
export function planSafetensors(tensors: readonly TensorToWrite[], metadata?: Record<string, string> | null): SafetensorsPlan {
  const seen = new Set<string>();
  const keyed = tensors.map((t) => {
    if (typeof t.name !== 'string' || t.name === '__metadata__' || LONE_SURROGATE.test(t.name)) {
      const why = t.name === '__metadata__' ? 'is reserved for the metadata' : 'is not a valid UTF-8 string';
      throw new SluiceError('INVALID_TENSOR_INFO', `${where(String(t.name))}: the name ${why}`);
    }
    if (seen.has(t.name)) throw new SluiceError('DUPLICATE_KEY', `${where(t.name)} is given twice`);
    seen.add(t.name);
    const byteLength = tensorByteLength(t.name, t.dtype, t.shape);
    if (t.data instanceof Uint8Array) {
      if (t.data.byteLength !== byteLength) {
        throw new SluiceError('SIZE_MISMATCH', `${where(t.name)}: shape [${t.shape}] of ${t.dtype} is ${byteLength} bytes but ${t.data.byteLength} were given`);
      }
    } else if (typeof t.data !== 'function') {
      throw new SluiceError('INVALID_TENSOR_INFO', `${where(t.name)}: data must be a Uint8Array or a function returning an async iterable`);
    }
    return { t, byteLength, key: utf8.encode(t.name), rank: dtypeRank.get(t.dtype)! };
  });
  // Rust: right.dtype().cmp(&left.dtype()).then(lname.cmp(rname)), names as UTF-8 bytes.
  keyed.sort((a, b) => b.rank - a.rank || compareUtf8Bytes(a.key, b.key));

  const parts: string[] = [];
  if (metadata !== null && metadata !== undefined) parts.push(`"__metadata__":${metadataJson(metadata)}`);
  const offsets: Array<[number, number]> = [];
  let at = 0;
  for (const { t, byteLength } of keyed) {
    const end = at + byteLength;
    if (!Number.isSafeInteger(end)) throw new SluiceError('OFFSET_TOO_LARGE', `${where(t.name)}: data would end past 2^53 bytes`);
    offsets.push([at, end]);
    parts.push(`${JSON.stringify(t.name)}:{"dtype":"${t.dtype}","shape":[${t.shape.join(',')}],"data_offsets":[${at},${end}]}`);
    at = end;
  }
  // Refuse before encoding when even the UTF-16 length (≤ the UTF-8 length) is too long.
  const json = `{${parts.join(',')}}`;
  if (json.length > MAX_HEADER_SIZE) throw headerTooLarge(json.length);
  const jsonBytes = utf8.encode(json);
  const n = jsonBytes.byteLength + ((8 - (jsonBytes.byteLength % 8)) % 8);
  if (n > MAX_HEADER_SIZE) throw headerTooLarge(n);

  const prefix = new Uint8Array(PREFIX_BYTES + n).fill(0x20);
  new DataView(prefix.buffer).setBigUint64(0, BigInt(n), true);
  prefix.set(jsonBytes, PREFIX_BYTES);
  const dataStart = prefix.byteLength;
  return { prefix, order: keyed.map((k) => k.t), offsets, dataStart, size: dataStart + at };
}

/**
 * The file's bytes in order: the prefix, then each tensor's bytes. A producer's chunks
 * are passed through as they come (not copied), after checking that it yields exactly
 * the tensor's size: too many or too few bytes throw SIZE_MISMATCH naming the tensor.
 */
export async function* streamSafetensors(plan: SafetensorsPlan): AsyncGenerator<Uint8Array, void, undefined> {
  yield plan.prefix;
  for (let i = 0; i < plan.order.length; i++) {
    const t = plan.order[i];
    const expected = plan.offsets[i][1] - plan.offsets[i][0];
    if (t.data instanceof Uint8Array) {
      // Checked at planning too; again here in case the tensor was swapped since.
      if (t.data.byteLength !== expected) {
        throw new SluiceError('SIZE_MISMATCH', `${where(t.name)}: ${t.data.byteLength} bytes given but shape [${t.shape}] of ${t.dtype} is ${expected}`);
      }
      if (expected > 0) yield t.data;
      continue;
    }
    let got = 0;
    for await (const chunk of t.data()) {
      if (!(chunk instanceof Uint8Array)) {
        throw new SluiceError('INVALID_TENSOR_INFO', `${where(t.name)}: the producer yielded something other than a Uint8Array`);
      }
      got += chunk.byteLength;
      if (got > expected) {
        throw new SluiceError('SIZE_MISMATCH', `${where(t.name)}: the producer yielded more than the ${expected} bytes of shape [${t.shape}] of ${t.dtype}`);
      }
      if (chunk.byteLength > 0) yield chunk;
    }
    if (got !== expected) {
      throw new SluiceError('SIZE_MISMATCH', `${where(t.name)}: the producer yielded ${got} bytes but shape [${t.shape}] of ${t.dtype} is ${expected}`);
    }
  }
}

/** A whole safetensors file in memory: for small files and tests. */
export async function serializeSafetensors(tensors: readonly TensorToWrite[], metadata?: Record<string, string> | null): Promise<Uint8Array> {
  const plan = planSafetensors(tensors, metadata);
  const out = new Uint8Array(plan.size);
  let at = 0;
  for await (const chunk of streamSafetensors(plan)) {
    out.set(chunk, at);
    at += chunk.byteLength;
  }
  return out;
}

// ─── helpers ──────────────────────────────────────────────────────────────────────────

/** A lone UTF-16 surrogate: not encodable as UTF-8, so not a valid safetensors name. */
const LONE_SURROGATE = /\p{Surrogate}/u;

/** Byte-wise comparison, as Rust's `str::cmp` (and, on UTF-8, Python's code point order). */
export function compareUtf8Bytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

/** `__metadata__` as compact JSON, keys in the object's own order (Rust's is a HashMap's). */
function metadataJson(metadata: Record<string, string>): string {
  if (typeof metadata !== 'object' || Array.isArray(metadata)) {
    throw new SluiceError('INVALID_METADATA', '__metadata__ must be an object of strings');
  }
  const entries = Object.entries(metadata);
  for (const [k, v] of entries) {
    if (typeof v !== 'string') throw new SluiceError('INVALID_METADATA', `__metadata__ value for ${JSON.stringify(k)} is not a string`);
    if (LONE_SURROGATE.test(k) || LONE_SURROGATE.test(v)) {
      throw new SluiceError('INVALID_METADATA', `__metadata__ entry ${JSON.stringify(k)} is not a valid UTF-8 string`);
    }
  }
  // JSON.stringify escapes exactly as serde_json does for well-formed strings.
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(',')}}`;
}

function headerTooLarge(n: number): SluiceError {
  return new SluiceError('HEADER_TOO_LARGE', `the header would be ${n} bytes, over the limit of ${MAX_HEADER_SIZE}`);
}

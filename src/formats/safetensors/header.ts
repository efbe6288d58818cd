// Parsing and validation of a safetensors header, rule for rule as the reference
// implementation (huggingface/safetensors, tensor.rs) validates it, plus what it lets
// through silently: duplicate keys and offsets past 2^53 (not exact in a JS number).
//
// Layout: [u64 LE header length N][N bytes UTF-8 JSON][data buffer]. Each JSON entry is
// {dtype, shape, data_offsets: [begin, end)} relative to the data buffer; `__metadata__`
// is an optional string → string map (or null).

import { SluiceError, type ErrorCode } from '../../errors.js';
import { type Dtype, dtypeBits, isDtype } from '../dtypes.js';
import { JsonFloat, type JsonObject, type JsonValue, JsonSyntaxError, parseStrictJson } from '../strict-json.js';

export const MAX_HEADER_SIZE = 100_000_000;
export const PREFIX_BYTES = 8;

export interface TensorEntry {
  name: string;
  dtype: Dtype;
  shape: number[];
  /** Byte range within the data buffer, [begin, end). */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  /** N: the JSON's length in bytes. */
  headerLength: number;
  /** Where the data buffer starts in the file: 8 + N. */
  dataStart: number;
  /** In file order (ascending offsets). */
  tensors: TensorEntry[];
  /** `__metadata__`, or null when absent. */
  metadata: Record<string, string> | null;
}

const fail = (code: ErrorCode, file: string, what: string): never => {
  throw new SluiceError(code, `${file}: ${what}`);
};

/** Reads N from the 8-byte prefix and checks it against the file size. */
export function parseHeaderLength(prefix: Uint8Array, fileSize: number, file: string): number {
  if (fileSize < PREFIX_BYTES || prefix.byteLength < PREFIX_BYTES) {
    fail('HEADER_TOO_SMALL', file, `${fileSize} bytes is too small for a safetensors file (needs at least 8)`);
  }
  const n = new DataView(prefix.buffer, prefix.byteOffset, PREFIX_BYTES).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_SIZE)) {
    fail('HEADER_TOO_LARGE', file, `header length ${n} exceeds the limit of ${MAX_HEADER_SIZE} bytes`);
  }
  const length = Number(n);
  if (PREFIX_BYTES + length > fileSize) {
    fail('INVALID_HEADER_LENGTH', file, `header length ${length} runs past the end of the file (${fileSize} bytes)`);
  }
  return length;
}

/**
 * Validates the header JSON bytes (exactly N of them) of a file of `fileSize` bytes.
 * Every failure is a SluiceError naming the file and, where there is one, the tensor.
 */
export function parseHeader(json: Uint8Array, fileSize: number, file: string): SafetensorsHeader {
  const headerLength = json.byteLength;
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(json);
  } catch {
    return fail('INVALID_UTF8', file, 'header is not valid UTF-8');
  }
  let root: JsonValue;
  try {
    root = parseStrictJson(text, { floats: 'wrap' });
  } catch (e) {
    if (e instanceof JsonSyntaxError && e.duplicateKey !== undefined) {
      fail('DUPLICATE_KEY', file, `header has the key ${JSON.stringify(e.duplicateKey)} twice`);
    }
    return fail('INVALID_JSON', file, `header is not valid JSON: ${(e as Error).message}`);
  }
  if (!isObject(root)) return fail('HEADER_NOT_OBJECT', file, 'header JSON is not an object');

  let metadata: Record<string, string> | null = null;
  const tensors: TensorEntry[] = [];
  for (const [name, value] of Object.entries(root)) {
    if (name === '__metadata__') metadata = parseMetadata(value, file);
    else tensors.push(parseEntry(name, value, file));
  }

  // The reference sorts by offsets, then requires the entries to tile the buffer exactly.
  tensors.sort((a, b) => a.begin - b.begin || a.end - b.end);
  const dataLength = fileSize - PREFIX_BYTES - headerLength;
  let cursor = 0;
  for (const t of tensors) {
    const where = `tensor ${JSON.stringify(t.name)}`;
    if (t.end < t.begin) fail('INVALID_OFFSETS', file, `${where}: data_offsets [${t.begin}, ${t.end}) are reversed`);
    if (t.begin !== cursor) {
      const problem = t.begin > cursor ? `a gap of ${t.begin - cursor} bytes before it` : `it overlaps the previous tensor`;
      fail('INVALID_OFFSETS', file, `${where}: data_offsets start at ${t.begin} but the previous tensor ends at ${cursor} (${problem})`);
    }
    checkSize(t, file);
    if (t.end > dataLength) {
      fail('INVALID_OFFSETS', file, `${where}: data_offsets end at ${t.end}, past the end of the data (${dataLength} bytes)`);
    }
    cursor = t.end;
  }
  if (cursor !== dataLength) {
    fail('INVALID_OFFSETS', file, `${dataLength - cursor} trailing bytes after the last tensor (data is ${dataLength} bytes, tensors cover ${cursor})`);
  }
  return { headerLength, dataStart: PREFIX_BYTES + headerLength, tensors, metadata };
}

function isObject(v: JsonValue): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof JsonFloat);
}

function parseMetadata(value: JsonValue, file: string): Record<string, string> | null {
  if (value === null) return null;
  if (!isObject(value)) return fail('INVALID_METADATA', file, '__metadata__ is not an object of strings');
  for (const [k, v] of Object.entries(value)) {
    if (typeof v !== 'string') fail('INVALID_METADATA', file, `__metadata__ value for ${JSON.stringify(k)} is not a string`);
  }
  // fromEntries defines own properties, so a "__proto__" key stays data.
  return Object.fromEntries(Object.entries(value)) as Record<string, string>;
}

function parseEntry(name: string, value: JsonValue, file: string): TensorEntry {
  const where = `tensor ${JSON.stringify(name)}`;
  const bad = (what: string): never => fail('INVALID_TENSOR_INFO', file, `${where}: ${what}`);
  if (!isObject(value)) return bad('entry is not an object with dtype, shape and data_offsets');
  const { dtype, shape, data_offsets: offsets } = value;
  if (dtype === undefined) bad('missing "dtype"');
  if (typeof dtype !== 'string') return bad('"dtype" is not a string');
  if (!isDtype(dtype)) return fail('UNKNOWN_DTYPE', file, `${where}: unknown dtype ${JSON.stringify(dtype)}`);
  if (shape === undefined) bad('missing "shape"');
  if (!Array.isArray(shape)) return bad('"shape" is not an array');
  for (const d of shape) {
    if (typeof d === 'bigint' && d >= 0n) fail('SHAPE_OVERFLOW', file, `${where}: dimension ${d} is too large`);
    if (typeof d !== 'number' || !Number.isInteger(d) || d < 0) bad('"shape" must hold non-negative integers');
  }
  if (offsets === undefined) bad('missing "data_offsets"');
  if (!Array.isArray(offsets) || offsets.length !== 2) return bad('"data_offsets" must be [begin, end]');
  for (const o of offsets) {
    if (typeof o === 'bigint' && o >= 0n) fail('OFFSET_TOO_LARGE', file, `${where}: data offset ${o} is beyond 2^53`);
    if (typeof o !== 'number' || !Number.isInteger(o) || o < 0) bad('"data_offsets" must hold non-negative integers');
  }
  return { name, dtype, shape: shape as number[], begin: offsets[0] as number, end: offsets[1] as number };
}

/** shape × dtype width must be whole bytes and equal end − begin. */
function checkSize(t: TensorEntry, file: string): void {
  const where = `tensor ${JSON.stringify(t.name)}`;
  // BigInt: the element count of a hostile shape overflows 2^53 long before u64.
  let elements = 1n;
  for (const d of t.shape) {
    elements *= BigInt(d);
    if (elements > 0xffff_ffff_ffff_ffffn) fail('SHAPE_OVERFLOW', file, `${where}: shape [${t.shape}] has too many elements`);
  }
  const bits = elements * BigInt(dtypeBits(t.dtype));
  if (bits > 0xffff_ffff_ffff_ffffn) fail('SHAPE_OVERFLOW', file, `${where}: shape [${t.shape}] is too large for ${t.dtype}`);
  if (bits % 8n !== 0n) {
    fail('MISALIGNED_SUB_BYTE', file, `${where}: ${elements} elements of ${t.dtype} do not end on a byte boundary`);
  }
  const bytes = bits / 8n;
  if (bytes !== BigInt(t.end - t.begin)) {
    fail('SIZE_MISMATCH', file, `${where}: shape [${t.shape}] of ${t.dtype} is ${bytes} bytes but data_offsets span ${t.end - t.begin}`);
  }
}

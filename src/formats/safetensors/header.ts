// Parsing and validation of a safetensors header, rule for rule as the reference
// implementation (huggingface/safetensors, tensor.rs) validates it, plus what it lets
// through silently: duplicate keys and offsets past 2^53 (not exact in a JS number), and
// bounds it does not set (MAX_RANK, MAX_TENSORS, MAX_METADATA_ENTRIES, nesting 64 where
// serde_json allows 128) that no real file comes near but a hostile one would.
//
// The JSON is read against the header's schema, one token at a time (after a syntax pass
// that builds nothing), so a hostile header is refused at its first value of the wrong
// kind instead of being built first: a 100 MB `{"a":{},"b":{},...}` stops at "a". What is
// built is what a valid header needs: one entry per tensor (≥ ~50 bytes of JSON each), a
// shape of at most MAX_RANK dims, metadata strings; unknown fields in an entry (the
// reference's serde ignores them) are skipped, never built.
//
// Layout: [u64 LE header length N][N bytes UTF-8 JSON][data buffer]. Each JSON entry is
// {dtype, shape, data_offsets: [begin, end)} relative to the data buffer; `__metadata__`
// is an optional string → string map (or null).

import { SluiceError, type ErrorCode, quote } from '../../errors.js';
import { type Dtype, dtypeBits, isDtype } from '../dtypes.js';
import { JsonCursor, JsonSyntaxError, checkJsonSyntax } from '../strict-json.js';

export const MAX_HEADER_SIZE = 100_000_000;
export const PREFIX_BYTES = 8;
/**
 * Most dims a shape may have. The reference sets none (Vec<usize>); numpy 2 allows 64
 * (NPY_MAXDIMS) and torch nothing past it in practice, while a 50 M-dim shape of 1s is a
 * valid 1-byte tensor whose shape alone costs 400 MB and a 100 MB line to print.
 */
export const MAX_RANK = 64;
/**
 * Most tensors in one file. The reference sets none; the largest real checkpoints list
 * ~10^5 per file. Each costs ~200 bytes parsed and as much again listed, against ≥ ~50
 * bytes of JSON, so 1.8 M minimal entries (a 100 MB header) would take ~1.4 GB to inspect.
 */
export const MAX_TENSORS = 1_000_000;
/**
 * Most `__metadata__` entries. The reference sets none; real files hold a few to a few
 * hundred (format, training notes). Each costs ~100-150 bytes as JS against ≥ 8 bytes of
 * JSON, so a 100 MB header of `"a":"",` entries would take ~1.5 GB: refused past this.
 */
export const MAX_METADATA_ENTRIES = 1_000_000;
/** u64::MAX has 20 digits: a longer integer literal (no leading zeros in JSON) is larger. */
const U64_DIGITS = 20;
const U64_MAX = 0xffff_ffff_ffff_ffffn;

export interface TensorEntry {
  name: string;
  dtype: Dtype;
  /** Row-major dims. A dim past 2^53 (only a zero-element tensor may have one) is rounded here; see exactShape. */
  shape: number[];
  /** The exact dims, only when one is past 2^53 (e.g. [0, 2^64 − 1], valid as it holds no element). */
  exactShape?: bigint[];
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
  /** The same entries by name. */
  byName: Map<string, TensorEntry>;
  /** `__metadata__`, or null when absent. */
  metadata: Record<string, string> | null;
}

const fail = (code: ErrorCode, file: string, what: string): never => {
  throw new SluiceError(code, `${file}: ${what}`);
};
/** A failure naming the tensor; the name is quoted only then (a header may hold millions). */
const failOn = (code: ErrorCode, file: string, name: string, what: string): never =>
  fail(code, file, `tensor ${quote(name)}: ${what}`);

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
  let header: Pick<SafetensorsHeader, 'tensors' | 'byName' | 'metadata'>;
  try {
    // Syntax first, building nothing: malformed JSON is INVALID_JSON whatever its values say.
    checkJsonSyntax(text);
    header = readHeader(new JsonCursor(text), file);
  } catch (e) {
    if (e instanceof JsonSyntaxError) return fail('INVALID_JSON', file, `header is not valid JSON: ${e.message}`);
    throw e;
  }
  const { tensors, byName, metadata } = header;

  // The reference sorts by offsets, then requires the entries to tile the buffer exactly.
  tensors.sort((a, b) => a.begin - b.begin || a.end - b.end);
  const dataLength = fileSize - PREFIX_BYTES - headerLength;
  let cursor = 0;
  for (const t of tensors) {
    if (t.end < t.begin) failOn('INVALID_OFFSETS', file, t.name, `data_offsets [${t.begin}, ${t.end}) are reversed`);
    if (t.begin !== cursor) {
      const problem = t.begin > cursor ? `a gap of ${t.begin - cursor} bytes before it` : `it overlaps the previous tensor`;
      failOn('INVALID_OFFSETS', file, t.name, `data_offsets start at ${t.begin} but the previous tensor ends at ${cursor} (${problem})`);
    }
    checkSize(t, file);
    if (t.end > dataLength) {
      failOn('INVALID_OFFSETS', file, t.name, `data_offsets end at ${t.end}, past the end of the data (${dataLength} bytes)`);
    }
    cursor = t.end;
  }
  if (cursor !== dataLength) {
    fail('INVALID_OFFSETS', file, `${dataLength - cursor} trailing bytes after the last tensor (data is ${dataLength} bytes, tensors cover ${cursor})`);
  }
  return { headerLength, dataStart: PREFIX_BYTES + headerLength, tensors, byName, metadata };
}

/** The root object: tensor entries and `__metadata__`, each refused at its first wrong token. */
function readHeader(c: JsonCursor, file: string): Pick<SafetensorsHeader, 'tensors' | 'byName' | 'metadata'> {
  if (c.peek() !== 'object') return fail('HEADER_NOT_OBJECT', file, 'header JSON is not an object');
  const tensors: TensorEntry[] = [];
  const byName = new Map<string, TensorEntry>();
  let metadata: Record<string, string> | null | undefined;
  for (let first = true; ; first = false) {
    const name = c.nextKey(first);
    if (name === undefined) break;
    // The reference's serde map keeps the last of two equal keys; two readers could then
    // disagree on the file, so we refuse.
    if (name === '__metadata__' ? metadata !== undefined : byName.has(name)) {
      fail('DUPLICATE_KEY', file, `header has the key ${quote(name)} twice`);
    }
    if (name === '__metadata__') metadata = readMetadata(c, file);
    else {
      if (tensors.length === MAX_TENSORS) fail('HEADER_TOO_LARGE', file, `header lists more than ${MAX_TENSORS} tensors`);
      const entry = readEntry(c, name, file);
      tensors.push(entry);
      byName.set(name, entry);
    }
  }
  c.end();
  return { tensors, byName, metadata: metadata ?? null };
}

/** `__metadata__`: null, or an object of string values (serde: Option<HashMap<String, String>>). */
function readMetadata(c: JsonCursor, file: string): Record<string, string> | null {
  const kind = c.peek();
  if (kind === 'literal' && c.readLiteral() === null) return null;
  if (kind !== 'object') return fail('INVALID_METADATA', file, '__metadata__ is not an object of strings');
  const out = new Map<string, string>();
  for (let first = true; ; first = false) {
    const key = c.nextKey(first);
    if (key === undefined) break;
    if (out.has(key)) fail('DUPLICATE_KEY', file, `__metadata__ has the key ${quote(key)} twice`);
    if (out.size === MAX_METADATA_ENTRIES) fail('HEADER_TOO_LARGE', file, `__metadata__ has more than ${MAX_METADATA_ENTRIES} entries`);
    if (c.peek() !== 'string') fail('INVALID_METADATA', file, `__metadata__ value for ${quote(key)} is not a string`);
    out.set(key, c.readString());
  }
  // fromEntries defines own properties, so a "__proto__" key stays data.
  return Object.fromEntries(out);
}

/** One tensor entry (serde: struct TensorInfo { dtype, shape: Vec<usize>, data_offsets: (usize, usize) }). */
function readEntry(c: JsonCursor, name: string, file: string): TensorEntry {
  const bad = (what: string): never => failOn('INVALID_TENSOR_INFO', file, name, what);
  if (c.peek() !== 'object') return bad('entry is not an object with dtype, shape and data_offsets');
  let dtype: Dtype | undefined;
  let dims: Array<number | bigint> | undefined;
  let offsets: number[] | undefined;
  for (let first = true; ; first = false) {
    const key = c.nextKey(first);
    if (key === undefined) break;
    // serde's derived Deserialize refuses a known field twice ("duplicate field").
    const twice = () => failOn('DUPLICATE_KEY', file, name, `the field ${quote(key)} appears twice`);
    if (key === 'dtype') {
      if (dtype !== undefined) twice();
      if (c.peek() !== 'string') bad('"dtype" is not a string');
      const s = c.readString();
      if (!isDtype(s)) failOn('UNKNOWN_DTYPE', file, name, `unknown dtype ${quote(s)}`);
      dtype = s as Dtype;
    } else if (key === 'shape') {
      if (dims !== undefined) twice();
      dims = readShape(c, name, file, bad);
    } else if (key === 'data_offsets') {
      if (offsets !== undefined) twice();
      offsets = readOffsets(c, name, file, bad);
    } else {
      // serde ignores unknown fields (TensorInfo has no deny_unknown_fields): skipped unbuilt,
      // so neither their size nor a duplicate among them matters; nothing reads them.
      c.skipValue(2);
    }
  }
  if (dtype === undefined) return bad('missing "dtype"');
  if (dims === undefined) return bad('missing "shape"');
  if (offsets === undefined) return bad('missing "data_offsets"');
  // slice(): an exact-size copy (push leaves room for 17 dims: ~150 wasted bytes a tensor).
  if (dims.every((d) => typeof d === 'number')) return { name, dtype, shape: dims.slice() as number[], begin: offsets[0], end: offsets[1] };
  return { name, dtype, shape: dims.map(Number), exactShape: dims.map(BigInt), begin: offsets[0], end: offsets[1] };
}

function readShape(c: JsonCursor, name: string, file: string, bad: (what: string) => never): Array<number | bigint> {
  if (c.peek() !== 'array') return bad('"shape" is not an array');
  const dims: Array<number | bigint> = [];
  for (let first = true; c.nextItem(first); first = false) {
    if (dims.length === MAX_RANK) bad(`"shape" has more than ${MAX_RANK} dims`);
    dims.push(readU64(c, () => bad('"shape" must hold non-negative integers'), (digits) =>
      failOn('SHAPE_OVERFLOW', file, name, `dimension ${quote(digits)} is too large`)));
  }
  return dims;
}

function readOffsets(c: JsonCursor, name: string, file: string, bad: (what: string) => never): number[] {
  const pair = '"data_offsets" must be [begin, end]';
  if (c.peek() !== 'array') return bad(pair);
  const out: number[] = [];
  for (let first = true; c.nextItem(first); first = false) {
    if (out.length === 2) bad(pair);
    const tooLarge = (digits: string): never => failOn('OFFSET_TOO_LARGE', file, name, `data offset ${quote(digits)} is beyond 2^53`);
    const o = readU64(c, () => bad('"data_offsets" must hold non-negative integers'), tooLarge);
    if (typeof o === 'bigint') tooLarge(String(o));
    out.push(o as number);
  }
  if (out.length !== 2) bad(pair);
  return out;
}

/**
 * The next value as serde reads a usize: a non-negative integer literal (no fraction or
 * exponent, not `-0`) up to u64::MAX; a number when safe, else a bigint. A literal over 20
 * digits is refused from its length, before any conversion (BigInt of 100 M digits is slow).
 */
function readU64(c: JsonCursor, notU64: () => never, tooLarge: (digits: string) => never): number | bigint {
  if (c.peek() !== 'number') return notU64();
  const { start, end, integer } = c.readNumber();
  if (!integer || c.text[start] === '-') return notU64();
  const raw = c.text.slice(start, end);
  if (raw.length > U64_DIGITS) return tooLarge(raw);
  const n = Number(raw);
  if (Number.isSafeInteger(n)) return n;
  const big = BigInt(raw);
  return big > U64_MAX ? tooLarge(raw) : big;
}

/** `[a, b, c]`, cut to about 200 characters (a shape has up to 64 dims of 20 digits). */
function shapeText(dims: ReadonlyArray<number | bigint>): string {
  const text = `[${dims.join(', ')}]`;
  return text.length <= 200 ? text : `${text.slice(0, 200)}…] (${dims.length} dims)`;
}

/** shape × dtype width must be whole bytes and equal end − begin. */
function checkSize(t: TensorEntry, file: string): void {
  const span = t.end - t.begin;
  // Fast path, exact in doubles: every partial product ≤ 2^53 (so none overflows u64 either).
  // Past it (even if a later zero would bring it back, see below) the exact path decides.
  if (!t.exactShape) {
    let elements = 1;
    for (const d of t.shape) {
      elements *= d;
      if (elements > Number.MAX_SAFE_INTEGER) break;
    }
    const bits = elements * dtypeBits(t.dtype);
    if (bits <= Number.MAX_SAFE_INTEGER && bits % 8 === 0 && bits / 8 === span) return;
  }
  const bad = (code: ErrorCode, what: string) => failOn(code, file, t.name, what);
  const dims = t.exactShape ?? t.shape.map(BigInt);
  const shape = shapeText(dims);
  // As the reference's Metadata::validate (tensor.rs):
  //   let nelements = info.shape.iter().copied().try_fold(1usize, usize::checked_mul)
  //       .ok_or(SafeTensorError::ValidationOverflow)?;
  // left to right, stopping at the first overflow: [2^40, 2^40, 0] overflows before its
  // zero and is refused, while [0, 2^60] and [2^62, 0] hold 0 elements and are valid.
  let elements = 1n;
  for (const d of dims) {
    elements *= d;
    if (elements > U64_MAX) bad('SHAPE_OVERFLOW', `shape ${shape} has too many elements`);
  }
  // let nbits = nelements.checked_mul(info.dtype.bitsize()).ok_or(ValidationOverflow)?;
  const bits = elements * BigInt(dtypeBits(t.dtype));
  if (bits > U64_MAX) bad('SHAPE_OVERFLOW', `shape ${shape} is too large for ${t.dtype}`);
  // Ours: a dim past 2^53 is not exact as a JS number. A tensor with no elements keeps it
  // (exactShape; nothing computes with it); any other needs ≥ 4 PiB of data, so no real file.
  if (t.exactShape && elements !== 0n) {
    bad('SHAPE_OVERFLOW', `shape ${shape} has a dimension past 2^53, which sluice cannot address`);
  }
  if (bits % 8n !== 0n) bad('MISALIGNED_SUB_BYTE', `${elements} elements of ${t.dtype} do not end on a byte boundary`);
  const bytes = bits / 8n;
  if (bytes !== BigInt(span)) bad('SIZE_MISMATCH', `shape ${shape} of ${t.dtype} is ${bytes} bytes but data_offsets span ${span}`);
}

// One error class for everything sluice throws on purpose. `code` is stable (tests and
// callers switch on it); `message` is one line that names the file or tensor at fault.

export type ErrorCode =
  // safetensors header and layout (mirrors huggingface/safetensors tensor.rs)
  | 'HEADER_TOO_SMALL' // fewer than 8 bytes
  | 'HEADER_TOO_LARGE' // header length over 100,000,000
  | 'INVALID_HEADER_LENGTH' // 8 + N past end of file
  | 'INVALID_UTF8'
  | 'INVALID_JSON'
  | 'DUPLICATE_KEY'
  | 'HEADER_NOT_OBJECT'
  | 'UNKNOWN_DTYPE'
  | 'INVALID_TENSOR_INFO' // missing or ill-typed fields
  | 'SHAPE_OVERFLOW' // element count does not fit
  | 'SIZE_MISMATCH' // shape × dtype size ≠ end − begin
  | 'MISALIGNED_SUB_BYTE' // F4/F6 tensor not ending on a byte
  | 'INVALID_OFFSETS' // gaps, overlaps, reversed, past the end, trailing bytes
  | 'OFFSET_TOO_LARGE' // beyond 2^53
  | 'INVALID_METADATA' // __metadata__ not string → string
  // lookups and views
  | 'TENSOR_NOT_FOUND'
  | 'INVALID_SLICE'
  | 'INVALID_INDEX' // sharded index problems
  | 'UNSUPPORTED_FORMAT'
  // PyTorch checkpoints
  | 'INVALID_ZIP' // a zip directory or entry that is malformed or lies about its sizes
  | 'INVALID_PICKLE' // malformed pickle, or one past the memo/stack/depth bounds
  | 'UNSAFE_PICKLE' // a global outside the allow-list: refused, nothing executed
  | 'UNSUPPORTED_DTYPE'
  // sources
  | 'NOT_FOUND'
  | 'IO_ERROR'
  | 'HTTP_ERROR'
  | 'RANGE_NOT_SUPPORTED'
  | 'SOURCE_CHANGED' // a source that changed or was truncated mid-read
  | 'UNSAFE_PATH' // a name or symlink in a model folder that leads outside it
  // in-place updates
  | 'SHAPE_MISMATCH'
  | 'DTYPE_MISMATCH'
  | 'JOURNAL_INVALID' // a torn, forged or foreign update journal: nothing is touched
  | 'JOURNAL_PENDING' // an interrupted update awaits `sluice update --recover`; reads refuse the file
  | 'LOCKED' // another process holds the file's update lock past the timeout
  // GPU
  | 'NO_ADAPTER'
  | 'DEVICE_LOST'
  | 'OUT_OF_MEMORY'
  | 'SHADER_ERROR' // a WGSL variant that does not compile: a bug of sluice, named precisely
  | 'TENSOR_TOO_LARGE' // one row of a tensor exceeds what a GPU binding can hold
  | 'ABORTED' // the caller's AbortSignal fired
  | 'BUSY' // a model's request queue is full
  // the Hugging Face Hub
  | 'ACCESS_DENIED' // 401/403: a gated or private repo, or a refused HF_TOKEN
  | 'CHECKSUM_MISMATCH' // a download whose size or hash differs from the Hub's listing: discarded
  // models
  | 'UNSUPPORTED_ARCH' // a config.json sluice cannot run: names what, lists what it can
  // CLI
  | 'USAGE';

export class SluiceError extends Error {
  override readonly name = 'SluiceError';
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** True when `e` is a SluiceError, optionally with the given code. */
export function isSluiceError(e: unknown, code?: ErrorCode): e is SluiceError {
  return e instanceof SluiceError && (code === undefined || e.code === code);
}

/** Longest quote of untrusted text (a key, a name, a number) an error message carries. */
export const MAX_QUOTE = 200;

/**
 * `JSON.stringify(text)`, cut to about `max` characters with the length said, so a
 * hostile 100 MB key or number never becomes a 100 MB error line.
 */
export function quote(text: string, max = MAX_QUOTE): string {
  if (text.length <= max) return JSON.stringify(text);
  return `${JSON.stringify(text.slice(0, max))}… (${text.length} characters)`;
}

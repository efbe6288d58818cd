// A ByteSource over an HTTP(S) URL, read with Range requests. Browser-safe: only the
// global fetch (or an injected one), no node: imports.
//
// Cost model: open() is one request (the first `prefetch` bytes, which also tell us the
// size), reads inside those bytes are free, and a read past them is ceil(n / chunkSize)
// ranged requests, at most `concurrency` in flight per source. A safetensors header under
// 64 KiB therefore costs one request, a bigger one two.
//
// Every request goes through http.ts: it cannot hang (header timeout, minimum transfer
// rate, a retry budget of 85 s by default), and the `headers` option (a token) is sent to
// this URL's origin only, never along a redirect to another. Shard names next to an index
// are untrusted and resolved by url-sibling.ts.

import { SluiceError } from '../errors.js';
import type { ByteSource, SourceOpener } from './byte-source.js';
import { type Attempt, discard, type HttpOptions, type HttpSettings, httpSettings, link, RetryableStatus, retryAfterMs, statusLine, withRetries } from './http.js';
import { checkComplete, checkRange, copyInto } from './range.js';
import { urlSibling } from './url-sibling.js';

export { urlSibling };

export interface UrlSourceOptions extends HttpOptions {
  /** Bytes fetched by open() and then served from memory (default 64 KiB). */
  prefetch?: number;
  /** Largest single ranged request of one read (default 8 MiB). */
  chunkSize?: number;
  /** Ranged requests in flight at once, shared by all reads of this source (default 4). */
  concurrency?: number;
}

const KiB = 1024;
const MiB = 1024 * KiB;

interface Settings extends HttpSettings {
  name: string;
  prefetch: number;
  chunkSize: number;
}

/** What a 206 says it holds: bytes start..end (inclusive) of a file of `total` bytes. */
interface ContentRange {
  start: number;
  end: number;
  total: number;
}

export class UrlSource implements ByteSource {
  // Aborted by close() or by the caller's signal: in-flight requests stop with it.
  private readonly life = new AbortController();
  private readonly unlink: () => void;
  private readonly gate: Semaphore;
  private closed = false;

  private constructor(
    readonly size: number,
    private readonly etag: string | null,
    /** The first bytes of the file, from open(): (min(prefetch, size),) u8. */
    private readonly head: Uint8Array,
    private readonly settings: Settings,
    private readonly options: UrlSourceOptions,
  ) {
    this.gate = new Semaphore(Math.max(1, Math.floor(options.concurrency ?? 4)));
    this.unlink = link(options.signal, this.life);
  }

  get name(): string {
    return this.settings.name;
  }

  static async open(url: string | URL, options: UrlSourceOptions = {}): Promise<UrlSource> {
    const s: Settings = {
      ...httpSettings(options),
      name: String(url),
      // Range `bytes=0--1` is not a range: always ask for at least one byte.
      prefetch: Math.max(1, Math.floor(options.prefetch ?? 64 * KiB)),
      chunkSize: Math.max(1, Math.floor(options.chunkSize ?? 8 * MiB)),
    };
    return withRetries(s.name, s, options.signal, async (attempt) => {
      const res = await get(s, attempt, 0, s.prefetch - 1);
      const etag = res.headers.get('etag');
      // Empty file: no byte 0 to serve, so a conforming server says 416 `bytes */0`.
      // (Some servers answer it with a plain, empty 200 instead.)
      const empty = res.status === 200 && res.headers.get('content-length') === '0';
      if (res.status === 416 || empty) {
        await discard(res);
        if (!empty && !/^bytes \*\/0$/i.test(res.headers.get('content-range') ?? 'bytes */0')) {
          throw new SluiceError('HTTP_ERROR', `${s.name}: server refused the range bytes=0-${s.prefetch - 1} (HTTP 416)`);
        }
        return new UrlSource(0, etag, new Uint8Array(0), s, options);
      }
      await expectPartial(s.name, res);
      const cr = await contentRange(s.name, res);
      // A server may send less than asked (a file smaller than prefetch, or its own cap).
      if (cr.start !== 0 || cr.end >= s.prefetch) await unexpected(s.name, res, cr, 0, s.prefetch - 1);
      const head = new Uint8Array(cr.end + 1);
      const got = await readBody(s.name, res, head, attempt);
      const source = new UrlSource(cr.total, etag, head, s, options);
      if (got !== head.length) {
        await source.close();
        checkComplete(source, 0, head.length, got);
      }
      return source;
    });
  }

  /** The file `relativeName` next to this one (a shard next to its index), same options. */
  async openSibling(relativeName: string): Promise<UrlSource> {
    return UrlSource.open(urlSibling(this.name, relativeName), this.options);
  }

  async read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    if (this.closed) throw new SluiceError('IO_ERROR', `${this.name}: read after close`);
    checkRange(this, offset, length);
    const end = offset + length;
    // A copy, not a view: a caller that writes into its result must not corrupt the cache.
    if (end <= this.head.length) return into ? copyInto(into, this.head.subarray(offset, end)) : this.head.slice(offset, end);

    if (into && into.length < length) throw new RangeError(`read destination of ${into.length} bytes is shorter than ${length}`);
    const out = into ? into.subarray(0, length) : new Uint8Array(length); // (length,) u8, assembled in place by every chunk
    let from = offset;
    if (offset < this.head.length) {
      out.set(this.head.subarray(offset), 0);
      from = this.head.length;
    }
    // First failure aborts the sibling chunks; we wait for all so nothing outlives read().
    const read = new AbortController();
    const unlink = link(this.life.signal, read);
    let failure: { error: unknown } | null = null;
    const tasks: Promise<void>[] = [];
    for (let a = from; a < end; a += this.settings.chunkSize) {
      const b = Math.min(end, a + this.settings.chunkSize);
      tasks.push(
        this.fetchInto(out.subarray(a - offset, b - offset), a, read.signal).catch((error: unknown) => {
          failure ??= { error };
          read.abort(error);
        }),
      );
    }
    try {
      await Promise.all(tasks);
    } finally {
      unlink();
    }
    if (failure) throw (failure as { error: unknown }).error;
    return out;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.unlink();
    // In-flight reads stop now rather than finish into a buffer nobody will use.
    this.life.abort(new SluiceError('IO_ERROR', `${this.name}: source closed while reading`));
  }

  /** Fills `into` with the bytes at [start, start + into.length), one ranged request. */
  private async fetchInto(into: Uint8Array, start: number, signal: AbortSignal): Promise<void> {
    await this.gate.acquire();
    try {
      if (signal.aborted) throw signal.reason;
      const last = start + into.length - 1;
      await withRetries(this.name, this.settings, signal, async (attempt) => {
        const res = await get(this.settings, attempt, start, last);
        if (res.status === 416) await fail(res, this.changed('it is now shorter'));
        await expectPartial(this.name, res);
        const cr = await contentRange(this.name, res);
        const etag = res.headers.get('etag');
        if (cr.total !== this.size) await fail(res, this.changed(`size ${this.size} → ${cr.total}`));
        if (this.etag !== null && etag !== null && etag !== this.etag) await fail(res, this.changed(`ETag ${this.etag} → ${etag}`));
        // A shorter range falls through to checkComplete below; anything else is nonsense.
        if (cr.start !== start || cr.end > last) await unexpected(this.name, res, cr, start, last);
        checkComplete(this, start, into.length, await readBody(this.name, res, into, attempt));
      });
    } finally {
      this.gate.release();
    }
  }

  private changed(detail: string): SluiceError {
    return new SluiceError('SOURCE_CHANGED', `${this.name}: the file at ${this.name} changed while reading (${detail})`);
  }
}

/** A SourceOpener for the files next to `url` (shards next to their index); bad names reject. */
export function urlOpener(url: string | URL, options: UrlSourceOptions = {}): SourceOpener {
  return async (relativeName) => UrlSource.open(urlSibling(url, relativeName), options);
}

// ---------------------------------------------------------------------------------------
// Requests and statuses (timeouts, retries and redirects: http.ts)

/** One ranged GET of bytes first..last, inside `attempt` (its timeouts, its redirects). */
function get(s: Settings, attempt: Attempt, first: number, last: number): Promise<Response> {
  // Range offsets count encoded bytes; fetch would decode gzip under us. (Browsers drop
  // this forbidden header and send identity for Range requests by themselves.)
  return attempt.send(s.name, { range: `bytes=${first}-${last}`, 'accept-encoding': 'identity' });
}

/** Throws the right error for anything but a 206, after cancelling its body. */
async function expectPartial(name: string, res: Response): Promise<void> {
  if (res.status === 206) return;
  // Cancel, never drain: a server ignoring Range would otherwise stream the whole file.
  await discard(res);
  const status = statusLine(res);
  if (res.status === 200) {
    throw new SluiceError('RANGE_NOT_SUPPORTED', `${name}: the server ignored the Range request (${status}); sluice reads URLs only from servers that support byte ranges`);
  }
  if (res.status === 404 || res.status === 410) throw new SluiceError('NOT_FOUND', `${name}: not found (${status})`);
  if (res.status === 401 || res.status === 403) {
    throw new SluiceError('HTTP_ERROR', `${name}: access denied (${status}); for a gated or private model set HF_TOKEN or pass an Authorization header in the \`headers\` option`);
  }
  if (res.status === 429 || res.status >= 500) throw new RetryableStatus(status, retryAfterMs(res.headers.get('retry-after')));
  throw new SluiceError('HTTP_ERROR', `${name}: ${status}`);
}

async function contentRange(name: string, res: Response): Promise<ContentRange> {
  const header = res.headers.get('content-range');
  const m = /^bytes (\d+)-(\d+)\/(\d+)$/i.exec(header?.trim() ?? '');
  const [start, end, total] = m ? [Number(m[1]), Number(m[2]), Number(m[3])] : [NaN, NaN, NaN];
  if (!m || !Number.isSafeInteger(total) || start > end || end >= total) {
    // Cross-origin, the header is invisible unless the server exposes it.
    const hint = header === null ? ' (cross-origin servers must list it in Access-Control-Expose-Headers)' : '';
    await fail(res, new SluiceError('HTTP_ERROR', `${name}: unusable Content-Range ${JSON.stringify(header)} in a 206 response${hint}`));
  }
  const encoding = res.headers.get('content-encoding');
  if (encoding !== null && encoding !== 'identity') {
    await fail(res, new SluiceError('HTTP_ERROR', `${name}: the server compressed a range response (${encoding}), so its byte offsets are unusable; serve model files uncompressed (compression middleware often gzips unknown types such as .safetensors)`));
  }
  return { start, end, total };
}

function unexpected(name: string, res: Response, cr: ContentRange, first: number, last: number): Promise<never> {
  return fail(res, new SluiceError('HTTP_ERROR', `${name}: asked for bytes ${first}-${last} but the server sent ${cr.start}-${cr.end}`));
}

/**
 * Streams the body into `into` (no intermediate whole-body buffer) and returns how many
 * bytes came; a body longer than `into` is a protocol error.
 */
async function readBody(name: string, res: Response, into: Uint8Array, attempt: Attempt): Promise<number> {
  if (!res.body) return 0;
  const reader = res.body.getReader();
  let got = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return got;
      if (got + value.byteLength > into.length) {
        await reader.cancel().catch(() => {});
        throw new SluiceError('HTTP_ERROR', `${name}: the server sent more bytes than its Content-Range announced`);
      }
      into.set(value, got);
      got += value.byteLength;
      attempt.progress(value.byteLength);
    }
  } finally {
    reader.releaseLock();
  }
}

async function fail(res: Response, error: SluiceError): Promise<never> {
  await discard(res);
  throw error;
}

// ---------------------------------------------------------------------------------------
// Small concurrency helpers

class Semaphore {
  private readonly waiters: (() => void)[] = [];
  constructor(private free: number) {}

  async acquire(): Promise<void> {
    if (this.free > 0) this.free--;
    else await new Promise<void>((resolve) => this.waiters.push(resolve));
  }

  /** Hands the permit straight to the next waiter, so `free` never over-counts. */
  release(): void {
    const next = this.waiters.shift();
    if (next) next();
    else this.free++;
  }
}

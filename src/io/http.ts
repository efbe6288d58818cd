// HTTP for everything that reads URLs (url-source.ts, download-cache.ts, a model's small
// files): requests that cannot hang, retries inside a time budget, and redirects that never
// carry the caller's headers to another origin. Browser-safe: only fetch, no node: imports.
//
// Why each bound (defaults in HTTP_DEFAULTS):
// - headersTimeoutMs: connecting plus the response headers. Without it we wait on
//   undici's own 300 s per attempt, ~20 minutes over four attempts.
// - minBytesPerSecond over stallWindowMs: a body that drips one byte a second never trips
//   an idle timer, so instead each window must bring `rate × window` bytes.
// - retryBudgetMs: all attempts, backoffs and Retry-After waits of one request fit in it,
//   so a server that stalls every attempt is given up on within the budget. A body still
//   arriving at the minimum rate or better is never cut by it: slow networks still work.
//
// Redirects: with `redirect: 'manual'` we follow them ourselves, so the caller's headers
// (an Authorization token) go only to the origin the caller named. A cross-origin hop (the
// Hub's resolve URL → its CDN) is followed without them; https → http is refused. Browsers
// hide manual redirects (an opaque response); there we let the browser follow, and the
// Fetch standard has it drop Authorization on a cross-origin redirect.

import { quote, SluiceError } from '../errors.js';

export interface HttpOptions {
  /** Extra request headers, e.g. `{ Authorization: 'Bearer hf_…' }`; sent only to the URL's own origin. */
  headers?: HeadersInit;
  /** fetch implementation; defaults to the global one (tests inject their own). */
  fetch?: typeof globalThis.fetch;
  /** Aborts the request (and, for a UrlSource, every later read) with the signal's reason. */
  signal?: AbortSignal;
  /** Retries after a network error, a stall, a 5xx or a 429 (default 3); other 4xx never retry. */
  retries?: number;
  /** First retry delay in ms, doubled each retry (default 200). */
  retryDelayMs?: number;
  /** Connecting and receiving the response headers, per attempt (default 30 000 ms). */
  headersTimeoutMs?: number;
  /** A body slower than this over a whole `stallWindowMs` is a stall (default 1024 bytes/s; 0: never). */
  minBytesPerSecond?: number;
  /** The window over which `minBytesPerSecond` is measured (default 20 000 ms). */
  stallWindowMs?: number;
  /** Every attempt and wait of one request together, unless its body is flowing (default 85 000 ms). */
  retryBudgetMs?: number;
}

/**
 * Every stall ends within the budget: 85 s, which leaves 5 s under the 90 s we promise
 * for late timers and a busy event loop. Worst cases: no headers ever: 30 + 30 + 25 s
 * (the third wait cut by the budget); a drip or a silent body: 4 × 20 s + backoff ≈ 81 s;
 * headers at 29 s and then a drip, every time: cut at 85 s. A 503 with Retry-After: 10 on
 * every attempt: 3 × 10 s = 30 s. (url-stall.test.ts runs these on fake timers.)
 */
export const HTTP_DEFAULTS = {
  retries: 3,
  retryDelayMs: 200,
  headersTimeoutMs: 30_000,
  // 20 KiB per 20 s window: a dial-up-speed body passes, a 1 byte/s drip fails.
  minBytesPerSecond: 1024,
  stallWindowMs: 20_000,
  retryBudgetMs: 85_000,
} as const;

// A server asking us to wait longer than this gets an error instead of a silent hang.
export const MAX_RETRY_AFTER_MS = 10_000;
const MAX_BACKOFF_MS = 10_000;
// The Hub takes two (a renamed repo, then the CDN); browsers allow twenty.
const MAX_REDIRECTS = 10;
// setTimeout's largest delay; longer ones fire at once.
const MAX_TIMER_MS = 2 ** 31 - 1;

export interface HttpSettings {
  headers: HeadersInit | undefined;
  fetch: typeof globalThis.fetch;
  retries: number;
  retryDelayMs: number;
  headersTimeoutMs: number;
  minBytesPerSecond: number;
  stallWindowMs: number;
  retryBudgetMs: number;
  /** Set once this fetch answered `redirect: 'manual'` opaquely (a browser): it follows itself. */
  browserRedirects: boolean;
}

export function httpSettings(o: HttpOptions): HttpSettings {
  const ms = (v: number | undefined, d: number) => (v === undefined || Number.isNaN(v) ? d : Math.max(0, v));
  return {
    headers: o.headers,
    fetch: o.fetch ?? globalThis.fetch.bind(globalThis),
    retries: Math.max(0, Math.floor(o.retries ?? HTTP_DEFAULTS.retries)),
    retryDelayMs: ms(o.retryDelayMs, HTTP_DEFAULTS.retryDelayMs),
    headersTimeoutMs: ms(o.headersTimeoutMs, HTTP_DEFAULTS.headersTimeoutMs),
    minBytesPerSecond: ms(o.minBytesPerSecond, HTTP_DEFAULTS.minBytesPerSecond),
    stallWindowMs: Math.max(1, ms(o.stallWindowMs, HTTP_DEFAULTS.stallWindowMs)),
    retryBudgetMs: ms(o.retryBudgetMs, HTTP_DEFAULTS.retryBudgetMs),
    browserRedirects: false,
  };
}

/** Thrown inside withRetries for a status worth retrying. */
export class RetryableStatus {
  constructor(
    readonly status: string,
    readonly afterMs: number | null,
  ) {}
}

/** Why the watchdog gave up on an attempt: retried like a network error. */
class Stall extends Error {}

/**
 * One attempt at a request: its own abort signal (tied to the caller's) and a watchdog
 * that aborts it when the headers are late or the body too slow. Body readers report
 * each chunk to `progress`.
 */
export class Attempt {
  /** Why the watchdog aborted this attempt; null while it has not. */
  stall: Stall | null = null;
  /** Set by a caller that reads the body after withRetries returns; it then calls end(). */
  detached = false;
  private readonly controller = new AbortController();
  private readonly unlink: () => void;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private deadlineTimer: ReturnType<typeof setTimeout> | undefined;
  private bodyStart = 0;
  private bodyBytes = 0;
  private windowBytes = 0;
  private over = false;

  constructor(
    private readonly s: HttpSettings,
    parent: AbortSignal | undefined,
    private readonly deadline: number,
  ) {
    this.unlink = link(parent, this.controller);
    const wait = Math.min(s.headersTimeoutMs, deadline - Date.now());
    this.timer = after(wait, () => this.give(`no response headers within ${seconds(wait)}`));
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /**
   * GET `url` with the caller's headers plus `own` (sluice's: Range, Accept-Encoding,
   * which survive redirects), following redirects as the file header explains.
   */
  async send(url: string, own: Record<string, string> = {}): Promise<Response> {
    let target = new URL(url);
    const origin = target.origin;
    // Once off the origin, never back with the caller's headers: a hop home was chosen by
    // another host. Ours (`own`) go everywhere.
    let credentialed = true;
    for (let hop = 0; ; hop++) {
      const headers = new Headers(credentialed ? this.s.headers : undefined);
      for (const [k, v] of Object.entries(own)) headers.set(k, v);
      const redirect = this.s.browserRedirects ? 'follow' : 'manual';
      const res = await this.s.fetch(target.href, { headers, signal: this.signal, redirect });
      if (res.type === 'opaqueredirect') {
        this.s.browserRedirects = true;
        continue;
      }
      const location = REDIRECTS.has(res.status) ? res.headers.get('location') : null;
      if (location === null) {
        this.bodyStarted();
        return res;
      }
      await discard(res);
      const next = parseUrl(location, target);
      const refuse = (why: string) => new SluiceError('HTTP_ERROR', `${url}: refusing a redirect to ${quote(location)}: ${why}`);
      if (hop >= MAX_REDIRECTS) throw new SluiceError('HTTP_ERROR', `${url}: more than ${MAX_REDIRECTS} redirects`);
      if (!next || (next.protocol !== 'https:' && next.protocol !== 'http:')) throw refuse('not an http(s) URL');
      if (target.protocol === 'https:' && next.protocol === 'http:') throw refuse('it leaves https for plain http');
      if (next.origin !== origin) credentialed = false;
      target = next;
    }
  }

  /** Counts body bytes for the rate check. */
  progress(bytes: number): void {
    this.bodyBytes += bytes;
    this.windowBytes += bytes;
  }

  /** Disarms the watchdog; the attempt's request may no longer be aborted by it. */
  end(): void {
    this.over = true;
    this.disarm();
    this.unlink();
  }

  private bodyStarted(): void {
    this.disarm();
    this.bodyStart = Date.now();
    if (this.s.minBytesPerSecond <= 0 || this.over) return;
    this.window();
    // Past the budget, a body is kept only while its average holds the minimum rate.
    this.deadlineTimer = after(this.deadline - Date.now(), () => {
      const elapsed = Date.now() - this.bodyStart;
      if (this.bodyBytes < (this.s.minBytesPerSecond * elapsed) / 1000) this.give(`transfer stalled: ${this.bodyBytes} bytes in ${seconds(elapsed)}`);
    });
  }

  private window(): void {
    this.windowBytes = 0;
    this.timer = after(this.s.stallWindowMs, () => {
      if (this.windowBytes < (this.s.minBytesPerSecond * this.s.stallWindowMs) / 1000) {
        this.give(`transfer stalled: ${this.windowBytes} bytes in ${seconds(this.s.stallWindowMs)}`);
      } else this.window();
    });
  }

  private give(why: string): void {
    if (this.over) return;
    this.disarm();
    this.stall = new Stall(why);
    this.controller.abort(this.stall);
  }

  private disarm(): void {
    clearTimeout(this.timer);
    clearTimeout(this.deadlineTimer);
  }
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

/**
 * Runs `task` with a fresh Attempt until it succeeds, retrying network errors, stalls and
 * RetryableStatus with exponential backoff, within `s.retries` and `s.retryBudgetMs`.
 * Errors are one line naming `name` (the URL).
 */
export async function withRetries<T>(name: string, s: HttpSettings, signal: AbortSignal | undefined, task: (a: Attempt) => Promise<T>): Promise<T> {
  const start = Date.now();
  const deadline = start + s.retryBudgetMs;
  for (let attempt = 0; ; attempt++) {
    const a = new Attempt(s, signal, deadline);
    let wait: number;
    try {
      return await task(a);
    } catch (e) {
      if (signal?.aborted) throw signal.reason;
      const error = a.stall ?? e;
      if (error instanceof SluiceError) throw error;
      const tries = `${attempt + 1} attempt${attempt ? 's' : ''}`;
      const code = error instanceof RetryableStatus ? 'HTTP_ERROR' : 'IO_ERROR';
      let what: string;
      wait = Math.min(MAX_BACKOFF_MS, s.retryDelayMs * 2 ** attempt * (1 + Math.random() / 4));
      if (error instanceof RetryableStatus) {
        what = error.status;
        if (error.afterMs !== null && error.afterMs > MAX_RETRY_AFTER_MS) {
          throw new SluiceError(code, `${name}: ${what}; the server asks to retry after ${Math.ceil(error.afterMs / 1000)} s`);
        }
        if (error.afterMs !== null) wait = error.afterMs;
      } else if (error instanceof Stall) {
        what = error.message;
      } else {
        const cause = (error as Error)?.cause as Error | undefined;
        what = `network error: ${[(error as Error)?.message ?? String(error), cause?.message].filter(Boolean).join(': ')}`;
      }
      if (attempt >= s.retries) throw new SluiceError(code, `${name}: ${what} (gave up after ${tries})`, { cause: e });
      if (Date.now() + wait >= deadline) {
        const asked = error instanceof RetryableStatus && error.afterMs !== null ? `; the server asks to retry after ${seconds(wait)}` : '';
        throw new SluiceError(code, `${name}: ${what}${asked} (gave up after ${tries} in ${seconds(Date.now() - start)}, the retry budget)`, { cause: e });
      }
    } finally {
      if (!a.detached) a.end();
    }
    await sleep(wait, signal);
  }
}

/** `HTTP 404 Not Found`. */
export function statusLine(res: Response): string {
  return `HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ''}`;
}

/** Retry-After as milliseconds (seconds or an HTTP date), or null when absent or bad. */
export function retryAfterMs(value: string | null): number | null {
  if (value === null) return null;
  const seconds = Number(value);
  if (value.trim() !== '' && Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? null : Math.max(0, date - Date.now());
}

/** Cancels a body we will not read (never drains it: that could be a whole model). */
export async function discard(res: Response): Promise<void> {
  await res.body?.cancel().catch(() => {});
}

/** Aborts `child` when `parent` aborts; returns the unlink. (AbortSignal.any is too new.) */
export function link(parent: AbortSignal | undefined, child: AbortController): () => void {
  if (!parent) return () => {};
  if (parent.aborted) {
    child.abort(parent.reason);
    return () => {};
  }
  const onAbort = () => child.abort(parent.reason);
  parent.addEventListener('abort', onAbort, { once: true });
  return () => parent.removeEventListener('abort', onAbort);
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** setTimeout that takes Infinity as never. */
function after(ms: number, fn: () => void): ReturnType<typeof setTimeout> | undefined {
  if (!Number.isFinite(ms)) return undefined;
  return setTimeout(fn, Math.min(MAX_TIMER_MS, Math.max(0, ms)));
}

/** 30000 → "30 s", 1500 → "1.5 s". */
export function seconds(ms: number): string {
  return `${+(Math.max(0, ms) / 1000).toFixed(1)} s`;
}

function parseUrl(location: string, base: URL): URL | null {
  try {
    return new URL(location, base);
  } catch {
    return null;
  }
}

/**
 * A fetch for code that calls fetch itself (the Hub library): the same header timeout and
 * minimum transfer rate as our own requests, without retries (the caller has its own).
 * A stall rejects the request, or errors its body, with one line naming the URL.
 */
export function watchedFetch(inner: typeof globalThis.fetch, options: HttpOptions = {}): typeof globalThis.fetch {
  const s = httpSettings(options);
  return async (input, init) => {
    const url = input instanceof Request ? input.url : String(input);
    const controller = new AbortController();
    const unlink = link(init?.signal ?? undefined, controller);
    let stall: SluiceError | null = null;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const arm = (ms: number, fn: () => void) => {
      timer = after(ms, fn);
      // A watchdog must not keep a finished CLI alive (Node), nor exist at all past the body.
      (timer as { unref?: () => void } | undefined)?.unref?.();
    };
    const give = (why: string) => {
      stall = new SluiceError('IO_ERROR', `${url}: ${why}`);
      controller.abort(stall);
    };
    const done = () => {
      clearTimeout(timer);
      unlink();
    };
    arm(s.headersTimeoutMs, () => give(`no response headers within ${seconds(s.headersTimeoutMs)}`));
    let res: Response;
    try {
      res = await inner(input, { ...init, signal: controller.signal });
    } catch (e) {
      done();
      throw stall ?? e;
    }
    clearTimeout(timer);
    if (!res.body || s.minBytesPerSecond <= 0) {
      unlink();
      return res;
    }
    let windowBytes = 0;
    const window = () =>
      arm(s.stallWindowMs, () => {
        if (windowBytes < (s.minBytesPerSecond * s.stallWindowMs) / 1000) give(`transfer stalled: ${windowBytes} bytes in ${seconds(s.stallWindowMs)}`);
        else (windowBytes = 0), window();
      });
    window();
    const reader = res.body.getReader();
    const body = new ReadableStream<Uint8Array>({
      async pull(out) {
        try {
          const { done: end, value } = await reader.read();
          if (end) {
            done();
            out.close();
            return;
          }
          windowBytes += value.byteLength;
          out.enqueue(value);
        } catch (e) {
          done();
          out.error(stall ?? e);
        }
      },
      cancel(reason) {
        done();
        return reader.cancel(reason);
      },
    });
    const watched = new Response(body, { status: res.status, statusText: res.statusText, headers: res.headers });
    // Callers read where a redirect led (the Hub library does).
    Object.defineProperty(watched, 'url', { value: res.url });
    Object.defineProperty(watched, 'redirected', { value: res.redirected });
    return watched;
  };
}

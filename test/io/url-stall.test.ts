// Step 11, servers that stall: no headers, headers and then silence, a body that drips a
// byte at a time, Retry-After. Each must end with a one-line error naming the URL, within
// the retry budget. Real servers with small overridden limits keep these fast; the last
// block runs the defaults on fake timers, so the 90 s bound is checked without waiting.
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { isSluiceError } from '../../src/errors.js';
import { cachedFetch, fetchText } from '../../src/io/download-cache.js';
import { HTTP_DEFAULTS } from '../../src/io/http.js';
import { UrlSource, type UrlSourceOptions } from '../../src/io/url-source.js';
import { patternBytes, TestServer } from '../support/http-server.js';
import { MemoryCache } from '../support/memory-cache.js';

const big = patternBytes(300 * 1024, 7);
const tiny = patternBytes(60, 2);
// Small limits: a 200 ms header wait, and at least 1 KiB/s over 300 ms windows.
const quick: UrlSourceOptions = { headersTimeoutMs: 200, minBytesPerSecond: 1024, stallWindowMs: 300, retries: 1, retryDelayMs: 1 };

let server: TestServer;
beforeAll(async () => {
  server = await TestServer.start({ '/m/big.bin': big, '/m/tiny.bin': tiny, '/m/config.json': tiny });
});
afterAll(() => server.close());
beforeEach(() => {
  server.options = {};
  server.resetStats();
});

/** The error `run()` rejects with and how long that took; fails the test if it resolves. */
async function timed(run: () => Promise<unknown>): Promise<{ error: Error; ms: number }> {
  const t0 = performance.now();
  const error = await run().then(
    () => null,
    (e: unknown) => e as Error,
  );
  expect(error, 'should have failed').toBeInstanceOf(Error);
  const ms = performance.now() - t0;
  expect(error!.message).not.toContain('\n');
  return { error: error!, ms };
}

describe('stalls end, with one line naming the URL', () => {
  it('no response headers: each attempt waits headersTimeoutMs, then gives up', async () => {
    server.options = { hang: 'headers' };
    const url = server.url('/m/big.bin');
    const { error, ms } = await timed(() => UrlSource.open(url, quick));
    expect(isSluiceError(error, 'IO_ERROR')).toBe(true);
    expect(error.message).toBe(`${url}: no response headers within 0.2 s (gave up after 2 attempts)`);
    expect(ms).toBeGreaterThanOrEqual(390);
    expect(ms).toBeLessThan(2000);
    // The client made 2 attempts (its message says so); the server sees a request only once
    // it has parsed it, which a loaded machine may not do before the client gives up.
    expect(server.requests.length).toBeGreaterThanOrEqual(1);
    expect(server.requests.length).toBeLessThanOrEqual(2);
    await server.idle(); // the client hung up both times
  });

  it('headers, then a body that never comes', async () => {
    server.options = { hang: 'body' };
    const url = server.url('/m/big.bin');
    const { error, ms } = await timed(() => UrlSource.open(url, quick));
    expect(error.message).toBe(`${url}: transfer stalled: 0 bytes in 0.3 s (gave up after 2 attempts)`);
    expect(ms).toBeLessThan(2000);
    await server.idle();
  });

  it('a body dripping a byte at a time (never idle, far below the minimum rate)', async () => {
    server.options = { dripMs: 20 };
    const url = server.url('/m/big.bin');
    const { error, ms } = await timed(() => UrlSource.open(url, quick));
    expect(error.message).toMatch(new RegExp(`^${url}: transfer stalled: \\d{1,2} bytes in 0.3 s \\(gave up after 2 attempts\\)$`));
    expect(ms).toBeLessThan(2000);
    await server.idle();
  });

  it('a stall in a read after open, too', async () => {
    const src = await UrlSource.open(server.url('/m/big.bin'), quick);
    server.options = { dripMs: 20 };
    const { error, ms } = await timed(() => src.read(100 * 1024, 50 * 1024));
    expect(error.message).toMatch(/big\.bin: transfer stalled: \d+ bytes in 0.3 s/);
    expect(ms).toBeLessThan(2000);
    await src.close();
    await server.idle();
  });

  it('the retry budget ends the attempts, however many retries are allowed', async () => {
    server.options = { hang: 'headers' };
    const { error, ms } = await timed(() => UrlSource.open(server.url('/m/big.bin'), { ...quick, retries: 100, retryBudgetMs: 500 }));
    expect(error.message).toMatch(/no response headers within 0\.\d s \(gave up after [23] attempts in 0\.[56] s, the retry budget\)$/);
    expect(ms).toBeLessThan(1000);
  });

  it('a Retry-After past the budget is not waited for', async () => {
    server.options = { failFirst: 100, retryAfter: '2' };
    const { error, ms } = await timed(() => UrlSource.open(server.url('/m/big.bin'), { ...quick, retryBudgetMs: 1000 }));
    expect(error.message).toMatch(/HTTP 503 Service Unavailable; the server asks to retry after 2 s \(gave up after 1 attempt in 0 s, the retry budget\)$/);
    expect(ms).toBeLessThan(500);
    expect(server.requests).toHaveLength(1);
  });

  it('a slow body at or above the minimum rate is not cut by the budget', async () => {
    server.options = { dripMs: 10 }; // ~60 bytes/s against a minimum of 10
    const src = await UrlSource.open(server.url('/m/tiny.bin'), { ...quick, minBytesPerSecond: 10, retryBudgetMs: 200 });
    expect(await src.read(0, tiny.length)).toEqual(tiny);
  });

  it('cachedFetch: a stalled request or download fails and caches nothing', async () => {
    const cache = new MemoryCache();
    const url = server.url('/m/big.bin');
    server.options = { hang: 'headers' };
    expect((await timed(() => cachedFetch(url, cache, quick))).error.message).toBe(`${url}: no response headers within 0.2 s (gave up after 2 attempts)`);
    server.options = { dripMs: 20 };
    const { error, ms } = await timed(() => cachedFetch(url, cache, quick));
    expect(error.message).toMatch(new RegExp(`^${url}: download into the cache failed after \\d+ bytes: transfer stalled: \\d+ bytes in 0.3 s$`));
    expect(ms).toBeLessThan(2000);
    expect(cache.entries.size).toBe(0);
    await server.idle();
  });

  it('fetchText (a model\u2019s small files): stalls end too', async () => {
    const url = server.url('/m/config.json');
    server.options = { hang: 'body' };
    expect((await timed(() => fetchText(url, quick))).error.message).toBe(`${url}: transfer stalled: 0 bytes in 0.3 s (gave up after 2 attempts)`);
    server.options = {};
    expect(await fetchText(url, quick)).toBe(new TextDecoder().decode(tiny));
  });

  it('the caller\u2019s abort still wins during a stall', async () => {
    server.options = { hang: 'headers' };
    const ctl = new AbortController();
    setTimeout(() => ctl.abort(new Error('stop')), 50);
    const { error, ms } = await timed(() => UrlSource.open(server.url('/m/big.bin'), { signal: ctl.signal }));
    expect(error.message).toBe('stop');
    expect(ms).toBeLessThan(1000);
  });
});

describe('the defaults end every stall within 90 s (fake timers, no waiting)', () => {
  const url = 'https://stall.invalid/m.bin';
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  /** A fetch whose request fails only by its abort, as a real one does. */
  const aborting = (init: RequestInit | undefined, reject: (e: unknown) => void) =>
    init?.signal?.addEventListener('abort', () => reject(init.signal!.reason), { once: true });

  /** A 206 after `headersAfterMs`, whose body sends a byte every `everyMs` of fake time (never, when null). */
  function trickle(everyMs: number | null, headersAfterMs = 0): typeof fetch {
    return async (_input, init) => {
      await new Promise((resolve, reject) => {
        setTimeout(resolve, headersAfterMs);
        aborting(init, reject);
      });
      let timer: ReturnType<typeof setTimeout> | undefined;
      const body = new ReadableStream<Uint8Array>({
        start(c) {
          aborting(init, (e) => {
            clearTimeout(timer);
            c.error(e);
          });
          const tick = () => {
            c.enqueue(new Uint8Array(1));
            timer = setTimeout(tick, everyMs!);
          };
          if (everyMs !== null) timer = setTimeout(tick, everyMs);
        },
        cancel: () => clearTimeout(timer),
      });
      return new Response(body, { status: 206, headers: { 'content-range': 'bytes 0-65535/1000000' } });
    };
  }

  /** Runs `open` on fake time for up to 120 s; returns when it failed (ms) and how. */
  async function failsAt(fetchImpl: typeof fetch): Promise<{ ms: number; message: string }> {
    const t0 = Date.now();
    let outcome: { ms: number; message: string } | null = null;
    void UrlSource.open(url, { fetch: fetchImpl }).then(
      () => (outcome = { ms: Date.now() - t0, message: 'resolved' }),
      (e: Error) => (outcome = { ms: Date.now() - t0, message: e.message }),
    );
    for (let t = 0; t < 120_000 && !outcome; t += 500) await vi.advanceTimersByTimeAsync(500);
    expect(outcome, 'still pending after 120 s').not.toBeNull();
    return outcome!;
  }

  it('the numbers: headers ≤ budget ≤ 90 s with room for late timers, and a 1 byte/s drip is under the rate', () => {
    expect(HTTP_DEFAULTS.retryBudgetMs).toBeLessThanOrEqual(85_000);
    expect(HTTP_DEFAULTS.headersTimeoutMs).toBeLessThanOrEqual(HTTP_DEFAULTS.retryBudgetMs);
    expect(HTTP_DEFAULTS.stallWindowMs).toBeLessThan(HTTP_DEFAULTS.retryBudgetMs);
    expect(HTTP_DEFAULTS.minBytesPerSecond).toBeGreaterThan(1);
  });

  it('no headers ever: 30 + 30 s waits and a third cut at the budget: 85 s', async () => {
    const never: typeof fetch = (_input, init) => new Promise((_resolve, reject) => aborting(init, reject));
    const { ms, message } = await failsAt(never);
    expect(message).toMatch(/^https:\/\/stall\.invalid\/m\.bin: no response headers within \d+(\.\d)? s \(gave up after 3 attempts in 85 s, the retry budget\)$/);
    expect(ms).toBeGreaterThan(84_000);
    expect(ms).toBeLessThanOrEqual(85_000);
  });

  it('one byte a second: four 20 s windows, ≈ 81 s', async () => {
    const { ms, message } = await failsAt(trickle(1000));
    // 19 or 20: whether the window's timer or the 20th byte's fires first at 20 s.
    expect(message).toMatch(/^https:\/\/stall\.invalid\/m\.bin: transfer stalled: (19|20) bytes in 20 s \(gave up after 4 attempts\)$/);
    expect(ms).toBeGreaterThan(80_000);
    expect(ms).toBeLessThanOrEqual(90_000);
  });

  it('headers just inside 30 s and then a drip, every time: cut at the budget, 85 s', async () => {
    const { ms, message } = await failsAt(trickle(1000, 29_000));
    expect(message).toMatch(/^https:\/\/stall\.invalid\/m\.bin: transfer stalled: \d+ bytes in \d+(\.\d)? s \(gave up after 2 attempts in 85 s, the retry budget\)$/);
    expect(ms).toBeGreaterThan(84_000);
    expect(ms).toBeLessThanOrEqual(85_000);
  });

  it('headers and then silence, ≈ 81 s', async () => {
    const { ms, message } = await failsAt(trickle(null));
    expect(message).toBe(`${url}: transfer stalled: 0 bytes in 20 s (gave up after 4 attempts)`);
    expect(ms).toBeGreaterThan(80_000);
    expect(ms).toBeLessThanOrEqual(90_000);
  });

  it('503 with Retry-After: 10 every time: 30 s', async () => {
    const busy: typeof fetch = async () => new Response(null, { status: 503, statusText: 'Service Unavailable', headers: { 'retry-after': '10' } });
    const { ms, message } = await failsAt(busy);
    expect(message).toBe(`${url}: HTTP 503 Service Unavailable (gave up after 4 attempts)`);
    expect(ms).toBeGreaterThanOrEqual(30_000);
    expect(ms).toBeLessThanOrEqual(31_000);
  });
});

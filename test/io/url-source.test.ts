import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { isSluiceError, type ErrorCode } from '../../src/errors.js';
import { UrlSource, urlOpener, urlSibling } from '../../src/io/url-source.js';
import { patternBytes, TestServer } from '../support/http-server.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const big = patternBytes(300 * KiB, 7); // header-and-data sized: bigger than the 64 KiB prefetch
const small = patternBytes(1000, 3); // smaller than the prefetch
const huge = new Uint8Array(64 * MiB); // zeros: only for the server that ignores Range
const fast = { retryDelayMs: 1 }; // keeps retry tests quick; the 200 ms default is for real servers

/** Byte equality without vitest's element-by-element diff, which takes ~0.5 s per 300 KiB. */
function expectBytes(actual: Uint8Array, expected: Uint8Array): void {
  expect(actual.length).toBe(expected.length);
  const at = actual.findIndex((b, i) => b !== expected[i]);
  expect(at, 'first differing byte').toBe(-1);
}

async function codeOf(p: Promise<unknown>): Promise<ErrorCode | string> {
  try {
    await p;
    return 'resolved';
  } catch (e) {
    return isSluiceError(e) ? e.code : String(e);
  }
}

let server: TestServer;
beforeAll(async () => {
  server = await TestServer.start({ '/m/big.bin': big, '/m/small.bin': small, '/m/empty.bin': new Uint8Array(0) }, { etag: true });
});
afterAll(() => server.close());
beforeEach(() => {
  server.options = { etag: true };
  server.set('/m/big.bin', big);
  server.resetStats();
});

describe('UrlSource: opening', () => {
  it('learns the size from the one prefetch request', async () => {
    const src = await UrlSource.open(server.url('/m/big.bin'));
    expect(src.size).toBe(big.length);
    expect(src.name).toBe(server.url('/m/big.bin'));
    expect(server.requests.map((r) => r.range)).toEqual(['bytes=0-65535']);
    await src.close();
  });

  it('opens a file smaller than the prefetch and then never asks again', async () => {
    const src = await UrlSource.open(server.url('/m/small.bin'));
    expect(src.size).toBe(1000);
    expect(await src.read(0, 1000)).toEqual(small);
    expect(await src.read(990, 10)).toEqual(small.subarray(990));
    expect(server.requests).toHaveLength(1);
  });

  it('opens an empty file (416 bytes */0) as size 0', async () => {
    const src = await UrlSource.open(server.url('/m/empty.bin'));
    expect(src.size).toBe(0);
    expect(await src.read(0, 0)).toEqual(new Uint8Array(0));
    expect(await codeOf(src.read(0, 1))).toBe('IO_ERROR');
    expect(server.requests).toHaveLength(1);
  });

  it('sends the headers option (e.g. Authorization) and uses an injected fetch', async () => {
    let calls = 0;
    const counting: typeof fetch = (input, init) => {
      calls++;
      return fetch(input, init);
    };
    const src = await UrlSource.open(server.url('/m/big.bin'), { headers: { Authorization: 'Bearer t0k' }, fetch: counting });
    await src.read(100 * KiB, 10);
    expect(calls).toBe(2);
    expect(server.requests.map((r) => r.headers.authorization)).toEqual(['Bearer t0k', 'Bearer t0k']);
  });
});

describe('UrlSource: reading', () => {
  it('serves reads inside the prefetch from memory, without a request', async () => {
    const src = await UrlSource.open(server.url('/m/big.bin'));
    expect(await src.read(0, 8)).toEqual(big.subarray(0, 8));
    expect(await src.read(1000, 64 * KiB - 1000)).toEqual(big.subarray(1000, 64 * KiB));
    expect(await src.read(5, 0)).toEqual(new Uint8Array(0));
    expect(server.requests).toHaveLength(1);
  });

  it('returns copies: writing into a result does not corrupt later reads', async () => {
    const src = await UrlSource.open(server.url('/m/big.bin'));
    (await src.read(0, 16)).fill(0);
    expect(await src.read(0, 16)).toEqual(big.subarray(0, 16));
  });

  it('reads across the prefetch boundary with one request for the missing part', async () => {
    const src = await UrlSource.open(server.url('/m/big.bin'));
    expect(await src.read(65000, 2000)).toEqual(big.subarray(65000, 67000));
    expect(server.requests.map((r) => r.range)).toEqual(['bytes=0-65535', 'bytes=65536-66999']);
  });

  it('splits a big read into chunkSize ranges, at most `concurrency` in flight', async () => {
    const src = await UrlSource.open(server.url('/m/big.bin'), { chunkSize: 64 * KiB, concurrency: 2 });
    server.resetStats();
    server.options.delayMs = 30;
    expectBytes(await src.read(0, big.length), big);
    // (300 − 64) KiB past the prefetch → 4 chunks of 64 KiB + 1 of 44 KiB
    expect(server.requests.map((r) => r.range).sort()).toEqual(
      ['bytes=65536-131071', 'bytes=131072-196607', 'bytes=196608-262143', 'bytes=262144-307199'].sort(),
    );
    expect(server.maxInFlight).toBe(2);
  });

  it('throws on reads outside the file, and on reads after close', async () => {
    const src = await UrlSource.open(server.url('/m/big.bin'));
    expect(await codeOf(src.read(big.length - 1, 2))).toBe('IO_ERROR');
    expect(await codeOf(src.read(-1, 1))).toBe('IO_ERROR');
    await src.close();
    expect(await codeOf(src.read(0, 1))).toBe('IO_ERROR');
    expect(await codeOf(src.read(100 * KiB, 1))).toBe('IO_ERROR');
    expect(server.requests).toHaveLength(1);
  });

  it('stops when the caller aborts', async () => {
    const ctl = new AbortController();
    const src = await UrlSource.open(server.url('/m/big.bin'), { signal: ctl.signal });
    ctl.abort(new Error('stop'));
    await expect(src.read(100 * KiB, 10)).rejects.toThrow('stop');
  });
});

describe('UrlSource: server errors', () => {
  it('refuses a server that ignores Range, without downloading the whole body', async () => {
    const plain = await TestServer.start({ '/huge.bin': huge }, { ranges: false });
    try {
      const err = await UrlSource.open(plain.url('/huge.bin')).catch((e: unknown) => e);
      expect(isSluiceError(err, 'RANGE_NOT_SUPPORTED')).toBe(true);
      expect((err as Error).message).toContain(plain.url('/huge.bin'));
      await plain.idle(); // the server saw the client hang up
      expect(plain.requests[0].status).toBe(200);
      expect(plain.requests[0].bytesSent).toBeLessThan(huge.length / 2);
    } finally {
      await plain.close();
    }
  });

  it('maps 404 to NOT_FOUND without retrying', async () => {
    expect(await codeOf(UrlSource.open(server.url('/m/missing.bin'), fast))).toBe('NOT_FOUND');
    expect(server.requests).toHaveLength(1);
  });

  it('maps 401/403 to HTTP_ERROR that tells how to authenticate, without retrying', async () => {
    server.options.status = { '/m/big.bin': 403 };
    const err = await UrlSource.open(server.url('/m/big.bin'), fast).catch((e: unknown) => e);
    expect(isSluiceError(err, 'HTTP_ERROR')).toBe(true);
    expect((err as Error).message).toMatch(/access denied.*HF_TOKEN.*headers/);
    expect(server.requests).toHaveLength(1);
  });

  it('maps other 4xx to HTTP_ERROR with the status', async () => {
    server.options.status = { '/m/big.bin': 418 };
    await expect(UrlSource.open(server.url('/m/big.bin'), fast)).rejects.toThrow(/HTTP 418/);
  });

  it('retries 503 with backoff and then succeeds', async () => {
    server.options.failFirst = 2;
    const src = await UrlSource.open(server.url('/m/big.bin'), fast);
    expect(src.size).toBe(big.length);
    expect(server.requests.map((r) => r.status)).toEqual([503, 503, 206]);
  });

  it('retries a failed chunk of a read, and honours a small Retry-After', async () => {
    const src = await UrlSource.open(server.url('/m/big.bin'), fast);
    server.options = { etag: true, failFirst: 2, failStatus: 429, retryAfter: '0' };
    expect(await src.read(70 * KiB, 1000)).toEqual(big.subarray(70 * KiB, 70 * KiB + 1000));
    expect(server.requests.map((r) => r.status)).toEqual([206, 429, 206]);
  });

  it('gives up after `retries` and reports the status', async () => {
    server.options.failFirst = 100;
    const err = await UrlSource.open(server.url('/m/big.bin'), { ...fast, retries: 2 }).catch((e: unknown) => e);
    expect(isSluiceError(err, 'HTTP_ERROR')).toBe(true);
    expect((err as Error).message).toMatch(/HTTP 503.*3 attempts/);
    expect(server.requests).toHaveLength(3);
  });

  it('does not sit out a long Retry-After', async () => {
    server.options = { failFirst: 100, retryAfter: '3600' };
    await expect(UrlSource.open(server.url('/m/big.bin'), fast)).rejects.toThrow(/retry after 3600 s/);
    expect(server.requests).toHaveLength(1);
  });

  it('reports a network error after retrying', async () => {
    const gone = await TestServer.start({});
    const url = gone.url('/x.bin');
    await gone.close();
    expect(await codeOf(UrlSource.open(url, { ...fast, retries: 1 }))).toBe('IO_ERROR');
  });
});

describe('UrlSource: a file that changes', () => {
  it('throws SOURCE_CHANGED when the ETag changes between requests', async () => {
    const src = await UrlSource.open(server.url('/m/big.bin'));
    server.set('/m/big.bin', patternBytes(big.length, 99)); // same size, new content
    const err = await src.read(100 * KiB, 10).catch((e: unknown) => e);
    expect(isSluiceError(err, 'SOURCE_CHANGED')).toBe(true);
    expect((err as Error).message).toContain(`the file at ${server.url('/m/big.bin')} changed while reading`);
  });

  it('throws SOURCE_CHANGED when the size changes (no ETag)', async () => {
    server.options = { etag: false };
    const src = await UrlSource.open(server.url('/m/big.bin'));
    server.set('/m/big.bin', patternBytes(big.length + 1, 7));
    expect(await codeOf(src.read(100 * KiB, 10))).toBe('SOURCE_CHANGED');
  });

  it('throws SOURCE_CHANGED when the file shrank below the read (416)', async () => {
    server.options = { etag: false };
    const src = await UrlSource.open(server.url('/m/big.bin'));
    server.set('/m/big.bin', big.subarray(0, 100 * KiB));
    expect(await codeOf(src.read(200 * KiB, 10))).toBe('SOURCE_CHANGED');
  });

  it('throws SOURCE_CHANGED when a body is shorter than its range', async () => {
    const src = await UrlSource.open(server.url('/m/big.bin'));
    server.options.shortBy = 5;
    expect(await codeOf(src.read(100 * KiB, 1000))).toBe('SOURCE_CHANGED');
  });

  it('notices a change made mid-read, between chunk requests', async () => {
    const src = await UrlSource.open(server.url('/m/big.bin'), { chunkSize: 32 * KiB, concurrency: 1 });
    server.options.beforeServe = (req, s) => {
      if (req.range === 'bytes=131072-163839') s.set('/m/big.bin', patternBytes(big.length, 5));
    };
    expect(await codeOf(src.read(64 * KiB, 200 * KiB))).toBe('SOURCE_CHANGED');
  });
});

describe('UrlSource: odd responses (injected fetch)', () => {
  const url = 'https://cdn.example/m.bin';
  const reply = (status: number, headers: Record<string, string>, body: BodyInit | null = null): typeof fetch =>
    async () => new Response(body, { status, headers });

  it('takes an empty 200 as an empty file', async () => {
    const src = await UrlSource.open(url, { fetch: reply(200, { 'content-length': '0' }) });
    expect(src.size).toBe(0);
  });

  it('explains a 206 without a readable Content-Range (CORS)', async () => {
    await expect(UrlSource.open(url, { fetch: reply(206, {}, 'abc') })).rejects.toThrow(/Access-Control-Expose-Headers/);
  });

  it('refuses a compressed range response', async () => {
    const gz = reply(206, { 'content-range': 'bytes 0-2/3', 'content-encoding': 'gzip' }, 'abc');
    await expect(UrlSource.open(url, { fetch: gz })).rejects.toThrow(/compressed/);
  });

  it('retries a body that breaks off mid-stream', async () => {
    let calls = 0;
    const flaky: typeof fetch = async (input, init) => {
      if (++calls > 1) return fetch(input, init);
      const body = new ReadableStream<Uint8Array>({
        start(c) {
          c.enqueue(new Uint8Array(10));
          c.error(new TypeError('terminated'));
        },
      });
      return new Response(body, { status: 206, headers: { 'content-range': `bytes 0-65535/${big.length}` } });
    };
    const src = await UrlSource.open(server.url('/m/big.bin'), { ...fast, fetch: flaky });
    expect(calls).toBe(2);
    expect(await src.read(0, 100)).toEqual(big.subarray(0, 100));
  });
});

describe('urlSibling / openSibling', () => {
  it('resolves names next to the URL', () => {
    const base = 'https://huggingface.co/org/m/resolve/main/model.safetensors.index.json';
    expect(urlSibling(base, 'model-00001-of-00002.safetensors')).toBe('https://huggingface.co/org/m/resolve/main/model-00001-of-00002.safetensors');
    expect(urlSibling(base, 'sub/x.bin')).toBe('https://huggingface.co/org/m/resolve/main/sub/x.bin');
  });

  it.each(['../x', 'a/../../x', 'a/..', '..', '%2e%2e/x', '.%2E/x', '..\\x', '/abs', '//evil.example/x', 'https://evil.example/x', 'file:x', ''])(
    'refuses %j',
    (name) => {
      expect(() => urlSibling('https://h.example/a/b/index.json', name)).toThrow(/refusing sibling name/);
    },
  );

  it('opens a sibling with the same options', async () => {
    const src = await UrlSource.open(server.url('/m/big.bin'), { headers: { authorization: 'Bearer s' } });
    const sib = await src.openSibling('small.bin');
    expect(sib.size).toBe(small.length);
    const opened = await urlOpener(server.url('/m/big.bin'))('small.bin');
    expect(await opened.read(0, 4)).toEqual(small.subarray(0, 4));
    expect(server.requests[1].headers.authorization).toBe('Bearer s');
  });
});

// watchedFetch: the Hub library's requests (sluice pull) get the same stall limits as URL
// sources: no headers within the timeout, or a body below the minimum rate over a window,
// fail with one line naming the URL; a healthy response passes through untouched.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isSluiceError } from '../../src/errors.js';
import { watchedFetch } from '../../src/io/http.js';
import { TestServer } from '../support/http-server.js';

let server: TestServer;
const body = new Uint8Array(4096).map((_, i) => i & 255);
beforeAll(async () => (server = await TestServer.start({ '/f.bin': body })));
afterAll(() => server.close());

const limits = { headersTimeoutMs: 200, stallWindowMs: 200, minBytesPerSecond: 1000 };

describe('watchedFetch', () => {
  it('passes a healthy response through: status, headers, url and bytes', async () => {
    server.options = {};
    const res = await watchedFetch(fetch, limits)(server.url('/f.bin'));
    expect([res.status, res.url, res.headers.get('content-length')]).toEqual([200, server.url('/f.bin'), '4096']);
    expect(new Uint8Array(await res.arrayBuffer())).toEqual(body);
  });

  it('no response headers: rejects after headersTimeoutMs, naming the URL', async () => {
    server.options = { hang: 'headers' };
    const started = Date.now();
    const error = await watchedFetch(fetch, limits)(server.url('/f.bin')).then(() => null, (e: unknown) => e);
    expect(isSluiceError(error, 'IO_ERROR')).toBe(true);
    expect((error as Error).message).toBe(`${server.url('/f.bin')}: no response headers within 0.2 s`);
    expect(Date.now() - started).toBeLessThan(2000);
    await server.idle();
  });

  it('a drip below the minimum rate errors the body', async () => {
    server.options = { dripMs: 50 }; // 20 bytes/s against 1000
    const res = await watchedFetch(fetch, limits)(server.url('/f.bin'));
    const error = await res.arrayBuffer().then(() => null, (e: unknown) => e);
    expect((error as Error).message).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/f\.bin: transfer stalled: \d bytes in 0\.2 s$/);
    await server.idle();
  });
});

// cachedFetch: a miss downloads through the cache with progress, a hit needs no request,
// and nothing broken is ever left in the cache to be served later as the file.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { cachedFetch } from '../../src/io/download-cache.js';
import { TestServer } from '../support/http-server.js';
import { MemoryCache } from '../support/memory-cache.js';
import { mulberry32 } from '../support/safetensors-bytes.js';

function randomBytes(n: number, seed: number): Uint8Array {
  const next = mulberry32(seed);
  return Uint8Array.from({ length: n }, () => Math.floor(next() * 256));
}

const body = randomBytes(300_000, 7);
let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

describe('cachedFetch', () => {
  it('a miss downloads into the cache with progress; the next call is a hit with no request', async () => {
    server = await TestServer.start({ '/m/model.safetensors': body });
    const cache = new MemoryCache();
    const url = server.url('/m/model.safetensors');
    const seen: [number, number, boolean][] = [];
    const res = await cachedFetch(url, cache, { onProgress: (d, t, c) => seen.push([d, t, c]) });
    expect(new Uint8Array(await res!.arrayBuffer())).toEqual(body);
    expect(seen[0]).toEqual([0, body.length, false]);
    expect(seen.at(-1)).toEqual([body.length, body.length, false]);
    expect(seen.every(([d], i) => i === 0 || d >= seen[i - 1][0])).toBe(true);
    expect(server.requests).toHaveLength(1);

    const hits: [number, number, boolean][] = [];
    const again = await cachedFetch(url, cache, { onProgress: (d, t, c) => hits.push([d, t, c]) });
    expect(new Uint8Array(await again!.arrayBuffer())).toEqual(body);
    expect(hits).toEqual([[body.length, body.length, true]]);
    expect(server.requests).toHaveLength(1);
  });

  it('404 is null, remembered without a body; other statuses are HTTP_ERROR naming the URL, cached never', async () => {
    server = await TestServer.start({ '/m/a.json': new Uint8Array([123, 125]) }, { status: { '/m/gone.json': 500 } });
    const cache = new MemoryCache();
    expect(await cachedFetch(server.url('/m/none.json'), cache)).toBeNull();
    expect(await cachedFetch(server.url('/m/none.json'), cache)).toBeNull();
    expect(server.requests.filter((r) => r.path === '/m/none.json')).toHaveLength(1);
    await expect(cachedFetch(server.url('/m/gone.json'), cache, { retryDelayMs: 1 })).rejects.toThrow(/\/m\/gone\.json: HTTP 500 Internal Server Error \(gave up after 4 attempts\)/);
    expect(server.requests.filter((r) => r.path === '/m/gone.json')).toHaveLength(4);
    expect([...cache.entries.keys()]).toEqual([server.url('/m/none.json')]);
  });

  it('a download cut off midway is an error and leaves nothing cached', async () => {
    // The server promises the whole body, sends part of it and drops the connection.
    const cut = createServer((_req, res) => {
      res.writeHead(200, { 'content-length': String(body.length) });
      res.write(body.subarray(0, 100_000), () => res.socket?.destroy());
    });
    await new Promise<void>((resolve) => cut.listen(0, '127.0.0.1', resolve));
    try {
      const cache = new MemoryCache();
      const url = `http://127.0.0.1:${(cut.address() as AddressInfo).port}/m/w.bin`;
      await expect(cachedFetch(url, cache)).rejects.toThrow(/\/m\/w\.bin: download into the cache failed after 100000 bytes/);
      expect(cache.entries.size).toBe(0);
    } finally {
      cut.closeAllConnections();
      await new Promise((resolve) => cut.close(resolve));
    }
  });

  it('an aborted download rejects with the abort and leaves nothing cached', async () => {
    server = await TestServer.start({ '/m/w.bin': body }, { delayMs: 200 });
    const cache = new MemoryCache();
    const controller = new AbortController();
    const pending = cachedFetch(server.url('/m/w.bin'), cache, { signal: controller.signal });
    controller.abort();
    await expect(pending).rejects.toThrow(/abort/i);
    expect(cache.entries.size).toBe(0);
  });
});

// Step 11, hostile URLs: shard names that leave the index's folder or host once the URL
// parser has had its way with them, and redirects that would carry the caller's token to
// another origin. Every server here listens on loopback (127.0.0.1, and 127.0.0.2 as "the
// other host"); every request loop is bounded.
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { openCheckpointUrl } from '../../src/checkpoint/open.js';
import { isSluiceError } from '../../src/errors.js';
import { cachedFetch, fetchText } from '../../src/io/download-cache.js';
import { UrlSource, urlOpener, urlSibling } from '../../src/io/url-source.js';
import { patternBytes } from '../support/http-server.js';
import { MemoryCache } from '../support/memory-cache.js';

const body = patternBytes(1000, 5);
const auth = { Authorization: 'Bearer SECRET', 'X-Api-Key': 'KEY' };

interface Seen {
  path: string;
  headers: IncomingHttpHeaders;
}

/** A loopback server: `route` answers a path with a redirect target, else the body (ranges honoured). */
class Host {
  readonly seen: Seen[] = [];
  route: (path: string) => string | null = () => null;
  origin = '';
  private constructor(private readonly server: Server) {}

  static async start(address: '127.0.0.1' | '127.0.0.2'): Promise<Host> {
    const server = createServer();
    const host = new Host(server);
    server.on('request', (req, res) => {
      const path = req.url ?? '/';
      host.seen.push({ path, headers: req.headers });
      const to = host.route(path);
      if (to !== null) {
        res.writeHead(302, { location: to, 'content-length': '0' });
        return res.end();
      }
      if (path.endsWith('/missing')) {
        res.writeHead(404, { 'content-length': '0' });
        return res.end();
      }
      const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
      const [start, end] = m ? [Number(m[1]), Math.min(body.length, Number(m[2]) + 1)] : [0, body.length];
      const head: Record<string, string> = { 'content-length': String(end - start) };
      if (m) head['content-range'] = `bytes ${start}-${end - 1}/${body.length}`;
      res.writeHead(m ? 206 : 200, head);
      res.end(body.subarray(start, end));
    });
    await new Promise<void>((resolve) => server.listen(0, address, resolve));
    host.origin = `http://${address}:${(server.address() as AddressInfo).port}`;
    return host;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

let home: Host;
let other: Host;
beforeAll(async () => {
  home = await Host.start('127.0.0.1');
  other = await Host.start('127.0.0.2');
});
afterAll(async () => {
  await home.close();
  await other.close();
});
beforeEach(() => {
  home.seen.length = 0;
  other.seen.length = 0;
  home.route = () => null;
  other.route = () => null;
});

async function rejection(p: Promise<unknown>): Promise<Error> {
  const e = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(e, 'should have been refused').toBeInstanceOf(Error);
  return e as Error;
}

describe('urlSibling: names as the URL parser sees them', () => {
  const base = 'https://h.example/a/b/model.safetensors.index.json';

  // The fuzz's two findings first, then their relatives.
  it.each([
    '.\n./.\n./secret/model.safetensors',
    'ht\ttp:/127.0.0.2:18081/x.safetensors',
    'a\r/x',
    '\tx.safetensors',
    'x.safetensors\n',
    ' x.safetensors',
    'x\u0000.safetensors',
    'x\u007f',
    'a\\..\\x',
    'a/b\\c',
    'http://evil.example/x',
    'HTTPS:x',
    'javascript:x',
    'data:,x',
    '/x',
    '//evil.example/x',
    'a//x',
    'a/',
    './x',
    'a/./x',
    '.',
    '..',
    '../x',
    'a/../../x',
    '%2e%2e/x',
    '.%2E/x',
    '%2e/x',
    'a/%2e%2e',
    '..%2fx',
    '%2e%2e%5cx',
    '%252e%252e/x',
    '%0a',
    'x?download=1',
    'x#frag',
    '',
  ])('refuses %j', (name) => {
    expect(() => urlSibling(base, name)).toThrow(/refusing sibling name/);
  });

  it('keeps plain names, subfolders and spaces, in the index folder, without its query', () => {
    expect(urlSibling(`${base}?rev=1`, 'model-00001-of-00002.safetensors')).toBe('https://h.example/a/b/model-00001-of-00002.safetensors');
    expect(urlSibling(base, 'sub/x.bin')).toBe('https://h.example/a/b/sub/x.bin');
    expect(urlSibling(base, 'my model.safetensors')).toBe('https://h.example/a/b/my%20model.safetensors');
    expect(urlSibling(base, '..x.bin')).toBe('https://h.example/a/b/..x.bin');
  });

  it('names the index, quotes the name on one line, and cuts a huge one', () => {
    const e = (() => {
      try {
        urlSibling(base, `.\n./${'a'.repeat(100_000)}`);
      } catch (e) {
        return e as Error;
      }
    })()!;
    expect(isSluiceError(e, 'IO_ERROR')).toBe(true);
    expect(e.message).toContain(base);
    expect(e.message).not.toContain('\n');
    expect(e.message.length).toBeLessThan(600);
  });
});

describe('shard names over HTTP', () => {
  it('a sibling opener refuses the findings: nothing reaches another folder or host', async () => {
    const index = `${home.origin}/a/b/model.safetensors.index.json`;
    const open = urlOpener(index, { headers: auth });
    await rejection(open('.\n./.\n./secret/model.safetensors'));
    await rejection(open(`ht\ttp:/127.0.0.2:${new URL(other.origin).port}/x.safetensors`));
    const src = await UrlSource.open(`${home.origin}/a/b/model.safetensors`, { headers: auth });
    await rejection(src.openSibling('..\t/secret.bin'));
    expect(home.seen.map((s) => s.path)).toEqual(['/a/b/model.safetensors']);
    expect(other.seen).toEqual([]);
  });

  it('an https index whose weight_map names "ht\\ttp:/other-host/..." sends nothing there', async () => {
    const port = new URL(other.origin).port;
    const index = JSON.stringify({ weight_map: { w: `ht\ttp:/127.0.0.2:${port}/stolen.safetensors` } });
    // https://idx.invalid stands for the index's https host, routed to a local reply.
    const route: typeof fetch = async (input, init) => {
      if (String(input).startsWith('https://idx.invalid/')) {
        const bytes = new TextEncoder().encode(index);
        return new Response(bytes, { status: 206, headers: { 'content-range': `bytes 0-${bytes.length - 1}/${bytes.length}` } });
      }
      return fetch(input, init);
    };
    const e = await rejection(openCheckpointUrl('https://idx.invalid/a/b/model.safetensors.index.json', { headers: auth, fetch: route }));
    expect(e.message).toContain('https://idx.invalid/a/b/model.safetensors.index.json');
    expect(other.seen).toEqual([]);
  });
});

describe('redirects', () => {
  it('a cross-origin redirect (the Hub → its CDN) is followed without the caller\u2019s headers', async () => {
    home.route = (p) => (p.startsWith('/resolve/') ? `${other.origin}/cdn${p.slice('/resolve'.length)}` : null);
    const src = await UrlSource.open(`${home.origin}/resolve/m.bin`, { headers: auth, prefetch: 100 });
    expect(await src.read(500, 10)).toEqual(body.subarray(500, 510));
    expect(home.seen.map((s) => s.headers.authorization)).toEqual(['Bearer SECRET', 'Bearer SECRET']);
    expect(other.seen.map((s) => s.path)).toEqual(['/cdn/m.bin', '/cdn/m.bin']);
    for (const { headers } of other.seen) {
      expect(headers.authorization).toBeUndefined();
      expect(headers['x-api-key']).toBeUndefined();
      expect(headers.range).toMatch(/^bytes=/); // sluice's own headers do travel
    }
  });

  it('a same-origin redirect keeps them; a hop back home after leaving does not', async () => {
    home.route = (p) => (p === '/old/m.bin' ? '/new/m.bin' : p === '/away' ? `${other.origin}/bounce` : null);
    other.route = (p) => (p === '/bounce' ? `${home.origin}/new/m.bin` : null);
    await UrlSource.open(`${home.origin}/old/m.bin`, { headers: auth });
    expect(home.seen.map((s) => [s.path, s.headers.authorization])).toEqual([
      ['/old/m.bin', 'Bearer SECRET'],
      ['/new/m.bin', 'Bearer SECRET'],
    ]);
    home.seen.length = 0;
    await UrlSource.open(`${home.origin}/away`, { headers: auth });
    expect(home.seen.map((s) => [s.path, s.headers.authorization])).toEqual([
      ['/away', 'Bearer SECRET'],
      ['/new/m.bin', undefined],
    ]);
  });

  it('small files (fetchText) and cache downloads (cachedFetch) drop them across origins too', async () => {
    home.route = (p) => (p.startsWith('/r/') ? `${other.origin}/cdn/${p.slice(3)}` : null);
    expect(await fetchText(`${home.origin}/r/config.json`, { headers: auth })).toBe(new TextDecoder().decode(body));
    expect(await fetchText(`${home.origin}/r/missing`, { headers: auth })).toBeNull();
    const res = await cachedFetch(`${home.origin}/r/w.bin`, new MemoryCache(), { headers: auth });
    expect(new Uint8Array(await res!.arrayBuffer())).toEqual(body);
    expect(other.seen).toHaveLength(3);
    expect(other.seen.every((s) => s.headers.authorization === undefined && s.headers['x-api-key'] === undefined)).toBe(true);
    expect(home.seen.every((s) => s.headers.authorization === 'Bearer SECRET')).toBe(true);
  });

  it('refuses https → http, and non-http schemes', async () => {
    const to = (location: string): typeof fetch => async (input, init) => {
      if (String(input).startsWith('https://')) return new Response(null, { status: 302, headers: { location } });
      return fetch(input, init);
    };
    const down = await rejection(UrlSource.open('https://h.invalid/m.bin', { headers: auth, fetch: to(`${other.origin}/m.bin`) }));
    expect(down.message).toMatch(/^https:\/\/h\.invalid\/m\.bin: refusing a redirect to .*plain http/);
    const file = await rejection(fetchText('https://h.invalid/c.json', { fetch: to('file:///etc/passwd') }));
    expect(file.message).toMatch(/not an http\(s\) URL/);
    expect(other.seen).toEqual([]);
  });

  it('a redirect loop ends after 10 hops with one line', async () => {
    home.route = (p) => (p === '/loop' ? '/loop' : null);
    const e = await rejection(UrlSource.open(`${home.origin}/loop`, { retries: 5 }));
    expect(e.message).toBe(`${home.origin}/loop: more than 10 redirects`);
    expect(home.seen).toHaveLength(11);
  });

  it('a browser (opaque manual redirects) is left to follow them itself, after one try', async () => {
    const modes: (RequestRedirect | undefined)[] = [];
    const browserLike: typeof fetch = async (input, init) => {
      modes.push(init?.redirect);
      // What a browser answers `redirect: 'manual'` with: an opaque, status-0 response.
      if (init?.redirect === 'manual') return { type: 'opaqueredirect', status: 0, headers: new Headers(), body: null } as unknown as Response;
      return fetch(input, init);
    };
    const src = await UrlSource.open(`${home.origin}/m.bin`, { fetch: browserLike, prefetch: 100 });
    await src.read(500, 10);
    expect(modes).toEqual(['manual', 'follow', 'follow']);
  });
});

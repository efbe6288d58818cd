// A small local HTTP server for source tests: serves byte buffers by path on 127.0.0.1
// (port 0, so parallel test files never collide), with switches for the ways real servers
// and CDNs misbehave: no Range support, failures, slow, stalled, dripping or short
// responses, files that change between requests. Every request is recorded so tests can
// assert what was asked.
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface TestServerOptions {
  /** Honour `Range` (default true); false answers 200 with the whole body, like a naive server. */
  ranges?: boolean;
  /** Send `ETag: "v<version>-<size>"`; set() bumps the version (default false). */
  etag?: boolean;
  /** The first `failFirst` requests answer `failStatus` (default 503) instead of data. */
  failFirst?: number;
  failStatus?: number;
  /** Retry-After header sent with injected failures. */
  retryAfter?: string;
  /** Fixed status for a path (e.g. 403), with an empty body. */
  status?: Record<string, number>;
  /** Wait this long before answering, so concurrency is observable. */
  delayMs?: number;
  /** Send this many bytes fewer than the Content-Range says, ending the body cleanly. */
  shortBy?: number;
  /** Hang up nothing and answer nothing: no headers ever ('headers'), or headers then no body ('body'). */
  hang?: 'headers' | 'body';
  /** Send the body one byte every `dripMs` ms (a server that trickles, never idle long). */
  dripMs?: number;
  /** Runs before each request is answered: mutate files here to simulate a changing source. */
  beforeServe?: (request: RecordedRequest, server: TestServer) => void;
}

export interface RecordedRequest {
  method: string;
  path: string;
  /** The Range header as received, or undefined. */
  range: string | undefined;
  headers: IncomingHttpHeaders;
  status: number;
  /** Body bytes written to the socket for this response (less than the body if cancelled). */
  bytesSent: number;
}

interface Served {
  body: Uint8Array;
  version: number;
}

const WRITE_CHUNK = 64 * 1024;

export class TestServer {
  readonly requests: RecordedRequest[] = [];
  /** Most responses in flight at once, since start or resetStats(). */
  maxInFlight = 0;
  private inFlight = 0;
  private idleWaiters: (() => void)[] = [];
  private readonly files = new Map<string, Served>();

  private constructor(
    private readonly server: Server,
    readonly origin: string,
    public options: TestServerOptions,
  ) {}

  static async start(files: Record<string, Uint8Array>, options: TestServerOptions = {}): Promise<TestServer> {
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', resolve);
    });
    const { port } = server.address() as AddressInfo;
    const ts = new TestServer(server, `http://127.0.0.1:${port}`, options);
    for (const [path, body] of Object.entries(files)) ts.set(path, body);
    server.on('request', (req, res) => {
      void ts.handle(req.method ?? 'GET', req.url ?? '/', req.headers, res);
    });
    return ts;
  }

  /** Absolute URL of `path` on this server. */
  url(path: string): string {
    return new URL(path, this.origin).href;
  }

  /** Adds or replaces a file; replacing bumps its version (and so its ETag). */
  set(path: string, body: Uint8Array): void {
    const version = (this.files.get(path)?.version ?? 0) + 1;
    this.files.set(path, { body, version });
  }

  resetStats(): void {
    this.requests.length = 0;
    this.maxInFlight = 0;
  }

  /**
   * Resolves once no response is being written (a cancelled one counts once its socket
   * closes); rejects after `timeoutMs`, so a client that never hangs up fails the test.
   */
  idle(timeoutMs = 5000): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`test server still busy after ${timeoutMs} ms`)), timeoutMs);
      this.idleWaiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private async handle(method: string, rawPath: string, headers: IncomingHttpHeaders, res: ServerResponse): Promise<void> {
    const path = new URL(rawPath, this.origin).pathname;
    const rec: RecordedRequest = { method, path, range: headers.range, headers, status: 0, bytesSent: 0 };
    this.requests.push(rec);
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    let closed = false;
    res.on('close', () => {
      closed = true;
    });
    try {
      const o = this.options;
      o.beforeServe?.(rec, this);
      if (o.delayMs) await new Promise((r) => setTimeout(r, o.delayMs));
      if (o.hang === 'headers') return; // the finally below waits for the client to hang up
      const file = this.files.get(path);
      const forced = o.status?.[path];
      if (this.requests.length <= (o.failFirst ?? 0)) {
        const extra: Record<string, string> = o.retryAfter !== undefined ? { 'retry-after': o.retryAfter } : {};
        return this.empty(res, rec, o.failStatus ?? 503, extra);
      }
      if (forced !== undefined) return this.empty(res, rec, forced);
      if (!file) return this.empty(res, rec, 404);

      const size = file.body.length;
      const common: Record<string, string> = { 'accept-ranges': o.ranges === false ? 'none' : 'bytes' };
      if (o.etag) common.etag = `"v${file.version}-${size}"`;
      const range = o.ranges === false ? undefined : parseRange(headers.range, size);
      if (range === 'unsatisfiable') return this.empty(res, rec, 416, { ...common, 'content-range': `bytes */${size}` });
      const [start, end] = range ?? [0, size];
      const body = file.body.subarray(start, Math.max(start, end - (range ? (o.shortBy ?? 0) : 0)));
      rec.status = range ? 206 : 200;
      const head: Record<string, string> = { ...common, 'content-type': 'application/octet-stream' };
      if (range) head['content-range'] = `bytes ${start}-${end - 1}/${size}`;
      // A short body goes out chunked so the client sees a clean end, not a broken socket.
      if (!(range && o.shortBy)) head['content-length'] = String(body.length);
      res.writeHead(rec.status, head);
      if (o.hang === 'body') return void res.flushHeaders();
      for (let i = 0; o.dripMs && i < body.length && !closed; i++) {
        rec.bytesSent++;
        res.write(body.subarray(i, i + 1));
        await new Promise((r) => setTimeout(r, o.dripMs));
      }
      for (let i = 0; i < body.length && !closed && !o.dripMs; i += WRITE_CHUNK) {
        const piece = body.subarray(i, i + WRITE_CHUNK);
        rec.bytesSent += piece.length;
        if (!res.write(piece)) await drainOrClose(res);
      }
      res.end();
    } finally {
      if (!closed) await new Promise((r) => res.once('close', r));
      if (--this.inFlight === 0) for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  private empty(res: ServerResponse, rec: RecordedRequest, status: number, headers: Record<string, string> = {}): void {
    rec.status = status;
    res.writeHead(status, { ...headers, 'content-length': '0' });
    res.end();
  }
}

/** `bytes=a-b`, `bytes=a-` or `bytes=-n` → [start, end) clipped to size; multi-ranges unsupported. */
function parseRange(header: string | undefined, size: number): [number, number] | 'unsatisfiable' | undefined {
  const m = header && /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return undefined; // ignore what we do not understand, as servers do
  if (m[1] === '') {
    const n = Number(m[2]);
    return n === 0 || size === 0 ? 'unsatisfiable' : [Math.max(0, size - n), size];
  }
  const start = Number(m[1]);
  const end = m[2] === '' ? size : Math.min(size, Number(m[2]) + 1);
  if (start >= size) return 'unsatisfiable';
  return end <= start ? undefined : [start, end];
}

function drainOrClose(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

/** Deterministic pseudo-random bytes (xorshift32), so a misplaced byte is visible. */
export function patternBytes(length: number, seed = 1): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

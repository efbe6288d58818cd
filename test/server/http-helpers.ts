// HTTP clients for the server tests that fetch cannot play: any Host header, raw bytes on
// one keep-alive socket, a client that half-closes; plus a model wrapper that holds a
// request in the middle of its generation for as long as a test needs (no timing).

import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { connect } from 'node:net';
import type { Engine } from '../../src/generate/engine.js';
import type { SluiceModel } from '../../src/generate/load-model.js';

export interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** One request with exactly these headers (Host and Origin included). */
export function request(base: string, path: string, init: { method?: string; headers?: Record<string, string>; body?: unknown } = {}): Promise<Answer> {
  const body = init.body === undefined ? undefined : typeof init.body === 'string' ? init.body : JSON.stringify(init.body);
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${base}${path}`, { method: init.method ?? (body ? 'POST' : 'GET'), headers: init.headers }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (s: string) => (text += s));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** A raw socket to `base`: send bytes, read everything that comes back until a predicate holds or the server closes. */
export function rawSocket(base: string) {
  const { hostname, port } = new URL(base);
  const socket = connect(Number(port), hostname);
  let received = '';
  let closed = false;
  const waiters: (() => void)[] = [];
  const wake = () => waiters.splice(0).forEach((w) => w());
  socket.setEncoding('utf8');
  socket.on('data', (s: string) => ((received += s), wake()));
  socket.on('error', () => {}); // a reset after close() is one of the outcomes tests look at
  socket.on('close', () => ((closed = true), wake()));
  return {
    send: (text: string) => socket.write(text),
    /** Ends our write side (FIN) after `text`: a half-closed client. */
    sendAndEnd: (text: string) => socket.end(text),
    /** Resolves with everything received once `done(received)` holds, or the socket closed. */
    async read(done: (text: string) => boolean = () => false): Promise<string> {
      while (!done(received) && !closed) await new Promise<void>((r) => waiters.push(r));
      return received;
    },
    get closed() {
      return closed;
    },
    destroy: () => socket.destroy(),
  };
}

/** Whether `text` holds a complete HTTP response with a Content-Length body. */
export function completeResponse(text: string): boolean {
  const end = text.indexOf('\r\n\r\n');
  const length = /content-length: (\d+)/i.exec(text.slice(0, end));
  return end >= 0 && length !== null && text.length >= end + 4 + Number(length[1]);
}

/** An HTTP/1.1 POST of JSON, as raw text. */
export function rawPost(path: string, body: unknown, headers = ''): string {
  const text = JSON.stringify(body);
  return `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(text)}\r\n${headers}\r\n${text}`;
}

/**
 * The same model, whose engine stops a request that asks for `maxTokens === HOLD` after its
 * first delta until its signal aborts or release() is called (it keeps the model's turn
 * meanwhile), and fails one that asks for `maxTokens === FAIL` after its first delta, as
 * a GPU error would.
 */
export const HOLD = 77;
export const FAIL = 78;
export function holdingModel(model: SluiceModel): { model: SluiceModel; release: () => void } {
  const released = new Set<() => void>();
  const engine = Object.create(model.engine) as Engine;
  engine.complete = async function* (ids, options = {}) {
    const run = model.engine.complete(ids, options);
    try {
      let r = await run.next();
      let first = true;
      while (!r.done) {
        yield r.value;
        if (first && options.maxTokens === FAIL) throw new Error('the GPU fell over');
        if (first && options.maxTokens === HOLD && !options.signal?.aborted) {
          await new Promise<void>((resolve) => {
            options.signal?.addEventListener('abort', () => resolve(), { once: true });
            released.add(resolve);
          });
        }
        first = false;
        r = await run.next();
      }
      return r.value;
    } finally {
      await run.return(undefined as never);
    }
  };
  const release = () => {
    for (const resolve of released) resolve();
    released.clear();
  };
  return { model: { ...model, engine }, release };
}

/** Server-sent events → their data payloads, parsed (the literal [DONE] kept as a string). */
export function events(text: string): (Record<string, unknown> | '[DONE]')[] {
  return text
    .split('\n\n')
    .filter(Boolean)
    .map((e) => e.replace(/^data: /, ''))
    .map((e) => (e === '[DONE]' ? e : JSON.parse(e)));
}

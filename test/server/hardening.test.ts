// The server against a hostile or careless client: shutdown answers every request it holds
// (503, or an error event in a stream) and serves nothing more on kept-alive connections; a
// generation cut short is never a normal finish; 429 says when to retry; a client that
// half-closes still gets its answer; without an API key, a foreign Host or Origin is
// refused (DNS rebinding, CSRF) unless --cors allows the origin, and POST bodies must be
// declared JSON. Requests are held mid-generation by a wrapper (holdingModel), not by timing.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { loadModel, type SluiceModel } from '../../src/generate/load-model.js';
import { type RunningServer, startServer } from '../../src/server/server.js';
import { writeChatModel } from '../support/byte-tokenizer.js';
import { useGpuTestDevice } from '../support/gpu-helpers.js';
import { completeResponse, events, FAIL, HOLD, holdingModel, rawPost, rawSocket, request } from './http-helpers.js';

const gpu = useGpuTestDevice('test.server-hardening');
const dir = mkdtempSync(join(tmpdir(), 'sluice-serve-hard-'));
const MESSAGES = [{ role: 'user', content: 'Hello there' }];
const JSON_HEADERS = { 'content-type': 'application/json' };
let model: SluiceModel;
let held: SluiceModel;
let release: () => void;
let server: RunningServer;

beforeAll(async () => {
  writeChatModel('test/fixtures/models/llama-gqa', dir);
  model = await loadModel(dir, { device: gpu.device, dtype: 'f32', contextLength: 96, maxQueue: 4 });
  ({ model: held, release } = holdingModel(model));
  server = await startServer([held], { port: 0 });
});
afterAll(async () => {
  await server?.close();
  model?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

const chat = (base: string, body: Record<string, unknown>, headers: Record<string, string> = {}) => request(base, '/v1/chat/completions', { headers: { ...JSON_HEADERS, ...headers }, body: { messages: MESSAGES, ...body } });
const pendingIs = (n: number) => vi.waitFor(() => expect(model.engine.pending).toBe(n), { timeout: 20_000, interval: 10 });

describe('shutdown', () => {
  it('answers the running stream with an error event and the waiting requests with 503, then ends', async () => {
    const srv = await startServer([held], { port: 0 });
    // Running: a stream held after its first delta (its headers and first events are out).
    const running = rawSocket(srv.url);
    running.send(rawPost('/v1/chat/completions', { messages: MESSAGES, max_tokens: HOLD, stream: true }));
    await running.read((t) => t.includes('data: '));
    // Waiting behind it: a whole answer and a stream.
    const waitingWhole = chat(srv.url, { max_tokens: 3 });
    const waitingStream = chat(srv.url, { max_tokens: 3, stream: true });
    await pendingIs(3);

    const closed = srv.close();
    const streamed = await running.read();
    const body = streamed.slice(streamed.indexOf('\r\n\r\n') + 4);
    expect(body).not.toContain('[DONE]');
    expect(body).not.toMatch(/"finish_reason":"(stop|length)"/);
    expect(body).toContain('"error":{"message":"the server is shutting down","type":"server_error","param":null,"code":"server_shutting_down"}');
    for (const waiting of [await waitingWhole, await waitingStream]) {
      expect(waiting.status).toBe(503);
      expect(waiting.headers.connection).toBe('close');
      expect(JSON.parse(waiting.body).error).toMatchObject({ type: 'server_error', code: 'server_shutting_down' });
    }
    await closed; // every connection ended: the process may exit
    expect(model.engine.pending).toBe(0);
  });

  it('answers a running whole request 503, not 200 with what it had so far', async () => {
    const srv = await startServer([held], { port: 0 });
    const running = chat(srv.url, { max_tokens: HOLD });
    await pendingIs(1);
    await srv.close();
    const answer = await running;
    expect(answer.status).toBe(503);
    expect(JSON.parse(answer.body).error.code).toBe('server_shutting_down');
  });

  it('keep-alive connections are not served again: idle ones closed, busy ones closed after their answer', async () => {
    const srv = await startServer([held], { port: 0 });
    const idle = rawSocket(srv.url);
    idle.send('GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    expect(await idle.read(completeResponse)).toMatch(/^HTTP\/1\.1 200/);
    const busy = rawSocket(srv.url);
    busy.send(rawPost('/v1/chat/completions', { messages: MESSAGES, max_tokens: HOLD }));
    await pendingIs(1);

    const closed = srv.close();
    const answer = await busy.read(completeResponse);
    expect(answer).toMatch(/^HTTP\/1\.1 503/);
    expect(answer).toMatch(/\r\nConnection: close\r\n/i);
    // Both sockets end without serving another request sent on them.
    idle.send('GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    busy.send('GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    const [idleAfter, busyAfter] = [await idle.read(), await busy.read()];
    expect(idle.closed && busy.closed).toBe(true);
    expect(idleAfter.match(/HTTP\/1\.1 200/g)).toHaveLength(1);
    expect(busyAfter.match(/HTTP\/1\.1/g)).toHaveLength(1);
    await closed;
  });
});

describe('a generation cut short is an error, not a finish', () => {
  it('stream: an error event after the deltas, no finish chunk, no [DONE]; whole: 500', async () => {
    const streamed = await chat(server.url, { max_tokens: FAIL, stream: true });
    expect(streamed.status).toBe(200); // the status left with the first delta
    const list = events(streamed.body);
    expect(list.at(-1)).toEqual({ error: { message: 'the GPU fell over', type: 'server_error', param: null, code: null } });
    expect(list).not.toContain('[DONE]');
    expect(list.some((e) => e !== '[DONE]' && (e.choices as { finish_reason: unknown }[] | undefined)?.[0]?.finish_reason)).toBe(false);
    const whole = await chat(server.url, { max_tokens: FAIL });
    expect(whole.status).toBe(500);
    expect(JSON.parse(whole.body).error).toMatchObject({ message: 'the GPU fell over', type: 'server_error' });
    expect(model.engine.pending).toBe(0);
  });
});

describe('limits', () => {
  it('429 carries Retry-After', async () => {
    const hold = rawSocket(server.url);
    hold.send(rawPost('/v1/chat/completions', { messages: MESSAGES, max_tokens: HOLD, stream: true }));
    await hold.read((t) => t.includes('data: '));
    const waiting = [0, 1, 2, 3].map(() => chat(server.url, { max_tokens: 1 })); // maxQueue 4
    await pendingIs(5);
    const refused = await chat(server.url, { max_tokens: 1 });
    expect(refused.status).toBe(429);
    expect(refused.headers['retry-after']).toBe('1');
    expect(JSON.parse(refused.body).error.type).toBe('rate_limit_error');
    release(); // the held stream goes on to its end; the queue drains
    expect(await hold.read((t) => t.includes('[DONE]'))).toContain('[DONE]');
    for (const w of await Promise.all(waiting)) expect(w.status).toBe(200);
    hold.destroy();
  });

  it('an empty API key is refused at start', async () => {
    await expect(startServer([model], { port: 0, apiKey: '' })).rejects.toMatchObject({ code: 'USAGE', message: expect.stringMatching(/API key is empty/) });
  });

  it('a client that half-closes after its request still gets the answer', async () => {
    const client = rawSocket(server.url);
    client.sendAndEnd(rawPost('/v1/chat/completions', { messages: MESSAGES, max_tokens: 3, temperature: 0 }));
    const answer = await client.read();
    expect(answer).toMatch(/^HTTP\/1\.1 200/);
    expect(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)).choices[0].message.role).toBe('assistant');
  });
});

describe('who may call a server without an API key', () => {
  it.each([
    ['localhost', 200],
    ['LOCALHOST:8080', 200],
    ['127.0.0.1', 200],
    ['[::1]:1234', 200],
    ['192.168.1.20:8080', 200], // an IP literal: DNS rebinding needs a name
    ['app.localhost', 200],
    ['evil.example', 403],
    ['127.0.0.1.evil.example', 403],
    ['localhost.evil.example:8080', 403],
  ])('Host %s → %i', async (host, status) => {
    const answer = await request(server.url, '/v1/models', { headers: { host } });
    expect(answer.status).toBe(status);
    if (status === 403) expect(JSON.parse(answer.body).error.code).toBe('forbidden_host');
  });

  it.each([
    ['http://localhost:3000', 200],
    ['http://127.0.0.1', 200],
    ['http://[::1]:5173', 200],
    ['https://evil.example', 403],
    ['null', 403],
    ['http://localhost.evil.example', 403],
  ])('Origin %s → %i', async (origin, status) => {
    const answer = await chat(server.url, { max_tokens: 1 }, { origin });
    expect(answer.status).toBe(status);
    if (status === 403) expect(JSON.parse(answer.body).error).toMatchObject({ code: 'forbidden_origin', message: expect.stringContaining(`--cors ${origin}`) });
    expect(answer.headers['access-control-allow-origin']).toBeUndefined(); // CORS only for --cors origins
  });

  it('/health answers any Host (it says nothing but ok)', async () => {
    expect((await request(server.url, '/health', { headers: { host: 'sluice.internal' } })).status).toBe(200);
  });

  it('--cors ORIGIN: that page may call it, with CORS headers and preflights; others still may not', async () => {
    const srv = await startServer([model], { port: 0, cors: ['https://app.example'] });
    try {
      const origin = 'https://app.example';
      const preflight = await request(srv.url, '/v1/chat/completions', { method: 'OPTIONS', headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type, x-stainless-os' } });
      expect(preflight.status).toBe(204);
      expect(preflight.headers).toMatchObject({ 'access-control-allow-origin': origin, 'access-control-allow-methods': 'POST, OPTIONS', 'access-control-allow-headers': 'content-type, x-stainless-os', vary: 'Origin' });
      const allowed = await chat(srv.url, { max_tokens: 1 }, { origin });
      expect(allowed.status).toBe(200);
      expect(allowed.headers['access-control-allow-origin']).toBe(origin);
      const other = await request(srv.url, '/v1/chat/completions', { method: 'OPTIONS', headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' } });
      expect(other.status).toBe(403);
      expect(other.headers['access-control-allow-origin']).toBeUndefined();
      expect((await request(srv.url, '/v1/models', { headers: { host: 'evil.example', origin } })).status).toBe(403); // Host is still checked
    } finally {
      await srv.close();
    }
  });

  it('with an API key the key decides: any Host or Origin, "Bearer" in any case', async () => {
    const srv = await startServer([model], { port: 0, apiKey: 'sekret' });
    try {
      const foreign = { host: 'evil.example', origin: 'https://evil.example' };
      expect((await request(srv.url, '/v1/models', { headers: foreign })).status).toBe(401);
      for (const scheme of ['Bearer', 'bearer', 'BEARER']) {
        expect((await request(srv.url, '/v1/models', { headers: { ...foreign, authorization: `${scheme} sekret` } })).status).toBe(200);
      }
      expect((await request(srv.url, '/v1/models', { headers: { authorization: 'Bearer sekret2' } })).status).toBe(401);
      expect((await request(srv.url, '/v1/models', { headers: { authorization: 'Basic sekret' } })).status).toBe(401);
    } finally {
      await srv.close();
    }
  });

  it.each([
    ['text/plain', 415],
    ['application/x-www-form-urlencoded', 415],
    [undefined, 415],
    ['application/json; charset=utf-8', 200],
    ['Application/JSON', 200],
  ])('POST with Content-Type %s → %i', async (type, status) => {
    const headers: Record<string, string> = type ? { 'content-type': type } : {};
    const answer = await request(server.url, '/v1/chat/completions', { headers, body: { messages: MESSAGES, max_tokens: 1 } });
    expect(answer.status).toBe(status);
    if (status === 415) expect(JSON.parse(answer.body).error.code).toBe('unsupported_media_type');
  });
});

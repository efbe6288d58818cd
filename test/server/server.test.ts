// The OpenAI-compatible server with a real HTTP client (fetch) on 127.0.0.1: answers equal
// the library's greedy output, streamed or not; every bad request is a 4xx OpenAI error; a
// client that disconnects frees the model; 20 concurrent clients are all answered; the
// API key is enforced; a full queue answers 429.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, type SluiceModel } from '../../src/generate/load-model.js';
import { type RunningServer, startServer } from '../../src/server/server.js';
import { writeChatModel } from '../support/byte-tokenizer.js';
import { useGpuTestDevice } from '../support/gpu-helpers.js';

const gpu = useGpuTestDevice('test.server');
const dir = mkdtempSync(join(tmpdir(), 'sluice-serve-'));
let model: SluiceModel;
let server: RunningServer;
const MESSAGES = [{ role: 'user', content: 'Hello there' }];

beforeAll(async () => {
  writeChatModel('test/fixtures/models/llama-gqa', dir);
  model = await loadModel(dir, { device: gpu.device, dtype: 'f32', contextLength: 96, maxQueue: 32 });
  server = await startServer([model], { port: 0 });
});
afterAll(async () => {
  await server?.close();
  model?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

const post = (path: string, body: unknown, headers: Record<string, string> = {}, base = server.url) =>
  fetch(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body) });

async function libraryText(options = { temperature: 0, maxTokens: 8 }): Promise<string> {
  let text = '';
  for await (const d of model.chat(MESSAGES as never, options)) text += d.text;
  return text;
}

async function sse(res: Response): Promise<{ chunks: Record<string, unknown>[]; done: boolean }> {
  const text = await res.text();
  const events = text.split('\n\n').filter(Boolean).map((e) => e.replace(/^data: /, ''));
  const done = events.at(-1) === '[DONE]';
  return { chunks: events.filter((e) => e !== '[DONE]').map((e) => JSON.parse(e)), done };
}

describe('sluice serve', () => {
  it('GET /health and /v1/models', async () => {
    expect(await (await fetch(`${server.url}/health`)).json()).toEqual({ status: 'ok' });
    const models = await (await fetch(`${server.url}/v1/models`)).json();
    expect(models).toMatchObject({ object: 'list', data: [{ id: model.name, object: 'model', owned_by: 'sluice' }] });
  });

  it('chat completion, whole and streamed, equals the library greedy output', async () => {
    const want = await libraryText();
    const res = await post('/v1/chat/completions', { model: model.name, messages: MESSAGES, temperature: 0, max_tokens: 8 });
    expect(res.status).toBe(200);
    const body = await res.json();
    expect(body).toMatchObject({ object: 'chat.completion', model: model.name, choices: [{ index: 0, message: { role: 'assistant', content: want } }] });
    expect(body.usage.total_tokens).toBe(body.usage.prompt_tokens + body.usage.completion_tokens);

    const streamed = await sse(await post('/v1/chat/completions', { messages: MESSAGES, temperature: 0, max_tokens: 8, stream: true }));
    expect(streamed.done).toBe(true);
    const deltas = streamed.chunks.map((c) => (c.choices as { delta: { content?: string } }[])[0].delta.content ?? '').join('');
    expect(deltas).toBe(want);
    const last = streamed.chunks.at(-1)!;
    expect((last.choices as { finish_reason: string }[])[0].finish_reason).toMatch(/^(stop|length)$/);
    expect(last.usage).toEqual(body.usage);
  });

  it('/v1/completions with token ids, whole and streamed', async () => {
    const res = await post('/v1/completions', { prompt: [1, 72, 105], temperature: 0, max_tokens: 5 });
    expect(res.status).toBe(200);
    const body = await res.json();
    expect(body).toMatchObject({ object: 'text_completion', usage: { prompt_tokens: 3, completion_tokens: 5 } });
    const streamed = await sse(await post('/v1/completions', { prompt: [1, 72, 105], temperature: 0, max_tokens: 5, stream: true }));
    expect(streamed.chunks.map((c) => (c.choices as { text: string }[])[0].text).join('')).toBe(body.choices[0].text);
  });

  it.each([
    ['invalid JSON', '{"messages": [', 400, null],
    ['not an object', '[1, 2]', 400, null],
    ['unknown model', { model: 'gpt-4', messages: MESSAGES }, 404, 'model'],
    ['messages missing', { temperature: 0 }, 400, 'messages'],
    ['bad role', { messages: [{ role: 'robot', content: 'x' }] }, 400, 'messages[0].role'],
    ['temperature a string', { messages: MESSAGES, temperature: 'hot' }, 400, 'temperature'],
    ['max_tokens 0', { messages: MESSAGES, max_tokens: 0 }, 400, 'max_tokens'],
    ['n = 0', { messages: MESSAGES, n: 0 }, 400, 'n'],
    ['stop not strings', { messages: MESSAGES, stop: [1] }, 400, 'stop'],
    ['prompt longer than the context', { messages: [{ role: 'user', content: 'x'.repeat(200) }] }, 400, 'messages'],
  ])('%s → %i with an OpenAI error', async (_name, body, status, param) => {
    const res = await post('/v1/chat/completions', body);
    expect(res.status).toBe(status);
    const { error } = await res.json();
    expect(typeof error.message).toBe('string');
    expect(error.type).toBe('invalid_request_error');
    expect(error.param).toBe(param);
  });

  it('unknown routes and methods', async () => {
    expect((await fetch(`${server.url}/v2/anything`)).status).toBe(404);
    expect((await fetch(`${server.url}/v1/chat/completions`)).status).toBe(405);
  });

  it('a client that disconnects mid-stream cancels its generation and frees the model', async () => {
    const controller = new AbortController();
    const res = await fetch(`${server.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ messages: MESSAGES, max_tokens: 80, stream: true }),
      signal: controller.signal,
    });
    const reader = res.body!.getReader();
    await reader.read(); // the first event has arrived: generation is under way
    controller.abort();
    await reader.closed.catch(() => {});
    // The next request is served promptly: the aborted one did not hold the model.
    const started = performance.now();
    const next = await post('/v1/chat/completions', { messages: MESSAGES, temperature: 0, max_tokens: 2 });
    expect(next.status).toBe(200);
    expect(model.engine.pending).toBe(0);
    expect(performance.now() - started).toBeLessThan(20_000);
  });

  it('20 concurrent clients are all answered, correctly, none lost', async () => {
    const want = await libraryText({ temperature: 0, maxTokens: 4 });
    const answers = await Promise.all(
      Array.from({ length: 20 }, async () => {
        const res = await post('/v1/chat/completions', { messages: MESSAGES, temperature: 0, max_tokens: 4 });
        return [res.status, (await res.json()).choices[0].message.content];
      }),
    );
    expect(answers).toEqual(Array.from({ length: 20 }, () => [200, want]));
  });
});

describe('limits', () => {
  it('the API key is required on every route but /health', async () => {
    const keyed = await startServer([model], { port: 0, apiKey: 'sekret' });
    try {
      expect((await fetch(`${keyed.url}/health`)).status).toBe(200);
      expect((await fetch(`${keyed.url}/v1/models`)).status).toBe(401);
      const wrong = await post('/v1/chat/completions', { messages: MESSAGES, max_tokens: 1 }, { authorization: 'Bearer nope' }, keyed.url);
      expect(wrong.status).toBe(401);
      expect((await wrong.json()).error.code).toBe('invalid_api_key');
      const right = await post('/v1/chat/completions', { messages: MESSAGES, max_tokens: 1 }, { authorization: 'Bearer sekret' }, keyed.url);
      expect(right.status).toBe(200);
    } finally {
      await keyed.close();
    }
  });

  it('beyond the queue limit: 429 rate_limit_error', async () => {
    const small = await loadModel(dir, { device: gpu.device, dtype: 'f32', contextLength: 96, maxQueue: 1 });
    const busy = await startServer([small], { port: 0 });
    try {
      // Hold the model: a long streamed answer that has begun (its first event is here).
      const hold = new AbortController();
      const running = await fetch(`${busy.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ messages: MESSAGES, max_tokens: 60, stream: true }), signal: hold.signal });
      const reader = running.body!.getReader();
      await reader.read();
      // One more may wait (maxQueue 1); the next two are refused at once.
      const waiting = post('/v1/chat/completions', { messages: MESSAGES, max_tokens: 2 }, {}, busy.url);
      await new Promise((r) => setTimeout(r, 50)); // let it take its place in the queue
      const refused = await Promise.all([0, 1].map(() => post('/v1/chat/completions', { messages: MESSAGES, max_tokens: 2 }, {}, busy.url)));
      for (const res of refused) {
        expect(res.status).toBe(429);
        expect((await res.json()).error.type).toBe('rate_limit_error');
      }
      hold.abort();
      await reader.closed.catch(() => {});
      expect((await waiting).status).toBe(200);
    } finally {
      await busy.close();
      small.dispose();
    }
  });
});

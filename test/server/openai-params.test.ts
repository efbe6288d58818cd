// OpenAI request semantics the server follows beyond the basics (server.test.ts): top_p 0,
// the developer role, 405/HEAD/OPTIONS, usage without the eos, prompt ids checked against
// the vocabulary, a random seed when none is given, n choices, stream_options.include_usage,
// the sampler fields (penalties, logit_bias, logprobs) validated field by field and passed
// to the engine, and logprobs in OpenAI's chat and completions shapes.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, type SluiceModel } from '../../src/generate/load-model.js';
import { type RunningServer, startServer } from '../../src/server/server.js';
import { writeChatModel } from '../support/byte-tokenizer.js';
import { useGpuTestDevice } from '../support/gpu-helpers.js';
import { events, request } from './http-helpers.js';

const gpu = useGpuTestDevice('test.server-params');
const dir = mkdtempSync(join(tmpdir(), 'sluice-serve-params-'));
const MESSAGES = [{ role: 'user', content: 'Hello there' }];
let model: SluiceModel;
let server: RunningServer;

beforeAll(async () => {
  writeChatModel('test/fixtures/models/llama-gqa', dir);
  model = await loadModel(dir, { device: gpu.device, dtype: 'f32', contextLength: 96 });
  server = await startServer([model], { port: 0 });
});
afterAll(async () => {
  await server?.close();
  model?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
async function post(path: string, body: Record<string, unknown>): Promise<{ status: number; json: Json; text: string }> {
  const answer = await request(server.url, path, { headers: { 'content-type': 'application/json' }, body });
  return { status: answer.status, json: answer.headers['content-type'] === 'application/json' ? JSON.parse(answer.body) : {}, text: answer.body };
}
const chat = (body: Record<string, unknown>) => post('/v1/chat/completions', { messages: MESSAGES, ...body });
const content = async (body: Record<string, unknown>) => {
  const { status, json } = await chat(body);
  expect(status).toBe(200);
  return json.choices[0].message.content as string;
};

describe('sampling semantics', () => {
  it('top_p 0 keeps only the most probable token: temperature 1 then answers as greedy', async () => {
    const greedy = await content({ temperature: 0, max_tokens: 8 });
    expect(await content({ temperature: 1, top_p: 0, max_tokens: 8 })).toBe(greedy);
    expect(await content({ temperature: 1, top_p: 0, max_tokens: 8, seed: 99 })).toBe(greedy);
  });

  it('no seed: two temperature-1 answers differ; the same seed repeats', async () => {
    const body = { temperature: 1, max_tokens: 12 };
    // A random model at temperature 1 over 256 ids: equal 12-token answers are negligible.
    expect(await content(body)).not.toBe(await content(body));
    expect(await content({ ...body, seed: 5 })).toBe(await content({ ...body, seed: 5 }));
  });

  it('n choices: each its own generation; a seeded request draws choice i with seed + i', async () => {
    const body = { temperature: 1, max_tokens: 6, seed: 11 };
    const { status, json } = await chat({ ...body, n: 2 });
    expect(status).toBe(200);
    expect(json.choices.map((c: Json) => c.index)).toEqual([0, 1]);
    expect(json.choices[0].message.content).toBe(await content(body));
    expect(json.choices[1].message.content).toBe(await content({ ...body, seed: 12 }));
    const one = (await chat(body)).json.usage;
    expect(json.usage.prompt_tokens).toBe(one.prompt_tokens);
    expect(json.usage.completion_tokens).toBeGreaterThan(one.completion_tokens);

    const streamed = events((await chat({ ...body, n: 2, stream: true })).text);
    for (const index of [0, 1]) {
      const mine = streamed.filter((e) => e !== '[DONE]' && (e as Json).choices?.[0]?.index === index) as Json[];
      expect(mine.map((e) => e.choices[0].delta.content ?? '').join('')).toBe(json.choices[index].message.content);
      expect(mine.at(-1)!.choices[0].finish_reason).toBe(json.choices[index].finish_reason);
    }
    expect(streamed.at(-1)).toBe('[DONE]');
  });

  it('completion_tokens counts the reply, not the eos that ended it', async () => {
    // [1, 24] is a prompt this model answers greedily until its eos (checked first).
    const run = model.generate([1, 24], { temperature: 0, maxTokens: 40 });
    let emitted = 0;
    let r = await run.next();
    while (!r.done) {
      emitted += r.value.ids.length;
      r = await run.next();
    }
    expect(r.value.stopReason).toBe('eos');
    const { json } = await post('/v1/completions', { prompt: [1, 24], temperature: 0, max_tokens: 40 });
    expect(json.choices[0].finish_reason).toBe('stop');
    expect(json.usage.completion_tokens).toBe(r.value.generatedTokens - 1);
    expect(json.usage.completion_tokens).toBe(emitted);
  });

  it('the developer role is a system message', async () => {
    const as = async (role: string) => (await chat({ messages: [{ role, content: 'Be brief.' }, ...MESSAGES], temperature: 0, max_tokens: 4 })).json;
    const [developer, system] = [await as('developer'), await as('system')];
    expect(developer.usage).toEqual(system.usage);
    expect(developer.choices[0].message.content).toBe(system.choices[0].message.content);
    const wrong = await chat({ messages: [{ role: 'function', content: 'x' }] });
    expect(wrong.json.error).toMatchObject({ param: 'messages[0].role', message: 'messages[0].role must be system, developer, user, assistant or tool' });
  });
});

describe('stream_options.include_usage', () => {
  it('a last chunk with usage and no choices; every other chunk usage: null', async () => {
    const whole = (await chat({ temperature: 0, max_tokens: 5 })).json;
    const list = events((await chat({ temperature: 0, max_tokens: 5, stream: true, stream_options: { include_usage: true } })).text);
    expect(list.at(-1)).toBe('[DONE]');
    const chunks = list.slice(0, -1) as Json[];
    expect(chunks.at(-1)).toMatchObject({ object: 'chat.completion.chunk', choices: [], usage: whole.usage });
    for (const c of chunks.slice(0, -1)) expect(c.usage).toBeNull();
    expect(chunks.at(-2)!.choices[0].finish_reason).toBe(whole.choices[0].finish_reason);
  });

  it('without stream: 400', async () => {
    const { status, json } = await chat({ stream_options: { include_usage: true } });
    expect(status).toBe(400);
    expect(json.error.param).toBe('stream_options');
  });
});

describe('routes', () => {
  it('405 says which methods a route takes (Allow); HEAD works on GET routes; OPTIONS lists them', async () => {
    const wrong = await request(server.url, '/v1/chat/completions');
    expect(wrong.status).toBe(405);
    expect(wrong.headers.allow).toBe('POST, OPTIONS');
    const post405 = await request(server.url, '/health', { method: 'POST', headers: { 'content-type': 'application/json' }, body: {} });
    expect(post405.status).toBe(405);
    expect(post405.headers.allow).toBe('GET, HEAD, OPTIONS');
    for (const path of ['/health', '/v1/models']) {
      const head = await request(server.url, path, { method: 'HEAD' });
      expect(head.status).toBe(200);
      expect(head.body).toBe('');
      expect(Number(head.headers['content-length'])).toBe((await request(server.url, path)).body.length);
    }
    const options = await request(server.url, '/v1/models', { method: 'OPTIONS' });
    expect(options.status).toBe(204);
    expect(options.headers.allow).toBe('GET, HEAD, OPTIONS');
  });
});

describe('request validation', () => {
  it.each([
    ['a token id past the vocabulary', '/v1/completions', { prompt: [1, 72, 256] }, 'prompt', 'prompt[2]: 256 is not a token id of this model (0 to 255)'],
    ['a negative token id', '/v1/completions', { prompt: [-1] }, 'prompt', 'prompt[0]: -1 is not a token id of this model (0 to 255)'],
    ['a batch of prompts', '/v1/completions', { prompt: ['a', 'b'] }, 'prompt', /one prompt per request/],
    ['top_p above 1', '/v1/chat/completions', { top_p: 1.5 }, 'top_p', 'top_p must be a number in [0, 1]'],
    ['frequency_penalty 3', '/v1/chat/completions', { frequency_penalty: 3 }, 'frequency_penalty', 'frequency_penalty must be a number in [-2, 2]'],
    ['presence_penalty a string', '/v1/chat/completions', { presence_penalty: '1' }, 'presence_penalty', 'presence_penalty must be a number in [-2, 2]'],
    ['logit_bias an array', '/v1/chat/completions', { logit_bias: [1] }, 'logit_bias', /must be an object of token id → bias/],
    ['logit_bias past the vocabulary', '/v1/chat/completions', { logit_bias: { 256: 1 } }, 'logit_bias', 'logit_bias: "256" is not a token id of this model (0 to 255)'],
    ['logit_bias not a number key', '/v1/chat/completions', { logit_bias: { x: 1 } }, 'logit_bias', 'logit_bias: "x" is not a token id of this model (0 to 255)'],
    ['logit_bias 101', '/v1/chat/completions', { logit_bias: { 5: 101 } }, 'logit_bias', 'logit_bias: the bias of token 5 must be a number in [-100, 100]'],
    ['logprobs a number in chat', '/v1/chat/completions', { logprobs: 2 }, 'logprobs', 'logprobs must be true or false'],
    ['top_logprobs 21', '/v1/chat/completions', { logprobs: true, top_logprobs: 21 }, 'top_logprobs', 'top_logprobs must be a whole number in [0, 20]'],
    ['top_logprobs without logprobs', '/v1/chat/completions', { top_logprobs: 2 }, 'top_logprobs', 'top_logprobs needs logprobs: true'],
    ['completions logprobs 21', '/v1/completions', { prompt: 'x', logprobs: 21 }, 'logprobs', 'logprobs must be a whole number in [0, 20]'],
    ['n 1.5', '/v1/chat/completions', { n: 1.5 }, 'n', 'n must be a whole number in [1, 16]'],
    ['n 17', '/v1/chat/completions', { n: 17 }, 'n', 'n must be a whole number in [1, 16]'],
    ['stream_options not an object', '/v1/chat/completions', { stream: true, stream_options: true }, 'stream_options', /must be an object/],
  ])('%s → 400 naming the field', async (_name, path, body, param, message) => {
    const { status, json } = await post(path, { messages: MESSAGES, ...body });
    expect(status).toBe(400);
    expect(json.error).toMatchObject({ type: 'invalid_request_error', param });
    expect(json.error.message).toMatch(message);
  });

  it('their defaults are accepted', async () => {
    const { status } = await chat({ frequency_penalty: 0, presence_penalty: 0, logit_bias: {}, logprobs: false, top_logprobs: null, n: 1, stream_options: null, max_tokens: 1 });
    expect(status).toBe(200);
  });
});

describe('penalties, logit_bias and logprobs reach the sampler', () => {
  async function library(options: Record<string, unknown>) {
    let text = '';
    const logprobs: { id: number; logprob: number; top: { id: number; logprob: number }[] }[] = [];
    for await (const d of model.chat(MESSAGES as never, { temperature: 0, maxTokens: 6, ...options })) {
      text += d.text;
      logprobs.push(...(d.logprobs ?? []));
    }
    return { text, logprobs };
  }

  it.each([
    ['frequency_penalty', { frequency_penalty: 2 }, { frequencyPenalty: 2 }],
    ['presence_penalty', { presence_penalty: -2 }, { presencePenalty: -2 }],
    ['logit_bias', { logit_bias: { 66: 30, 67: -100 } }, { logitBias: new Map([[66, 30], [67, -100]]) }],
  ])('%s: the answer the library gives with the same option', async (_name, body, options) => {
    expect(await content({ temperature: 0, max_tokens: 6, ...body })).toBe((await library(options)).text);
  });

  it('logit_bias +100 on a token makes greedy pick it every time', async () => {
    expect(await content({ temperature: 0, max_tokens: 5, logit_bias: { 65: 100 } })).toBe('AAAAA'); // byte tokenizer: id 65 is "A"
  });

  it('chat logprobs: each token with its logprob, bytes and top alternatives (greedy: the top one), streamed the same', async () => {
    const want = await library({ logprobs: 3 });
    const { json } = await chat({ temperature: 0, max_tokens: 6, logprobs: true, top_logprobs: 3 });
    const content = json.choices[0].logprobs.content as Json[];
    expect(content.map((e) => e.logprob)).toEqual(want.logprobs.map((e) => e.logprob));
    for (const [i, e] of content.entries()) {
      expect(e.token).toBe(model.engine.parts.tokenizer!.decode([want.logprobs[i].id]));
      expect(e.bytes).toEqual([...new TextEncoder().encode(e.token)]);
      expect(e.top_logprobs).toHaveLength(3);
      expect(e.top_logprobs[0]).toEqual({ token: e.token, logprob: e.logprob, bytes: e.bytes }); // greedy picks the most likely
      expect(e.top_logprobs[1].logprob).toBeLessThanOrEqual(e.top_logprobs[0].logprob);
    }
    const chunks = events((await chat({ temperature: 0, max_tokens: 6, stream: true, logprobs: true, top_logprobs: 3 })).text);
    const streamed = chunks.flatMap((c) => (c === '[DONE]' ? [] : ((c.choices as Json[])[0]?.logprobs?.content ?? [])));
    expect(streamed).toEqual(content);
    const plain = (await chat({ temperature: 0, max_tokens: 2 })).json;
    expect(plain.choices[0].logprobs).toBeNull();
  });

  it('completions logprobs N: tokens, token_logprobs, top_logprobs (≤ N + 1 each) and text_offset', async () => {
    const { json } = await post('/v1/completions', { prompt: [1, 72, 105], temperature: 0, max_tokens: 5, logprobs: 2 });
    const lp = json.choices[0].logprobs;
    expect(lp.tokens).toHaveLength(5);
    expect(lp.token_logprobs).toHaveLength(5);
    expect(lp.text_offset[0]).toBe(0);
    for (let i = 0; i < 5; i++) {
      expect(Object.keys(lp.top_logprobs[i]).length).toBeGreaterThanOrEqual(1);
      expect(Object.keys(lp.top_logprobs[i]).length).toBeLessThanOrEqual(3);
      expect(lp.top_logprobs[i][lp.tokens[i]]).toBe(lp.token_logprobs[i]);
      if (i > 0) expect(lp.text_offset[i]).toBeGreaterThanOrEqual(lp.text_offset[i - 1]);
    }
  });
});

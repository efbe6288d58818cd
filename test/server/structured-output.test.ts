// response_format and tools on the server, which used to accept and silently ignore them:
// JSON formats enforced (replies parse and validate at temperature 1, each seed), a schema
// the grammar cannot enforce or an unknown type refused with a 400 naming the keyword
// before anything is generated; tool_choice required / named → message.tool_calls with
// arguments that validate and finish_reason tool_calls, in both template syntaxes, and the
// stream's tool-call deltas (index, id, type, name, then arguments) assembled equal to the
// whole answer; with tool_choice auto, text before a call streamed as content and a
// malformed call left as content (a model whose engine adds a regex grammar writes them);
// assistant tool_calls and tool messages accepted back.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../src/generate/engine.js';
import { loadModel, type SluiceModel } from '../../src/generate/load-model.js';
import { type RunningServer, startServer } from '../../src/server/server.js';
import { makeAjv } from '../grammar/support.js';
import { writeChatModel } from '../support/byte-tokenizer.js';
import { useGpuTestDevice } from '../support/gpu-helpers.js';
import { HERMES_TEMPLATE, LLAMA_JSON_TEMPLATE, TEST_TOOLS, writeToolChatModel } from '../support/tools.js';
import { events, request } from './http-helpers.js';

const gpu = useGpuTestDevice('test.server-structured');
const dirs: string[] = [];
const models: SluiceModel[] = [];
let server: RunningServer;
const MESSAGES = [{ role: 'user', content: 'Weather?' }];
const TOOLS = TEST_TOOLS.filter((t) => t.function.name !== 'route'); // every character is a prompt token here
const SEEDS = [1, 2, 3];
const ajv = makeAjv();
/** What the 'scripted' model (the hermes one, its replies forced by this regex) writes. */
let script = '';

/** `model` under another name, every reply made to match `script` unless it has a grammar of its own. */
function scripted(model: SluiceModel, name: string): SluiceModel {
  const engine = Object.create(model.engine) as Engine;
  engine.complete = (ids, options = {}) => model.engine.complete(ids, options.grammar ? options : { ...options, grammar: { regex: script } });
  return { ...model, engine, name };
}

beforeAll(async () => {
  const setups = [
    ['hermes', 'test/fixtures/models/llama-gqa', HERMES_TEMPLATE],
    ['llama', 'test/fixtures/models/qwen2-bias', LLAMA_JSON_TEMPLATE],
    ['plain', 'test/fixtures/models/llama-gqa', null], // ChatML, no tools
  ] as const;
  for (const [name, from, template] of setups) {
    const dir = mkdtempSync(join(tmpdir(), `sluice-serve-${name}-`));
    dirs.push(dir);
    if (template) writeToolChatModel(from, dir, template);
    else writeChatModel(from, dir);
    models.push(await loadModel(dir, { device: gpu.device, dtype: 'f32', contextLength: 1024, parallel: 1, name }));
  }
  server = await startServer([...models, scripted(models[0], 'scripted')], { port: 0, promptWorker: false });
});
afterAll(async () => {
  await server?.close();
  for (const m of models) m.dispose();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
async function chat(body: Record<string, unknown>): Promise<{ status: number; json: Json; text: string }> {
  const answer = await request(server.url, '/v1/chat/completions', { headers: { 'content-type': 'application/json' }, body: { messages: MESSAGES, temperature: 1, max_tokens: 300, ...body } });
  return { status: answer.status, json: answer.headers['content-type'] === 'application/json' ? JSON.parse(answer.body) : {}, text: answer.body };
}

/** A stream's chunks folded into one message as OpenAI clients fold them. */
function assemble(text: string) {
  const list = events(text);
  expect(list.at(-1)).toBe('[DONE]');
  let content = '';
  let finish: string | null = null;
  const calls: Json[] = [];
  for (const chunk of list.slice(0, -1) as Json[]) {
    const choice = chunk.choices[0];
    if (!choice) continue;
    content += choice.delta.content ?? '';
    finish = choice.finish_reason ?? finish;
    for (const d of choice.delta.tool_calls ?? []) {
      if (d.id !== undefined) {
        // A call opens with its index, id, type and name, its arguments still empty.
        expect(d).toEqual({ index: calls.length, id: expect.any(String), type: 'function', function: { name: expect.any(String), arguments: '' } });
        calls.push({ id: d.id, type: d.type, function: { name: d.function.name, arguments: '' } });
      } else calls[d.index].function.arguments += d.function.arguments;
    }
  }
  return { content, calls, finish };
}

const withoutIds = (calls: Json[]) => calls.map((c) => ({ ...c, id: 'x' }));

function expectValid(call: Json, names: readonly string[]) {
  expect(call).toMatchObject({ id: expect.stringMatching(/^call_/), type: 'function' });
  expect(names).toContain(call.function.name);
  const tool = TOOLS.find((t) => t.function.name === call.function.name)!;
  const validate = ajv.compile('parameters' in tool.function ? tool.function.parameters : { type: 'object', additionalProperties: false });
  expect(validate(JSON.parse(call.function.arguments)), call.function.arguments).toBe(true);
}

describe('response_format', () => {
  it('json_schema (strict) and json_object: every reply parses and validates, at temperature 1', async () => {
    const schema = { type: 'object', properties: { city: { type: 'string', maxLength: 8 }, rain: { type: 'boolean' }, n: { type: 'integer', minimum: 0, maximum: 99 } }, required: ['city', 'rain', 'n'], additionalProperties: false };
    const validate = ajv.compile(schema);
    for (const seed of SEEDS) {
      const r = await chat({ model: 'hermes', seed, response_format: { type: 'json_schema', json_schema: { name: 'weather', schema, strict: true } } });
      expect(r.status, r.text).toBe(200);
      expect(r.json.choices[0].finish_reason).toBe('stop');
      expect(validate(JSON.parse(r.json.choices[0].message.content)), r.json.choices[0].message.content).toBe(true);
      // Any object: a bias on '"' and '}' (allowed only where the grammar allows them) keeps a random model's strings short.
      const o = await chat({ model: 'llama', seed, response_format: { type: 'json_object' }, logit_bias: { 34: 4, 125: 4 } });
      expect(o.json.choices[0].finish_reason, o.text).toBe('stop');
      const value = JSON.parse(o.json.choices[0].message.content);
      expect(typeof value === 'object' && value !== null && !Array.isArray(value)).toBe(true);
    }
  });

  it('{type: "text"} is free text, as without a format', async () => {
    const a = await chat({ model: 'plain', seed: 9, max_tokens: 6 });
    const b = await chat({ model: 'plain', seed: 9, max_tokens: 6, response_format: { type: 'text' } });
    expect(b.json.choices[0].message.content).toBe(a.json.choices[0].message.content);
  });

  it.each([
    ['a keyword strict mode cannot enforce', { type: 'json_schema', json_schema: { name: 'x', strict: true, schema: { type: 'object', properties: { tags: { type: 'array', uniqueItems: true } } } } }, /^response_format\.json_schema\.schema\.properties\.tags\.uniqueItems: /],
    ['an unknown format (refused strict or not)', { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'string', format: 'colour' } } }, /^response_format\.json_schema\.schema\.format: unknown format "colour"/],
    ['a $ref cycle that cannot end', { type: 'json_schema', json_schema: { name: 'x', schema: { $ref: '#/$defs/a', $defs: { a: { $ref: '#/$defs/a' } } } } }, /^response_format\.json_schema\.schema/],
    ['an unknown type', { type: 'yaml' }, /^response_format\.type must be "text", "json_object" or "json_schema", not "yaml"/],
    ['json_schema without a schema', { type: 'json_schema', json_schema: { name: 'x' } }, /json_schema needs a schema/],
    ['json_schema not an object', { type: 'json_schema', json_schema: 'x' }, /^response_format\.json_schema must be an object/],
  ])('%s → 400 naming it', async (_, format, message) => {
    const r = await chat({ model: 'hermes', response_format: format });
    expect(r.status).toBe(400);
    expect(r.json.error).toMatchObject({ type: 'invalid_request_error', param: 'response_format', message: expect.stringMatching(message) });
  });
});

describe.each(['hermes', 'llama'])('tools (%s template)', (model) => {
  it('tool_choice required → one call whose arguments validate, finish_reason tool_calls; streamed the same', async () => {
    for (const seed of SEEDS) {
      const r = await chat({ model, seed, tools: TOOLS, tool_choice: 'required' });
      expect(r.status, r.text).toBe(200);
      const [choice] = r.json.choices;
      expect(choice.finish_reason).toBe('tool_calls');
      expect(choice.message.content).toBeNull();
      expect(choice.message.tool_calls).toHaveLength(1);
      expectValid(choice.message.tool_calls[0], ['get_weather', 'ping']);
      const streamed = assemble((await chat({ model, seed, tools: TOOLS, tool_choice: 'required', stream: true })).text);
      expect(streamed.finish).toBe('tool_calls');
      expect(streamed.content).toBe('');
      expect(withoutIds(streamed.calls)).toEqual(withoutIds(choice.message.tool_calls));
    }
  });

  it('a named function → a call of it', async () => {
    const r = await chat({ model, seed: 4, tools: TOOLS, tool_choice: { type: 'function', function: { name: 'get_weather' } } });
    expect(r.json.choices[0].finish_reason).toBe('tool_calls');
    expectValid(r.json.choices[0].message.tool_calls[0], ['get_weather']);
  });

  it('takes assistant tool_calls and tool results back', async () => {
    const call = { id: 'call_abc', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Oslo","unit":"c"}' } };
    const messages = [...MESSAGES, { role: 'assistant', content: null, tool_calls: [call] }, { role: 'tool', tool_call_id: 'call_abc', content: '-3 C' }];
    const r = await chat({ model, messages, tools: TOOLS, max_tokens: 3 });
    expect(r.status, r.text).toBe(200);
    const ids = models.find((m) => m.name === model)!.engine.chatPromptIds(messages.map((m) => ({ ...m, content: m.content ?? '' })) as never, undefined, TOOLS as never);
    expect(r.json.usage.prompt_tokens).toBe(ids.length);
    // An empty tool_calls list is a turn without calls (Llama's template refuses a turn with zero).
    const empty = await chat({ model, messages: [...MESSAGES, { role: 'assistant', content: 'Hm.', tool_calls: [] }, ...MESSAGES], max_tokens: 2 });
    expect(empty.status, empty.text).toBe(200);
  });
});

describe('tool_choice auto', () => {
  it('text before a call is content (streamed first), the call a tool call', async () => {
    script = 'Let me check\\.\\n<tool_call>\\n\\{"name": "ping", "arguments": \\{\\}\\}\\n</tool_call>';
    const r = await chat({ model: 'scripted', tools: TOOLS });
    expect(r.json.choices[0]).toMatchObject({ finish_reason: 'tool_calls', message: { role: 'assistant', content: 'Let me check.', tool_calls: [{ type: 'function', function: { name: 'ping', arguments: '{}' } }] } });
    const text = (await chat({ model: 'scripted', tools: TOOLS, stream: true })).text;
    const streamed = assemble(text);
    expect(streamed).toEqual({ content: 'Let me check.', calls: withoutIds(r.json.choices[0].message.tool_calls).map((c) => ({ ...c, id: expect.any(String) })), finish: 'tool_calls' });
    const kinds = (events(text).slice(0, -1) as Json[]).flatMap((c) => (c.choices[0]?.delta.content ? ['content'] : c.choices[0]?.delta.tool_calls ? ['call'] : []));
    expect(kinds.indexOf('call')).toBeGreaterThan(kinds.lastIndexOf('content'));
  });

  it('a malformed call is content, as the model wrote it; tool_choice none parses nothing', async () => {
    script = '<tool_call>\\n\\{"name": "nope", "arguments": \\{\\}\\}\\n</tool_call>';
    const r = await chat({ model: 'scripted', tools: TOOLS });
    expect(r.json.choices[0]).toMatchObject({ finish_reason: 'stop', message: { content: '<tool_call>\n{"name": "nope", "arguments": {}}\n</tool_call>' } });
    expect(r.json.choices[0].message.tool_calls).toBeUndefined();
    script = '<tool_call>\\n\\{"name": "ping", "arguments": \\{\\}\\}\\n</tool_call>';
    const none = await chat({ model: 'scripted', tools: TOOLS, tool_choice: 'none' });
    expect(none.json.choices[0]).toMatchObject({ finish_reason: 'stop', message: { content: '<tool_call>\n{"name": "ping", "arguments": {}}\n</tool_call>' } });
  });
});

describe('tools: bad requests', () => {
  it.each([
    ['a template without a tool syntax', { model: 'plain', tools: TOOLS }, 'tools', /^tools: .*tokenizer_config\.json does not render tools in a tool-call syntax sluice parses/],
    ['a malformed tool', { model: 'hermes', tools: [{ type: 'function', function: { name: 'a b' } }] }, 'tools', /^tools\[0\]\.function\.name must be/],
    ['a tool schema strict mode cannot enforce', { model: 'hermes', tools: [{ type: 'function', function: { name: 'f', strict: true, parameters: { type: 'object', properties: { x: { not: {} } } } } }], tool_choice: 'required' }, 'tools', /^tools\[0\]\.function\.parameters\.properties\.x\.not: /],
    ['tool_choice naming no tool', { model: 'hermes', tools: TOOLS, tool_choice: { type: 'function', function: { name: 'nope' } } }, 'tool_choice', /^tool_choice: no tool is named "nope"/],
    ['tool_choice without tools', { model: 'hermes', tool_choice: 'required' }, 'tool_choice', /needs tools/],
    ['arguments that are not JSON', { model: 'hermes', messages: [...MESSAGES, { role: 'assistant', content: null, tool_calls: [{ id: 'c', type: 'function', function: { name: 'ping', arguments: '{oops' } }] }] }, 'messages[1].tool_calls[0].function.arguments', /must be JSON text/],
    ['a tool message without tool_call_id', { model: 'hermes', messages: [...MESSAGES, { role: 'tool', content: 'x' }] }, 'messages[1].tool_call_id', /must be the id of the call/],
  ])('%s → 400', async (_, body, param, message) => {
    const r = await chat(body);
    expect(r.status, r.text).toBe(400);
    expect(r.json.error).toMatchObject({ param, message: expect.stringMatching(message) });
  });

  it('tools on /v1/completions → 400, not ignored', async () => {
    const answer = await request(server.url, '/v1/completions', { headers: { 'content-type': 'application/json' }, body: { model: 'hermes', prompt: 'x', tools: TOOLS } });
    expect(answer.status).toBe(400);
    expect(JSON.parse(answer.body).error).toMatchObject({ param: 'tools', message: 'tools is only supported on /v1/chat/completions' });
  });
});

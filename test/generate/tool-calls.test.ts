// Response formats and tool calls through the library (model.chat) on tiny random models
// whose templates take tools (test/support/tools.ts): at temperature 1 and several seeds,
// a required or named call comes back as exactly one parsed call whose arguments validate
// against the function's schema, a JSON format as JSON that validates; with tool_choice
// auto the reply's calls are taken out of its text (a user grammar makes the random model
// write one); the stream's deltas carry content and calls, never the call syntax.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isSluiceError } from '../../src/errors.js';
import type { ChatDelta, ChatOptions } from '../../src/generate/engine.js';
import { loadModel, type SluiceModel } from '../../src/generate/load-model.js';
import type { ChatMessage } from '../../src/text/chat-template.js';
import type { ToolCall, ToolDefinition } from '../../src/text/tool-calls.js';
import { makeAjv } from '../grammar/support.js';
import { useGpuTestDevice } from '../support/gpu-helpers.js';
import { HERMES_TEMPLATE, LLAMA_JSON_TEMPLATE, TEST_TOOLS, writeToolChatModel } from '../support/tools.js';

const gpu = useGpuTestDevice('test.tool-calls');
// Without `route` (its $ref arguments are covered on the CPU, chat-plan.test.ts): every
// character of a tool is a prompt token here.
const TOOLS = (TEST_TOOLS as unknown as ToolDefinition[]).filter((t) => t.function.name !== 'route');
const ASK: ChatMessage[] = [{ role: 'user', content: 'Weather?' }];
const SEEDS = [1, 2]; // the server test runs three more
const ajv = makeAjv();
const dirs: string[] = [];
const models: Record<'hermes' | 'llama3-json', SluiceModel> = {} as never;

beforeAll(async () => {
  const setups = [
    ['hermes', 'test/fixtures/models/llama-gqa', HERMES_TEMPLATE],
    ['llama3-json', 'test/fixtures/models/qwen2-bias', LLAMA_JSON_TEMPLATE],
  ] as const;
  for (const [syntax, from, template] of setups) {
    const dir = mkdtempSync(join(tmpdir(), `sluice-tools-${syntax}-`));
    dirs.push(dir);
    writeToolChatModel(from, dir, template);
    models[syntax] = await loadModel(dir, { device: gpu.device, dtype: 'f32', contextLength: 1024, parallel: 1 });
  }
});
afterAll(() => {
  for (const m of Object.values(models)) m?.dispose();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

async function reply(model: SluiceModel, messages: ChatMessage[], options: ChatOptions) {
  const run = model.chat(messages, { temperature: 1, maxTokens: 300, ...options });
  const deltas: ChatDelta[] = [];
  let r = await run.next();
  while (!r.done) {
    deltas.push(r.value);
    r = await run.next();
  }
  const calls = deltas.flatMap((d) => d.toolCalls ?? []);
  return { text: deltas.map((d) => d.text).join(''), calls, stats: r.value };
}

function expectValid(call: ToolCall, names: readonly string[]) {
  expect(names).toContain(call.function.name);
  expect(call).toMatchObject({ type: 'function', id: expect.stringMatching(/^call_[A-Za-z0-9]{24}$/) });
  const tool = TOOLS.find((t) => t.function.name === call.function.name)!;
  const validate = ajv.compile(tool.function.parameters ?? { type: 'object', additionalProperties: false });
  expect(validate(JSON.parse(call.function.arguments)), call.function.arguments).toBe(true);
}

describe.each(['hermes', 'llama3-json'] as const)('model.chat with tools (%s)', (syntax) => {
  it('tool_choice required → one call whose arguments validate, at temperature 1, each seed', async () => {
    for (const seed of SEEDS) {
      const r = await reply(models[syntax], ASK, { tools: TOOLS, toolChoice: 'required', seed });
      expect(r.calls, `seed ${seed}`).toHaveLength(1);
      expect(r.text).toBe('');
      expect(r.stats.stopReason).toBe('eos');
      expectValid(r.calls[0], ['get_weather', 'ping']);
    }
  });

  it('a named function → one call of it', async () => {
    const r = await reply(models[syntax], ASK, { tools: TOOLS, toolChoice: { type: 'function', function: { name: 'get_weather' } }, seed: 4 });
    expect(r.calls).toHaveLength(1);
    expectValid(r.calls[0], ['get_weather']);
  });

  it('tool_choice auto: calls taken out of the text, the content around them kept', async () => {
    const call = syntax === 'hermes' ? 'Checking\\.\\n<tool_call>\\n\\{"name": "ping", "arguments": \\{\\}\\}\\n</tool_call>' : '\\{"name": "ping", "parameters": \\{\\}\\}';
    const r = await reply(models[syntax], ASK, { tools: TOOLS, grammar: { regex: call }, seed: 5 });
    expect(r.text).toBe(syntax === 'hermes' ? 'Checking.' : '');
    expect(r.calls.map((c) => [c.function.name, c.function.arguments])).toEqual([['ping', '{}']]);
    // tool_choice none: tools not rendered, nothing parsed — the same text stays content.
    const none = await reply(models[syntax], ASK, { tools: TOOLS, toolChoice: 'none', grammar: { regex: call }, seed: 5 });
    expect(none.calls).toEqual([]);
    expect(none.text).toMatch(/"ping"/);
  });

  it('a call and its result go back into the next turn', () => {
    const calls: ToolCall[] = [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city": "Oslo", "unit": "c"}' } }];
    const turn: ChatMessage[] = [...ASK, { role: 'assistant', content: '', tool_calls: calls }, { role: 'tool', content: 'cold', tool_call_id: 'call_1' }];
    const engine = models[syntax].engine;
    const text = engine.parts.tokenizer!.decode(engine.chatPromptIds(turn, undefined, TOOLS));
    expect(text).toContain(syntax === 'hermes' ? '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo", "unit": "c"}}\n</tool_call>' : '{"name": "get_weather", "parameters": {"city": "Oslo", "unit": "c"}}');
    expect(text).toContain(syntax === 'hermes' ? '<tool_response>\ncold\n</tool_response>' : 'ipython<|end_header_id|>\n\ncold');
  });
});

describe('model.chat with a response format', () => {
  it('json_schema and json_object replies parse and validate, at temperature 1, each seed', async () => {
    const schema = {
      type: 'object',
      properties: { answer: { type: 'string', maxLength: 10 }, confidence: { type: 'number', minimum: 0, maximum: 1 }, tags: { type: 'array', items: { enum: ['x', 'y'] }, maxItems: 2 } },
      required: ['answer', 'confidence'],
      additionalProperties: false,
    };
    const validate = ajv.compile(schema);
    for (const seed of SEEDS) {
      const r = await reply(models.hermes, ASK, { responseFormat: { type: 'json_schema', schema, strict: true }, seed });
      expect(validate(JSON.parse(r.text)), r.text).toBe(true);
      // Any object may hold strings of any length, and a random model closes one with
      // chance 1/250 a token: a bias on '"' and '}' (applied after the grammar's mask, so
      // still only where allowed) ends the reply within the token budget.
      const logitBias = new Map([['"'.charCodeAt(0), 4], ['}'.charCodeAt(0), 4]]);
      const o = await reply(models['llama3-json'], ASK, { responseFormat: { type: 'json_object' }, seed, logitBias });
      expect(o.stats.stopReason, o.text).toBe('eos');
      const value = JSON.parse(o.text);
      expect(typeof value === 'object' && value !== null && !Array.isArray(value)).toBe(true);
    }
  });

  it('refuses, before generating, a schema it cannot enforce and two constraints at once', () => {
    const refused = (f: () => unknown, message: RegExp) => {
      let error: unknown;
      try {
        f();
      } catch (e) {
        error = e;
      }
      expect(isSluiceError(error, 'USAGE'), String(error)).toBe(true);
      expect((error as Error).message).toMatch(message);
    };
    refused(() => models.hermes.chat(ASK, { responseFormat: { type: 'json_schema', schema: { type: 'array', uniqueItems: true }, strict: true } }), /^responseFormat\.schema\.uniqueItems: /);
    refused(() => models.hermes.chat(ASK, { responseFormat: { type: 'json_object' }, grammar: { regex: 'a' } }), /both constrain the reply/);
    refused(() => models.hermes.chat(ASK, { tools: [{ type: 'function', function: { name: 'bad name' } }] }), /^tools\[0\]\.function\.name must be/);
  });
});

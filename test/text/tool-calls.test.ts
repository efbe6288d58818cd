// Tool calls, text side: the template → syntax detection, the OpenAI shapes' checks, and the
// parser on both syntaxes — well-formed calls, malformed model output (plain content, never
// a throw), and the same result however the text is cut into pushes.

import { describe, expect, it } from 'vitest';
import { isSluiceError } from '../../src/errors.js';
import { type ParsedPiece, ToolCallParser, type ToolCallSyntax, checkToolChoice, checkTools, newToolCallId, toolCallSyntax } from '../../src/text/tool-calls.js';
import { templateText } from './fixtures.js';
import { HERMES_TEMPLATE, LLAMA_JSON_TEMPLATE } from '../support/tools.js';

const NAMES = new Set(['get_weather', 'add']);

function parse(syntax: ToolCallSyntax, pieces: readonly string[]): ParsedPiece {
  let n = 0;
  const parser = new ToolCallParser(syntax, NAMES, () => `call_${n++}`);
  const out: ParsedPiece = { content: '', calls: [] };
  for (const piece of [...pieces.map((p) => parser.push(p)), parser.end()]) {
    out.content += piece.content;
    out.calls.push(...piece.calls);
  }
  return out;
}
const whole = (syntax: ToolCallSyntax, text: string) => parse(syntax, [text]);
const call = (id: number, name: string, args: object) => ({ id: `call_${id}`, type: 'function', function: { name, arguments: JSON.stringify(args) } });

/** A seeded generator (mulberry32). */
function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) >>> 0;
    let t = seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `text` cut at random places (pieces of 0–5 characters). */
function randomCuts(text: string, random: () => number): string[] {
  const out: string[] = [];
  for (let i = 0; i < text.length; ) {
    const n = Math.floor(random() * 6);
    out.push(text.slice(i, i + n));
    i += n;
  }
  return out;
}

describe('toolCallSyntax', () => {
  it('reads the syntax off the template text', async () => {
    expect(toolCallSyntax(HERMES_TEMPLATE)).toBe('hermes');
    expect(toolCallSyntax(LLAMA_JSON_TEMPLATE)).toBe('llama3-json');
    expect(toolCallSyntax(await templateText('llama3.2'))).toBe('llama3-json');
    for (const name of ['chatml-qwen2', 'llama3', 'llama2', 'mistral-v0.1', 'qwen3-style']) expect(toolCallSyntax(await templateText(name)), name).toBeNull();
    // Qwen3-Coder's XML-style calls use <tool_call> too, but not with JSON arguments.
    expect(toolCallSyntax('{% for tool in tools %}{% endfor %}<tool_call>\n<function=f>\n<parameter=x>"arguments"')).toBeNull();
    // A template that never reads `tools` takes none, whatever it prints.
    expect(toolCallSyntax('<tool_call>{"name": "f", "arguments": {}}</tool_call>')).toBeNull();
  });
});

describe('checkTools and checkToolChoice', () => {
  const tool = (name: string, extra: object = {}) => ({ type: 'function', function: { name, ...extra } });
  const refused = (f: () => unknown, message: RegExp) => {
    try {
      f();
    } catch (e) {
      expect(isSluiceError(e, 'USAGE')).toBe(true);
      expect((e as Error).message).toMatch(message);
      return;
    }
    throw new Error('not refused');
  };

  it('keeps the OpenAI fields it knows, and only them', () => {
    const tools = checkTools([tool('a', { description: 'd', parameters: { type: 'object' }, strict: true, extra: 1 })]);
    expect(tools).toEqual([{ type: 'function', function: { name: 'a', description: 'd', parameters: { type: 'object' }, strict: true } }]);
    expect(checkToolChoice({ type: 'function', function: { name: 'a' } }, tools)).toEqual({ type: 'function', function: { name: 'a' } });
    expect(checkToolChoice('auto', undefined)).toBe('auto');
  });

  it('names the field at fault', () => {
    refused(() => checkTools({}), /^tools must be a list/);
    refused(() => checkTools([tool('a'), { type: 'retrieval' }]), /^tools\[1\] must be/);
    refused(() => checkTools([tool('a b')]), /^tools\[0\]\.function\.name must be 1 to 64 letters.*"a b"/);
    refused(() => checkTools([tool('a'), tool('a')]), /^tools\[1\]\.function\.name: "a" is given twice/);
    refused(() => checkTools([tool('a', { parameters: [] })]), /^tools\[0\]\.function\.parameters must be a JSON schema object/);
    refused(() => checkTools(Array.from({ length: 129 }, (_, i) => tool(`f${i}`))), /at most 128/);
    refused(() => checkToolChoice('sometimes', []), /^toolChoice must be "auto"/);
    refused(() => checkToolChoice('required', []), /^toolChoice "required" needs tools/);
    refused(() => checkToolChoice({ type: 'function', function: { name: 'b' } }, checkTools([tool('a')]), 'tool_choice'), /^tool_choice: no tool is named "b"/);
  });

  it('makes OpenAI-looking ids, each different', () => {
    const ids = new Set(Array.from({ length: 100 }, newToolCallId));
    expect(ids.size).toBe(100);
    for (const id of ids) expect(id).toMatch(/^call_[A-Za-z0-9]{24}$/);
  });
});

describe('ToolCallParser, Hermes', () => {
  it('takes calls out of the text, content before them kept', () => {
    const text = 'Let me look.\n\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>\n';
    expect(whole('hermes', text)).toEqual({ content: 'Let me look.', calls: [call(0, 'get_weather', { city: 'Paris' }), call(1, 'add', { a: 1, b: 2 })] });
  });

  it('accepts arguments as a JSON string, "parameters", no arguments, and a call the reply ended inside', () => {
    expect(whole('hermes', '<tool_call>{"name": "add", "arguments": "{\\"a\\": 1}"}</tool_call>').calls).toEqual([call(0, 'add', { a: 1 })]);
    expect(whole('hermes', '<tool_call>{"name": "add", "parameters": {"a": 1}}</tool_call>').calls).toEqual([call(0, 'add', { a: 1 })]);
    expect(whole('hermes', '<tool_call>{"name": "add"}</tool_call>').calls).toEqual([call(0, 'add', {})]);
    expect(whole('hermes', '<tool_call>\n{"name": "add", "arguments": {}}\n')).toEqual({ content: '', calls: [call(0, 'add', {})] });
  });

  it('leaves malformed calls as content, as written', () => {
    const bad = [
      '<tool_call>{"name": "add", "arguments": {"a": 1}</tool_call>', // broken JSON
      '<tool_call>{"name": "delete_all", "arguments": {}}</tool_call>', // not a tool
      '<tool_call>{"name": "add", "arguments": [1, 2]}</tool_call>', // arguments not an object
      '<tool_call>{"name": "add", "arguments": {}, "extra": 1}</tool_call>', // unknown key
      '<tool_call>{"name": "add", "arguments": "not json"}</tool_call>',
      '<tool_call>["add"]</tool_call>',
      '<tool_call>{"name": "add", "argu', // cut short
      'a < b, and <tool_ is not a tag; neither is </tool_call>',
    ];
    for (const text of bad) expect(whole('hermes', text), text).toEqual({ content: text, calls: [] });
    // A bad call among good ones stays where it was, as content.
    const mixed = whole('hermes', '<tool_call>{"name": "add", "arguments": {}}</tool_call>\n<tool_call>{oops}</tool_call>');
    expect(mixed).toEqual({ content: '\n<tool_call>{oops}</tool_call>', calls: [call(0, 'add', {})] });
  });

  it('gives a reply without calls exactly as written', () => {
    for (const text of ['', '  ', 'Hello\n\n', ' <tool', 'x<tool_cal', 'trailing space ']) expect(whole('hermes', text)).toEqual({ content: text, calls: [] });
  });
});

describe('ToolCallParser, Llama 3.1 JSON', () => {
  it('reads the whole reply as calls', () => {
    expect(whole('llama3-json', '{"name": "get_weather", "parameters": {"city": "Rome"}}')).toEqual({ content: '', calls: [call(0, 'get_weather', { city: 'Rome' })] });
    expect(whole('llama3-json', ' \n<|python_tag|>{"name": "add", "parameters": {"a": 1}}; {"type": "function", "name": "add", "arguments": {"b": "}{;"}}')).toEqual({
      content: '',
      calls: [call(0, 'add', { a: 1 }), call(1, 'add', { b: '}{;' })],
    });
  });

  it('leaves anything else as content, as written', () => {
    const texts = [
      'The weather is fine.',
      '  {"answer": 42}',
      '{"name": "get_weather", "parameters": {"city": "Rome"}} and more',
      '{"name": "get_weather", "parameters": {"city": "Rome"}',
      '{"name": "nope", "parameters": {}}',
      '{"name": "add", "parameters": {}}; oops',
      '<|python_tag|>print(1)',
      '<|python',
      '{',
      '  ',
      '',
    ];
    for (const text of texts) expect(whole('llama3-json', text), text).toEqual({ content: text, calls: [] });
  });

  it('streams text that cannot be a call at once, holds JSON to the end', () => {
    const parser = new ToolCallParser('llama3-json', NAMES);
    expect(parser.push(' Hi').content).toBe(' Hi');
    const json = new ToolCallParser('llama3-json', NAMES);
    expect(json.push('{"name": "add", ').content).toBe('');
    expect(json.push('"parameters": {}}').content).toBe('');
    expect(json.end().calls).toHaveLength(1);
  });
});

describe('ToolCallParser, cut anywhere', () => {
  const samples: [ToolCallSyntax, string][] = [
    ['hermes', 'Sure <tool_call>\n{"name": "add", "arguments": {"a": "</tool_call>"}}\n</tool_call> done  \n'],
    ['hermes', 'a<tool_call>{"name": "add"}</tool_call>  <tool_call>{bad}</tool_call> b <tool_call>{"name": "get_weather", "arguments": {}}'],
    ['hermes', '<<tool_call<tool_call>>{"name":"add","arguments":{"x":[1,{"y":null}]}}</tool_call>'],
    ['llama3-json', '\n <|python_tag|>{"name": "add", "parameters": {"a": "x"}};{"name": "get_weather", "parameters": {}}'],
    ['llama3-json', '<|python_ta'],
    ['llama3-json', '  not a call {"name": "add", "parameters": {}}'],
  ];
  it('gives the same content and calls however the text is pushed', () => {
    const random = rng(7);
    for (const [syntax, text] of samples) {
      const want = whole(syntax, text);
      for (let trial = 0; trial < 40; trial++) expect(parse(syntax, randomCuts(text, random)), `${syntax} ${JSON.stringify(text)}`).toEqual(want);
    }
  });

  it('never throws on random text made of call pieces, and loses none of a reply without calls', () => {
    const random = rng(11);
    const pieces = ['<tool_call>', '</tool_call>', '<tool_', '{"name": "add", "arguments": {', '"a": 1', '}', '}}', '{', '"', '\\', ' ', '\n', 'x', ';', '<|python_tag|>', '{"name": "add", "parameters": {}}'];
    for (let trial = 0; trial < 400; trial++) {
      const text = Array.from({ length: 1 + Math.floor(random() * 12) }, () => pieces[Math.floor(random() * pieces.length)]).join('');
      for (const syntax of ['hermes', 'llama3-json'] as const) {
        const got = whole(syntax, text);
        expect(parse(syntax, randomCuts(text, random))).toEqual(got);
        if (got.calls.length === 0) expect(got.content).toBe(text);
        for (const c of got.calls) expect(JSON.parse(c.function.arguments)).toBeTypeOf('object');
      }
    }
  });
});

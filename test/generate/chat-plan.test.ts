// A chat request's response format and tools → the reply's grammar (CPU only): seeded random
// walks through each grammar (any allowed token, uniformly, as a random model at any
// temperature may pick) give replies that parse — JSON that validates (ajv), or exactly one
// call of an allowed tool whose arguments validate against its parameters — and bad
// schemas are refused naming the field and the keyword.

import { describe, expect, it } from 'vitest';
import { isSluiceError } from '../../src/errors.js';
import { type ChatPlan, type ChatPlanRequest, LIBRARY_LABELS, planChat } from '../../src/generate/chat-plan.js';
import { ToolCallParser, type ToolCallSyntax, type ToolDefinition } from '../../src/text/tool-calls.js';
import { makeAjv, randomWalk, testVocabulary } from '../grammar/support.js';
import { TEST_TOOLS } from '../support/tools.js';

const TOOLS = TEST_TOOLS as unknown as ToolDefinition[];
const SEEDS = 12;
const ajv = makeAjv();

const context = (syntax: ToolCallSyntax | null) => ({ syntax, templateSource: 'dir/chat_template.jinja', vocabulary: () => testVocabulary().vocab });
const plan = (request: ChatPlanRequest, syntax: ToolCallSyntax | null = 'hermes', labels = LIBRARY_LABELS) => planChat(request, context(syntax), labels);

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

/** Random replies under the plan's grammar, each parsed as the engine parses it. */
function replies(p: ChatPlan) {
  return Array.from({ length: SEEDS }, (_, seed) => {
    const text = randomWalk(p.grammar!, rng(seed + 1));
    const parser = new ToolCallParser(p.parse!.syntax, p.parse!.names);
    const a = parser.push(text);
    const b = parser.end();
    return { text, content: a.content + b.content, calls: [...a.calls, ...b.calls] };
  });
}

function expectValidCall(call: { function: { name: string; arguments: string } }, allowed: readonly string[]) {
  expect(allowed).toContain(call.function.name);
  const tool = TOOLS.find((t) => t.function.name === call.function.name)!;
  const validate = ajv.compile(tool.function.parameters ?? { type: 'object', additionalProperties: false });
  expect(validate(JSON.parse(call.function.arguments)), `${call.function.arguments}: ${JSON.stringify(validate.errors)}`).toBe(true);
}

function refused(f: () => unknown, message: RegExp) {
  try {
    f();
  } catch (e) {
    expect(isSluiceError(e, 'USAGE'), String(e)).toBe(true);
    expect((e as Error).message).toMatch(message);
    return;
  }
  throw new Error('not refused');
}

describe('planChat: tools', () => {
  for (const syntax of ['hermes', 'llama3-json'] as const) {
    it(`${syntax}: "required" → one call of any tool, arguments valid`, () => {
      const p = plan({ tools: TOOLS, toolChoice: 'required' }, syntax);
      expect(p.tools).toEqual(TOOLS);
      const seen = new Set<string>();
      for (const r of replies(p)) {
        expect(r.calls, r.text).toHaveLength(1);
        expect(r.content).toBe('');
        expectValidCall(r.calls[0], ['get_weather', 'route', 'ping']);
        seen.add(r.calls[0].function.name);
        if (syntax === 'hermes') expect(r.text).toMatch(/^<tool_call>\n\{"name": "[a-z_]+", "arguments": [^]*\}\n<\/tool_call>$/);
        else expect(r.text).toMatch(/^\{"name": "[a-z_]+", "parameters": [^]*\}$/);
      }
      expect(seen.size).toBeGreaterThan(1); // the tools are alternatives, not the first only
    });

    it(`${syntax}: a named function → one call of it`, () => {
      for (const name of ['route', 'ping']) {
        const p = plan({ tools: TOOLS, toolChoice: { type: 'function', function: { name } } }, syntax);
        for (const r of replies(p)) {
          expect(r.calls, r.text).toHaveLength(1);
          expectValidCall(r.calls[0], [name]);
        }
      }
    });
  }

  it('"auto" renders and parses, without a grammar; with a JSON format, a call or the format', () => {
    const auto = plan({ tools: TOOLS });
    expect(auto).toMatchObject({ tools: TOOLS, parse: { syntax: 'hermes' } });
    expect(auto.grammar).toBeUndefined();
    const schema = { type: 'object', properties: { answer: { type: 'string', maxLength: 5 } }, required: ['answer'], additionalProperties: false };
    const p = plan({ tools: TOOLS, responseFormat: { type: 'json_schema', schema } });
    const validate = ajv.compile(schema);
    const kinds = new Set<string>();
    for (const r of replies(p)) {
      if (r.calls.length) expectValidCall(r.calls[0], ['get_weather', 'route', 'ping']);
      else expect(validate(JSON.parse(r.content)), r.content).toBe(true);
      kinds.add(r.calls.length ? 'call' : 'json');
    }
    expect(kinds.size).toBe(2);
  });

  it('"none" renders no tools and parses nothing (any template)', () => {
    expect(plan({ tools: TOOLS, toolChoice: 'none' }, null)).toEqual({ tools: null, grammar: undefined, parse: null });
  });

  it('refuses tools the template cannot take, and bad tools or choices, naming them', () => {
    refused(() => plan({ tools: TOOLS }, null), /^tools: dir\/chat_template\.jinja does not render tools in a tool-call syntax sluice parses/);
    refused(() => plan({ toolChoice: 'auto' }), /^toolChoice needs tools/);
    refused(() => plan({ tools: TOOLS, toolChoice: { type: 'function', function: { name: 'nope' } } }), /^toolChoice: no tool is named "nope"/);
    const bad = [...TOOLS, { type: 'function', function: { name: 'tags', strict: true, parameters: { type: 'object', properties: { t: { type: 'array', uniqueItems: true } } } } }] as ToolDefinition[];
    refused(() => plan({ tools: bad, toolChoice: 'required' }), /^tools\[3\]\.function\.parameters\.properties\.t\.uniqueItems: /);
    // Not strict (OpenAI's default): the keyword it cannot enforce is ignored.
    const lax = bad.map((t) => (t.function.name === 'tags' ? { ...t, function: { ...t.function, strict: false } } : t));
    expect(plan({ tools: lax, toolChoice: 'required' }).grammar).toBeDefined();
    refused(() => plan({ tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object', properties: { x: { type: 'strnig' } } } } }], toolChoice: 'required' }), /^tools\[0\]\.function\.parameters\.properties\.x/);
  });
});

describe('planChat: response format', () => {
  it('json_object → any JSON object; text → no grammar', () => {
    expect(plan({ responseFormat: { type: 'text' } })).toEqual({ tools: null, grammar: undefined, parse: null });
    const p = plan({ responseFormat: { type: 'json_object' } });
    for (let seed = 1; seed <= SEEDS; seed++) {
      const value = JSON.parse(randomWalk(p.grammar!, rng(seed)));
      expect(typeof value === 'object' && value !== null && !Array.isArray(value)).toBe(true);
    }
  });

  it('json_schema → replies that validate', () => {
    const schema = {
      type: 'object',
      properties: { name: { type: 'string', maxLength: 8 }, tags: { type: 'array', items: { enum: ['a', 'b'] }, minItems: 1, maxItems: 3 }, score: { anyOf: [{ type: 'number', minimum: 0, maximum: 1 }, { type: 'null' }] } },
      required: ['name', 'tags', 'score'],
      additionalProperties: false,
    };
    const p = plan({ responseFormat: { type: 'json_schema', schema, strict: true } });
    const validate = ajv.compile(schema);
    for (let seed = 1; seed <= SEEDS; seed++) {
      const text = randomWalk(p.grammar!, rng(seed));
      expect(validate(JSON.parse(text)), text).toBe(true);
    }
  });

  it('refuses a bad format naming the field and keyword (strict: only when asked, as OpenAI)', () => {
    const schema = { type: 'object', properties: { tags: { type: 'array', uniqueItems: true } } };
    refused(() => plan({ responseFormat: { type: 'json_schema', schema, strict: true } }), /^responseFormat\.schema\.properties\.tags\.uniqueItems: .*strict/);
    expect(plan({ responseFormat: { type: 'json_schema', schema } }).grammar).toBeDefined();
    const server = { responseFormat: 'response_format', schema: 'response_format.json_schema.schema', tools: 'tools', toolChoice: 'tool_choice' };
    refused(() => plan({ responseFormat: { type: 'json_schema', schema: { type: 'object', properties: { d: { type: 'string', format: 'color' } } } } }, 'hermes', server), /^response_format\.json_schema\.schema\.properties\.d\.format: unknown format "color"/);
    refused(() => plan({ responseFormat: { type: 'xml' } as never }), /^responseFormat\.type must be "text", "json_object" or "json_schema", not "xml"/);
    refused(() => plan({ responseFormat: { type: 'json_schema' } as never }), /^responseFormat: json_schema needs a schema/);
    refused(() => plan({ responseFormat: { type: 'json_schema', schema: { $ref: '#/$defs/a', $defs: { a: { $ref: '#/$defs/a' } } } } }), /^responseFormat\.schema/);
  });
});

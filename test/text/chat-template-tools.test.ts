// Chat templates given tools, assistant turns with tool calls and tool results: rendered as
// transformers renders them (tools as a list of {type, function}; a call's arguments handed
// to the template as an object, so `arguments | tojson` writes JSON, not a quoted string;
// `'tool_calls' in message` false on turns without calls). Expected strings are written from
// the templates' text and Python jinja2's semantics (json.dumps for tojson; a string `is
// iterable`, so Llama's template writes a tool result through tojson, quoted).

import { describe, expect, it } from 'vitest';
import { isSluiceError } from '../../src/errors.js';
import { ChatTemplate, type ChatMessage } from '../../src/text/chat-template.js';
import type { ToolDefinition } from '../../src/text/tool-calls.js';
import { HERMES_TEMPLATE } from '../support/tools.js';
import { templateText } from './fixtures.js';

const WEATHER: ToolDefinition = {
  type: 'function',
  function: { name: 'get_weather', description: 'Weather now', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } },
};
const CONVERSATION: ChatMessage[] = [
  { role: 'user', content: 'Weather in Paris?' },
  { role: 'assistant', content: '', tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city": "Paris"}' } }] },
  { role: 'tool', content: '{"temp": 21}', tool_call_id: 'call_1' },
];

describe('chat templates with tools', () => {
  it('Llama 3.2: tools in the first user turn (tojson indent 4), a call as {"name", "parameters"}, the result as ipython', async () => {
    const chat = new ChatTemplate(await templateText('llama3.2'), 'llama3.2.jinja', { bos_token: '<|begin_of_text|>' });
    const toolJson = JSON.stringify(WEATHER, null, 4); // json.dumps(indent=4) writes the same for these values
    expect(toolJson).toContain('\n    "type": "function",\n');
    const want =
      '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nEnvironment: ipython\nCutting Knowledge Date: December 2023\nToday Date: 05 Jan 2025\n\n<|eot_id|>' +
      '<|start_header_id|>user<|end_header_id|>\n\nGiven the following functions, please respond with a JSON for a function call with its proper arguments that best answers the given prompt.\n\n' +
      'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.Do not use variables.\n\n' +
      `${toolJson}\n\nWeather in Paris?<|eot_id|>` +
      '<|start_header_id|>assistant<|end_header_id|>\n\n{"name": "get_weather", "parameters": {"city": "Paris"}}<|eot_id|>' +
      '<|start_header_id|>ipython<|end_header_id|>\n\n"{\\"temp\\": 21}"<|eot_id|>' +
      '<|start_header_id|>assistant<|end_header_id|>\n\n';
    expect(chat.render(CONVERSATION, { tools: [WEATHER], addGenerationPrompt: true, variables: { date_string: '05 Jan 2025' } })).toBe(want);
    // withTools binds the same list; null or [] renders none (Environment line gone).
    expect(chat.withTools([WEATHER]).render(CONVERSATION, { addGenerationPrompt: true, variables: { date_string: '05 Jan 2025' } })).toBe(want);
    expect(chat.withTools([]).render(CONVERSATION.slice(0, 1), { variables: { date_string: '05 Jan 2025' } })).not.toContain('ipython');
  });

  it('Hermes (Qwen2.5 style): tools as JSON lines in the system turn, calls in <tool_call>, results grouped in one user turn', () => {
    const chat = new ChatTemplate(HERMES_TEMPLATE, 'hermes.jinja');
    const messages: ChatMessage[] = [
      { role: 'system', content: 'Be brief.' },
      ...CONVERSATION.slice(0, 1),
      { role: 'assistant', content: 'Checking.', tool_calls: [CONVERSATION[1].tool_calls![0], { id: 'call_2', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Rome"}' } }] },
      CONVERSATION[2],
      { role: 'tool', content: 'sunny', tool_call_id: 'call_2' },
    ];
    expect(chat.render(messages, { tools: [WEATHER], addGenerationPrompt: true })).toBe(
      '<|im_start|>system\nBe brief.\n\n# Tools\n<tools>\n' +
        '{"type": "function", "function": {"name": "get_weather", "description": "Weather now", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}' +
        '\n</tools>\nCall a function as <tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n' +
        '<|im_start|>user\nWeather in Paris?<|im_end|>\n' +
        '<|im_start|>assistant\nChecking.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call><|im_end|>\n' +
        '<|im_start|>user\n<tool_response>\n{"temp": 21}\n</tool_response>\n<tool_response>\nsunny\n</tool_response><|im_end|>\n' +
        '<|im_start|>assistant\n',
    );
  });

  it('refuses tool calls whose arguments are not JSON, and ill-typed tool fields', () => {
    const chat = new ChatTemplate(HERMES_TEMPLATE, 'hermes.jinja');
    const bad: ChatMessage[] = [{ role: 'assistant', content: '', tool_calls: [{ id: 'c', type: 'function', function: { name: 'f', arguments: '{city: Paris}' } }] }];
    expect(() => chat.render(bad)).toThrow(/^messages\[0\]\.tool_calls\[0\]\.function\.arguments is not JSON text$/);
    try {
      chat.render(bad);
    } catch (e) {
      expect(isSluiceError(e, 'USAGE')).toBe(true);
    }
    expect(() => chat.render([{ role: 'assistant', content: '', tool_calls: 'x' as never }])).toThrow(/messages\[0\]\.tool_calls must be a list/);
    expect(() => chat.render([{ role: 'tool', content: 'x', tool_call_id: 5 as never }])).toThrow(/messages\[0\]\.tool_call_id must be a string/);
  });
});

// Chat templates with tools for the tiny test models, short (the byte tokenizer makes
// every character a token) but shaped like the real ones: HERMES_TEMPLATE follows
// Qwen2.5-Instruct's tokenizer_config.json (tools as JSON lines in <tools> in the system
// turn; calls as <tool_call> JSON; tool results as <tool_response> in a user turn),
// LLAMA_JSON_TEMPLATE follows Llama 3.1-Instruct's (tools as JSON in the system turn, an
// `ipython` environment, one {"name", "parameters"} call per assistant turn, results in
// ipython turns). writeToolChatModel puts one into a chat model folder. TEST_TOOLS: tools
// whose arguments a random model fills in a few dozen tokens (bounded strings, enums,
// small integers, a $ref, one without parameters).

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ToolDefinition } from '../../src/text/tool-calls.js';
import { writeChatModel } from './byte-tokenizer.js';

export const HERMES_TEMPLATE = `{%- if tools %}
{{- '<|im_start|>system\\n' }}
{%- if messages[0].role == 'system' %}{{- messages[0].content + '\\n\\n' }}{%- endif %}
{{- '# Tools\\n<tools>' }}
{%- for tool in tools %}{{- '\\n' + (tool | tojson) }}{%- endfor %}
{{- '\\n</tools>\\nCall a function as <tool_call>\\n{"name": <function-name>, "arguments": <args-json-object>}\\n</tool_call><|im_end|>\\n' }}
{%- elif messages[0].role == 'system' %}
{{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}
{%- endif %}
{%- for message in messages %}
{%- if message.role == 'user' or (message.role == 'system' and not loop.first) or (message.role == 'assistant' and not message.tool_calls) %}
{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}
{%- elif message.role == 'assistant' %}
{{- '<|im_start|>assistant' }}
{%- if message.content %}{{- '\\n' + message.content }}{%- endif %}
{%- for tool_call in message.tool_calls %}
{%- if tool_call.function is defined %}{%- set tool_call = tool_call.function %}{%- endif %}
{{- '\\n<tool_call>\\n{"name": "' + tool_call.name + '", "arguments": ' + (tool_call.arguments | tojson) + '}\\n</tool_call>' }}
{%- endfor %}
{{- '<|im_end|>\\n' }}
{%- elif message.role == 'tool' %}
{%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}{{- '<|im_start|>user' }}{%- endif %}
{{- '\\n<tool_response>\\n' + message.content + '\\n</tool_response>' }}
{%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}{{- '<|im_end|>\\n' }}{%- endif %}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}`;

export const LLAMA_JSON_TEMPLATE = `{{- bos_token }}
{%- if messages[0].role == 'system' %}{%- set system = messages[0].content %}{%- set messages = messages[1:] %}{%- else %}{%- set system = '' %}{%- endif %}
{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' }}
{%- if tools is not none %}
{{- 'Environment: ipython\\nRespond in the format {"name": function name, "parameters": dictionary of argument name and its value}.\\n' }}
{%- for t in tools %}{{- (t | tojson) + '\\n' }}{%- endfor %}
{%- endif %}
{{- system + '<|eot_id|>' }}
{%- for message in messages %}
{%- if 'tool_calls' in message %}
{%- if message.tool_calls | length != 1 %}{{- raise_exception('This model only supports single tool-calls at once!') }}{%- endif %}
{%- set tool_call = message.tool_calls[0].function %}
{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n{"name": "' + tool_call.name + '", "parameters": ' + (tool_call.arguments | tojson) + '}<|eot_id|>' }}
{%- elif message.role == 'tool' %}
{{- '<|start_header_id|>ipython<|end_header_id|>\\n\\n' + message.content + '<|eot_id|>' }}
{%- else %}
{{- '<|start_header_id|>' + message.role + '<|end_header_id|>\\n\\n' + message.content + '<|eot_id|>' }}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}`;

/** A chat model folder (writeChatModel) whose chat_template.jinja is `template`. */
export function writeToolChatModel(from: string, dir: string, template: string): void {
  writeChatModel(from, dir);
  writeFileSync(join(dir, 'chat_template.jinja'), template);
}

export const TEST_TOOLS = [
  {
    type: 'function',
    function: {
      name: 'get_weather',
      description: 'The weather of a city',
      parameters: {
        type: 'object',
        properties: { city: { type: 'string', maxLength: 6 }, unit: { enum: ['c', 'f'] }, days: { type: 'integer', minimum: 1, maximum: 7 } },
        required: ['city', 'unit'],
        additionalProperties: false,
      },
    },
  },
  {
    type: 'function',
    function: {
      name: 'route',
      parameters: {
        $defs: { point: { type: 'object', properties: { x: { type: 'integer', minimum: -99, maximum: 99 }, y: { type: 'integer', minimum: -99, maximum: 99 } }, required: ['x', 'y'], additionalProperties: false } },
        type: 'object',
        properties: { from: { $ref: '#/$defs/point' }, to: { $ref: '#/$defs/point' }, fast: { type: 'boolean' } },
        required: ['from', 'to'],
        additionalProperties: false,
      },
    },
  },
  { type: 'function', function: { name: 'ping', description: 'No arguments' } },
] as const satisfies readonly ToolDefinition[];

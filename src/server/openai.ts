// The OpenAI request bodies sluice accepts, checked field by field into GenerateOptions,
// and the error shape OpenAI clients expect: {"error": {message, type, param, code}}.
// Ranges are OpenAI's documented ones (API reference, "Create chat completion"): a value
// outside them is a 400 naming the field, never silently clamped or ignored.

import type { ChatPlanLabels, ChatPlanRequest, ResponseFormat } from '../generate/chat-plan.js';
import { type GenerateOptions, LOGIT_BIAS_MAX, LOGPROBS_MAX } from '../generate/generate.js';
import { type ChatMessage, RESERVED_TEMPLATE_VARIABLES } from '../text/chat-template.js';
import type { ToolCall, ToolChoice, ToolDefinition } from '../text/tool-calls.js';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type = 'invalid_request_error',
    readonly param: string | null = null,
    readonly code: string | null = null,
    /** Extra response headers (Retry-After on a 429). */
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
  }

  toJson() {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

const bad = (param: string, message: string) => new ApiError(400, message, 'invalid_request_error', param);

/** Most choices one request may ask for (n); they run one after another. */
export const MAX_CHOICES = 16;

/** A completion request's options, both endpoints. */
export interface CompletionRequest {
  /** Sampling, per choice (choice i > 0 with a seed draws with seed + i). */
  options: GenerateOptions;
  /** Choices to generate (n). */
  n: number;
  stream: boolean;
  /** stream_options.include_usage: a last chunk with usage and no choices. */
  includeUsage: boolean;
}

/**
 * Sampling and response fields shared by both endpoints: OpenAI's, plus llama-server's
 * top_k, min_p and repetition_penalty. `vocab`: the model's vocabulary (logit_bias keys).
 */
export function completionRequest(body: Record<string, unknown>, chat: boolean, vocab: number): CompletionRequest {
  const options: GenerateOptions = {};
  const number = (key: string, check: (x: number) => boolean, what: string): number | undefined => {
    const v = body[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number' || !Number.isFinite(v) || !check(v)) throw bad(key, `${key} must be ${what}`);
    return v;
  };
  const whole = (key: string, min: number, max = Number.MAX_SAFE_INTEGER) =>
    number(key, (x) => Number.isSafeInteger(x) && x >= min && x <= max, max === Number.MAX_SAFE_INTEGER ? `a whole number ≥ ${min}` : `a whole number in [${min}, ${max}]`);
  const set = <K extends keyof GenerateOptions>(key: K, value: GenerateOptions[K] | undefined) => {
    if (value !== undefined) options[key] = value;
  };
  set('temperature', number('temperature', (x) => x >= 0 && x <= 2, 'a number in [0, 2]'));
  // top_p 0 keeps only the most probable token (the sampler keeps the max at any top_p).
  set('topP', number('top_p', (x) => x >= 0 && x <= 1, 'a number in [0, 1]'));
  set('topK', whole('top_k', 0));
  set('minP', number('min_p', (x) => x >= 0 && x <= 1, 'a number in [0, 1]'));
  set('repetitionPenalty', number('repetition_penalty', (x) => x > 0, 'a number > 0'));
  const seed = number('seed', (x) => Number.isSafeInteger(x), 'an integer');
  if (seed !== undefined) options.seed = seed >>> 0; // any integer → a u32 stream
  set('maxTokens', whole('max_completion_tokens', 1) ?? whole('max_tokens', 1));
  set('frequencyPenalty', number('frequency_penalty', (x) => x >= -2 && x <= 2, 'a number in [-2, 2]'));
  set('presencePenalty', number('presence_penalty', (x) => x >= -2 && x <= 2, 'a number in [-2, 2]'));
  set('logitBias', logitBias(body.logit_bias, vocab));
  set('logprobs', chat ? chatLogprobs(body) : whole('logprobs', 0, LOGPROBS_MAX));
  const stop = body.stop;
  if (stop !== undefined && stop !== null) {
    const list = typeof stop === 'string' ? [stop] : stop;
    if (!Array.isArray(list) || list.length > 4 || list.some((s) => typeof s !== 'string' || s === '')) throw bad('stop', 'stop must be a string or up to 4 non-empty strings');
    options.stop = list as string[];
  }
  const n = whole('n', 1, MAX_CHOICES) ?? 1;
  if (body.stream !== undefined && body.stream !== null && typeof body.stream !== 'boolean') throw bad('stream', 'stream must be true or false');
  const stream = body.stream === true;
  return { options, n, stream, includeUsage: includeUsage(body.stream_options, stream) };
}

/** logit_bias: {"token id": bias}, ids in the vocabulary, biases in [-100, 100]; null or {} → none. */
function logitBias(value: unknown, vocab: number): Map<number, number> | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'object' || Array.isArray(value)) throw bad('logit_bias', 'logit_bias must be an object of token id → bias, e.g. {"50256": -100}');
  const entries = Object.entries(value);
  if (entries.length > LOGIT_BIAS_MAX) throw bad('logit_bias', `logit_bias has ${entries.length} entries; at most ${LOGIT_BIAS_MAX}`);
  if (entries.length === 0) return undefined;
  const out = new Map<number, number>();
  for (const [key, bias] of entries) {
    const id = /^(0|[1-9][0-9]*)$/.test(key) ? Number(key) : NaN;
    if (!(id < vocab)) throw bad('logit_bias', `logit_bias: ${JSON.stringify(key)} is not a token id of this model (0 to ${vocab - 1})`);
    if (typeof bias !== 'number' || !(bias >= -100 && bias <= 100)) throw bad('logit_bias', `logit_bias: the bias of token ${key} must be a number in [-100, 100]`);
    out.set(id, bias);
  }
  return out;
}

/** Chat's logprobs (true/false) and top_logprobs (0–20, only with logprobs: true) → alternatives per token, or undefined. */
function chatLogprobs(body: Record<string, unknown>): number | undefined {
  const { logprobs, top_logprobs: top } = body;
  if (logprobs !== undefined && logprobs !== null && typeof logprobs !== 'boolean') throw bad('logprobs', 'logprobs must be true or false');
  if (top === undefined || top === null) return logprobs === true ? 0 : undefined;
  if (typeof top !== 'number' || !Number.isSafeInteger(top) || top < 0 || top > LOGPROBS_MAX) throw bad('top_logprobs', `top_logprobs must be a whole number in [0, ${LOGPROBS_MAX}]`);
  if (logprobs !== true) throw bad('top_logprobs', 'top_logprobs needs logprobs: true');
  return top;
}

/** stream_options: {include_usage: boolean}, only with stream: true (as OpenAI refuses it otherwise). */
function includeUsage(value: unknown, stream: boolean): boolean {
  if (value === undefined || value === null) return false;
  if (!stream) throw bad('stream_options', 'stream_options is only allowed with stream: true');
  if (typeof value !== 'object' || Array.isArray(value)) throw bad('stream_options', 'stream_options must be an object, e.g. {"include_usage": true}');
  const { include_usage: include } = value as { include_usage?: unknown };
  if (include !== undefined && include !== null && typeof include !== 'boolean') throw bad('stream_options.include_usage', 'stream_options.include_usage must be true or false');
  return include === true;
}

export function chatMessages(body: Record<string, unknown>): ChatMessage[] {
  const messages = body.messages;
  if (!Array.isArray(messages) || messages.length === 0) throw bad('messages', 'messages must be a non-empty array');
  return messages.map((m, i) => {
    const param = `messages[${i}]`;
    if (typeof m !== 'object' || m === null) throw bad(param, `${param} must be an object`);
    const { role, content, tool_calls: calls, tool_call_id: callId, name } = m as Record<string, unknown>;
    // developer is OpenAI's newer name for system (o1 and later); templates know only system.
    if (role !== 'system' && role !== 'user' && role !== 'assistant' && role !== 'developer' && role !== 'tool') throw bad(`${param}.role`, `${param}.role must be system, developer, user, assistant or tool`);
    // An empty list is no calls (Llama's template would refuse a turn with zero calls).
    const called = role === 'assistant' && calls !== undefined && calls !== null ? toolCalls(calls, `${param}.tool_calls`) : [];
    // An assistant turn that only called tools has content null (OpenAI's shape).
    const message: ChatMessage = { role: role === 'developer' ? 'system' : role, content: called.length > 0 && content === null ? '' : messageText(content, `${param}.content`) };
    if (called.length > 0) message.tool_calls = called;
    if (role === 'tool') {
      if (typeof callId !== 'string') throw bad(`${param}.tool_call_id`, `${param}.tool_call_id must be the id of the call this answers`);
      message.tool_call_id = callId;
    }
    if (typeof name === 'string' && role === 'tool') message.name = name;
    return message;
  });
}

/** An assistant turn's tool_calls: [{id, type: "function", function: {name, arguments: JSON text}}]. */
function toolCalls(value: unknown, param: string): ToolCall[] {
  if (!Array.isArray(value)) throw bad(param, `${param} must be a list of calls`);
  return value.map((c, j) => {
    const at = `${param}[${j}]`;
    const call = c as { id?: unknown; type?: unknown; function?: { name?: unknown; arguments?: unknown } };
    if (typeof call?.id !== 'string' || call.type !== 'function' || typeof call.function?.name !== 'string' || typeof call.function.arguments !== 'string') {
      throw bad(at, `${at} must be {"id", "type": "function", "function": {"name", "arguments"}}`);
    }
    try {
      JSON.parse(call.function.arguments);
    } catch {
      throw bad(`${at}.function.arguments`, `${at}.function.arguments must be JSON text`);
    }
    return { id: call.id, type: 'function', function: { name: call.function.name, arguments: call.function.arguments } };
  });
}

/** How the chat plan's errors name the request's fields: OpenAI's names. */
export const OPENAI_LABELS: ChatPlanLabels = { responseFormat: 'response_format', schema: 'response_format.json_schema.schema', tools: 'tools', toolChoice: 'tool_choice' };

/**
 * response_format, tools and tool_choice as the engine's chat plan takes them (checked
 * there: errors name OPENAI_LABELS); here only OpenAI's wrapping is unpacked:
 * {type: "json_schema", json_schema: {name, schema, strict}} (strict defaults to false).
 */
export function chatPlanRequest(body: Record<string, unknown>): ChatPlanRequest {
  const out: ChatPlanRequest = {};
  const format = body.response_format;
  if (format !== undefined && format !== null) {
    if (typeof format !== 'object' || Array.isArray(format)) throw bad('response_format', 'response_format must be an object, e.g. {"type": "json_object"}');
    const { type, json_schema: spec } = format as { type?: unknown; json_schema?: unknown };
    if (type === 'json_schema') {
      if (typeof spec !== 'object' || spec === null || Array.isArray(spec)) throw bad('response_format', 'response_format.json_schema must be an object: {"name", "schema", "strict"}');
      const { name, schema, strict } = spec as { name?: unknown; schema?: unknown; strict?: unknown };
      if (name !== undefined && typeof name !== 'string') throw bad('response_format', 'response_format.json_schema.name must be a string');
      if (strict !== undefined && strict !== null && typeof strict !== 'boolean') throw bad('response_format', 'response_format.json_schema.strict must be true or false');
      out.responseFormat = { type, schema, strict: strict === true, ...(typeof name === 'string' && { name }) };
    } else out.responseFormat = { type } as ResponseFormat; // text, json_object, or refused by the plan
  }
  if (body.tools !== undefined && body.tools !== null) out.tools = body.tools as ToolDefinition[];
  if (body.tool_choice !== undefined && body.tool_choice !== null) out.toolChoice = body.tool_choice as ToolChoice;
  const parallel = body.parallel_tool_calls;
  if (parallel !== undefined && parallel !== null && typeof parallel !== 'boolean') throw bad('parallel_tool_calls', 'parallel_tool_calls must be true or false');
  return out;
}

/** Chat-only fields on /v1/completions are refused, not ignored. */
export function refuseChatFields(body: Record<string, unknown>): void {
  for (const key of ['response_format', 'tools', 'tool_choice']) {
    if (body[key] !== undefined && body[key] !== null) throw bad(key, `${key} is only supported on /v1/chat/completions`);
  }
}

/** The param of a chat plan error: the OpenAI field its message starts with. */
export function chatPlanParam(message: string): string | null {
  return /^(response_format|tools|tool_choice)\b/.exec(message)?.[1] ?? null;
}

/** A message's content: a string, or an array of text parts (other parts refused). */
function messageText(content: unknown, param: string): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content
      .map((part, i) => {
        const p = part as { type?: unknown; text?: unknown };
        if (p?.type !== 'text' || typeof p.text !== 'string') throw bad(`${param}[${i}]`, `${param}[${i}]: only text parts are supported`);
        return p.text;
      })
      .join('');
  }
  throw bad(param, `${param} must be a string or an array of text parts`);
}

/**
 * chat_template_kwargs (vLLM's and llama-server's field): an object of chat template
 * variables, e.g. {"enable_thinking": false}; absent or null → none. Reserved names
 * (messages, bos_token, tools…) are refused, naming the key.
 */
export function chatTemplateKwargs(body: Record<string, unknown>): Record<string, unknown> | undefined {
  const kwargs = body.chat_template_kwargs;
  if (kwargs === undefined || kwargs === null) return undefined;
  const param = 'chat_template_kwargs';
  if (typeof kwargs !== 'object' || Array.isArray(kwargs)) throw bad(param, `${param} must be an object of template variables, e.g. {"enable_thinking": false}`);
  for (const key of Object.keys(kwargs)) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) throw bad(`${param}.${key}`, `${param}: ${JSON.stringify(key)} is not a template variable name`);
    if (RESERVED_TEMPLATE_VARIABLES.has(key)) throw bad(`${param}.${key}`, `${param}: ${key} is set by the server and cannot be a template variable`);
  }
  return kwargs as Record<string, unknown>;
}

/** /v1/completions prompt: a string, or token ids of this model's vocabulary. */
export function completionPrompt(body: Record<string, unknown>, vocab: number): string | number[] {
  const prompt = body.prompt;
  if (typeof prompt === 'string' && prompt !== '') return prompt;
  if (Array.isArray(prompt) && prompt.length > 0 && prompt.every((x) => typeof x === 'number')) {
    const outside = prompt.findIndex((x) => !(Number.isSafeInteger(x) && x >= 0 && x < vocab));
    if (outside >= 0) throw bad('prompt', `prompt[${outside}]: ${prompt[outside]} is not a token id of this model (0 to ${vocab - 1})`);
    return prompt as number[];
  }
  throw bad('prompt', 'prompt must be a non-empty string or a non-empty array of token ids (one prompt per request)');
}

/** OpenAI's finish_reason for sluice's stop reasons ('abort' never gets here: it is an
 *  error); a reply that called tools and was not cut short: tool_calls. */
export function finishReason(reason: string, calledTools = false): 'stop' | 'length' | 'tool_calls' {
  if (reason === 'length' || reason === 'context') return 'length';
  return calledTools ? 'tool_calls' : 'stop';
}

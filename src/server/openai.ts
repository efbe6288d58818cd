// The OpenAI request bodies sluice accepts, checked field by field into GenerateOptions,
// and the error shape OpenAI clients expect: {"error": {message, type, param, code}}.

import type { GenerateOptions } from '../generate/generate.js';
import { type ChatMessage, RESERVED_TEMPLATE_VARIABLES } from '../text/chat-template.js';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type = 'invalid_request_error',
    readonly param: string | null = null,
    readonly code: string | null = null,
  ) {
    super(message);
  }

  toJson() {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

const bad = (param: string, message: string) => new ApiError(400, message, 'invalid_request_error', param);

/** Sampling fields shared by both endpoints (OpenAI's, plus llama-server's top_k, min_p, repetition_penalty). */
export function samplingOptions(body: Record<string, unknown>): GenerateOptions {
  const out: GenerateOptions = {};
  const number = (key: string, check: (x: number) => boolean, what: string): number | undefined => {
    const v = body[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number' || !check(v)) throw bad(key, `${key} must be ${what}`);
    return v;
  };
  const set = <K extends keyof GenerateOptions>(key: K, value: GenerateOptions[K] | undefined) => {
    if (value !== undefined) out[key] = value;
  };
  set('temperature', number('temperature', (x) => Number.isFinite(x) && x >= 0 && x <= 2, 'a number between 0 and 2'));
  set('topP', number('top_p', (x) => x > 0 && x <= 1, 'a number in (0, 1]'));
  set('topK', number('top_k', (x) => Number.isSafeInteger(x) && x >= 0, 'a whole number ≥ 0'));
  set('minP', number('min_p', (x) => x >= 0 && x <= 1, 'a number in [0, 1]'));
  set('repetitionPenalty', number('repetition_penalty', (x) => Number.isFinite(x) && x > 0, 'a number > 0'));
  set('seed', number('seed', (x) => Number.isSafeInteger(x), 'an integer'));
  if (out.seed !== undefined) out.seed = out.seed >>> 0; // any integer → a u32 stream
  set('maxTokens', number('max_completion_tokens', (x) => Number.isSafeInteger(x) && x >= 1, 'a whole number ≥ 1') ?? number('max_tokens', (x) => Number.isSafeInteger(x) && x >= 1, 'a whole number ≥ 1'));
  const stop = body.stop;
  if (stop !== undefined && stop !== null) {
    const list = typeof stop === 'string' ? [stop] : stop;
    if (!Array.isArray(list) || list.length > 4 || list.some((s) => typeof s !== 'string' || s === '')) throw bad('stop', 'stop must be a string or up to 4 non-empty strings');
    out.stop = list as string[];
  }
  if (body.n !== undefined && body.n !== 1) throw bad('n', 'only n = 1 is supported');
  if (body.stream !== undefined && typeof body.stream !== 'boolean') throw bad('stream', 'stream must be true or false');
  return out;
}

export function chatMessages(body: Record<string, unknown>): ChatMessage[] {
  const messages = body.messages;
  if (!Array.isArray(messages) || messages.length === 0) throw bad('messages', 'messages must be a non-empty array');
  return messages.map((m, i) => {
    const param = `messages[${i}]`;
    if (typeof m !== 'object' || m === null) throw bad(param, `${param} must be an object`);
    const { role, content } = m as { role?: unknown; content?: unknown };
    if (role !== 'system' && role !== 'user' && role !== 'assistant' && role !== 'developer') throw bad(`${param}.role`, `${param}.role must be system, user or assistant`);
    return { role: role === 'developer' ? 'system' : role, content: messageText(content, `${param}.content`) };
  });
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

/** /v1/completions prompt: a string, or token ids. */
export function completionPrompt(body: Record<string, unknown>): string | number[] {
  const prompt = body.prompt;
  if (typeof prompt === 'string' && prompt !== '') return prompt;
  if (Array.isArray(prompt) && prompt.length > 0 && prompt.every((x) => Number.isSafeInteger(x) && x >= 0)) return prompt as number[];
  throw bad('prompt', 'prompt must be a non-empty string or an array of token ids');
}

/** OpenAI's finish_reason for sluice's stop reasons. */
export function finishReason(reason: string): 'stop' | 'length' {
  return reason === 'length' || reason === 'context' ? 'length' : 'stop';
}

// Writing a completion's choices as OpenAI does: one JSON document, or server-sent events
// (`data: {chunk}` … `data: [DONE]`). A generation cut short (shutdown, an error) is never
// dressed up as a finished one: before anything is sent it is an error status (503 on
// shutdown), mid-stream an error event `data: {"error": {...}}` and the end of the stream,
// with no finish chunk and no [DONE].
//
// Tool calls (chat): the whole answer's message has `tool_calls` (content null when the
// reply was only calls) and finish_reason "tool_calls"; a stream sends each call as OpenAI
// does — a chunk with its index, id, type and function.name (arguments ""), then its
// arguments — once the call is complete, after the content before it.

import type { ServerResponse } from 'node:http';
import type { ChatDelta, CompletionStats } from '../generate/engine.js';
import type { Tokenizer } from '../text/tokenizer.js';
import type { ToolCall } from '../text/tool-calls.js';
import { ChoiceLogprobs } from './logprobs.js';
import { ApiError, type CompletionRequest, finishReason } from './openai.js';

export interface AnswerMeta {
  id: string;
  chat: boolean;
  model: string;
  created: number;
  /** Shows the tokens of logprobs (null: `token_id:N`). */
  tokenizer: Tokenizer | null;
}

/** Starts the generation of choice `index` (the engine call). */
export type StartChoice = (index: number) => AsyncGenerator<ChatDelta, CompletionStats>;

interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

interface AnswerWriter {
  /** Choice `index` took its first step (its prompt is valid and it has the model). */
  begin(index: number): void;
  delta(index: number, delta: ChatDelta): void;
  /** Choice `index` ended normally; `usage` is given with the last choice. */
  finish(index: number, reason: string, usage?: Usage): void;
  end(usage: Usage): void;
}

/**
 * Generates the request's choices one after another and writes them. Throws what the
 * engine throws; a choice that ended because `signal` aborted throws the abort's reason
 * when it is an ApiError (shutdown), else a 500 (the client is gone: nobody reads it).
 */
export async function answer(res: ServerResponse, start: StartChoice, request: CompletionRequest, meta: AnswerMeta, signal: AbortSignal): Promise<void> {
  const logprobs = request.options.logprobs !== undefined;
  const writer: AnswerWriter = request.stream ? new StreamWriter(res, meta, request.includeUsage, logprobs) : new WholeWriter(res, meta, logprobs);
  const usage: Usage = { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 };
  for (let index = 0; index < request.n; index++) {
    const run = start(index);
    try {
      // The first step validates the prompt and waits for the model: errors before any
      // output are the request's own status.
      let r = await run.next();
      writer.begin(index);
      let calledTools = false;
      while (!r.done) {
        writer.delta(index, r.value);
        calledTools ||= (r.value.toolCalls?.length ?? 0) > 0;
        r = await run.next();
      }
      const stats = r.value;
      if (stats.stopReason === 'abort') throw signal.reason instanceof ApiError ? signal.reason : new ApiError(500, 'the generation was cancelled', 'server_error');
      usage.prompt_tokens = stats.promptTokens;
      usage.completion_tokens += stats.completionTokens;
      usage.total_tokens = usage.prompt_tokens + usage.completion_tokens;
      writer.finish(index, finishReason(stats.stopReason, calledTools), index === request.n - 1 ? usage : undefined);
    } finally {
      await run.return(undefined as never); // a write that threw leaves it at a yield: end it (frees the model)
    }
  }
  writer.end(usage);
}

class WholeWriter implements AnswerWriter {
  private readonly texts: string[] = [];
  private readonly calls: ToolCall[][] = [];
  private readonly reasons: string[] = [];
  private readonly logprobs: ChoiceLogprobs[] = [];

  constructor(
    private readonly res: ServerResponse,
    private readonly meta: AnswerMeta,
    private readonly withLogprobs: boolean,
  ) {}

  begin(index: number): void {
    this.texts[index] = '';
    this.calls[index] = [];
    this.logprobs[index] = new ChoiceLogprobs(this.meta.tokenizer);
  }

  delta(index: number, delta: ChatDelta): void {
    this.texts[index] += delta.text;
    if (delta.toolCalls) this.calls[index].push(...delta.toolCalls);
    this.logprobs[index].add(delta);
  }

  finish(index: number, reason: string): void {
    this.reasons[index] = reason;
  }

  end(usage: Usage): void {
    const { chat, id, model, created } = this.meta;
    const choices = this.texts.map((text, index) => {
      const finish_reason = this.reasons[index];
      const lp = this.logprobs[index];
      const calls = this.calls[index];
      const message = calls.length > 0 ? { role: 'assistant', content: text === '' ? null : text, tool_calls: calls } : { role: 'assistant', content: text };
      if (chat) return { index, message, logprobs: this.withLogprobs ? { content: lp.chatEntries, refusal: null } : null, finish_reason };
      return { index, text, logprobs: this.withLogprobs ? lp.completion : null, finish_reason };
    });
    sendJson(this.res, 200, { id, object: chat ? 'chat.completion' : 'text_completion', created, model, choices, usage });
  }
}

class StreamWriter implements AnswerWriter {
  private readonly logprobs: ChoiceLogprobs[] = [];
  /** Calls sent so far, per choice (the next call's index). */
  private readonly calls: number[] = [];

  constructor(
    private readonly res: ServerResponse,
    private readonly meta: AnswerMeta,
    private readonly includeUsage: boolean,
    private readonly withLogprobs: boolean,
  ) {}

  begin(index: number): void {
    if (!this.res.headersSent) this.res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' });
    this.logprobs[index] = new ChoiceLogprobs(this.meta.tokenizer);
    this.calls[index] = 0;
    if (this.meta.chat) this.chunk(index, { role: 'assistant', content: '' }, null);
  }

  delta(index: number, delta: ChatDelta): void {
    // A token whose text is not complete yet (half a character) still has its logprobs.
    if (delta.text || (this.withLogprobs && delta.logprobs?.length)) {
      const lp = this.logprobs[index].add(delta);
      const logprobs = this.withLogprobs ? (this.meta.chat ? { content: lp.chat, refusal: null } : lp.completion) : null;
      this.chunk(index, this.meta.chat ? { content: delta.text } : delta.text, null, logprobs);
    }
    for (const call of delta.toolCalls ?? []) {
      const k = this.calls[index]++;
      const { id, type, function: fn } = call;
      this.chunk(index, { tool_calls: [{ index: k, id, type, function: { name: fn.name, arguments: '' } }] }, null);
      this.chunk(index, { tool_calls: [{ index: k, function: { arguments: fn.arguments } }] }, null);
    }
  }

  finish(index: number, reason: string, usage?: Usage): void {
    // Without include_usage the last finish chunk carries usage, as sluice always did
    // (llama-server does the same); with it, OpenAI's separate chunk does.
    this.chunk(index, this.meta.chat ? {} : '', reason, null, usage && !this.includeUsage ? { usage } : {});
  }

  end(usage: Usage): void {
    if (this.includeUsage) this.event({ choices: [], usage });
    this.res.end('data: [DONE]\n\n');
  }

  private chunk(index: number, delta: Record<string, unknown> | string, finish: string | null, logprobs: unknown = null, extra: Record<string, unknown> = {}): void {
    const choice = this.meta.chat ? { index, delta, logprobs, finish_reason: finish } : { index, text: delta, logprobs, finish_reason: finish };
    // With include_usage every other chunk says usage: null (OpenAI's shape).
    this.event({ choices: [choice], ...(this.includeUsage ? { usage: null } : {}), ...extra });
  }

  private event(fields: Record<string, unknown>): void {
    const { id, model, created, chat } = this.meta;
    this.res.write(`data: ${JSON.stringify({ id, object: chat ? 'chat.completion.chunk' : 'text_completion', created, model, ...fields })}\n\n`);
  }
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Readonly<Record<string, string>> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { ...headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** An error as its status and OpenAI's JSON; mid-stream (the status is gone) as an error event that ends the stream. */
export function sendError(res: ServerResponse, error: ApiError): void {
  if (res.headersSent) {
    if (!res.writableEnded) res.end(`data: ${JSON.stringify(error.toJson())}\n\n`);
    return;
  }
  sendJson(res, error.status, error.toJson(), error.headers);
}

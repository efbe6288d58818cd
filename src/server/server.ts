// An OpenAI-compatible HTTP server over loaded models (Node's http, no framework):
//   POST /v1/chat/completions   POST /v1/completions   GET /v1/models   GET /health
// Streaming answers are server-sent events (`data: {chunk}` … `data: [DONE]`), the last
// chunk carrying finish_reason and usage. A client that disconnects cancels its request;
// a full queue answers 429; close() stops accepting, cancels what runs, and waits.

import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { isSluiceError } from '../errors.js';
import type { CompletionStats } from '../generate/engine.js';
import type { GenerationDelta } from '../generate/generate.js';
import type { SluiceModel } from '../generate/load-model.js';
import { ApiError, chatMessages, chatTemplateKwargs, completionPrompt, finishReason, samplingOptions } from './openai.js';

export interface ServerOptions {
  host?: string;
  port?: number;
  /** Required as `Authorization: Bearer KEY` on every request when set. */
  apiKey?: string;
  /** Largest request body (default 1 MiB). */
  maxBodyBytes?: number;
}

export interface RunningServer {
  readonly url: string;
  /** Stops accepting, cancels running requests, waits for them to end. */
  close(): Promise<void>;
}

export async function startServer(models: readonly SluiceModel[], options: ServerOptions = {}): Promise<RunningServer> {
  const byName = new Map(models.map((m) => [m.name, m]));
  const inFlight = new Set<AbortController>();
  const created = Math.floor(Date.now() / 1000);

  const server = createServer((req, res) => {
    const controller = new AbortController();
    inFlight.add(controller);
    // The response closing before we finished it means the client went away: cancel.
    res.on('close', () => {
      if (!res.writableFinished) controller.abort(new Error('client disconnected'));
      inFlight.delete(controller);
    });
    handle(req, res, controller.signal).catch((e: unknown) => sendError(res, toApiError(e)));
  });

  async function handle(req: IncomingMessage, res: ServerResponse, signal: AbortSignal): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/health' && req.method === 'GET') return sendJson(res, 200, { status: 'ok' });
    if (options.apiKey !== undefined && req.headers.authorization !== `Bearer ${options.apiKey}`) {
      throw new ApiError(401, 'invalid or missing API key (send Authorization: Bearer KEY)', 'invalid_request_error', null, 'invalid_api_key');
    }
    if (path === '/v1/models' && req.method === 'GET') {
      return sendJson(res, 200, { object: 'list', data: models.map((m) => ({ id: m.name, object: 'model', created, owned_by: 'sluice' })) });
    }
    const chat = path === '/v1/chat/completions';
    if (!chat && path !== '/v1/completions') throw new ApiError(404, `no route ${req.method} ${path}`, 'invalid_request_error', null, 'not_found');
    if (req.method !== 'POST') throw new ApiError(405, `${path} takes POST`);
    const body = await readJson(req, options.maxBodyBytes ?? 1 << 20);
    const model = pickModel(body);
    const sampling = { ...samplingOptions(body), signal };
    let stream: AsyncGenerator<GenerationDelta, CompletionStats>;
    try {
      // chat_template_kwargs go over the model's own template variables (serve's --template-var), key by key.
      stream = chat ? model.chat(chatMessages(body), { ...sampling, templateVariables: chatTemplateKwargs(body) }) : model.generate(completionPrompt(body), sampling);
      // The first step validates the prompt and waits for the model: errors here are the client's.
      const first = await stream.next();
      const id = `${chat ? 'chatcmpl' : 'cmpl'}-${randomUUID()}`;
      if (body.stream === true) await streamAnswer(res, stream, first, { id, chat, model: model.name });
      else await wholeAnswer(res, stream, first, { id, chat, model: model.name });
    } catch (e) {
      if (signal.aborted) return; // the client is gone: nobody to answer
      throw e;
    }
  }

  function pickModel(body: Record<string, unknown>): SluiceModel {
    if (body.model === undefined && models.length === 1) return models[0];
    if (typeof body.model !== 'string') throw new ApiError(400, 'model must be a string', 'invalid_request_error', 'model');
    const model = byName.get(body.model) ?? (models.length === 1 && body.model === '' ? models[0] : undefined);
    if (!model) throw new ApiError(404, `the model ${JSON.stringify(body.model)} does not exist (served: ${[...byName.keys()].join(', ')})`, 'invalid_request_error', 'model', 'model_not_found');
    return model;
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 8080, options.host ?? '127.0.0.1', () => resolve());
  });
  const { address, port } = server.address() as AddressInfo;
  const host = address.includes(':') ? `[${address}]` : address;
  return {
    url: `http://${host}:${port}`,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const c of inFlight) c.abort(new Error('server shutting down'));
      server.closeIdleConnections();
      await closed;
    },
  };
}

interface AnswerMeta {
  id: string;
  chat: boolean;
  model: string;
}

async function wholeAnswer(res: ServerResponse, stream: AsyncGenerator<GenerationDelta, CompletionStats>, first: IteratorResult<GenerationDelta, CompletionStats>, meta: AnswerMeta): Promise<void> {
  let text = '';
  let r = first;
  while (!r.done) {
    text += r.value.text;
    r = await stream.next();
  }
  const s = r.value;
  const choice = meta.chat
    ? { index: 0, message: { role: 'assistant', content: text }, finish_reason: finishReason(s.stopReason) }
    : { index: 0, text, finish_reason: finishReason(s.stopReason) };
  sendJson(res, 200, {
    id: meta.id,
    object: meta.chat ? 'chat.completion' : 'text_completion',
    created: Math.floor(Date.now() / 1000),
    model: meta.model,
    choices: [choice],
    usage: usage(s),
  });
}

async function streamAnswer(res: ServerResponse, stream: AsyncGenerator<GenerationDelta, CompletionStats>, first: IteratorResult<GenerationDelta, CompletionStats>, meta: AnswerMeta): Promise<void> {
  res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive' });
  const created = Math.floor(Date.now() / 1000);
  const chunk = (delta: Record<string, unknown> | string, finish: string | null, extra: Record<string, unknown> = {}) => {
    const choice = meta.chat ? { index: 0, delta, finish_reason: finish } : { index: 0, text: delta, finish_reason: finish };
    const object = meta.chat ? 'chat.completion.chunk' : 'text_completion';
    res.write(`data: ${JSON.stringify({ id: meta.id, object, created, model: meta.model, choices: [choice], ...extra })}\n\n`);
  };
  if (meta.chat) chunk({ role: 'assistant', content: '' }, null);
  let r = first;
  while (!r.done) {
    if (r.value.text) chunk(meta.chat ? { content: r.value.text } : r.value.text, null);
    r = await stream.next();
  }
  chunk(meta.chat ? {} : '', finishReason(r.value.stopReason), { usage: usage(r.value) });
  res.end('data: [DONE]\n\n');
}

function usage(s: CompletionStats) {
  return { prompt_tokens: s.promptTokens, completion_tokens: s.generatedTokens, total_tokens: s.promptTokens + s.generatedTokens };
}

async function readJson(req: IncomingMessage, limit: number): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new ApiError(413, `request body larger than ${limit} bytes`);
    chunks.push(chunk as Buffer);
  }
  let body: unknown;
  try {
    body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch (e) {
    throw new ApiError(400, `invalid JSON: ${(e as Error).message}`);
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new ApiError(400, 'the body must be a JSON object');
  return body as Record<string, unknown>;
}

function toApiError(e: unknown): ApiError {
  if (e instanceof ApiError) return e;
  if (isSluiceError(e, 'BUSY')) return new ApiError(429, e.message, 'rate_limit_error', null, 'busy');
  if (isSluiceError(e, 'USAGE')) {
    const long = /context/.test(e.message);
    return new ApiError(400, e.message, 'invalid_request_error', long ? 'messages' : null, long ? 'context_length_exceeded' : null);
  }
  if (isSluiceError(e, 'NOT_FOUND') || isSluiceError(e, 'UNSUPPORTED_FORMAT')) return new ApiError(400, e.message);
  return new ApiError(500, e instanceof Error ? e.message : String(e), 'server_error');
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function sendError(res: ServerResponse, error: ApiError): void {
  if (res.headersSent) {
    // Mid-stream: the status is gone; say it as an event and end the stream.
    if (!res.writableEnded) res.end(`data: ${JSON.stringify(error.toJson())}\n\n`);
    return;
  }
  sendJson(res, error.status, error.toJson());
}

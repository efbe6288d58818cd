// An OpenAI-compatible HTTP server over loaded models (Node's http, no framework):
//   POST /v1/chat/completions   POST /v1/completions   GET /v1/models   GET /health
// Streaming answers are server-sent events (answers.ts). Who may call it: http-guard.ts.
// Prompts are tokenized off the main thread (prompt-encoder.ts), so a long one does not
// stall other connections.
//
// Lifecycle: a client that disconnects cancels its request; a full queue answers 429 with
// Retry-After; close() (serve's SIGINT/SIGTERM) stops accepting, answers every request it
// holds — waiting or running — with 503 (a stream: an error event), closes keep-alive
// connections instead of serving them again, and resolves once every connection is gone.
// A client that half-closes (ends its side after sending the request) still gets its answer.

import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { isSluiceError, SluiceError } from '../errors.js';
import type { ChatPlan } from '../generate/chat-plan.js';
import type { GenerateOptions } from '../generate/generate.js';
import type { SluiceModel } from '../generate/load-model.js';
import { answer, sendError, sendJson } from './answers.js';
import { RequestGuard, requireJson } from './http-guard.js';
import { ApiError, OPENAI_LABELS, chatMessages, chatPlanParam, chatPlanRequest, chatTemplateKwargs, completionPrompt, completionRequest, refuseChatFields } from './openai.js';
import { PromptEncoder } from './prompt-encoder.js';

export interface ServerOptions {
  host?: string;
  port?: number;
  /** Required as `Authorization: Bearer KEY` on every request but /health when set; never empty. */
  apiKey?: string;
  /** Origins whose web pages may call the server, with CORS (`https://app.example`; `*`: any). */
  cors?: readonly string[];
  /** Largest request body (default 1 MiB). */
  maxBodyBytes?: number;
  /** The compiled tokenizer worker (default: prompt-worker.js beside this module, used when
   *  it exists, as in the built package); false: tokenize on the main thread. */
  promptWorker?: URL | false;
}

export interface RunningServer {
  readonly url: string;
  /** Stops accepting, answers what it holds with 503, waits for every connection to end. */
  close(): Promise<void>;
}

/** Each path's methods (OPTIONS, for CORS preflights, on all). */
const ROUTES: Readonly<Record<string, readonly string[]>> = {
  '/health': ['GET', 'HEAD'],
  '/v1/models': ['GET', 'HEAD'],
  '/v1/chat/completions': ['POST'],
  '/v1/completions': ['POST'],
};

/** What a 429 suggests: one generation of a few hundred tokens takes seconds here. */
const RETRY_AFTER_SECONDS = 1;
/** How long close() lets answers finish before it drops the connections still open. */
const CLOSE_GRACE_MS = 5_000;

export async function startServer(models: readonly SluiceModel[], options: ServerOptions = {}): Promise<RunningServer> {
  if (options.apiKey === '') throw new SluiceError('USAGE', 'the API key is empty: give a non-empty key, or none');
  const byName = new Map(models.map((m) => [m.name, m]));
  const encoders = new Map(models.map((m) => [m, new PromptEncoder(m, options.promptWorker)]));
  const inFlight = new Map<AbortController, ServerResponse>();
  const created = Math.floor(Date.now() / 1000);
  const shuttingDown = new ApiError(503, 'the server is shutting down', 'server_error', null, 'server_shutting_down');
  let closing = false;
  let guard: RequestGuard;

  const server = createServer((req, res) => {
    if (closing) {
      // A request on a keep-alive connection after close(): refused, and the connection ends.
      res.setHeader('connection', 'close');
      return sendError(res, shuttingDown);
    }
    const controller = new AbortController();
    inFlight.set(controller, res);
    // The response closing before we finished it means the client went away: cancel.
    res.on('close', () => {
      if (!res.writableFinished) controller.abort(new Error('client disconnected'));
      inFlight.delete(controller);
    });
    // An answer finished during shutdown ends its connection (no further requests on it).
    // (req.socket: by 'finish', Node has detached the response from its socket.)
    res.on('finish', () => {
      if (closing) req.socket.end();
    });
    const { signal } = controller;
    handle(req, res, signal).catch((e: unknown) => {
      if (signal.aborted && !(signal.reason instanceof ApiError)) return; // the client is gone: nobody to answer
      sendError(res, signal.aborted ? (signal.reason as ApiError) : toApiError(e));
    });
  });
  // Node's default answers a client that ends its write side after its request (netcat,
  // some proxies) by aborting the request and ending the socket, unanswered. With
  // httpAllowHalfOpen (undocumented but kept: nodejs/node#36819; lib/_http_server.js
  // socketOnEnd) it marks the last response instead and ends the socket after it.
  // A test pins the behaviour, should Node drop the flag.
  (server as typeof server & { httpAllowHalfOpen: boolean }).httpAllowHalfOpen = true;

  async function handle(req: IncomingMessage, res: ServerResponse, signal: AbortSignal): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    const method = req.method ?? 'GET';
    const methods = ROUTES[path];
    if (!methods) throw new ApiError(404, `no route ${method} ${path}`, 'invalid_request_error', null, 'not_found');
    const allow = [...methods, 'OPTIONS'].join(', ');
    if (method !== 'OPTIONS' && !methods.includes(method)) throw new ApiError(405, `${path} takes ${methods.join(' or ')}`, 'invalid_request_error', null, 'method_not_allowed', { allow });
    // /health says nothing but "ok": load balancers may ask it by any name.
    if (path === '/health' && method !== 'OPTIONS') return sendJson(res, 200, { status: 'ok' });
    guard.checkOrigin(req, res);
    if (method === 'OPTIONS') {
      guard.preflight(req, res, [...methods, 'OPTIONS']);
      res.writeHead(204, { allow });
      return void res.end();
    }
    guard.checkKey(req);
    if (path === '/v1/models') {
      return sendJson(res, 200, { object: 'list', data: models.map((m) => ({ id: m.name, object: 'model', created, owned_by: 'sluice' })) });
    }
    requireJson(req);
    const body = await readJson(req, options.maxBodyBytes ?? 1 << 20);
    await complete(res, body, path === '/v1/chat/completions', signal);
  }

  async function complete(res: ServerResponse, body: Record<string, unknown>, chat: boolean, signal: AbortSignal): Promise<void> {
    const model = pickModel(body);
    const vocab = model.config.vocabSize;
    const request = completionRequest(body, chat, vocab);
    const encoder = encoders.get(model)!;
    let ids: number[];
    let plan: ChatPlan | null = null;
    if (chat) {
      const messages = chatMessages(body);
      plan = chatPlan(model, body); // its grammar compiled now: a bad schema is a 400, not a broken stream
      ids = await encoder.chatIds(messages, chatTemplateKwargs(body), signal, plan.tools);
    } else {
      refuseChatFields(body);
      const prompt = completionPrompt(body, vocab);
      ids = typeof prompt === 'string' ? await encoder.textIds(prompt, signal) : prompt;
    }
    const options = { ...request.options, signal };
    const { seed } = options;
    const run = (o: GenerateOptions) => (plan ? model.engine.completeChat(ids, plan, o) : model.engine.complete(ids, o));
    // Choice i > 0 of a seeded request draws with seed + i: reproducible, and not a copy of choice 0.
    const start = (i: number) => run(seed === undefined || i === 0 ? options : { ...options, seed: (seed + i) >>> 0 });
    const meta = { id: `${chat ? 'chatcmpl' : 'cmpl'}-${randomUUID()}`, chat, model: model.name, created: Math.floor(Date.now() / 1000), tokenizer: model.engine.parts.tokenizer };
    await answer(res, start, request, meta, signal);
  }

  /** response_format, tools, tool_choice → the engine's plan; its errors are 400s naming the field. */
  function chatPlan(model: SluiceModel, body: Record<string, unknown>): ChatPlan {
    const request = chatPlanRequest(body);
    try {
      return model.engine.chatPlan(request, OPENAI_LABELS);
    } catch (e) {
      if (isSluiceError(e, 'USAGE')) throw new ApiError(400, e.message, 'invalid_request_error', chatPlanParam(e.message));
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

  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port ?? 8080, options.host ?? '127.0.0.1', () => resolve());
    });
  } catch (e) {
    await Promise.all([...encoders.values()].map((encoder) => encoder.close()));
    throw e;
  }
  const { address, port } = server.address() as AddressInfo;
  guard = new RequestGuard({ apiKey: options.apiKey, cors: options.cors, host: options.host ?? '127.0.0.1', boundAddress: address });
  const host = address.includes(':') ? `[${address}]` : address;
  const closed = new Promise<void>((resolve) => server.once('close', () => resolve()));
  return {
    url: `http://${host}:${port}`,
    async close() {
      if (!closing) {
        closing = true;
        server.close();
        for (const [controller, res] of inFlight) {
          if (!res.headersSent) res.setHeader('connection', 'close');
          controller.abort(shuttingDown);
        }
        server.closeIdleConnections();
        // A client that keeps a connection open without a request (or never reads its
        // answer) must not hold the process: after the grace, every connection is dropped.
        setTimeout(() => server.closeAllConnections(), CLOSE_GRACE_MS).unref();
      }
      await closed;
      await Promise.all([...encoders.values()].map((encoder) => encoder.close()));
    },
  };
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
  if (isSluiceError(e, 'BUSY')) return new ApiError(429, e.message, 'rate_limit_error', null, 'busy', { 'retry-after': String(RETRY_AFTER_SECONDS) });
  if (isSluiceError(e, 'USAGE')) {
    const long = /context/.test(e.message);
    return new ApiError(400, e.message, 'invalid_request_error', long ? 'messages' : null, long ? 'context_length_exceeded' : null);
  }
  if (isSluiceError(e, 'NOT_FOUND') || isSluiceError(e, 'UNSUPPORTED_FORMAT')) return new ApiError(400, e.message);
  return new ApiError(500, e instanceof Error ? e.message : String(e), 'server_error');
}

// Prompt → ids for the server, off the main thread. Tokenizing is synchronous and slow on
// long text (1 MiB: 1.2 s with a byte-level BPE, 14 s with a SentencePiece-style one whose
// whole text is one BPE word), and on the main thread it would stall every other
// connection, /health included. So each served model gets a worker thread
// (prompt-worker.ts) that loads the same tokenizer and template from the model's
// directory and tokenizes one prompt at a time, in FIFO order; a bounded number wait
// (beyond: BUSY → 429), and a waiting prompt whose request is cancelled is skipped.
//
// The worker is used only where it is known to agree with the engine: it must exist (the
// compiled prompt-worker.js beside this module; running from TypeScript sources it does
// not), the model must come from a local directory, and a probe prompt must give the
// same ids (or the same error) both ways. Otherwise prompts are tokenized here, in-thread.

import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { isUrl } from '../checkpoint/open.js';
import { type ErrorCode, SluiceError } from '../errors.js';
import type { SluiceModel } from '../generate/sluice-model.js';
import type { ChatMessage } from '../text/chat-template.js';
import type { ToolDefinition } from '../text/tool-calls.js';
import type { PromptJob, PromptResult } from './prompt-worker.js';

/** The compiled worker beside this module (dist/server/prompt-worker.js). */
export const DEFAULT_PROMPT_WORKER = new URL('./prompt-worker.js', import.meta.url);

/** Prompts that may wait for the tokenizer thread (beyond: BUSY). */
const MAX_WAITING = 16;

const PROBE: ChatMessage[] = [{ role: 'user', content: 'Hello, world! 123 — ünïcödé\n\t  spaces' }];

type JobBody = { kind: 'chat'; messages: ChatMessage[]; variables: Record<string, unknown>; tools: ToolDefinition[] | null } | { kind: 'text'; prompt: string };

interface Waiting {
  body: JobBody;
  signal?: AbortSignal;
  resolve: (ids: number[]) => void;
  reject: (e: unknown) => void;
}

export class PromptEncoder {
  private worker: Worker | null = null;
  /** Resolves true once the worker is loaded and agrees with the engine, false when it is not used. */
  readonly inWorker: Promise<boolean>;
  private readonly queue: Waiting[] = [];
  private running: { id: number; job: Waiting } | null = null;
  private nextId = 0;

  /** `workerUrl`: the compiled prompt-worker.js; false: tokenize in-thread. */
  constructor(
    private readonly model: SluiceModel,
    workerUrl: URL | false = DEFAULT_PROMPT_WORKER,
  ) {
    this.inWorker = this.start(workerUrl).catch(() => {
      void this.stopWorker()?.terminate();
      return false;
    });
  }

  /** Chat messages → ids with the model's template, the engine's variables under `templateVariables`, and `tools` (a chat plan's). */
  async chatIds(messages: ChatMessage[], templateVariables: Record<string, unknown> | undefined, signal?: AbortSignal, tools: ToolDefinition[] | null = null): Promise<number[]> {
    const variables = this.model.engine.chatVariables(templateVariables); // throws here: no template, a reserved name
    if (!(await this.useWorker())) return this.model.engine.chatPromptIds(messages, templateVariables, tools);
    return this.enqueue({ kind: 'chat', messages, variables, tools }, signal);
  }

  /** Raw text → ids with the tokenizer's bos. */
  async textIds(prompt: string, signal?: AbortSignal): Promise<number[]> {
    if (!(await this.useWorker())) return this.model.engine.textPromptIds(prompt);
    return this.enqueue({ kind: 'text', prompt }, signal);
  }

  /** Ends the worker; prompts still waiting for it fail. */
  async close(): Promise<void> {
    await this.stopWorker()?.terminate();
    this.pump();
  }

  /** The worker, once loaded and probed, while it runs; after a crash, in-thread. */
  private async useWorker(): Promise<boolean> {
    return (await this.inWorker) && this.worker !== null;
  }

  private async start(workerUrl: URL | false): Promise<boolean> {
    const { engine, source } = this.model;
    if (workerUrl === false || isUrl(source) || !engine.parts.tokenizer || !existsSync(fileURLToPath(workerUrl))) return false;
    const worker = new Worker(workerUrl, { workerData: { dir: source } });
    worker.unref(); // never what keeps the process alive
    this.worker = worker;
    await new Promise<void>((resolve, reject) => {
      worker.once('message', () => resolve());
      worker.once('error', reject);
      worker.once('exit', (code) => reject(new Error(`the tokenizer thread exited (${code})`)));
    });
    worker.on('message', (result: PromptResult) => this.settle(result));
    worker.on('error', (e) => this.fail(e));
    worker.on('exit', () => this.fail(new Error('the tokenizer thread stopped')));
    // The same files through the same loaders should agree; a probe makes sure.
    const probes: [JobBody, () => number[]][] = [[{ kind: 'text', prompt: PROBE[0].content }, () => engine.textPromptIds(PROBE[0].content)]];
    if (engine.parts.template) probes.push([{ kind: 'chat', messages: PROBE, variables: engine.chatVariables(), tools: null }, () => engine.chatPromptIds(PROBE)]);
    for (const [body, here] of probes) {
      const [there, local] = await Promise.all([outcome(() => this.enqueue(body)), outcome(async () => here())]);
      if (there !== local) throw new Error('the tokenizer thread disagrees with the engine');
    }
    return true;
  }

  private enqueue(body: JobBody, signal?: AbortSignal): Promise<number[]> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.queue.length >= MAX_WAITING) return Promise.reject(new SluiceError('BUSY', `the tokenizer is busy: ${this.queue.length} prompts already waiting (limit ${MAX_WAITING})`));
    return new Promise((resolve, reject) => {
      // A cancelled request stops waiting at once, even while the worker has its prompt
      // (the result, when it comes, is dropped; the worker takes the next).
      signal?.addEventListener('abort', () => reject(signal.reason), { once: true });
      this.queue.push({ body, signal, resolve, reject });
      this.pump();
    });
  }

  /** Sends the next prompt whose request still wants it, when the worker is idle. */
  private pump(): void {
    while (!this.running && this.queue.length > 0) {
      const job = this.queue.shift()!;
      if (job.signal?.aborted) {
        job.reject(job.signal.reason);
        continue;
      }
      if (!this.worker) {
        job.reject(new Error('the tokenizer thread is not running'));
        continue;
      }
      const id = this.nextId++;
      try {
        this.worker.postMessage({ id, ...job.body } satisfies PromptJob);
      } catch (e) {
        job.reject(e); // a template variable that cannot be cloned (a function)
        continue;
      }
      this.running = { id, job };
    }
  }

  private settle(result: PromptResult): void {
    if (!this.running || this.running.id !== result.id) return;
    const { job } = this.running;
    this.running = null;
    if ('ids' in result) job.resolve(Array.from(result.ids));
    else job.reject(result.error.code ? new SluiceError(result.error.code as ErrorCode, result.error.message) : new Error(result.error.message));
    this.pump();
  }

  private fail(e: unknown): void {
    const running = this.running;
    this.running = null;
    this.stopWorker();
    running?.job.reject(e);
    this.pump(); // rejects the rest
  }

  private stopWorker(): Worker | null {
    const worker = this.worker;
    this.worker = null;
    worker?.removeAllListeners();
    return worker;
  }
}

/** A call's result or error as one comparable string. */
async function outcome(f: () => Promise<number[]>): Promise<string> {
  try {
    return JSON.stringify(await f());
  } catch (e) {
    return `error: ${(e as Error).message}`;
  }
}

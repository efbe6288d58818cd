// An opened model → the embedding API's SluiceModel: a GPU sampler and an engine (one
// request at a time, shared KV prefix cache) behind chat() and generate(). Browser-safe:
// Node's loadModel (load-model.ts) and the browser page build theirs the same way.

import type { ModelConfig } from '../model/config.js';
import type { OpenedModel } from '../model/open-model-source.js';
import { type ChatMessage, checkTemplateVariables } from '../text/chat-template.js';
import { type ChatDelta, type ChatOptions, type CompletionStats, Engine } from './engine.js';
import type { GenerateOptions, GenerationDelta } from './generate.js';
import { ModelBatchBackend } from './model-backend.js';

export interface SluiceModel {
  /** As given to loadModel, else the directory's (or URL's) last path segment. */
  readonly name: string;
  /** Where it was loaded from: the directory or base URL (a picked folder's name in the
   *  browser). The server's tokenizer thread reads the tokenizer again from a directory. */
  readonly source: string;
  readonly config: ModelConfig;
  readonly contextLength: number;
  /** The engine behind it (queue, shared cache), for servers. */
  readonly engine: Engine;
  /**
   * Streams the assistant's reply to `messages` (the model's chat template).
   * `options.templateVariables` win, key by key, over the model's (SluiceModelOptions).
   * `options.responseFormat` constrains the reply to JSON; `options.tools` (with
   * `toolChoice`) lets it call functions: each call comes once, complete, in a delta's
   * `toolCalls`, and the text carries only the content around the calls.
   */
  chat(messages: readonly ChatMessage[], options?: ChatOptions): AsyncGenerator<ChatDelta, CompletionStats>;
  /** Streams a raw completion of `prompt` (text with bos, or token ids). */
  generate(prompt: string | readonly number[], options?: GenerateOptions): AsyncGenerator<GenerationDelta, CompletionStats>;
  /** Frees every GPU buffer (and whatever `onDispose` frees: the device, when the model owns it). */
  dispose(): void;
}

export interface SluiceModelOptions {
  /** Requests that may wait while one runs (default 16; beyond: BUSY). */
  maxQueue?: number;
  /** Runs after the model's buffers are freed. */
  onDispose?: () => void;
  /** Default: the directory's (or URL's) last path segment. */
  name?: string;
  /** Chat template variables of every chat() (e.g. `{ enable_thinking: false }` for Qwen3);
   *  a call's own templateVariables win key by key. Reserved names are refused. */
  templateVariables?: Readonly<Record<string, unknown>>;
}

/** Wraps an opened model; takes ownership of it (dispose() frees it). */
export async function createSluiceModel(opened: OpenedModel, options: SluiceModelOptions = {}): Promise<SluiceModel> {
  let backend: ModelBatchBackend;
  try {
    checkTemplateVariables(options.templateVariables, 'templateVariables');
    backend = await ModelBatchBackend.create(opened.model);
  } catch (e) {
    opened.dispose();
    throw e;
  }
  const { model, tokenizer, chatTemplate: template, chatTemplateError: templateError, eosIds, defaults } = opened;
  const engine = new Engine({ model, backend, tokenizer, template, templateError, eosIds, defaults }, { maxQueue: options.maxQueue, templateVariables: options.templateVariables });
  return {
    name: options.name ?? lastSegment(opened.dir),
    source: opened.dir,
    config: model.config,
    contextLength: model.contextLength,
    engine,
    chat: (messages, o) => engine.chat(messages, o),
    generate: (prompt, o) => engine.generate(prompt, o),
    dispose() {
      backend.destroy();
      opened.dispose();
      options.onDispose?.();
    },
  };
}

/** `org/models/tiny-chat/` → `tiny-chat`; also for URLs and Windows paths. */
export function lastSegment(where: string): string {
  const parts = where.replace(/[?#].*$/, '').split(/[\\/]+/).filter((p) => p !== '');
  return parts.pop() ?? where;
}

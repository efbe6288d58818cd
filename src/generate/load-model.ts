// The embedding API (Node): a model directory or base URL → a model that streams chat
// replies and completions, queued one at a time, and frees every GPU buffer on dispose.
//
//   const model = await loadModel('path/to/model', { onProgress });
//   for await (const d of model.chat([{ role: 'user', content: 'Hi' }])) process.stdout.write(d.text);
//   model.dispose();
//
// Several models may share one device (pass `device`); without one, the model acquires
// its own and releases it on dispose.

import { basename } from 'node:path';
import type { DtypeChoice, LoadProgress } from '../gpu/load-tensors.js';
import { acquireNodeDevice } from '../gpu/node-gpu.js';
import type { ModelConfig } from '../model/config.js';
import { openModel } from '../model/open-model.js';
import { DEFAULT_SAMPLING } from '../ops/sample.js';
import type { ChatMessage } from '../text/chat-template.js';
import { type CompletionStats, Engine } from './engine.js';
import type { GenerateOptions, GenerationDelta } from './generate.js';
import { GpuSampler } from './sampler.js';

export interface LoadModelApiOptions {
  /** A device to share with other models; default: one of its own. */
  device?: GPUDevice;
  /** Compute precision: 'auto' (default: f16 where the device has shader-f16), 'f16', 'f32'. */
  dtype?: DtypeChoice;
  /** KV cache positions (default min(max_position_embeddings, 4096)). */
  contextLength?: number;
  /** Requests that may wait while one runs (default 16; beyond: BUSY). */
  maxQueue?: number;
  onProgress?: (progress: LoadProgress) => void;
  signal?: AbortSignal;
}

export interface SluiceModel {
  /** The directory's (or URL's) last path segment. */
  readonly name: string;
  readonly config: ModelConfig;
  readonly contextLength: number;
  /** The engine behind it (queue, shared cache), for servers. */
  readonly engine: Engine;
  /** Streams the assistant's reply to `messages` (the model's chat template). */
  chat(messages: readonly ChatMessage[], options?: GenerateOptions): AsyncGenerator<GenerationDelta, CompletionStats>;
  /** Streams a raw completion of `prompt` (text with bos, or token ids). */
  generate(prompt: string | readonly number[], options?: GenerateOptions): AsyncGenerator<GenerationDelta, CompletionStats>;
  /** Frees every GPU buffer (and the device, when the model acquired it). */
  dispose(): void;
}

export async function loadModel(source: string, options: LoadModelApiOptions = {}): Promise<SluiceModel> {
  const own = options.device ? null : await acquireNodeDevice({ label: `sluice.${basename(source)}` });
  const device = options.device ?? own!.device;
  try {
    const opened = await openModel(source, device, options);
    const sampler = await GpuSampler.create(opened.model, DEFAULT_SAMPLING);
    const { model, tokenizer, chatTemplate: template, chatTemplateError: templateError, eosIds, defaults } = opened;
    const engine = new Engine({ model, sampler, tokenizer, template, templateError, eosIds, defaults }, { maxQueue: options.maxQueue });
    return {
      name: basename(source.replace(/\/+$/, '')),
      config: model.config,
      contextLength: model.contextLength,
      engine,
      chat: (messages, o) => engine.chat(messages, o),
      generate: (prompt, o) => engine.generate(prompt, o),
      dispose() {
        sampler.destroy();
        opened.dispose();
        own?.destroy();
      },
    };
  } catch (e) {
    own?.destroy();
    throw e;
  }
}

// A model directory (HF layout) → everything generation needs: the loaded LlamaModel,
// its tokenizer and chat template when it has them, eos ids and sampling defaults.
// Node: files are read from the directory; the model's weights stream through the loader.

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isUrl, openCheckpointUrl } from '../checkpoint/open.js';
import { openCheckpoint } from '../checkpoint/open-path.js';
import type { Checkpoint } from '../checkpoint/types.js';
import { SluiceError } from '../errors.js';
import type { LoadProgress } from '../gpu/load-tensors.js';
import { type ChatTemplate, loadChatTemplate } from '../text/chat-template.js';
import { loadEosTokenIds } from '../text/stop.js';
import { loadTokenizer, type ReadModelFile, type Tokenizer } from '../text/tokenizer.js';
import { parseModelConfig } from './config.js';
import { type GenerationDefaults, parseGenerationConfig } from './generation-config.js';
import { LlamaModel } from './llama.js';
import type { DtypeChoice } from '../gpu/load-tensors.js';

export interface OpenModelOptions {
  dtype?: DtypeChoice;
  contextLength?: number;
  signal?: AbortSignal;
  onProgress?: (p: LoadProgress) => void;
}

export interface OpenedModel {
  dir: string;
  model: LlamaModel;
  /** null when the directory has no tokenizer.json (generate --ids still works). */
  tokenizer: Tokenizer | null;
  /** null when there is no chat template (chat refuses, naming why). */
  chatTemplate: ChatTemplate | null;
  /** Why there is no chat template, for chat's error. */
  chatTemplateError: Error | null;
  eosIds: number[];
  defaults: GenerationDefaults;
  dispose(): void;
}

/**
 * Opens a model directory, or a base URL serving the same files (read with Range
 * requests; the shard index is tried first, then model.safetensors).
 */
export async function openModel(dir: string, device: GPUDevice, options: OpenModelOptions = {}): Promise<OpenedModel> {
  const url = isUrl(dir);
  const at = (name: string) => (url ? `${dir.replace(/\/+$/, '')}/${name}` : join(dir, name));
  const read: ReadModelFile = async (name) => {
    try {
      if (url) {
        const res = await fetch(at(name));
        if (res.status === 404 || res.status === 410) return null;
        if (!res.ok) throw new Error(`HTTP ${res.status} ${res.statusText}`);
        return await res.text();
      }
      return await readFile(at(name), 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw new SluiceError(url ? 'HTTP_ERROR' : 'IO_ERROR', `${at(name)}: ${(e as Error).message}`);
    }
  };
  const configText = await read('config.json');
  if (configText === null) throw new SluiceError('NOT_FOUND', `${at('config.json')}: not found (a model directory needs config.json beside its weights)`);
  const config = parseModelConfig(configText, at('config.json'));
  const defaults = parseGenerationConfig(await read('generation_config.json'), at('generation_config.json'));
  const tokenizer = (await read('tokenizer.json')) === null ? null : await loadTokenizer(read, dir);
  let chatTemplate: ChatTemplate | null = null;
  let chatTemplateError: Error | null = null;
  if (tokenizer) {
    try {
      chatTemplate = await loadChatTemplate(read, tokenizer);
    } catch (e) {
      chatTemplateError = e as Error;
    }
  } else chatTemplateError = new SluiceError('NOT_FOUND', `${dir}: no tokenizer.json, so no chat; \`sluice generate --ids\` still works`);
  const eosIds = await loadEosTokenIds(read, tokenizer, dir);

  const checkpoint = url ? await openUrlCheckpoint(at, read) : await openCheckpoint(dir);
  let model: LlamaModel;
  try {
    model = await LlamaModel.load(checkpoint, config, device, options);
  } finally {
    await checkpoint.close();
  }
  return { dir, model, tokenizer, chatTemplate, chatTemplateError, eosIds, defaults, dispose: () => model.dispose() };
}

/** A model's weights behind a base URL: the safetensors shard index if served, else the single file. */
async function openUrlCheckpoint(at: (name: string) => string, read: ReadModelFile): Promise<Checkpoint> {
  const index = await read('model.safetensors.index.json');
  return openCheckpointUrl(at(index === null ? 'model.safetensors' : 'model.safetensors.index.json'));
}

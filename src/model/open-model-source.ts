// A model (HF layout) → everything generation needs: the loaded LlamaModel, its tokenizer
// and chat template when it has them, eos ids and sampling defaults.
// Browser-safe: the files come through two callbacks, `read` for the small JSON files and
// `openWeights` for the checkpoint, so the same code serves a Node directory (open-model.ts),
// a base URL (fetch + Range requests) and the File objects of a browser folder picker.

import { openCheckpointSource, openCheckpointUrl } from '../checkpoint/open.js';
import type { Checkpoint } from '../checkpoint/types.js';
import { SluiceError } from '../errors.js';
import type { DtypeChoice } from '../gpu/load-tensors.js';
import { BlobSource } from '../io/blob-source.js';
import { cachedFetch, type DownloadCache, fetchText } from '../io/download-cache.js';
import { type UrlSourceOptions, urlSibling } from '../io/url-source.js';
import { type ChatTemplate, loadChatTemplate } from '../text/chat-template.js';
import { loadEosTokenIds } from '../text/stop.js';
import { fileLabel, loadTokenizer, type ReadModelFile, type Tokenizer } from '../text/tokenizer.js';
import { parseModelConfig } from './config.js';
import { type GenerationDefaults, parseGenerationConfig } from './generation-config.js';
import { LlamaModel } from './llama.js';
import type { ModelProgress } from './progress.js';
import type { QuantKind } from '../gpu/quantized-tensor.js';
import type { KernelChoice } from './kernel-family.js';

export type { DownloadProgress, KernelsProgress, ModelProgress } from './progress.js';

export interface OpenModelOptions {
  dtype?: DtypeChoice;
  /** Quantize the projections on load: 'q8' or 'q4' (LoadModelOptions.quantize). */
  quantize?: QuantKind;
  contextLength?: number;
  /** Sequences decoded at once: KV cache slots (LoadModelOptions.parallel, default 1). */
  parallel?: number;
  /** The kernel designs: 'auto' (by the adapter, default), 'software' or 'gpu' (LoadModelOptions.kernels). */
  kernels?: KernelChoice;
  signal?: AbortSignal;
  onProgress?: (p: ModelProgress) => void;
}

export interface OpenedModel {
  /** Where the model came from (a directory, a base URL, a picked folder's name). */
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

/** The files of one model, however they are reached. */
export interface ModelSource {
  /** Names the model in messages and becomes OpenedModel.dir. */
  where: string;
  /** The small files by name (config.json, tokenizer.json, ...); null when absent. */
  read: ReadModelFile;
  /** The weights; called once, after the small files, and closed once loaded. */
  openWeights: () => Promise<Checkpoint>;
  /** How a file is named in errors; default `${where}/${name}`. */
  label?: (name: string) => string;
}

/** Opens a model from its files: config, generation config, tokenizer, template, eos, weights. */
export async function openModelSource(source: ModelSource, device: GPUDevice, options: OpenModelOptions = {}): Promise<OpenedModel> {
  const { where } = source;
  // Each small file is read once, though several readers want it (tokenizer.json: the
  // presence check and the tokenizer; config.json and generation_config.json: the config
  // and the eos ids). Over a URL every read is a request, and tokenizer.json can be 10 MB.
  const files = new Map<string, Promise<string | null>>();
  const read: ReadModelFile = (name) => {
    let text = files.get(name);
    if (!text) files.set(name, (text = source.read(name)));
    return text;
  };
  const at = source.label ?? ((name: string) => fileLabel(where, name));
  const configText = await read('config.json');
  if (configText === null) throw new SluiceError('NOT_FOUND', `${at('config.json')}: not found (a model directory needs config.json beside its weights)`);
  const config = parseModelConfig(configText, at('config.json'));
  const defaults = parseGenerationConfig(await read('generation_config.json'), at('generation_config.json'));
  const tokenizer = (await read('tokenizer.json')) === null ? null : await loadTokenizer(read, where);
  let chatTemplate: ChatTemplate | null = null;
  let chatTemplateError: Error | null = null;
  if (tokenizer) {
    try {
      chatTemplate = await loadChatTemplate(read, tokenizer);
    } catch (e) {
      chatTemplateError = e as Error;
    }
  } else chatTemplateError = new SluiceError('NOT_FOUND', `${where}: no tokenizer.json, so no chat; \`sluice generate --ids\` still works`);
  const eosIds = await loadEosTokenIds(read, tokenizer, where);

  const checkpoint = await source.openWeights();
  let model: LlamaModel;
  try {
    model = await LlamaModel.load(checkpoint, config, device, options);
  } finally {
    await checkpoint.close();
  }
  return { dir: where, model, tokenizer, chatTemplate, chatTemplateError, eosIds, defaults, dispose: () => model.dispose() };
}

// ───────────────────────────── a base URL ─────────────────────────────

export interface UrlModelOptions extends OpenModelOptions {
  /**
   * Keep every file in this cache (e.g. `await caches.open('sluice-models')`): a later
   * open reads it from there, without the network. Without one, the weights stream with
   * Range requests and nothing is kept.
   */
  cache?: DownloadCache;
  /**
   * For every request: headers (e.g. Authorization, sent only to the base URL's origin),
   * timeouts, retries, a fetch. `signal` above wins over `url.signal`.
   */
  url?: UrlSourceOptions;
}

/**
 * A model served over HTTP(S) as a directory: small files by fetch, weights with Range
 * requests (the shard index `model.safetensors.index.json` first, else `model.safetensors`),
 * or through `options.cache` (each file downloaded once, then read from the cache).
 */
export async function openModelFromUrl(baseUrl: string, device: GPUDevice, options: UrlModelOptions = {}): Promise<OpenedModel> {
  const at = (name: string) => fileLabel(baseUrl, name);
  const { cache, onProgress } = options;
  const http: UrlSourceOptions = { ...options.url, signal: options.signal ?? options.url?.signal };
  const download = (url: string) => {
    const report = (bytesDone: number, bytesTotal: number, fromCache: boolean) => onProgress?.({ phase: 'download', file: url, fromCache, bytesDone, bytesTotal });
    return cachedFetch(url, cache!, { ...http, onProgress: report });
  };
  const read: ReadModelFile = async (name) => {
    const url = at(name);
    try {
      if (!cache) return await fetchText(url, http);
      return (await (await download(url))?.text()) ?? null;
    } catch (e) {
      if ((e as Error)?.name === 'AbortError' || e instanceof SluiceError || http.signal?.aborted) throw e;
      throw new SluiceError('HTTP_ERROR', `${url}: ${(e as Error).message}`);
    }
  };
  const openWeights = async () => {
    const index = await read('model.safetensors.index.json');
    const first = at(index === null ? 'model.safetensors' : 'model.safetensors.index.json');
    if (!cache) return openCheckpointUrl(first, http);
    const blobOf = async (url: string) => {
      const res = await download(url);
      if (!res) throw new SluiceError('NOT_FOUND', `${url}: not found`);
      return new BlobSource(await res.blob(), url);
    };
    // Shard names come from the index: urlSibling keeps them inside its folder.
    return openCheckpointSource(await blobOf(first), (shard) => blobOf(urlSibling(first, shard)));
  };
  return openModelSource({ where: baseUrl, read, openWeights, label: at }, device, options);
}

// ───────────────────────────── picked files ─────────────────────────────

/** Weight files tried in order when a folder is picked; an index brings its shards by name. */
const WEIGHT_FILES = ['model.safetensors.index.json', 'model.safetensors', 'pytorch_model.bin.index.json', 'pytorch_model.bin'];

/**
 * A model from File objects, e.g. `<input type="file" webkitdirectory>`'s files or a
 * drop. Files are matched by base name (the folder prefix of webkitRelativePath is
 * ignored; with duplicates the shallowest wins); weights are read lazily by slices.
 */
export async function openModelFromFiles(files: Iterable<File> | ArrayLike<File>, device: GPUDevice, options: OpenModelOptions = {}): Promise<OpenedModel> {
  const list = Array.from(files as ArrayLike<File>);
  const byName = new Map<string, { file: File; depth: number }>();
  for (const file of list) {
    const path = relativePath(file);
    const parts = path.split('/').filter((p) => p !== '');
    const name = parts.pop() ?? file.name;
    const prev = byName.get(name);
    if (!prev || parts.length < prev.depth) byName.set(name, { file, depth: parts.length });
  }
  const first = list.length > 0 ? relativePath(list[0]).split('/') : [];
  const where = first.length > 1 ? first[0] : 'picked files';
  const at = (name: string) => fileLabel(where, name);
  const fileOf = (name: string) => byName.get(name)?.file;

  const read: ReadModelFile = async (name) => {
    const file = fileOf(name);
    if (!file) return null;
    try {
      return await file.text();
    } catch (e) {
      throw new SluiceError('IO_ERROR', `${at(name)}: ${(e as Error)?.message ?? String(e)}`, { cause: e });
    }
  };
  const openWeights = async () => {
    const weights = WEIGHT_FILES.find((name) => fileOf(name));
    if (!weights) throw new SluiceError('NOT_FOUND', `${where}: no weights among the picked files (looked for ${WEIGHT_FILES.join(', ')})`);
    return openCheckpointSource(new BlobSource(fileOf(weights)!, at(weights)), async (shard) => {
      const file = fileOf(shard);
      if (!file) throw new SluiceError('NOT_FOUND', `${at(shard)}: shard named by ${weights} is not among the picked files`);
      return new BlobSource(file, at(shard));
    });
  };
  return openModelSource({ where, read, openWeights, label: at }, device, options);
}

function relativePath(file: File): string {
  const rel = (file as Partial<File>).webkitRelativePath;
  return typeof rel === 'string' && rel !== '' ? rel : file.name;
}

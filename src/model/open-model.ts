// A model directory (HF layout) or a base URL → an OpenedModel. Node: files are read from
// the directory; the model's weights stream through the loader. The work itself is the
// browser-safe open-model-source.ts; this adds the local directory.

import { isUrl } from '../checkpoint/open.js';
import { openCheckpoint } from '../checkpoint/open-path.js';
import { ModelFolder } from '../io/model-folder.js';
import type { ReadModelFile } from '../text/tokenizer.js';
import { type OpenedModel, type OpenModelOptions, openModelFromUrl, openModelSource } from './open-model-source.js';

export type { ModelProgress, OpenedModel, OpenModelOptions } from './open-model-source.js';

/**
 * The largest side file (config.json, tokenizer.json, a chat template) read whole: the
 * biggest real tokenizer.json files are ~33 MB (Gemma 3), and parsing one costs several
 * times its size in memory.
 */
export const MAX_SIDE_FILE_BYTES = 64 * 1024 * 1024;

/**
 * Opens a model directory, or a base URL serving the same files (read with Range
 * requests; the shard index is tried first, then model.safetensors).
 */
export async function openModel(dir: string, device: GPUDevice, options: OpenModelOptions = {}): Promise<OpenedModel> {
  if (isUrl(dir)) return openModelFromUrl(dir, device, options);
  // Side files are read through the folder: never outside it, never a FIFO, bounded.
  const folder = await ModelFolder.open(dir);
  const read: ReadModelFile = (name) => folder.readText(name, MAX_SIDE_FILE_BYTES);
  return openModelSource({ where: dir, read, openWeights: () => openCheckpoint(dir), label: (name) => folder.pathOf(name) }, device, options);
}

// A model directory (HF layout) or a base URL → an OpenedModel. Node: files are read from
// the directory; the model's weights stream through the loader. The work itself is the
// browser-safe open-model-source.ts; this adds the local directory.

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isUrl } from '../checkpoint/open.js';
import { openCheckpoint } from '../checkpoint/open-path.js';
import { SluiceError } from '../errors.js';
import type { ReadModelFile } from '../text/tokenizer.js';
import { type OpenedModel, type OpenModelOptions, openModelFromUrl, openModelSource } from './open-model-source.js';

export type { ModelProgress, OpenedModel, OpenModelOptions } from './open-model-source.js';

/**
 * Opens a model directory, or a base URL serving the same files (read with Range
 * requests; the shard index is tried first, then model.safetensors).
 */
export async function openModel(dir: string, device: GPUDevice, options: OpenModelOptions = {}): Promise<OpenedModel> {
  if (isUrl(dir)) return openModelFromUrl(dir, device, options);
  const at = (name: string) => join(dir, name);
  const read: ReadModelFile = async (name) => {
    try {
      return await readFile(at(name), 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw new SluiceError('IO_ERROR', `${at(name)}: ${(e as Error).message}`);
    }
  };
  return openModelSource({ where: dir, read, openWeights: () => openCheckpoint(dir), label: at }, device, options);
}

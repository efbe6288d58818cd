// Which files of a model directory to load, in the order transformers prefers them:
// safetensors first (model.safetensors.index.json, model.safetensors, other *.safetensors),
// then PyTorch (pytorch_model.bin.index.json, pytorch_model.bin, a single *.pth/*.pt/*.bin).

import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { SluiceError } from '../errors.js';

export const SAFETENSORS_INDEX = 'model.safetensors.index.json';
export const PYTORCH_INDEX = 'pytorch_model.bin.index.json';
const PYTORCH_FILE = /\.(pth|pt|bin)$/i;

export interface DirectoryChoice {
  /** One file (a checkpoint or an index), or several safetensors files read as one. */
  files: string[];
  /** Said to the user when another format was passed over or the choice is not obvious. */
  note?: string;
}

export async function resolveDirectory(dir: string): Promise<DirectoryChoice> {
  const names = (await readdir(dir)).sort();
  const safetensors = names.filter((n) => n.endsWith('.safetensors'));
  const pytorch = names.filter((n) => PYTORCH_FILE.test(n));
  const passedOver = pytorch.length || names.includes(PYTORCH_INDEX)
    ? `; ignoring ${[...(names.includes(PYTORCH_INDEX) ? [PYTORCH_INDEX] : []), ...pytorch].join(', ')} (safetensors is preferred)`
    : '';
  const pick = (files: string[], what: string): DirectoryChoice => ({
    files: files.map((f) => join(dir, f)),
    ...(passedOver ? { note: `${dir}: using ${what}${passedOver}` } : {}),
  });

  if (names.includes(SAFETENSORS_INDEX)) return pick([SAFETENSORS_INDEX], SAFETENSORS_INDEX);
  if (names.includes('model.safetensors')) return pick(['model.safetensors'], 'model.safetensors');
  if (safetensors.length) return pick(safetensors, safetensors.join(', '));

  if (names.includes(PYTORCH_INDEX)) return { files: [join(dir, PYTORCH_INDEX)], note: `${dir}: using ${PYTORCH_INDEX} (no safetensors found)` };
  if (names.includes('pytorch_model.bin')) return { files: [join(dir, 'pytorch_model.bin')], note: `${dir}: using pytorch_model.bin (no safetensors found)` };
  if (pytorch.length === 1) return { files: [join(dir, pytorch[0])], note: `${dir}: using ${pytorch[0]} (no safetensors found)` };
  if (pytorch.length > 1) {
    throw new SluiceError(
      'UNSUPPORTED_FORMAT',
      `${dir}: several PyTorch files (${pytorch.join(', ')}) and no ${PYTORCH_INDEX} to say how they fit together; name the one to use`,
    );
  }
  throw new SluiceError('NOT_FOUND', `${dir}: no .safetensors, .bin or .pth checkpoint in this directory`);
}

// The golden references of test/fixtures/models/ (make_model_references.py,
// make_family_references.py): load a fixture model, run greedy decoding through the cache.

import { readFileSync } from 'node:fs';
import { openCheckpoint } from '../../src/checkpoint/open-path.js';
import { parseModelConfig } from '../../src/model/config.js';
import { LlamaModel, type LoadModelOptions } from '../../src/model/llama.js';

export interface Reference {
  prompt_ids: number[];
  logits_last: number[];
  greedy_ids: number[];
  greedy_margins: number[];
  multi_turn: { first_ids: number[]; first_greedy_ids: number[]; second_ids: number[]; greedy_after_both: number[] };
}

export const argmax = (xs: Float32Array) => xs.reduce((best, x, i) => (x > xs[best] ? i : best), 0);

export async function loadReferenceModel(device: GPUDevice, name: string, dtype: 'f32' | 'f16', contextLength = 128, options: LoadModelOptions = {}) {
  const dir = `test/fixtures/models/${name}`;
  const config = parseModelConfig(readFileSync(`${dir}/config.json`, 'utf8'), `${dir}/config.json`);
  const checkpoint = await openCheckpoint(`${dir}/model.safetensors`);
  try {
    const model = await LlamaModel.load(checkpoint, config, device, { ...options, dtype, contextLength });
    const reference = JSON.parse(readFileSync(`${dir}/reference.json`, 'utf8')) as Reference;
    return { model, reference };
  } finally {
    await checkpoint.close();
  }
}

/** Greedy ids: one forward per token through the cache, argmax on the host. */
export async function greedy(model: LlamaModel, prompt: number[], start: number, count: number): Promise<number[]> {
  const out: number[] = [];
  await model.forward(prompt, start);
  let position = start + prompt.length;
  for (let i = 0; i < count; i++) {
    const next = argmax(await model.readLogits());
    out.push(next);
    if (i + 1 < count) await model.forward([next], position++);
  }
  return out;
}

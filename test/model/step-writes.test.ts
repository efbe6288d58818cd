// Per-call uploads of the forward pass: one step write per pass (src/gpu/step.ts) instead
// of a Params rewrite per layer and op. The fixture llama-gqa is re-layered to 2 and 4
// layers (layer i takes fixture layer i % 2's tensors: only the count matters here) and
// every queue.writeBuffer of a decode token and of a prompt is counted. Before the step,
// rope, kv_store and attention each rewrote their Params: 1 + 3·layers writes per decode
// token (7 at 2 layers, 13 at 4); now 2 (the token id and the step), whatever the depth.

import { readFileSync } from 'node:fs';
import { expect, it } from 'vitest';
import { openCheckpointSource } from '../../src/checkpoint/open.js';
import { openCheckpoint } from '../../src/checkpoint/open-path.js';
import { serializeSafetensors } from '../../src/formats/safetensors/writer.js';
import { MemorySource } from '../../src/io/memory-source.js';
import { parseModelConfig } from '../../src/model/config.js';
import { LlamaModel } from '../../src/model/llama.js';
import { spyDevice, useGpuTestDevice } from '../support/gpu-helpers.js';
import { argmax } from '../support/model-reference.js';

const gpu = useGpuTestDevice('test.step_writes');
const DIR = 'test/fixtures/models/llama-gqa'; // 2 layers

/** The fixture with `layers` layers: layer i is a copy of fixture layer i % 2. */
async function relayered(layers: number): Promise<{ config: ReturnType<typeof parseModelConfig>; bytes: Uint8Array }> {
  const json = JSON.parse(readFileSync(`${DIR}/config.json`, 'utf8')) as Record<string, unknown>;
  const config = parseModelConfig(JSON.stringify({ ...json, num_hidden_layers: layers }), `${DIR}/config.json`);
  const source = await openCheckpoint(`${DIR}/model.safetensors`);
  try {
    const tensors = [];
    for (const t of source.tensors()) {
      const m = /^model\.layers\.(\d+)\.(.*)$/.exec(t.name);
      const data = await source.read(t.name);
      if (!m) tensors.push({ name: t.name, dtype: t.dtype, shape: t.shape, data });
      else for (let i = Number(m[1]); i < layers; i += 2) tensors.push({ name: `model.layers.${i}.${m[2]}`, dtype: t.dtype, shape: t.shape, data });
    }
    return { config, bytes: await serializeSafetensors(tensors) };
  } finally {
    await source.close();
  }
}

/** A device whose queue counts writeBuffer calls (the spy binds everything else to the real device). */
function countingDevice(): { device: GPUDevice; writes: () => number } {
  const spy = spyDevice(gpu.device);
  const real = gpu.device.queue;
  let writes = 0;
  const queue = new Proxy(real, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target);
      if (prop === 'writeBuffer') return (...args: Parameters<GPUQueue['writeBuffer']>) => (writes++, target.writeBuffer(...args));
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  const device = new Proxy(spy.device, { get: (target, prop) => (prop === 'queue' ? queue : Reflect.get(target, prop)) });
  return { device, writes: () => writes };
}

async function writesPerCall(layers: number): Promise<{ decode: number[]; prefill: number }> {
  const { config, bytes } = await relayered(layers);
  const counting = countingDevice();
  const checkpoint = await openCheckpointSource(new MemorySource(bytes, `llama-gqa-${layers}.safetensors`));
  const model = await LlamaModel.load(checkpoint, config, counting.device, { dtype: 'f32', contextLength: 64 });
  await checkpoint.close();
  try {
    expect(config.numLayers).toBe(layers);
    const prompt = [1, 17, 42, 99, 7];
    let before = counting.writes();
    await model.forward(prompt, 0);
    const prefill = counting.writes() - before;
    const decode: number[] = [];
    let id = argmax(await model.readLogits());
    for (let position = prompt.length; position < prompt.length + 3; position++) {
      before = counting.writes();
      await model.forward([id], position);
      decode.push(counting.writes() - before);
      id = argmax(await model.readLogits());
    }
    return { decode, prefill };
  } finally {
    model.dispose();
  }
}

it('a decode token and a prompt chunk each write the step once, at 2 layers as at 4', async () => {
  const two = await writesPerCall(2);
  const four = await writesPerCall(4);
  // The token ids and the step: 2 writes per call, not 1 + 3 per layer.
  expect(two).toEqual({ decode: [2, 2, 2], prefill: 2 });
  expect(four).toEqual(two);
});

// Per-call uploads of the forward pass: one step write per pass (src/gpu/step.ts) instead
// of a Params rewrite per layer and op, and the token ids inside that step (issue 21). The
// fixture llama-gqa is re-layered to 2 and 4 layers (layer i takes fixture layer i % 2's
// tensors: only the count matters here) and every queue.writeBuffer of a decode token, of a
// prompt (one chunk and two) and of a batched decode pass (decodeRows) is counted. Before
// the step, rope, kv_store and attention each rewrote their Params: 1 + 3·layers writes per
// decode token (7 at 2 layers, 13 at 4); then 2 (the token ids and the step); now 1, the
// step with its ids, whatever the depth or the rows.

import { readFileSync } from 'node:fs';
import { expect, it } from 'vitest';
import { openCheckpointSource } from '../../src/checkpoint/open.js';
import { openCheckpoint } from '../../src/checkpoint/open-path.js';
import { serializeSafetensors } from '../../src/formats/safetensors/writer.js';
import { MemorySource } from '../../src/io/memory-source.js';
import { parseModelConfig } from '../../src/model/config.js';
import { LlamaModel } from '../../src/model/llama.js';
import { SluiceError } from '../../src/errors.js';
import { countingDevice } from '../support/count-writes.js';
import { useGpuTestDevice } from '../support/gpu-helpers.js';
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

interface Writes {
  decode: number[];
  prefill: number;
  /** A 70-token prompt: two prefill chunks (PREFILL_CHUNK = 64). */
  twoChunks: number;
  /** decodeRows over 3 slots, then over 2. */
  rows: number[];
  /** The buffers written, by label, over all calls. */
  labels: Set<string>;
}

async function writesPerCall(layers: number): Promise<Writes> {
  const { config, bytes } = await relayered(layers);
  const counting = countingDevice(gpu.device);
  const count = () => counting.writes.length;
  const checkpoint = await openCheckpointSource(new MemorySource(bytes, `llama-gqa-${layers}.safetensors`));
  const model = await LlamaModel.load(checkpoint, config, counting.device, { dtype: 'f32', contextLength: 96, parallel: 3 });
  await checkpoint.close();
  try {
    expect(config.numLayers).toBe(layers);
    const prompt = [1, 17, 42, 99, 7];
    const loaded = count();
    await model.forward(prompt, 0);
    const prefill = count() - loaded;
    const decode: number[] = [];
    let id = argmax(await model.readLogits());
    for (let position = prompt.length; position < prompt.length + 3; position++) {
      const before = count();
      await model.forward([id], position);
      decode.push(count() - before);
      id = argmax(await model.readLogits());
    }
    let before = count();
    await model.forward(Array.from({ length: 70 }, (_, i) => (i * 13) % config.vocabSize), 0, undefined, 1);
    const twoChunks = count() - before;
    await model.prefillSlot(2, prompt, 0);
    const rows: number[] = [];
    before = count();
    await model.decodeRows([{ slot: 0, id, position: 8 }, { slot: 1, id: 3, position: 70 }, { slot: 2, id: 4, position: 5 }]);
    rows.push(count() - before);
    before = count();
    await model.decodeRows([{ slot: 2, id: 5, position: 6 }, { slot: 0, id: 6, position: 9 }]);
    rows.push(count() - before);
    await gpu.device.queue.onSubmittedWorkDone();
    return { decode, prefill, twoChunks, rows, labels: new Set(counting.writes.slice(loaded).map((w) => w.label)) };
  } finally {
    model.dispose();
  }
}

it('a decode token, a prompt chunk and a batched decode pass each write the step (with its ids) once, at 2 layers as at 4', async () => {
  const two = await writesPerCall(2);
  const four = await writesPerCall(4);
  const counts = ({ labels: _, ...rest }: Writes) => rest;
  // One write per pass: the step, its token ids in the same buffer; not ids + step, not 1 + 3 per layer.
  expect(counts(two)).toEqual({ decode: [1, 1, 1], prefill: 1, twoChunks: 2, rows: [1, 1] });
  expect(counts(four)).toEqual(counts(two));
  // Only step buffers: prefill8 (5 tokens), prefill64 (two chunks of 70: 64, then 6 in prefill8), decode,
  // decode3 (3 rows) and decode2 (2 rows: the smallest batched pass that holds them).
  expect([...two.labels].sort()).toEqual(['model.decode.step', 'model.decode2.step', 'model.decode3.step', 'model.prefill64.step', 'model.prefill8.step']);
});

it('a bad token id is refused by name before anything is written', async () => {
  const { config, bytes } = await relayered(2);
  const counting = countingDevice(gpu.device);
  const checkpoint = await openCheckpointSource(new MemorySource(bytes, 'llama-gqa-2.safetensors'));
  const model = await LlamaModel.load(checkpoint, config, counting.device, { dtype: 'f32', contextLength: 32, parallel: 2 });
  await checkpoint.close();
  try {
    const before = counting.writes.length;
    await expect(model.forward([-1], 0)).rejects.toThrow(SluiceError);
    await expect(model.forward([5, 1.5], 0)).rejects.toThrow(/model.prefill8: step row 1: token id 1.5 is not a u32/);
    await expect(model.decodeRows([{ slot: 0, id: 2, position: 0 }, { slot: 1, id: -3, position: 0 }])).rejects.toThrow(/model.decode2: step row 1: token id -3 is not a u32/);
    expect(counting.writes.length).toBe(before);
  } finally {
    model.dispose();
  }
});

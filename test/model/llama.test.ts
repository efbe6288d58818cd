// The golden end-to-end test (STYLE: the cheapest test that catches the most bugs): three
// tiny BF16 models (GQA Llama, llama3-scaled RoPE with an untied head, Qwen2 with q/k/v
// biases) against an independent float32 PyTorch forward (test/fixtures/models/, made by
// make_model_references.py): the prompt's last logits, 24 greedy tokens decoded through
// the KV cache, and a second turn appended to the cache (multi-turn reuse).

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { openCheckpoint } from '../../src/checkpoint/open-path.js';
import { parseModelConfig } from '../../src/model/config.js';
import { LlamaModel, PREFILL_CHUNK } from '../../src/model/llama.js';
import { spyDevice, useGpuTestDevice } from '../support/gpu-helpers.js';
import { greedy, loadReferenceModel, type Reference } from '../support/model-reference.js';
import { nmse } from '../support/op-helpers.js';

const gpu = useGpuTestDevice('test.llama');

const load = (name: string, dtype: 'f32' | 'f16', contextLength = 128) => loadReferenceModel(gpu.device, name, dtype, contextLength);

describe.each(['llama-gqa', 'llama3-scaled', 'qwen2-bias'])('%s against the PyTorch reference', (name) => {
  it.each(['f32', 'f16'] as const)('%s: last-position logits, greedy decode, multi-turn', async (dtype) => {
    if (dtype === 'f16' && !gpu.device.features.has('shader-f16')) return; // no F16 compute on this adapter
    const { model, reference } = await load(name, dtype);
    try {
      await model.forward(reference.prompt_ids, 0);
      const logits = await model.readLogits();
      // F32: same math on the same bf16 weights, only summation order differs (~1e-12).
      // F16: activations and weights rounded to f16 at every op (~1e-5 relative each).
      expect(nmse(logits, reference.logits_last), 'logits NMSE').toBeLessThan(dtype === 'f32' ? 1e-9 : 1e-4);
      // The references keep a top-1 margin ≥ 0.1, so both dtypes must pick the same ids.
      expect(await greedy(model, reference.prompt_ids, 0, reference.greedy_ids.length)).toEqual(reference.greedy_ids);
      // Multi-turn: the first turn and its reply stay in the cache; only the new turn is run.
      const { first_ids, first_greedy_ids, second_ids, greedy_after_both } = reference.multi_turn;
      await model.forward(first_ids, 0);
      const replied = [...first_ids, ...first_greedy_ids];
      // Feed the reply token by token, as decoding did, then the second turn at once.
      for (let i = 0; i < first_greedy_ids.length; i++) await model.forward([first_greedy_ids[i]], first_ids.length + i);
      expect(await greedy(model, second_ids, replied.length, greedy_after_both.length)).toEqual(greedy_after_both);
    } finally {
      model.dispose();
    }
  });
});

it(`a prompt longer than one prefill pass (${PREFILL_CHUNK} tokens) equals the same prompt fed token by token`, async () => {
  const { model } = await load('llama-gqa', 'f32');
  try {
    const prompt = Array.from({ length: PREFILL_CHUNK + 13 }, (_, i) => (i * 37 + 11) % 256);
    await model.forward(prompt, 0);
    const chunked = await model.readLogits();
    for (let i = 0; i < prompt.length; i++) await model.forward([prompt[i]], i);
    const stepwise = await model.readLogits();
    expect(nmse(chunked, stepwise)).toBeLessThan(1e-9);
  } finally {
    model.dispose();
  }
});

it('a full context is refused with a clear error, not a crash', async () => {
  const { model } = await load('llama-gqa', 'f32', 16);
  try {
    await expect(model.forward(Array.from({ length: 17 }, () => 5), 0)).rejects.toThrow(/context is full: positions \[0, 17\) exceed the KV cache \(16\)/);
  } finally {
    model.dispose();
  }
});

describe('the same model stored as F32, as F16 and sharded', () => {
  // Converted by sluice convert from the BF16 fixture: F32 and the shards hold the same
  // values (BF16 → F32 is exact), so the logits must match the reference as tightly as the
  // original; F16 storage rounds the weights (~1e-3 relative), hence a looser bound.
  it.each([
    ['f32', { dtype: 'f32' }, 1e-9],
    ['f16', { dtype: 'f16' }, 1e-4],
    ['sharded', { maxShardSize: 60_000 }, 1e-9],
  ] as const)('%s storage: logits and greedy ids as the reference', async (name, convertOptions, tolerance) => {
    const { convertCheckpoint } = await import('../../src/checkpoint/convert.js');
    const { mkdtemp, rm, copyFile } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const out = await mkdtemp(join(tmpdir(), 'sluice-model-'));
    try {
      const source = await openCheckpoint('test/fixtures/models/llama3-scaled/model.safetensors');
      await convertCheckpoint(source, join(out, 'm'), convertOptions);
      await source.close();
      await copyFile('test/fixtures/models/llama3-scaled/config.json', join(out, 'm', 'config.json'));
      const config = parseModelConfig(readFileSync(join(out, 'm', 'config.json'), 'utf8'));
      const checkpoint = await openCheckpoint(join(out, 'm'));
      if (name === 'sharded') expect(checkpoint.files.length).toBeGreaterThan(2); // shards + index
      const model = await LlamaModel.load(checkpoint, config, gpu.device, { dtype: 'f32', contextLength: 64 });
      await checkpoint.close();
      try {
        const reference = JSON.parse(readFileSync('test/fixtures/models/llama3-scaled/reference.json', 'utf8')) as Reference;
        await model.forward(reference.prompt_ids, 0);
        expect(nmse(await model.readLogits(), reference.logits_last)).toBeLessThan(tolerance);
        expect(await greedy(model, reference.prompt_ids, 0, 16)).toEqual(reference.greedy_ids.slice(0, 16));
      } finally {
        model.dispose();
      }
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  });
});

it('the same model as a torch pytorch_model.bin (no safetensors): identical logits', async () => {
  const { writeTorchCheckpoint } = await import('../../src/formats/pytorch/writer.js');
  const { mkdtemp, rm, copyFile } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const out = await mkdtemp(join(tmpdir(), 'sluice-model-bin-'));
  try {
    const source = await openCheckpoint('test/fixtures/models/qwen2-bias/model.safetensors');
    const tensors = await Promise.all(source.tensors().map(async (t) => ({ ...t, bytes: await source.read(t.name) })));
    await source.close();
    await writeTorchCheckpoint(join(out, 'pytorch_model.bin'), tensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, byteLength: t.byteLength, data: () => [t.bytes] })));
    await copyFile('test/fixtures/models/qwen2-bias/config.json', join(out, 'config.json'));
    const loaded = await load('qwen2-bias', 'f32');
    const fromBin = await LlamaModel.load(await openCheckpoint(out), loaded.model.config, gpu.device, { dtype: 'f32', contextLength: 128 });
    try {
      await loaded.model.forward(loaded.reference.prompt_ids, 0);
      await fromBin.forward(loaded.reference.prompt_ids, 0);
      expect(await fromBin.readLogits()).toEqual(await loaded.model.readLogits());
    } finally {
      fromBin.dispose();
      loaded.model.dispose();
    }
  } finally {
    await rm(out, { recursive: true, force: true });
  }
});

it('a kernel that fails to build stops the upload and frees everything; the kernel error is the one reported', async () => {
  // A device whose swiglu pipeline fails to build, as a driver's shader compiler might.
  const spy = spyDevice(gpu.device);
  const failing = new Proxy(spy.device, {
    get(target, prop) {
      if (prop === 'createComputePipelineAsync') {
        return (descriptor: GPUComputePipelineDescriptor) =>
          descriptor.label?.startsWith('swiglu') ? Promise.reject(new Error('swiglu: the compiler gave up')) : target.createComputePipelineAsync(descriptor);
      }
      const value = Reflect.get(target, prop, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  const dir = 'test/fixtures/models/llama-gqa';
  const config = parseModelConfig(readFileSync(`${dir}/config.json`, 'utf8'), `${dir}/config.json`);
  const checkpoint = await openCheckpoint(`${dir}/model.safetensors`);
  const phases: string[] = [];
  try {
    await expect(LlamaModel.load(checkpoint, config, failing, { dtype: 'f32', onProgress: (p) => phases.push(p.phase) })).rejects.toThrow(/swiglu/);
  } finally {
    await checkpoint.close();
  }
  expect(phases).not.toContain('done'); // stopped, not run to the end
  expect(spy.live()).toEqual([]);
});

it('a config that declares a quantization whose weights are all dense is refused at load, before any upload', async () => {
  const dir = 'test/fixtures/models/llama-gqa';
  const config = parseModelConfig(
    JSON.stringify({ ...JSON.parse(readFileSync(`${dir}/config.json`, 'utf8')), quantization_config: { quant_method: 'gptq', bits: 4, group_size: 128, desc_act: true } }),
  );
  const checkpoint = await openCheckpoint(`${dir}/model.safetensors`);
  try {
    await expect(LlamaModel.load(checkpoint, config, gpu.device)).rejects.toThrow(/quantization_config says gptq \(gptq\), but no linear is stored packed \(e\.g\. model\.layers\.0\.self_attn\.q_proj\.qweight\)$/);
  } finally {
    await checkpoint.close();
  }
});

// The 'gpu' kernel family (coalesced gemv, workgroup-tiled matmul, flash attention with
// K/V tiles in workgroup memory) runs every family of step 12 to its PyTorch reference on
// this adapter too, so a real GPU runs tested code; and 'auto' picks the family by adapter.

import { readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { BatchScheduler } from '../../src/generate/batch-scheduler.js';
import type { GenerationDelta } from '../../src/generate/generate.js';
import { ModelBatchBackend } from '../../src/generate/model-backend.js';
import { kernelFamily } from '../../src/model/kernel-family.js';
import { greedy, loadReferenceModel } from '../support/model-reference.js';
import { useGpuTestDevice } from '../support/gpu-helpers.js';
import { nmse } from '../support/op-helpers.js';

const gpu = useGpuTestDevice('test.kernel-family');

const MODELS = readdirSync('test/fixtures/models').sort();

describe.each(MODELS)('%s on the gpu kernels', (name) => {
  it('f32: last-position logits and greedy decode as the PyTorch reference', async () => {
    const { model, reference } = await loadReferenceModel(gpu.device, name, 'f32', 512, { kernels: 'gpu' });
    try {
      expect(model.kernelFamily).toBe('gpu');
      await model.forward(reference.prompt_ids, 0);
      expect(nmse(await model.readLogits(), reference.logits_last), 'logits NMSE').toBeLessThan(1e-9);
      expect(await greedy(model, reference.prompt_ids, 0, reference.greedy_ids.length)).toEqual(reference.greedy_ids);
    } finally {
      model.dispose();
    }
  });
});

describe.each(['q8', 'q4'] as const)('quantized (%s) on the gpu kernels', (quantize) => {
  // There the decode's qgemvs apply the layer norms themselves (RMS_NORM, the norm's weight
  // on x); the software family runs them as dispatches. The rest is the same quantized
  // kernels, so the two decode alike: the same greedy ids, logits to f32 rounding.
  it('the norms inside the qgemvs: 2 dispatches a layer fewer, the same decode as separate norms', async () => {
    const [gpuFamily, software] = [
      await loadReferenceModel(gpu.device, 'qwen3', 'f32', 128, { quantize, kernels: 'gpu' }),
      await loadReferenceModel(gpu.device, 'qwen3', 'f32', 128, { quantize, kernels: 'software' }),
    ];
    try {
      const layers = gpuFamily.model.config.numLayers;
      expect(software.model.decodeDispatches - gpuFamily.model.decodeDispatches).toBe(2 * layers);
      const { prompt_ids: prompt } = gpuFamily.reference;
      const [a, b] = [await greedy(gpuFamily.model, prompt, 0, 8), await greedy(software.model, prompt, 0, 8)];
      expect(a).toEqual(b);
      expect(nmse(await gpuFamily.model.readLogits(), await software.model.readLogits()), 'logits NMSE').toBeLessThan(1e-9);
    } finally {
      gpuFamily.model.dispose();
      software.model.dispose();
    }
  });
});

it('batched decode on the gpu kernels: 3 sequences together give their solo ids', async () => {
  const { model, reference } = await loadReferenceModel(gpu.device, 'mistral-window', 'f32', 256, { parallel: 3, kernels: 'gpu' });
  const backend = await ModelBatchBackend.create(model);
  const ids = async (run: AsyncGenerator<GenerationDelta, unknown>) => {
    const out: number[] = [];
    for await (const d of run) out.push(...d.ids);
    return out;
  };
  try {
    const s = new BatchScheduler(backend);
    const p = reference.prompt_ids;
    const prompts = [p, p.slice(0, 3), [...p].reverse()];
    const greedyOptions = { temperature: 0, maxTokens: 12, eosIds: [] };
    const together = await Promise.all(prompts.map((prompt) => ids(s.submit(prompt, greedyOptions))));
    for (let i = 0; i < prompts.length; i++) expect(together[i], `prompt ${i}`).toEqual(await ids(s.submit(prompts[i], greedyOptions)));
    expect(together[0]).toEqual(reference.greedy_ids.slice(0, 12));
  } finally {
    backend.destroy();
    model.dispose();
  }
});

describe('kernelFamily', () => {
  const device = (adapterInfo?: Partial<GPUAdapterInfo>) => ({ adapterInfo }) as unknown as GPUDevice;
  it('auto: software on a CPU renderer, gpu on a real adapter or one that does not say', () => {
    expect(kernelFamily(gpu.device)).toBe('software'); // this adapter: lavapipe
    expect(kernelFamily(device({ vendor: 'mesa', architecture: 'software', description: 'llvmpipe: Mesa 25.0.7' }))).toBe('software');
    expect(kernelFamily(device({ vendor: 'google', architecture: 'swiftshader' }))).toBe('software');
    expect(kernelFamily(device({ vendor: 'nvidia', architecture: 'hopper', description: 'NVIDIA H200' }))).toBe('gpu');
    expect(kernelFamily(device({ vendor: 'nvidia', isFallbackAdapter: true }))).toBe('software');
    expect(kernelFamily(device())).toBe('gpu');
  });
  it('an explicit choice wins over the adapter', () => {
    expect(kernelFamily(gpu.device, 'gpu')).toBe('gpu');
    expect(kernelFamily(device({ vendor: 'nvidia' }), 'software')).toBe('software');
  });
});

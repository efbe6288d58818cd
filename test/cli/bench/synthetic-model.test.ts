// The synthetic checkpoints of `bench generate --synthetic`: every named model's tensor
// list is exactly what the loader expects (weights.ts weightNames), in its family's HF
// layout, and the cache is written once, reused, and redone when a write was interrupted.

import { mkdtemp, rm, stat, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MARKER, defaultSyntheticCacheDir, ensureSyntheticModel, syntheticConfig, syntheticModelTensors } from '../../../src/cli/bench/synthetic-model.js';
import { SYNTHETIC_MODELS, syntheticModel } from '../../../src/cli/bench/synthetic-models/index.js';
import { openCheckpoint } from '../../../src/checkpoint/open-path.js';
import { modelConfig } from '../../../src/model/config.js';
import { weightNames } from '../../../src/model/weights.js';

describe('synthetic model tensors', () => {
  it('has the six models the issue names', () => {
    expect(SYNTHETIC_MODELS.map((m) => m.name).sort()).toEqual(['gemma-3-1b', 'llama-3.2-1b', 'phi-4-mini', 'qwen2.5-0.5b', 'qwen3-0.6b', 'smollm2-135m']);
  });

  for (const model of SYNTHETIC_MODELS) {
    it(`${model.name}: exactly weightNames' tensors, no missing or unexpected`, () => {
      const config = modelConfig(model.config, model.name);
      const tensors = syntheticModelTensors(config);
      const names = weightNames(config, tensors.map((t) => ({ ...t, file: 'x' })), model.name);
      const listed = new Set(tensors.map((t) => t.name));
      expect(listed.size).toBe(tensors.length);
      expect([...listed].sort()).toEqual([...names.all].sort());
      for (const t of tensors) {
        expect(t.dtype).toBe('BF16');
        expect(t.byteLength).toBe(t.shape.reduce((a, b) => a * b, 2));
        expect(t.fill, t.name).toBe(/norm\.weight$/.test(t.name) ? 'identity' : 'random');
      }
    });
  }

  it('follows each family layout', () => {
    const names = (name: string) => new Set(syntheticModelTensors(modelConfig(syntheticModel(name)!.config)).map((t) => t.name));
    const phi = names('phi-4-mini');
    expect(phi.has('model.layers.0.self_attn.qkv_proj.weight') && phi.has('model.layers.0.mlp.gate_up_proj.weight')).toBe(true);
    expect(phi.has('model.layers.0.self_attn.q_proj.weight') || phi.has('lm_head.weight')).toBe(false); // tied
    const gemma = names('gemma-3-1b');
    for (const n of ['self_attn.q_norm', 'self_attn.k_norm', 'pre_feedforward_layernorm', 'post_feedforward_layernorm', 'post_attention_layernorm']) expect(gemma.has(`model.layers.25.${n}.weight`), n).toBe(true);
    expect(names('qwen3-0.6b').has('model.layers.27.self_attn.k_norm.weight')).toBe(true);
    expect(names('qwen2.5-0.5b').has('model.layers.0.self_attn.q_proj.bias')).toBe(true);
    expect(names('llama-3.2-1b').has('lm_head.weight')).toBe(false);
  });

  it('--layers cuts the config and the tensors, nothing else', () => {
    const model = syntheticModel('gemma-3-1b')!;
    const cut = syntheticConfig(model, 2);
    expect({ ...cut, num_hidden_layers: 26 }).toEqual(model.config);
    const config = modelConfig(cut);
    expect(config.numLayers).toBe(2);
    expect(syntheticModelTensors(config).some((t) => t.name.startsWith('model.layers.2.'))).toBe(false);
    expect(() => syntheticConfig(model, 27)).toThrow(/1 to 26/);
  });

  it('cache: $XDG_CACHE_HOME, else ~/.cache', () => {
    expect(defaultSyntheticCacheDir({ XDG_CACHE_HOME: '/x' })).toBe(join('/x', 'sluice', 'synthetic'));
    expect(defaultSyntheticCacheDir({})).toMatch(/\.cache[/\\]sluice[/\\]synthetic$/);
  });
});

describe('synthetic checkpoint cache', () => {
  const dirs: string[] = [];
  afterAll(() => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));

  it('is written once, reused, and redone without its completeness marker', async () => {
    const cacheDir = await mkdtemp(join(tmpdir(), 'sluice-synthetic-'));
    dirs.push(cacheDir);
    const progress: number[] = [];
    const first = await ensureSyntheticModel({ name: 'smollm2-135m', layers: 1, cacheDir, onProgress: (done) => progress.push(done) });
    expect(first).toMatchObject({ written: true, layers: 1, configLayers: 30, truncated: true, storage: 'BF16', tensors: 11 });
    expect(first.dir).toBe(join(cacheDir, 'smollm2-135m-1-layers'));
    // Every tensor byte reported, in order.
    const tensorBytes = syntheticModelTensors(modelConfig(syntheticConfig(syntheticModel('smollm2-135m')!, 1))).reduce((s, t) => s + t.byteLength, 0);
    expect(progress.at(-1)).toBe(tensorBytes);
    expect(progress.every((x, i) => i === 0 || x >= progress[i - 1])).toBe(true);
    const file = join(first.dir, 'model.safetensors');
    const mtime = (await stat(file)).mtimeMs;

    const again = await ensureSyntheticModel({ name: 'smollm2-135m', layers: 1, cacheDir });
    expect(again).toMatchObject({ written: false, bytes: first.bytes, dir: first.dir });
    expect((await stat(file)).mtimeMs).toBe(mtime);

    // The checkpoint opens, with the real config's shapes and values in range.
    const ckpt = await openCheckpoint(first.dir);
    try {
      expect(ckpt.tensors().find((t) => t.name === 'model.embed_tokens.weight')?.shape).toEqual([49152, 576]);
      const norm = await ckpt.read('model.layers.0.input_layernorm.weight');
      expect([...norm.subarray(0, 4)]).toEqual([0x80, 0x3f, 0x80, 0x3f]); // BF16 1.0
    } finally {
      await ckpt.close();
    }

    await unlink(join(first.dir, MARKER)); // as an interrupted write leaves it
    expect((await ensureSyntheticModel({ name: 'smollm2-135m', layers: 1, cacheDir })).written).toBe(true);
  });

  it('refuses unknown names and layer counts', async () => {
    await expect(ensureSyntheticModel({ name: 'gpt-5', cacheDir: '/nonexistent' })).rejects.toThrow(/unknown model "gpt-5"; one of smollm2-135m/);
    await expect(ensureSyntheticModel({ name: 'smollm2-135m', layers: 31, cacheDir: '/nonexistent' })).rejects.toThrow(/--layers must be 1 to 30/);
  });
});

// The embedding API: loadModel → chat / generate streams → dispose, on its own device or a
// shared one (two models on one device answer independently).

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { loadModel, type SluiceModel } from '../../src/generate/load-model.js';
import type { ModelProgress } from '../../src/model/progress.js';
import { writeChatModel } from '../support/byte-tokenizer.js';
import { useGpuTestDevice } from '../support/gpu-helpers.js';

const gpu = useGpuTestDevice('test.load-model');
const dir = mkdtempSync(join(tmpdir(), 'sluice-api-'));
writeChatModel('test/fixtures/models/llama-gqa', dir);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function text(stream: AsyncIterable<{ text: string }>): Promise<string> {
  let out = '';
  for await (const d of stream) out += d.text;
  return out;
}

it('loads on its own device, streams chat and generate, and disposes', async () => {
  const events: ModelProgress[] = [];
  const model = await loadModel(dir, { dtype: 'f32', contextLength: 64, onProgress: (p) => events.push({ ...p }) });
  try {
    // The loader's phases in order; the kernels compile alongside, each one reported.
    const loader = [...new Set(events.filter((p) => p.phase !== 'kernels').map((p) => p.phase))];
    expect(loader).toEqual(['compile', 'upload', 'done'].filter((p) => loader.includes(p as never)));
    expect(loader).toContain('done');
    const kernels = events.flatMap((p) => (p.phase === 'kernels' ? [p] : []));
    expect(kernels[0].kernelsDone).toBe(0);
    expect(kernels.map((k) => k.kernelsDone)).toEqual(kernels.map((_, i) => i));
    expect(kernels.at(-1)!.kernelsDone).toBe(kernels[0].kernelsTotal);
    expect(model.name).toBe(dir.split('/').pop());
    expect(model.contextLength).toBe(64);
    const reply = await text(model.chat([{ role: 'user', content: 'Hi' }], { temperature: 0, maxTokens: 5 }));
    expect(typeof reply).toBe('string');
    const ids: number[] = [];
    for await (const d of model.generate([1, 72, 105], { temperature: 0, maxTokens: 4 })) ids.push(...d.ids);
    expect(ids).toHaveLength(4);
  } finally {
    model.dispose();
  }
});

it('two models on one shared device answer independently', async () => {
  const models: SluiceModel[] = [];
  try {
    for (let i = 0; i < 2; i++) models.push(await loadModel(dir, { device: gpu.device, dtype: 'f32', contextLength: 64 }));
    const [a, b] = await Promise.all(models.map((m) => text(m.chat([{ role: 'user', content: 'Same question' }], { temperature: 0, maxTokens: 6 }))));
    expect(a).toBe(b);
  } finally {
    for (const m of models) m.dispose();
  }
});

// Issue 21, the host side of a decode step. Every queue.writeBuffer is counted (the test
// device's queue wrapped) while tokens decode through generate() on one sequence and
// through the Engine with two slots serving two requests at once, on a tiny model. In
// steady state (every id fed is one the GPU drew; no masked row, no logprobs) a step
// writes at most 2 buffers: the model's (its step and ids) and the sampler's (its rows);
// the id a step drew reaches the sampler's history through the sample kernel itself.
//
// JS allocations are counted by V8's sampling heap profiler (test/support/allocations.ts)
// over the sampler's side of a decode step (ModelBatchBackend.decode, GpuSampler.next and
// the RowSampler under them), warmed up toward the optimizing tier on a stand-in model
// (fixed logits, no layers: the hundreds of steps it takes would be minutes of the real
// model on the software GPU). What the WebGPU binding returns (a pass encoder, the mapped
// range) is charged to the API, and TurboFan's inlining is off meanwhile, so each
// allocation counts for the function whose code made it: the synchronous functions of the
// sampler's files must make none (no literal, closure, spread, slice or typed array per
// token). Not asserted: the async functions (decode, next, readRows) allocate their
// promise and await state by the language's design, and optimized code folds several
// allocations into one sample, so a non-zero count is not an exact number to compare.

import { readFileSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openCheckpoint } from '../../src/checkpoint/open-path.js';
import type { BatchRow } from '../../src/generate/batch-scheduler.js';
import { Engine } from '../../src/generate/engine.js';
import { generate } from '../../src/generate/generate.js';
import { ModelBatchBackend } from '../../src/generate/model-backend.js';
import type { SamplerConfig } from '../../src/generate/row-sampler.js';
import { GpuSampler } from '../../src/generate/sampler.js';
import { parseModelConfig } from '../../src/model/config.js';
import { LlamaModel } from '../../src/model/llama.js';
import { DEFAULT_SAMPLING } from '../../src/ops/sample.js';
import { countAllocations, type Frame } from '../support/allocations.js';
import { chargeToWebGpu, webGpuObjects } from '../support/webgpu-allocations.js';
import { useGpuTestDevice } from '../support/gpu-helpers.js';
import { uploadArray } from '../support/op-helpers.js';
import { mulberry32 } from '../support/safetensors-bytes.js';
import { randomLogits } from '../ops/sample-rows-support.js';

const gpu = useGpuTestDevice('test.host-writes');
const dir = 'test/fixtures/models/llama-gqa';
const PROMPT = (JSON.parse(readFileSync(`${dir}/reference.json`, 'utf8')) as { prompt_ids: number[] }).prompt_ids;
/** Sampled, with every penalty on: each step reads its RNG step and its whole history. */
const SAMPLING = { temperature: 0.8, topK: 40, repetitionPenalty: 1.3, frequencyPenalty: 0.5, presencePenalty: 0.2 };
const STEPS = 8;

describe('writeBuffer calls per decode step (issue 21: at most 2)', () => {
  /** Labels of the buffers written through the test device's queue, in order. */
  const written: string[] = [];
  let restore = () => {};
  beforeAll(() => {
    const queue = gpu.device.queue;
    const real = queue.writeBuffer;
    queue.writeBuffer = function (this: GPUQueue, buffer: GPUBuffer, offset: number, data: GPUAllowSharedBufferSource, dataOffset?: number, size?: number) {
      written.push(buffer.label);
      return real.call(this, buffer, offset, data, dataOffset, size);
    };
    restore = () => void delete (queue as Partial<GPUQueue>).writeBuffer; // the prototype's again
  });
  afterAll(() => restore());

  /** The writes `run` makes: how many, how many the sampler's (its buffers are `sampler.*`), which. */
  async function writesOf<T>(run: () => Promise<T>): Promise<{ result: T; writes: number; sampler: number; labels: string }> {
    const before = written.length;
    const result = await run();
    const labels = written.slice(before);
    return { result, writes: labels.length, sampler: labels.filter((l) => l.startsWith('sampler')).length, labels: labels.join(', ') };
  }

  async function loadModel(parallel: number): Promise<LlamaModel> {
    const config = parseModelConfig(readFileSync(`${dir}/config.json`, 'utf8'));
    const checkpoint = await openCheckpoint(`${dir}/model.safetensors`);
    try {
      return await LlamaModel.load(checkpoint, config, gpu.device, { dtype: 'f32', contextLength: 64, parallel });
    } finally {
      await checkpoint.close();
    }
  }

  it('generate(), one sequence: the sampler writes once a step, the step twice at most', async () => {
    const model = await loadModel(1);
    const sampler = await GpuSampler.create(model, DEFAULT_SAMPLING);
    try {
      const run = generate({ model, sampler }, PROMPT, 0, { ...SAMPLING, seed: 5, maxTokens: STEPS + 2, eosIds: [] });
      const first = await writesOf(() => run.next()); // the prompt: its ids go into the history once
      expect(first.sampler, first.labels).toBeGreaterThanOrEqual(2);
      for (let t = 0; t < STEPS; t++) {
        const step = await writesOf(() => run.next());
        expect(step.result.done).toBe(false);
        expect(step.sampler, `step ${t}: ${step.labels}`).toBe(1);
        expect(step.writes, `step ${t}: ${step.labels}`).toBeLessThanOrEqual(2);
      }
      await run.return(undefined as never);
    } finally {
      sampler.destroy();
      model.dispose();
    }
  });

  it('Engine, two slots serving two requests at once: the same per step of two rows', async () => {
    const model = await loadModel(2);
    const backend = await ModelBatchBackend.create(model);
    const steps: { rows: number; firstRows: number; writes: number; sampler: number; labels: string }[] = [];
    const decode = backend.decode.bind(backend);
    backend.decode = async (rows) => {
      const step = await writesOf(() => decode(rows));
      steps.push({ ...step, rows: rows.length, firstRows: rows.filter((r) => r.step === 0).length });
      return step.result;
    };
    try {
      const engine = new Engine({ model, backend, tokenizer: null, template: null, eosIds: [], defaults: {} });
      const reply = async (prompt: readonly number[], seed: number) => {
        const ids: number[] = [];
        for await (const d of engine.generate(prompt, { ...SAMPLING, seed, maxTokens: STEPS + 2 })) ids.push(...d.ids);
        return ids;
      };
      const replies = await Promise.all([reply(PROMPT, 11), reply(PROMPT.slice(0, 7), 12)]);
      expect(replies.map((ids) => ids.length)).toEqual([STEPS + 2, STEPS + 2]);
      // A sequence's first row feeds its prompt's last id: the one id the sampler must write.
      const first = steps.filter((s) => s.firstRows > 0);
      for (const s of first) expect(s.sampler, s.labels).toBe(1 + s.firstRows);
      const steady = steps.filter((s) => s.rows === 2 && s.firstRows === 0);
      expect(steady.length).toBeGreaterThanOrEqual(STEPS - 1);
      for (const s of steady) {
        expect(s.sampler, s.labels).toBe(1);
        expect(s.writes, s.labels).toBeLessThanOrEqual(2);
      }
    } finally {
      backend.destroy();
      model.dispose();
    }
  });
});

describe('JS allocations per decode step: none in the synchronous code of the sampler side', () => {
  const VOCAB = 300;
  const CONTEXT = 4096;
  const WARM = 600; // steps before counting, toward V8's optimizing tier (cold code boxes floats)
  const COUNTED = 40;
  const SAMPLER_FILES = ['src/generate/row-sampler.ts', 'src/generate/model-backend.ts', 'src/generate/sampler.ts', 'src/ops/sample.ts', 'src/ops/sample-params.ts'];
  /** The path's async functions: each call allocates its promise and await state, and readRows the mapped range's view. */
  const ASYNC = new Set(['decode', 'next', 'readRows']);
  const CONFIG: SamplerConfig = { ...DEFAULT_SAMPLING, ...SAMPLING, seed: 3 };
  let restore: (() => void)[] = [];

  beforeAll(() => setFlagsFromString('--no-turbo-inlining')); // an inlined callee's allocations would be charged to its caller
  afterAll(() => {
    setFlagsFromString('--turbo-inlining');
    for (const undo of restore) undo();
  });

  /** Stands in for LlamaModel on the sampler's side: fixed (slots, vocab) logits; a "pass" is what `after` encodes. */
  function standInModel(slots: number): LlamaModel & { destroy(): void } {
    const { device } = gpu;
    const logits = uploadArray(device, randomLogits(mulberry32(slots), slots * VOCAB), 'F32');
    const pass = (after?: (encoder: GPUCommandEncoder) => void) => {
      const encoder = device.createCommandEncoder();
      after?.(encoder);
      device.queue.submit([encoder.finish()]);
      return Promise.resolve();
    };
    const fedId = device.createBuffer({ size: 16, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
    const decodeIdSlot = { buffer: fedId, offset: 0, size: 4 };
    const model = {
      device,
      logits,
      slots,
      contextLength: CONTEXT,
      config: { vocabSize: VOCAB },
      decodeIdSlot,
      decodeRows: (_rows: unknown, after?: (encoder: GPUCommandEncoder) => void) => pass(after),
      forward: (_ids: unknown, _start: number, after?: (encoder: GPUCommandEncoder) => void) => pass(after),
      forwardFed: (_position: number, _slot: number, after?: (encoder: GPUCommandEncoder) => void) => (void pass(after), true),
      recordFed: () => {},
      prefillSlot: () => Promise.resolve(),
      destroy: () => (logits.destroy(), fedId.destroy()),
    };
    restore.push(chargeToWebGpu(webGpuObjects(device, logits))); // what the binding allocates is the API's
    return model as unknown as LlamaModel & { destroy(): void };
  }

  /**
   * Allocations the synchronous functions of the sampler's files make over COUNTED steps,
   * after WARM steps, per function: the least over up to 5 counted runs (an allocation of
   * the code shows in every run; a run of code not yet optimized may box a float).
   */
  async function syncAllocations(step: () => Promise<void>): Promise<Map<string, number>> {
    for (let t = 0; t < WARM; t++) await step();
    const charge = (frame: Frame) => {
      const file = SAMPLER_FILES.find((f) => frame.url.endsWith(f));
      return file && !ASYNC.has(frame.functionName) ? `${file} ${frame.functionName || '(anonymous)'}` : null;
    };
    let least = new Map<string, number>();
    for (let run = 0; run < 5; run++) {
      const counts = await countAllocations(async () => {
        for (let t = 0; t < COUNTED; t++) await step();
      }, charge);
      least = run === 0 ? counts : new Map([...least].filter(([key]) => counts.has(key)).map(([key, n]) => [key, Math.min(n, counts.get(key)!)]));
      if (least.size === 0) break;
    }
    return least;
  }

  it('ModelBatchBackend.decode over two rows (and the RowSampler under it)', async () => {
    const model = standInModel(2);
    const backend = await ModelBatchBackend.create(model);
    try {
      const prompt = [5, 6, 7, 8];
      const rows: BatchRow[] = [0, 1].map((slot) => ({ slot, id: prompt[3], position: 3, step: 0 }));
      for (const slot of [0, 1]) {
        backend.begin(slot, { ...CONFIG, seed: slot }, prompt.length);
        await backend.prefill(slot, prompt.slice(0, 3), 0);
      }
      const allocations = await syncAllocations(async () => {
        const ids = await backend.decode(rows);
        for (let r = 0; r < rows.length; r++) {
          rows[r].id = ids[r]; // fed next: the sampler has it in the history already
          rows[r].position++;
          rows[r].step++;
        }
      });
      expect([...allocations], 'allocations per function over the counted steps').toEqual([]);
    } finally {
      backend.destroy();
      model.destroy();
    }
  });

  it.each([false, true])('GpuSampler.next, one sequence (the next pass submitted ahead: %s)', async (ahead) => {
    const model = standInModel(1);
    const sampler = await GpuSampler.create(model, CONFIG);
    try {
      const fed = [0];
      fed[0] = await sampler.next([5, 6, 7], 0);
      let position = 3;
      const allocations = await syncAllocations(async () => {
        fed[0] = await sampler.next(fed, position, undefined, ahead);
        position++;
      });
      expect([...allocations], 'allocations per function over the counted steps').toEqual([]);
    } finally {
      sampler.destroy();
      model.destroy();
    }
  });
});

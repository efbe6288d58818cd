// Issue 21, "no JS allocations per token", on the path `sluice chat` and `sluice serve` run:
// Engine → BatchScheduler's step loop → ModelBatchBackend.decode → RowSampler → the model's
// decodeRows → its Step. Two requests decode at once on the tiny llama-gqa fixture with two
// slots; after WARM steps, V8's sampling heap profiler (allocations.ts) counts the
// allocations charged to the functions of those files over COUNTED steps. Each scenario
// runs in a test file of its own (its own process): code optimized for one scenario's types
// deoptimizes in the next, and would be counted cold.
//
// Cold code boxes floats (an interpreted Float64Array read makes a HeapNumber), so only
// optimized code is counted: V8's interrupt budget is lowered meanwhile, so the step's
// functions reach TurboFan within WARM steps (at V8's default budget 2500 steps did, 12 s
// of the software GPU), and the least count of up to RUNS counted runs is kept (a run may
// catch a function before its optimized code is installed, compiled on a busy background
// thread, or between a deopt and its next optimization). What the WebGPU binding returns
// (an encoder, a pass, a mapped range, a promise) is charged to the API
// (webgpu-allocations.ts), and TurboFan's inlining is off, so each allocation
// counts for the function whose code made it.
//
// INHERENT functions are not asserted, each allocating by the language's design: the async
// functions' own promise and await state (pump's await of each pass; decode, readRows and
// decodeRows), and the consumer's side of each delta (submit's async generator yields it,
// changed() makes the promise a waiting consumer is woken through). The delta itself is
// Reply.push's (reply.ts, not counted). Every other function of FILES must make none.

import { readFileSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { afterAll, beforeAll, expect } from 'vitest';
import { openCheckpoint } from '../../src/checkpoint/open-path.js';
import { Engine } from '../../src/generate/engine.js';
import type { GenerateOptions } from '../../src/generate/generate.js';
import { ModelBatchBackend } from '../../src/generate/model-backend.js';
import { parseModelConfig } from '../../src/model/config.js';
import { LlamaModel } from '../../src/model/llama.js';
import type { Tokenizer } from '../../src/text/tokenizer.js';
import { countAllocations, type Frame } from './allocations.js';
import { useGpuTestDevice } from './gpu-helpers.js';
import { chargeToWebGpu, webGpuObjects } from './webgpu-allocations.js';

/** The model both requests run on (a test makes its tokenizer from it). */
export const MODEL_DIR = 'test/fixtures/models/llama-gqa';
const PROMPT = (JSON.parse(readFileSync(`${MODEL_DIR}/reference.json`, 'utf8')) as { prompt_ids: number[] }).prompt_ids;
/** Sampled, with every penalty on: each step reads its RNG step and its whole history. */
const SAMPLING = { temperature: 0.8, topK: 40, repetitionPenalty: 1.3, frequencyPenalty: 0.5, presencePenalty: 0.2 };
const WARM = 600;
export const COUNTED = 40;
const RUNS = 8;
const CONTEXT = 1024; // > prompt + WARM + RUNS · COUNTED: one request per stream does it all
/** V8's interrupt budget while this file runs (bytecode bytes run before a tier-up check), and node 20's default after. */
const BUDGET = 8192;
const DEFAULT_BUDGET = 67584;

const FILES = ['src/generate/batch-scheduler.ts', 'src/generate/model-backend.ts', 'src/generate/row-sampler.ts', 'src/model/llama.ts', 'src/gpu/step.ts', 'src/ops/op.ts'];
/** Functions that allocate by design (see the header), as `file function`. */
const INHERENT = new Set([
  'src/generate/batch-scheduler.ts pump',
  'src/generate/batch-scheduler.ts submit',
  'src/generate/batch-scheduler.ts changed',
  'src/generate/model-backend.ts decode',
  'src/generate/row-sampler.ts readRows',
  'src/model/llama.ts decodeRows',
]);

/**
 * Runs two requests (`options[0]`, `options[1]`) at once on the Engine; after WARM steps,
 * the allocations per step of the functions of FILES that are not INHERENT
 * (as `[file function, per step]`, [] when none), and each counted run's counts.
 */
export type EngineAllocations = (tokenizer: Tokenizer | null, options: readonly GenerateOptions[]) => Promise<{ unexpected: (readonly [string, number])[]; seen: string }>;

/** Sets up a test file (its GPU device, V8's flags while it runs); returns its measure. */
export function useEngineAllocations(label: string): EngineAllocations {
  const gpu = useGpuTestDevice(label);
  let undo = () => {};
  beforeAll(() => {
    setFlagsFromString('--no-turbo-inlining'); // an inlined callee's allocations would be charged to its caller
    setFlagsFromString(`--interrupt-budget=${BUDGET}`);
  });
  afterAll(() => {
    setFlagsFromString('--turbo-inlining');
    setFlagsFromString(`--interrupt-budget=${DEFAULT_BUDGET}`);
    undo();
  });

  return async function unexpectedAllocations(tokenizer, options) {
    const config = parseModelConfig(readFileSync(`${MODEL_DIR}/config.json`, 'utf8'));
    const checkpoint = await openCheckpoint(`${MODEL_DIR}/model.safetensors`);
    const model = await LlamaModel.load(checkpoint, config, gpu.device, { dtype: 'f32', contextLength: CONTEXT, parallel: 2 }).finally(() => checkpoint.close());
    const backend = await ModelBatchBackend.create(model);
    let steps = 0;
    let counting = false;
    const decode = backend.decode.bind(backend);
    backend.decode = (rows) => {
      steps++;
      if (counting && rows.length !== 2) throw new Error(`a step of ${rows.length} rows: both streams must decode in every counted step`);
      return decode(rows);
    };
    undo();
    undo = chargeToWebGpu(webGpuObjects(gpu.device, model.logits));
    const engine = new Engine({ model, backend, tokenizer, template: null, eosIds: [], defaults: {} });
    const common = { ...SAMPLING, maxTokens: CONTEXT, eosIds: [] };
    const streams = [engine.generate(PROMPT, { ...common, seed: 11, ...options[0] }), engine.generate(PROMPT.slice(0, 7), { ...common, seed: 12, ...options[1] })];
    /** Takes `n` deltas of each stream, in lockstep (each step yields one delta per stream). */
    const pull = async (n: number) => {
      for (let t = 0; t < n; t++) {
        const [a, b] = await Promise.all([streams[0].next(), streams[1].next()]);
        if (a.done || b.done) throw new Error('a stream ended before the counted steps');
      }
    };
    try {
      await pull(WARM);
      counting = true;
      const charge = (frame: Frame) => {
        const file = FILES.find((f) => frame.url.endsWith(f));
        return file ? `${file} ${frame.functionName || '(anonymous)'}` : null;
      };
      // Per function, the least count over the runs (until one shows none unexpected), per step.
      let least: Map<string, number> | null = null;
      let unexpected: (readonly [string, number])[] = [];
      const seen: string[] = [];
      for (let run = 0; run < RUNS; run++) {
        const before = steps;
        const counts = await countAllocations(() => pull(COUNTED), charge);
        expect(steps - before).toBe(COUNTED); // one step per delta of each stream
        seen.push([...counts].map(([key, n]) => `${key} ${n}`).join(', '));
        least = new Map([...counts].filter(([key]) => !least || least.has(key)).map(([key, n]) => [key, Math.min(n, least?.get(key) ?? n)]));
        const perStep = [...least].filter(([key]) => !INHERENT.has(key)).map(([key, n]) => [key, n / COUNTED] as const);
        unexpected = perStep.filter(([, n]) => n > 0);
        if (!unexpected.length) break;
      }
      return { unexpected, seen: seen.join(' | ') };
    } finally {
      for (const s of streams) await s.return(undefined as never);
      backend.destroy();
      model.dispose();
    }
  };
}

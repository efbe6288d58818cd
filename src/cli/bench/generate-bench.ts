// `sluice bench generate MODEL`: end-to-end generation speed on the current adapter.
// Prefill prompts of random ids (each length asked for, timed in turn), then decode greedily; report TTFT, prefill and decode
// tokens/s, dispatches and submits per token, and the weight bandwidth a decode step
// achieves (weight bytes per token × tokens/s) against the read limit measured in the
// same run (the bandwidth probe of `bench kernels`). Decode is memory-bound: every weight
// is read once per token, so that ratio says how close to the hardware the loop runs.
// With a grammar (--json-schema FILE ...): the vocabulary and compile times, then the same
// number of tokens decoded under it at temperature 1 (a new document whenever one
// completes), with the host time of each mask (fillMask + upload) against the
// unconstrained decode step (goal ≤ 15%).

import { GpuSampler } from '../../generate/sampler.js';
import { type GrammarBenchResult, benchGrammar, type GrammarBenchOptions } from './grammar-bench.js';
import type { GpuContext } from '../../gpu/device.js';
import { openModel } from '../../model/open-model.js';
import type { QuantKind } from '../../gpu/quantized-tensor.js';
import type { DtypeChoice } from '../../gpu/load-tensors.js';
import { measureReadLimit } from './read-limit.js';

export interface GenerateBenchOptions {
  dir: string;
  /** What `model` says in the result (default: dir). */
  label?: string;
  dtype?: DtypeChoice;
  /** Quantize the projections on load (q8/q4). */
  quantize?: QuantKind;
  /** Prompt lengths, each prefilled and timed in turn; decode follows the last (default 128). */
  promptTokens?: number | number[];
  tokens?: number;
  /** Also decode under this grammar and time its masks. */
  grammar?: GrammarBenchOptions;
  onStep?: (what: string) => void;
}

export interface PrefillResult {
  prompt_tokens: number;
  ttft_ms: number;
  prefill_tokens_per_second: number;
}

export interface GenerateBenchResult {
  model: string;
  adapter: string;
  compute_dtype: string;
  /** 'q8' / 'q4' when quantized on load, else null. */
  quantize: QuantKind | null;
  /** Weights on the device, and the seconds the load took (read, upload, quantize, compile). */
  device_bytes: number;
  load_seconds: number;
  layers: number;
  /** Every prompt length asked for; the top-level prompt_tokens, ttft_ms and prefill rate are the last's. */
  prefill: PrefillResult[];
  prompt_tokens: number;
  generated_tokens: number;
  ttft_ms: number;
  prefill_tokens_per_second: number;
  decode_tokens_per_second: number;
  dispatches_per_token: number;
  submits_per_token: number;
  readback_bytes_per_token: number;
  weight_bytes_per_token: number;
  weight_gbps: number;
  read_limit_gbps: number;
  weight_over_read: number;
  /** With options.grammar. */
  grammar?: GrammarBenchResult;
}

export async function benchGenerate(gpu: GpuContext, options: GenerateBenchOptions): Promise<GenerateBenchResult> {
  const step = options.onStep ?? (() => {});
  const tokens = options.tokens ?? 64;
  const lengths = [options.promptTokens ?? 128].flat();
  const longest = Math.max(...lengths);
  step(`loading ${options.label ?? options.dir}`);
  const loadStart = performance.now();
  const opened = await openModel(options.dir, gpu.device, { dtype: options.dtype, quantize: options.quantize, contextLength: longest + tokens + 1 });
  const loadSeconds = (performance.now() - loadStart) / 1000;
  const { model } = opened;
  try {
    const sampler = await GpuSampler.create(model, { temperature: 0, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1, seed: 0 });
    try {
      // Random ids, avoiding eos so nothing stops early (the loop below ignores eos anyway).
      let state = 12345;
      const prompt = Array.from({ length: longest }, () => (state = (Math.imul(state, 1103515245) + 12345) >>> 0) % model.config.vocabSize);
      // Warm-up: pipelines compiled by the driver on first use would count as prefill time.
      step('warm-up');
      await sampler.next(prompt.slice(0, 2), 0);
      await sampler.next([prompt[0]], 2);

      // Each prefill starts the sequence again at position 0 (the cache is overwritten).
      const prefill: PrefillResult[] = [];
      let id = 0;
      for (const length of lengths) {
        step(`prefill ${length} tokens`);
        const began = performance.now();
        id = await sampler.next(prompt.slice(0, length), 0);
        const ttft = performance.now() - began;
        prefill.push({ prompt_tokens: length, ttft_ms: round(ttft), prefill_tokens_per_second: round(length / (ttft / 1000)) });
      }
      const promptLength = lengths[lengths.length - 1];
      step(`decode ${tokens} tokens`);
      const decodeStart = performance.now();
      for (let i = 0; i < tokens; i++) id = await sampler.next([id], promptLength + i);
      const decodeSeconds = (performance.now() - decodeStart) / 1000;
      const grammar = options.grammar && (await benchGrammar(opened, sampler, options.grammar, { firstId: id, position: promptLength, tokens, stepMs: (decodeSeconds * 1000) / tokens, onStep: step }));

      step('read limit');
      const readGbps = (await measureReadLimit(gpu.device, 128 * 2 ** 20)).readGbps;

      const decodeRate = tokens / decodeSeconds;
      const weightGbps = (model.weightBytesPerToken * decodeRate) / 1e9;
      const last = prefill[prefill.length - 1];
      return {
        model: options.label ?? options.dir,
        adapter: gpu.adapterInfo.description || gpu.adapterInfo.device,
        compute_dtype: model.dtype,
        quantize: options.quantize ?? null,
        device_bytes: model.weights.deviceBytes,
        load_seconds: round(loadSeconds),
        layers: model.config.numLayers,
        prefill,
        prompt_tokens: last.prompt_tokens,
        generated_tokens: tokens,
        ttft_ms: last.ttft_ms,
        prefill_tokens_per_second: last.prefill_tokens_per_second,
        decode_tokens_per_second: round(decodeRate),
        dispatches_per_token: model.decodeDispatches + 1, // + the sampler's one
        submits_per_token: 1,
        readback_bytes_per_token: 4,
        weight_bytes_per_token: model.weightBytesPerToken,
        weight_gbps: round(weightGbps),
        read_limit_gbps: round(readGbps),
        weight_over_read: round(weightGbps / readGbps),
        ...(grammar && { grammar }),
      };
    } finally {
      sampler.destroy();
    }
  } finally {
    opened.dispose();
  }
}

const round = (x: number) => Math.round(x * 1000) / 1000;

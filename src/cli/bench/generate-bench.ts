// `sluice bench generate MODEL`: end-to-end generation speed on the current adapter.
// Prefill prompts of random ids (each length asked for, timed in turn), then decode greedily; report TTFT, prefill and decode
// tokens/s, dispatches and submits per token, and the weight bandwidth a decode step
// achieves (weight bytes per token × tokens/s) against the read limit measured in the
// same run (the bandwidth probe of `bench kernels`). Decode is memory-bound: every weight
// is read once per token, so that ratio says how close to the hardware the loop runs.
// So that the ratio holds still from run to run (one decode and one probe after it swung
// 0.47–0.74 on this project's shared 2-core machine): one untimed decode first, then the
// same decode `repeats` times (median tokens/s, and the spread), a read probe of several
// passes before each run and after the last, each run's ratio against the probes around it.
// With a grammar (--json-schema FILE ...): the vocabulary and compile times, then the same
// number of tokens decoded under it at temperature 1 (a new document whenever one
// completes), with the host time of each mask (fillMask + upload) against the
// unconstrained decode step (goal ≤ 15%).

import { GpuSampler } from '../../generate/sampler.js';
import { type GrammarBenchResult, benchGrammar, type GrammarBenchOptions } from './grammar-bench.js';
import type { GpuContext } from '../../gpu/device.js';
import { openModel } from '../../model/open-model.js';
import { mainThreadCpuSeconds } from './main-thread-cpu.js';
import type { QuantKind } from '../../gpu/quantized-tensor.js';
import type { KernelChoice, KernelFamily } from '../../model/kernel-family.js';
import type { DtypeChoice } from '../../gpu/load-tensors.js';
import { measureReadOnlyLimit } from './read-limit.js';
import { median } from './update-bench.js';
import { SluiceError } from '../../errors.js';

/** Decode runs timed by default: their median is not moved by up to two disturbed runs. */
export const DEFAULT_DECODE_REPEATS = 5;
/** Timed passes of each read probe, the fastest kept (see read-limit.ts). */
const PROBE_PASSES = 2;

export interface GenerateBenchOptions {
  dir: string;
  /** What `model` says in the result (default: dir). */
  label?: string;
  dtype?: DtypeChoice;
  /** Quantize the projections on load (q8/q4). */
  quantize?: QuantKind;
  /** The kernel family (default: the adapter's). */
  kernels?: KernelChoice;
  /** Prompt lengths, each prefilled and timed in turn; decode follows the last (default 128). */
  promptTokens?: number | number[];
  tokens?: number;
  /** Timed decode runs of `tokens` each, after one untimed (default DEFAULT_DECODE_REPEATS). */
  repeats?: number;
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
  /** The kernel family the model ran (kernel-family.ts). */
  kernels: KernelFamily;
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
  /** The median of decode_runs_tokens_per_second. */
  decode_tokens_per_second: number;
  /** Each timed decode run of generated_tokens tokens, in order (the untimed warm-up run excluded). */
  decode_runs_tokens_per_second: number[];
  decode_repeats: number;
  /** (max − min) / median of the runs: 0.1 = the runs span 10% of the median. */
  decode_spread: number;
  /**
   * The main thread's CPU time over the wall time of the timed decode runs (null where the
   * platform does not tell): ~1 means the host spun while waiting for the GPU.
   */
  host_busy_share: number | null;
  dispatches_per_token: number;
  submits_per_token: number;
  readback_bytes_per_token: number;
  weight_bytes_per_token: number;
  /** From the median decode rate. */
  weight_gbps: number;
  /** The read probe just before the first timed decode run and just after the last. */
  read_limit_before_gbps: number;
  read_limit_after_gbps: number;
  /** Every probe: before each timed run, and after the last (repeats + 1). */
  read_limit_probes_gbps: number[];
  /** The median of the runs' limits, each the larger of the probes around the run (why: benchGenerate). */
  read_limit_gbps: number;
  /** The median of weight_over_read_runs. */
  weight_over_read: number;
  /** Each timed run's weight bandwidth over its own limit. */
  weight_over_read_runs: number[];
  /** (max − min) / median of weight_over_read_runs. */
  weight_over_read_spread: number;
  /** With options.grammar. */
  grammar?: GrammarBenchResult;
}

export async function benchGenerate(gpu: GpuContext, options: GenerateBenchOptions): Promise<GenerateBenchResult> {
  const step = options.onStep ?? (() => {});
  const tokens = options.tokens ?? 64;
  const repeats = options.repeats ?? DEFAULT_DECODE_REPEATS;
  if (!Number.isSafeInteger(repeats) || repeats < 1) throw new SluiceError('USAGE', `bench generate: repeats must be a whole number ≥ 1, not ${repeats}`);
  const lengths = [options.promptTokens ?? 128].flat();
  const longest = Math.max(...lengths);
  step(`loading ${options.label ?? options.dir}`);
  const loadStart = performance.now();
  const opened = await openModel(options.dir, gpu.device, { dtype: options.dtype, quantize: options.quantize, kernels: options.kernels, contextLength: longest + tokens + 1 });
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
      // Every run decodes the same greedy tokens at the same positions after the prompt
      // (each overwrites the cache rows of the one before), so the runs differ only by
      // the machine. The untimed first one pays what happens once: the first touch of
      // those cache rows (page faults on a software GPU), attention at lengths the
      // warm-up above did not reach, the driver's lazy work.
      let timedWall = 0; // seconds of the timed runs, and the main thread's CPU seconds in them
      let timedCpu: number | null = 0;
      const decodeSeconds = async () => {
        const began = performance.now();
        const cpuBefore = mainThreadCpuSeconds();
        for (let i = 0, next = id; i < tokens; i++) next = await sampler.next([next], promptLength + i, undefined, i + 1 < tokens); // as generate() decodes
        const cpuAfter = mainThreadCpuSeconds();
        const seconds = (performance.now() - began) / 1000;
        timedWall += seconds;
        timedCpu = timedCpu === null || cpuBefore === null || cpuAfter === null ? null : timedCpu + cpuAfter - cpuBefore;
        return seconds;
      };
      step(`decode ${tokens} tokens (untimed)`);
      await decodeSeconds();
      // The read limit is probed before each timed run and after the last, so each run is
      // compared with the limit of its own stretch of time: this machine (a VM on a
      // shared host) has stretches of tens of seconds in which memory reads, the probe's
      // and the decode's alike, run at one of two speeds ~1.5× apart, and a run compared
      // with a probe from the other stretch moved the ratio by that much.
      const probe = async (when: string) => {
        step(`read limit (${when})`);
        return (await measureReadOnlyLimit(gpu.device, 128 * 2 ** 20, { passes: PROBE_PASSES })).readGbps;
      };
      const probes = [await probe('before run 1')];
      timedWall = 0; // the untimed run above does not count
      timedCpu = 0;
      const rates: number[] = [];
      for (let r = 0; r < repeats; r++) {
        step(`decode ${tokens} tokens (${r + 1} of ${repeats})`);
        rates.push(tokens / (await decodeSeconds()));
        probes.push(await probe(r + 1 < repeats ? `before run ${r + 2}` : 'after the runs'));
      }
      const decode = decodeStats(rates);
      const grammar = options.grammar && (await benchGrammar(opened, sampler, options.grammar, { firstId: id, position: promptLength, tokens, stepMs: 1000 / decode.median, onStep: step }));

      // A run's limit is the larger of the probes around it, not their mean: other work on
      // the machine can only slow a probe down, so the faster is the nearer (a mean would
      // carry half of a disturbed probe into the ratio). The ratio is the median of the
      // runs' ratios; the limit reported, the median of the runs' limits.
      const limits = rates.map((_, r) => Math.max(probes[r], probes[r + 1]));
      const ratios = rates.map((rate, r) => (model.weightBytesPerToken * rate) / 1e9 / limits[r]);
      const ratio = decodeStats(ratios);
      const readGbps = median([...limits]);
      const weightGbps = (model.weightBytesPerToken * decode.median) / 1e9;
      const last = prefill[prefill.length - 1];
      return {
        model: options.label ?? options.dir,
        adapter: gpu.adapterInfo.description || gpu.adapterInfo.device,
        compute_dtype: model.dtype,
        kernels: model.kernelFamily,
        quantize: options.quantize ?? null,
        device_bytes: model.weights.deviceBytes,
        load_seconds: round(loadSeconds),
        layers: model.config.numLayers,
        prefill,
        prompt_tokens: last.prompt_tokens,
        generated_tokens: tokens,
        ttft_ms: last.ttft_ms,
        prefill_tokens_per_second: last.prefill_tokens_per_second,
        decode_tokens_per_second: round(decode.median),
        decode_runs_tokens_per_second: rates.map(round),
        decode_repeats: repeats,
        decode_spread: round(decode.spread),
        host_busy_share: timedCpu === null ? null : round(timedCpu / timedWall),
        dispatches_per_token: model.decodeDispatches + 1, // + the sampler's one
        submits_per_token: 1,
        readback_bytes_per_token: 4,
        weight_bytes_per_token: model.weightBytesPerToken,
        weight_gbps: round(weightGbps),
        read_limit_before_gbps: round(probes[0]),
        read_limit_after_gbps: round(probes[probes.length - 1]),
        read_limit_probes_gbps: probes.map(round),
        read_limit_gbps: round(readGbps),
        weight_over_read: round(ratio.median),
        weight_over_read_runs: ratios.map(round),
        weight_over_read_spread: round(ratio.spread),
        ...(grammar && { grammar }),
      };
    } finally {
      sampler.destroy();
    }
  } finally {
    opened.dispose();
  }
}

/** The median of repeated measurements and their spread, (max − min) / median (0 for one run). */
export function decodeStats(runs: readonly number[]): { median: number; spread: number } {
  if (runs.length === 0) throw new RangeError('decodeStats: no runs');
  const mid = median([...runs]);
  return { median: mid, spread: (Math.max(...runs) - Math.min(...runs)) / mid };
}

const round = (x: number) => Math.round(x * 1000) / 1000;

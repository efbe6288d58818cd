// The options every model command shares: compute dtype, context length and the sampling
// flags of ../shared/ARCHITECTURE.md, parsed and checked in one place; plus loading a
// model directory with a progress bar.

import { Engine } from '../generate/engine.js';
import { ModelBatchBackend } from '../generate/model-backend.js';
import { acquireNodeDevice } from '../gpu/node-gpu.js';
import type { DtypeChoice } from '../gpu/load-tensors.js';
import type { QuantKind } from '../gpu/quantized-tensor.js';
import { type KernelChoice, KERNEL_CHOICES } from '../model/kernel-family.js';
import { SluiceError } from '../errors.js';
import type { GenerateOptions, GenerationStats } from '../generate/generate.js';
import { openModel, type OpenedModel } from '../model/open-model.js';
import { dtypeFlag, numberFlag, type ParsedArgs, wholeNumberFlag } from './args.js';
import type { CliIo } from './io.js';
import { loadProgressBar } from './progress.js';

export const modelOptions = {
  dtype: { type: 'string' },
  quantize: { type: 'string' },
  context: { type: 'string' },
  kernels: { type: 'string' },
  temperature: { type: 'string' },
  'top-k': { type: 'string' },
  'top-p': { type: 'string' },
  'min-p': { type: 'string' },
  'repetition-penalty': { type: 'string' },
  seed: { type: 'string' },
  'max-tokens': { type: 'string' },
  stop: { type: 'string', multiple: true },
  json: { type: 'boolean' },
  offline: { type: 'boolean' },
} as const;

export const MODEL_OPTIONS_HELP = `Sampling (defaults from the model's generation_config.json, else greedy-free HF defaults):
  --temperature T          0 = greedy (argmax)
  --top-k K, --top-p P, --min-p P, --repetition-penalty R
  --seed N                 same seed, same tokens
  --max-tokens N           most tokens to generate (default 256)
  --stop TEXT              stop before TEXT (repeatable)
Model:
  MODEL                    a model directory, or org/name[@REVISION] on the Hugging Face Hub:
                           taken from the HF cache, else downloaded into it (as sluice pull)
  --offline                never download: the HF cache only (also HF_HUB_OFFLINE=1)
  --dtype auto|f16|f32     compute precision (auto: f16 where the GPU has shader-f16)
  --quantize q8|q4         quantize the projections and the embedding table on the GPU as
                           they load (group 32: q8 symmetric, q4 asymmetric); norms and
                           biases stay dense
  --context N              KV cache positions (default min(max_position_embeddings, 4096))
  --kernels auto|software|gpu
                           kernel designs: software (tuned for CPU renderers such as
                           lavapipe) or gpu (for real GPUs); auto picks by the adapter
  --json                   one JSON document on stdout
  --debug                  Dawn's own messages, and stack traces on errors`;

export function modelSettings(command: string, values: ParsedArgs['values']): { dtype: DtypeChoice; quantize?: QuantKind; contextLength?: number; kernels?: KernelChoice; generate: GenerateOptions } {
  const number = (flag: string, check: (x: number) => boolean, what: string) => numberFlag(command, values, flag, check, what);
  const whole = (flag: string, min: number, max?: number) => wholeNumberFlag(command, values, flag, min, max);
  const generate: GenerateOptions = {};
  const set = <K extends keyof GenerateOptions>(key: K, value: GenerateOptions[K] | undefined) => {
    if (value !== undefined) generate[key] = value;
  };
  set('temperature', number('temperature', (x) => Number.isFinite(x) && x >= 0, 'a number ≥ 0'));
  set('topK', whole('top-k', 0));
  set('topP', number('top-p', (x) => x > 0 && x <= 1, 'in (0, 1]'));
  set('minP', number('min-p', (x) => x >= 0 && x <= 1, 'in [0, 1]'));
  set('repetitionPenalty', number('repetition-penalty', (x) => Number.isFinite(x) && x > 0, 'a number > 0'));
  set('seed', whole('seed', 0, 2 ** 32 - 1));
  set('maxTokens', whole('max-tokens', 0));
  if (values.stop) generate.stop = values.stop as string[];
  return { dtype: dtypeFlag(command, values), quantize: quantizeFlag(command, values), contextLength: whole('context', 1), kernels: kernelsFlag(command, values), generate };
}

/** --kernels auto|software|gpu, or undefined: auto. */
export function kernelsFlag(command: string, values: ParsedArgs['values']): KernelChoice | undefined {
  const k = values.kernels as string | undefined;
  if (k === undefined) return undefined;
  if (!(KERNEL_CHOICES as readonly string[]).includes(k)) throw new SluiceError('USAGE', `${command}: --kernels must be ${KERNEL_CHOICES.join(', ')}, not ${JSON.stringify(k)}`);
  return k as KernelChoice;
}

/** --quantize q8|q4, or undefined: dense weights. */
export function quantizeFlag(command: string, values: ParsedArgs['values']): QuantKind | undefined {
  const q = values.quantize as string | undefined;
  if (q === undefined) return undefined;
  if (q !== 'q8' && q !== 'q4') throw new SluiceError('USAGE', `${command}: --quantize must be q8 or q4, not ${JSON.stringify(q)}`);
  return q;
}

/**
 * Runs `body` with a model directory loaded on a fresh device (a load progress bar on a
 * terminal unless `quiet`) and a GPU sampler, and frees all three whatever happens.
 */
export async function withModel<T>(
  dir: string,
  io: CliIo,
  settings: { dtype: DtypeChoice; quantize?: QuantKind; contextLength?: number; kernels?: KernelChoice },
  quiet: boolean,
  body: (opened: OpenedModel, backend: ModelBatchBackend) => Promise<T>,
): Promise<T> {
  const gpu = await acquireNodeDevice({ label: 'sluice.model' });
  try {
    const opened = await openModel(dir, gpu.device, { ...settings, onProgress: loadProgressBar(io, !quiet) });
    try {
      const backend = await ModelBatchBackend.create(opened.model);
      try {
        return await body(opened, backend);
      } finally {
        backend.destroy();
      }
    } finally {
      opened.dispose();
    }
  } finally {
    gpu.destroy();
  }
}

/** The engine (slots, shared cache) over an opened model and its backend. */
export function engineOf(opened: OpenedModel, backend: ModelBatchBackend): Engine {
  const { model, tokenizer, chatTemplate: template, chatTemplateError: templateError, eosIds, defaults } = opened;
  return new Engine({ model, backend, tokenizer, template, templateError, eosIds, defaults });
}

/** The `timings` object of --json outputs. */
export function timingsJson(s: GenerationStats) {
  const round = (x: number) => Math.round(x * 100) / 100;
  return { ttft_ms: round(s.ttftMs), prefill_tokens_per_second: round(s.prefillTokensPerSecond), decode_tokens_per_second: round(s.decodeTokensPerSecond) };
}

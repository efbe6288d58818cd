// The messages between the page (main thread) and the worker that owns the GPU device and
// the model. Generation runs in the worker so the page stays responsive; only small
// objects cross: progress reports, text deltas, stats and errors.

import type { ChatMessage, CompletionStats, GenerateOptions, ModelProgress, OpenModelOptions } from 'sluice/browser';

export type ModelChoice =
  | { kind: 'url'; url: string }
  | { kind: 'files'; files: File[] };

/** Weights quantized on the GPU as they load (undefined: as the checkpoint stores them). */
export type Quantize = OpenModelOptions['quantize'];

export type Sampling = Pick<GenerateOptions, 'temperature' | 'topK' | 'topP' | 'minP' | 'repetitionPenalty' | 'seed' | 'maxTokens'>;

/** Page → worker. */
export type ToWorker =
  | { type: 'load'; source: ModelChoice; dtype: 'auto' | 'f16' | 'f32'; quantize: Quantize; cache: boolean; contextLength?: number }
  /** jsonMode: every reply is one JSON object (the grammar { jsonObject: true }, enforced in the sampler). */
  | { type: 'chat'; id: number; messages: ChatMessage[]; sampling: Sampling; jsonMode: boolean }
  | { type: 'stop' }
  | { type: 'unload' }
  | { type: 'clear-cache' };

export interface GpuSummary {
  adapter: string;
  isSoftware: boolean;
  f16: boolean;
  maxBindingBytes: number;
}

export interface LoadedSummary {
  name: string;
  computeDtype: 'F16' | 'F32';
  contextLength: number;
  layers: number;
  parameters: string;
  quantize: Quantize;
  /** GPU bytes of the weights: all, and the part quantized (the rest is full precision). */
  deviceBytes: number;
  quantizedBytes: number;
  defaults: Sampling;
  loadMs: number;
}

/** Worker → page. */
export type FromWorker =
  | { type: 'gpu'; gpu: GpuSummary }
  | { type: 'progress'; progress: ModelProgress }
  | { type: 'loaded'; model: LoadedSummary }
  | { type: 'delta'; id: number; text: string }
  | { type: 'done'; id: number; stats: CompletionStats }
  | { type: 'cache-cleared'; entries: number }
  | { type: 'error'; id?: number; code: string; message: string }
  | { type: 'lost'; message: string };

/** The Cache API cache that downloaded model files are kept in. */
export const CACHE_NAME = 'sluice-models';

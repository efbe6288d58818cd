// HF `config.json` → a typed ModelConfig: the shape, the rope, and the family's Features
// (families.ts). Everything the forward pass needs is checked here, once, with errors that
// say what is unsupported and what is: nothing downstream re-validates.

import { SluiceError } from '../errors.js';
import { type ConfigReader, type Features, familyOf, features, FAMILIES, supportedList } from './families.js';
import { parseQuantization, type Quantization } from './quantization.js';
import { parseRope, type RopeSettings } from './rope-scaling.js';

/** Every architecture some family runs (config.json's `architectures`). */
export const SUPPORTED_ARCHITECTURES: readonly string[] = FAMILIES.flatMap((f) => f.architectures);
export type Architecture = string;

export interface ModelConfig {
  architecture: Architecture;
  /** The family's label, e.g. 'Gemma 2' (informational). */
  family: string;
  /** e.g. 'llama', 'mistral', 'qwen2' (informational). */
  modelType: string;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  vocabSize: number;
  rmsNormEps: number;
  /** The rope of every layer (per layer type where they differ), parsed once (rope-scaling.ts). */
  rope: RopeSettings;
  maxPositionEmbeddings: number;
  tieWordEmbeddings: boolean;
  /** What the forward pass does differently from Llama (families.ts). */
  features: Features;
  /** A pre-quantized checkpoint's scheme (quantization_config), or null for float weights. */
  quantization: Quantization | null;
  /** The checkpoint's own dtype (torch_dtype), informational. */
  torchDtype: string | null;
  bosTokenId: number | null;
  eosTokenIds: number[];
}

/** Parses config.json text; `file` names it in errors. */
export function parseModelConfig(text: string, file = 'config.json'): ModelConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new SluiceError('INVALID_JSON', `${file}: not valid JSON (${(e as Error).message})`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new SluiceError('INVALID_JSON', `${file}: not a JSON object`);
  return modelConfig(raw as Record<string, unknown>, file);
}

export function modelConfig(c: Record<string, unknown>, file = 'config.json'): ModelConfig {
  const unsupported = (what: string) => new SluiceError('UNSUPPORTED_ARCH', `${file}: ${what}; sluice runs ${supportedList()}`);
  const bad = (key: string, why: string) => new SluiceError('INVALID_JSON', `${file}: ${key} ${why}`);
  const reader: ConfigReader = {
    raw: c,
    has: (key) => c[key] != null,
    bad,
    int: (key, fallback) => {
      const v = c[key] ?? fallback;
      if (!Number.isSafeInteger(v) || (v as number) <= 0) throw bad(key, v === undefined ? 'is missing' : `must be a positive integer, not ${JSON.stringify(v)}`);
      return v as number;
    },
    num: (key, fallback) => {
      const v = c[key] ?? fallback;
      if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw bad(key, v === undefined ? 'is missing' : `must be a positive number, not ${JSON.stringify(v)}`);
      return v;
    },
    bool: (key, fallback) => {
      const v = c[key] ?? fallback;
      if (typeof v !== 'boolean') throw bad(key, `must be true or false, not ${JSON.stringify(v)}`);
      return v;
    },
  };
  const { int, num, bool } = reader;

  const found = familyOf(c.architectures);
  if (!found) throw unsupported(`architecture ${JSON.stringify(c.architectures ?? null)} is not supported`);
  if (c.mlp_bias === true) throw unsupported('mlp_bias true is not supported');

  const hiddenSize = int('hidden_size');
  const numHeads = int('num_attention_heads');
  const numKvHeads = int('num_key_value_heads', numHeads);
  if (numHeads % numKvHeads !== 0) throw bad('num_key_value_heads', `(${numKvHeads}) must divide num_attention_heads (${numHeads})`);
  const headDim = c.head_dim == null ? hiddenSize / numHeads : int('head_dim');
  if (!Number.isInteger(headDim)) throw bad('hidden_size', `(${hiddenSize}) is not a multiple of num_attention_heads (${numHeads}) and head_dim is not given`);
  const numLayers = int('num_hidden_layers');
  const rope = parseRope(c, { ...found.family.rope, file, headDim });
  let feats: Features;
  try {
    feats = features(found.family, reader, { hiddenSize, headDim, numLayers }, rope);
  } catch (e) {
    if ((e as { unsupported?: boolean }).unsupported) throw unsupported((e as Error).message.slice(file.length + 2));
    throw e;
  }

  return {
    architecture: found.architecture,
    family: found.family.label,
    modelType: typeof c.model_type === 'string' ? c.model_type : 'llama',
    hiddenSize,
    intermediateSize: int('intermediate_size'),
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    vocabSize: int('vocab_size'),
    rmsNormEps: num('rms_norm_eps', 1e-6),
    rope,
    maxPositionEmbeddings: int('max_position_embeddings', 2048),
    tieWordEmbeddings: bool('tie_word_embeddings', false),
    features: feats,
    quantization: parseQuantization(c, file),
    torchDtype: typeof c.torch_dtype === 'string' ? c.torch_dtype : null,
    bosTokenId: Number.isSafeInteger(c.bos_token_id) ? (c.bos_token_id as number) : null,
    eosTokenIds: tokenIds(c.eos_token_id),
  };
}

/** eos_token_id / generation_config ids: one id, a list, or absent. */
export function tokenIds(v: unknown): number[] {
  if (Number.isSafeInteger(v)) return [v as number];
  if (Array.isArray(v)) return v.filter((x): x is number => Number.isSafeInteger(x));
  return [];
}

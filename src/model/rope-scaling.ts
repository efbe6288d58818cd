// config.json's rope settings, parsed once into a typed RopeScaling, and the tables computed
// from it: inv_freq (rotaryDim / 2 f32) and the attention factor that scales cos and sin.
//
// Everything follows transformers 5.x `modeling_rope_utils.py`: the `_compute_*_parameters`
// functions for the tables, `RotaryEmbeddingConfigMixin.convert_rope_params_to_dict` /
// `standardize_rope_params` for where each setting is read from, and `dynamic_rope_update`
// for when a table changes with the sequence length. Each formula is done in float32 step by
// step as torch does it (Math.fround after every op; a python float meeting an f32 tensor is
// used as f32; `scalar / tensor` is reciprocal-then-multiply, as torch's __rtruediv__).
// The one op torch does not round exactly is the f32 pow (SLEEF's 1-ulp `powf` on CPUs,
// CUDA's on GPUs): here it is rounded from a float64 pow, so tables are within 1 ulp of
// torch's and bit-equal to the same formulas with a correctly rounded pow.
//
// Tables that depend on the sequence length (dynamic, longrope) and the KV cache.
// transformers rotates q and k in each forward with the table current for that forward, then
// appends k, already rotated, to the cache. When the table changes, cached keys are NOT
// re-rotated: later queries (new table) meet older keys (old table). Precisely:
// - dynamic (`dynamic_frequency_update`): seq_len = max(position_ids) + 1 over the whole call
//   (every batch row). Past the longest length seen since the last reset (initially
//   max_position_embeddings) the table is recomputed for seq_len; when seq_len drops below
//   max_position_embeddings after a growth, the original table returns. Otherwise the table
//   stays. ropeTableSeqLen() replays that state; ropeTables(rope, thatLength) gives the table.
// - longrope (`longrope_frequency_update`): the long factors while max(position_ids) + 1 >
//   original_max_position_embeddings, the short ones otherwise, decided per call. Generic
//   models keep the cache across the switch. Phi3ForCausalLM.prepare_inputs_for_generation
//   differs: the first generate step whose whole input reaches original + 1 tokens while the
//   cache holds ≤ original drops the cache, so the whole sequence is prefilled again with the
//   long table (one slow step; afterwards every cached key is long-rotated).

import { quote, SluiceError } from '../errors.js';

export const SUPPORTED_ROPE_TYPES = ['default', 'linear', 'dynamic', 'yarn', 'longrope', 'llama3'] as const;
export type RopeType = (typeof SUPPORTED_ROPE_TYPES)[number];

interface RopeCommon {
  /** rope_theta as config.json says it (float64; torch uses it as f32 where it meets a tensor). */
  theta: number;
  headDim: number;
  /** int(headDim × partial_rotary_factor), as transformers' `dim`: the leading dims that rotate. */
  rotaryDim: number;
  /** cos and sin are multiplied by this (a python float; torch applies it as f32). */
  attentionFactor: number;
}

export type RopeScaling = RopeCommon &
  (
    | { type: 'default' }
    | { type: 'linear'; factor: number }
    | { type: 'dynamic'; factor: number; maxPositionEmbeddings: number }
    | { type: 'llama3'; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositionEmbeddings: number }
    | { type: 'yarn'; factor: number; originalMaxPositionEmbeddings: number; betaFast: number; betaSlow: number; truncate: boolean }
    | { type: 'longrope'; factor: number; originalMaxPositionEmbeddings: number; shortFactor: readonly number[]; longFactor: readonly number[] }
  );

/** A model's ropes: one for every layer, unless its layer type has its own (Gemma 3). */
export interface RopeSettings {
  /** The rope of 'full_attention' layers, and of every layer whose type has no entry below. */
  rope: RopeScaling;
  /**
   * Per layer type (config.json's layer_types names), when they differ: Gemma 3's
   * 'sliding_attention' layers use rope_local_base_freq, unscaled; 'full_attention' layers
   * rope_theta with rope_scaling. Empty for single-rope models.
   */
  byLayerType: Readonly<Record<string, RopeScaling>>;
}

export interface RopeParseOptions {
  /** Named in errors (default 'config.json'). */
  file?: string;
  /** Head size the rope sees, when it is not head_dim ?? hidden_size // num_attention_heads (DeepSeek: qk_rope_head_dim). */
  headDim?: number;
  /** The family's rope_theta when config.json has none (transformers' `default_theta`, 10000). */
  defaultTheta?: number;
  /**
   * A family's default top-level original_max_position_embeddings (Phi3Config: 4096). Like a
   * top-level value in config.json it overrides rope_scaling's for llama3/yarn/longrope, as
   * `standardize_rope_params` assigns it when the config has the attribute.
   */
  originalMaxPositionEmbeddings?: number;
  /**
   * The family's theta for 'sliding_attention' layers (Gemma3TextConfig: 10000): with it, a
   * config.json without rope_local_base_freq still gets its local rope, as transformers does.
   */
  defaultLocalTheta?: number;
  /** Legacy type names a family maps (Phi3Config: { su: 'longrope', yarn: 'longrope' }). */
  typeAliases?: Readonly<Record<string, RopeType>>;
}

/** The rope of a layer of the given type (undefined: the model's one rope). */
export function ropeForLayer(settings: RopeSettings, layerType?: string): RopeScaling {
  return (layerType !== undefined && settings.byLayerType[layerType]) || settings.rope;
}

type Json = Readonly<Record<string, unknown>>;
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Reads config.json's rope settings (rope_scaling or rope_parameters, flat or per layer type). */
export function parseRope(config: Json, options: RopeParseOptions = {}): RopeSettings {
  const file = options.file ?? 'config.json';
  const bad = (key: string, why: string) => new SluiceError('INVALID_JSON', `${file}: ${key} ${why}`);
  const num = (dict: Json, key: string, where: string, min = 0): number => {
    const v = dict[key];
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= min) throw bad(`${where}${key}`, v === undefined ? 'is missing' : `must be a number > ${min}, not ${show(v)}`);
    return v;
  };
  const opt = (dict: Json, key: string, where: string, fallback: number): number => (dict[key] == null ? fallback : num(dict, key, where));
  const int = (dict: Json, key: string, where: string): number => {
    const v = num(dict, key, where);
    if (!Number.isSafeInteger(v)) throw bad(`${where}${key}`, `must be an integer, not ${show(v)}`);
    return v;
  };

  // head_dim: `getattr(config, "head_dim", hidden_size // num_attention_heads)`.
  const headDim = options.headDim ?? (config.head_dim != null ? int(config, 'head_dim', '') : Math.floor(int(config, 'hidden_size', '') / int(config, 'num_attention_heads', '')));
  if (!Number.isSafeInteger(headDim) || headDim < 2) throw bad('head_dim', `must be an integer ≥ 2, not ${show(headDim)}`);
  const maxPos = config.max_position_embeddings == null ? 2048 : int(config, 'max_position_embeddings', '');
  const topTheta = opt(config, 'rope_theta', '', options.defaultTheta ?? 10000);
  const topPartial = config.partial_rotary_factor == null ? undefined : num(config, 'partial_rotary_factor', '');
  // Phi-3 keeps the pretraining length at the top level; standardize_rope_params gives it priority.
  const topOriginal = config.original_max_position_embeddings != null ? int(config, 'original_max_position_embeddings', '') : options.originalMaxPositionEmbeddings;

  // `rope_scaling or rope_parameters`: the legacy key wins when both are set and non-empty.
  const key = isObject(config.rope_scaling) && Object.keys(config.rope_scaling).length > 0 ? 'rope_scaling' : config.rope_parameters != null ? 'rope_parameters' : 'rope_scaling';
  if (config.rope_scaling != null && !isObject(config.rope_scaling)) throw bad('rope_scaling', `must be an object or null, not ${show(config.rope_scaling)}`);
  const raw = config[key] ?? {};
  if (!isObject(raw)) throw bad(key, `must be an object or null, not ${show(raw)}`);

  const one = (dict: Json, where: string, nested: boolean): RopeScaling => {
    const named = dict.rope_type ?? dict.type ?? 'default'; // BC: "rope_type" was originally "type"
    if (typeof named !== 'string') throw bad(`${where}rope_type`, `must be a string, not ${show(named)}`);
    const type = options.typeAliases?.[named] ?? named;
    if (!(SUPPORTED_ROPE_TYPES as readonly string[]).includes(type)) {
      throw new SluiceError('UNSUPPORTED_ARCH', `${file}: ${where}rope_type ${quote(named)} is not supported (supported: ${SUPPORTED_ROPE_TYPES.join(', ')})`);
    }
    // setdefault semantics: the rope dict's own rope_theta / partial_rotary_factor win.
    const theta = opt(dict, 'rope_theta', where, topTheta);
    const partial = dict.partial_rotary_factor == null ? (topPartial ?? 1) : num(dict, 'partial_rotary_factor', where);
    if (partial > 1) throw bad(`${where}partial_rotary_factor`, `must be in (0, 1], not ${show(partial)}`);
    const rotaryDim = Math.trunc(headDim * partial); // int(head_dim * partial_rotary_factor)
    if (rotaryDim < 2 || rotaryDim % 2 !== 0) {
      throw new SluiceError('UNSUPPORTED_ARCH', `${file}: rotary dim ${rotaryDim} (head_dim ${headDim} × partial_rotary_factor ${partial}) is not supported: it must be even and ≥ 2`);
    }
    const base = { theta, headDim, rotaryDim, attentionFactor: 1 };
    // standardize_rope_params: llama3/yarn/longrope get original_max_position_embeddings, the
    // top-level one first (flat dicts only), else their own, else max_position_embeddings.
    const original = (): number => (!nested && topOriginal !== undefined ? topOriginal : dict.original_max_position_embeddings == null ? maxPos : int(dict, 'original_max_position_embeddings', where));
    switch (type as RopeType) {
      case 'default':
        return { ...base, type: 'default' };
      case 'linear':
        return { ...base, type: 'linear', factor: num(dict, 'factor', where) };
      case 'dynamic':
        return { ...base, type: 'dynamic', factor: num(dict, 'factor', where), maxPositionEmbeddings: maxPos };
      case 'llama3': {
        const lowFreqFactor = num(dict, 'low_freq_factor', where);
        const highFreqFactor = num(dict, 'high_freq_factor', where);
        if (!(highFreqFactor > lowFreqFactor)) throw bad(`${where}high_freq_factor`, `must exceed low_freq_factor (${lowFreqFactor}), not ${show(highFreqFactor)}`);
        return { ...base, type: 'llama3', factor: num(dict, 'factor', where), lowFreqFactor, highFreqFactor, originalMaxPositionEmbeddings: original() };
      }
      case 'yarn': {
        const originalMax = original();
        if (dict.factor === undefined) throw bad(`${where}factor`, 'is missing');
        // `if factor is None: factor = max_position_embeddings / original_max_position_embeddings`
        const factor = dict.factor === null ? maxPos / originalMax : num(dict, 'factor', where);
        if (dict.truncate != null && typeof dict.truncate !== 'boolean') throw bad(`${where}truncate`, `must be true or false, not ${show(dict.truncate)}`);
        // `beta_fast or 32`, `beta_slow or 1`: 0 and null take the default too.
        const betaFast = dict.beta_fast === 0 ? 32 : opt(dict, 'beta_fast', where, 32);
        const betaSlow = dict.beta_slow === 0 ? 1 : opt(dict, 'beta_slow', where, 1);
        return { ...base, type: 'yarn', factor, originalMaxPositionEmbeddings: originalMax, betaFast, betaSlow, truncate: dict.truncate !== false, attentionFactor: yarnAttention(dict, factor, where, num) };
      }
      case 'longrope': {
        const originalMax = original();
        const list = (name: string): number[] => {
          const v = dict[name];
          if (!Array.isArray(v)) throw bad(`${where}${name}`, v === undefined ? 'is missing' : `must be a list of numbers, not ${show(v)}`);
          if (v.length !== rotaryDim / 2) throw bad(`${where}${name}`, `must have rotary_dim / 2 = ${rotaryDim / 2} numbers, not ${v.length}`);
          v.forEach((x, i) => {
            if (typeof x !== 'number' || !Number.isFinite(x) || x <= 0) throw bad(`${where}${name}[${i}]`, `must be a number > 0, not ${show(x)}`);
          });
          return v as number[];
        };
        const shortFactor = list('short_factor');
        const longFactor = list('long_factor');
        // `_compute_longrope_parameters`: factor defaults to the context ratio (Phi-3's case).
        const factor = dict.factor == null ? maxPos / originalMax : num(dict, 'factor', where);
        const attentionFactor = dict.attention_factor != null ? num(dict, 'attention_factor', where) : factor <= 1 ? 1 : Math.sqrt(1 + Math.log(factor) / Math.log(originalMax));
        return { ...base, type: 'longrope', factor, originalMaxPositionEmbeddings: originalMax, shortFactor, longFactor, attentionFactor };
      }
    }
  };

  // transformers 5 nests rope_parameters by layer type ({ full_attention: {…}, sliding_attention: {…} }).
  const nested = Object.values(raw).some(isObject);
  if (nested) {
    const byLayerType: Record<string, RopeScaling> = {};
    for (const [layerType, dict] of Object.entries(raw)) {
      if (dict === null) continue; // a NoPE layer type
      if (!isObject(dict)) throw bad(`${key}.${layerType}`, `must be an object, not ${show(dict)}`);
      // Gemma3TextConfig gives sliding layers its local default theta, not the global one.
      const local = layerType === 'sliding_attention' && dict.rope_theta == null && options.defaultLocalTheta !== undefined;
      byLayerType[layerType] = one(local ? { ...dict, rope_theta: options.defaultLocalTheta } : dict, `${key}.${layerType}.`, true);
    }
    const rope = byLayerType.full_attention ?? Object.values(byLayerType)[0];
    if (!rope) throw bad(key, 'names no layer type');
    return { rope, byLayerType };
  }
  const rope = one(raw, `${key}.`, false);
  if (config.rope_local_base_freq != null || options.defaultLocalTheta !== undefined) {
    // Gemma3TextConfig.convert_rope_params_to_dict: rope_scaling is the full-attention rope;
    // sliding-attention layers get a default rope on rope_local_base_freq.
    const localTheta = opt(config, 'rope_local_base_freq', '', options.defaultLocalTheta ?? 10000);
    const sliding = one({ rope_type: 'default', rope_theta: localTheta }, 'rope_local_base_freq: ', true);
    return { rope, byLayerType: { full_attention: rope, sliding_attention: sliding } };
  }
  return { rope, byLayerType: {} };
}

/** `_compute_yarn_parameters`' attention factor: given, or from mscale / mscale_all_dim, or 0.1·ln(factor) + 1. */
function yarnAttention(dict: Json, factor: number, where: string, num: (d: Json, k: string, w: string, min?: number) => number): number {
  if (dict.attention_factor != null) return num(dict, 'attention_factor', where);
  const getMscale = (scale: number, mscale = 1): number => (scale <= 1 ? 1 : 0.1 * mscale * Math.log(scale) + 1);
  // `if mscale and mscale_all_dim`: both present and non-zero (DeepSeek-V2/V3 set both).
  const mscale = dict.mscale == null || dict.mscale === 0 ? 0 : num(dict, 'mscale', where, -Infinity);
  const mscaleAllDim = dict.mscale_all_dim == null || dict.mscale_all_dim === 0 ? 0 : num(dict, 'mscale_all_dim', where, -Infinity);
  if (mscale && mscaleAllDim) return getMscale(factor, mscale) / getMscale(factor, mscaleAllDim);
  return getMscale(factor);
}

export interface RopeTables {
  /** (rotaryDim / 2) f32: angle of pair i at position p is p · invFreq[i]. */
  invFreq: Float32Array;
  /** cos and sin are multiplied by this (apply as f32, as torch does). */
  attentionFactor: number;
}

/**
 * The tables transformers uses for a forward whose sequence length is `seqLen` (max position
 * id + 1; for dynamic pass ropeTableSeqLen's result). Only dynamic and longrope read it;
 * undefined means "at init" (dynamic: max_position_embeddings; longrope: short factors).
 */
export function ropeTables(rope: RopeScaling, seqLen?: number): RopeTables {
  const dim = rope.rotaryDim;
  const theta = f(rope.theta); // python float base meets the f32 exponent tensor
  let inv: Float32Array;
  switch (rope.type) {
    case 'default': // _compute_default_rope_parameters: 1 / theta^(2i/dim)
      inv = powTable(theta, dim).map((p) => f(1 / p));
      break;
    case 'linear': {
      // _compute_linear_scaling_rope_parameters: `inv_freq /= factor`
      const factor = f(rope.factor);
      inv = powTable(theta, dim).map((p) => f(f(1 / p) / factor));
      break;
    }
    case 'dynamic':
      inv = powTable(dynamicBase(rope, seqLen), dim).map((p) => f(1 / p));
      break;
    case 'llama3':
      inv = llama3(rope, powTable(theta, dim).map((p) => f(1 / p)));
      break;
    case 'yarn':
      inv = yarn(rope, powTable(theta, dim));
      break;
    case 'longrope': {
      // _compute_longrope_parameters: `1.0 / (ext_factors * base**inv_freq_shape)`, with the long
      // factors only when `seq_len and seq_len > original_max_position_embeddings`.
      const ext = seqLen && seqLen > rope.originalMaxPositionEmbeddings ? rope.longFactor : rope.shortFactor;
      inv = powTable(theta, dim).map((p, i) => f(1 / f(f(ext[i]) * p)));
      break;
    }
  }
  return { invFreq: inv, attentionFactor: rope.attentionFactor };
}

/**
 * The sequence length whose table is in place after a forward of length `seqLen`, given the
 * one in place before (`previous`; undefined at load). dynamic replays `dynamic_frequency_update`
 * (grow past the cached length; back to max_position_embeddings once a call is shorter than
 * it); the other types are stateless, so it is `seqLen`.
 */
export function ropeTableSeqLen(rope: RopeScaling, previous: number | undefined, seqLen: number): number {
  if (rope.type !== 'dynamic') return seqLen;
  const original = rope.maxPositionEmbeddings; // `self.original_max_seq_len`
  const cached = previous ?? original; // `self.max_seq_len_cached`
  if (seqLen > cached) return seqLen; // growth
  if (seqLen < original && cached > original) return original; // reset
  return cached;
}

// ── float32 arithmetic ──────────────────────────────────────────────────────────────────

const f = Math.fround;

/** `base ** (torch.arange(0, dim, 2).float() / dim)` for an f32 base: (dim / 2) f32. */
function powTable(base: number, dim: number): Float32Array {
  const out = new Float32Array(dim / 2);
  for (let i = 0; i < out.length; i++) out[i] = f(base ** f((2 * i) / dim));
  return out;
}

/** `_compute_dynamic_ntk_parameters`' base, as an f32 value ready for powTable. */
function dynamicBase(rope: Extract<RopeScaling, { type: 'dynamic' }>, seqLen: number | undefined): number {
  const { factor, maxPositionEmbeddings: mpe, rotaryDim: dim, theta } = rope;
  const exponent = dim / (dim - 2); // python float
  if (seqLen === undefined || seqLen <= mpe) {
    // At init (seq_len None → max_position_embeddings) everything is python float64 arithmetic.
    return f(theta * ((factor * mpe) / mpe - (factor - 1)) ** exponent);
  }
  // In the forward, dynamic_rope_update passes `torch.max(position_ids) + 1`, an int64 tensor:
  // `factor * seq_len` makes it an f32 tensor, and every following step is f32.
  const scaled = f(f(f(f(factor) * f(seqLen)) / f(mpe)) - f(factor - 1));
  // pow(f32 tensor, python float) is `std::pow(float, double)`: a float64 pow, rounded once
  // (an exponent of exactly 2, dim 4, is torch's `x * x` special case: the same value).
  const grown = exponent === 2 ? f(scaled * scaled) : f(scaled ** exponent);
  return f(f(theta) * grown);
}

/** `_compute_llama3_parameters` from the default table. */
function llama3(rope: Extract<RopeScaling, { type: 'llama3' }>, inv: Float32Array): Float32Array {
  const { lowFreqFactor: low, highFreqFactor: high, originalMaxPositionEmbeddings: old } = rope;
  const factor = f(rope.factor);
  const lowWavelen = f(old / low); // python floats, compared with the f32 tensor as f32
  const highWavelen = f(old / high);
  return inv.map((x) => {
    // `2 * math.pi / inv_freq` is torch's __rtruediv__: reciprocal(), then a multiply.
    const wavelen = f(f(1 / x) * f(2 * Math.PI));
    const scaled = wavelen > lowWavelen ? f(x / factor) : x; // inv_freq_llama
    if (wavelen < highWavelen || wavelen > lowWavelen) return scaled;
    // Medium frequencies: smooth = (old / wavelen − low) / (high − low), then
    // (1 − smooth) · inv / factor + smooth · inv.
    const smooth = f(f(f(f(1 / wavelen) * f(old)) - f(low)) / f(high - low));
    return f(f(f(f(1 - smooth) * scaled) / factor) + f(smooth * scaled));
  });
}

/** `_compute_yarn_parameters`: per pair, a ramp between interpolation (÷ factor) and extrapolation. */
function yarn(rope: Extract<RopeScaling, { type: 'yarn' }>, posFreqs: Float32Array): Float32Array {
  const { rotaryDim: dim, theta, originalMaxPositionEmbeddings: original, betaFast, betaSlow, truncate } = rope;
  // find_correction_dim / find_correction_range, in python float64.
  const correctionDim = (rotations: number): number => (dim * Math.log(original / (rotations * 2 * Math.PI))) / (2 * Math.log(theta));
  let low = correctionDim(betaFast);
  let high = correctionDim(betaSlow);
  if (truncate) (low = Math.floor(low)), (high = Math.ceil(high));
  low = Math.max(low, 0);
  high = Math.min(high, dim - 1);
  if (low === high) high += 0.001; // linear_ramp_factor: "Prevent singularity"
  const factor = f(rope.factor);
  const lowF = f(low);
  const span = f(high - low);
  return posFreqs.map((p, j) => {
    // linear_ramp_factor: clamp((arange(dim // 2) − min) / (max − min), 0, 1), all f32.
    const ramp = Math.min(Math.max(f(f(j - lowF) / span), 0), 1);
    const extrapolationFactor = f(1 - ramp);
    const extrapolation = f(1 / p); // 1.0 / pos_freqs
    const interpolation = f(1 / f(factor * p)); // 1.0 / (factor * pos_freqs)
    return f(f(interpolation * f(1 - extrapolationFactor)) + f(extrapolation * extrapolationFactor));
  });
}

/** A value for an error line: JSON, cut to about 200 characters. */
function show(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length <= 200 ? s : `${s.slice(0, 200)}… (${s.length} characters)`;
}

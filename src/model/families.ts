// The model families sluice runs, as data: what each differs from Llama in, read from
// config.json by the rules named here, with the transformers code each rule comes from.
// The layer builder (llama.ts) reads the resulting Features and never a family name;
// adding a family is a record here and, only for new math, a kernel variant.

import { f32ToBf16Bits } from '../formats/float-bits.js';
import { roundToF16 } from '../ops/embedding.js';
import { type RopeParseOptions, type RopeScaling, type RopeSettings, ropeForLayer } from './rope-scaling.js';

/** A layer's attention: its window (null = full causal) and its rope. */
export interface LayerKind {
  /** Keys older than `window` positions are masked (sliding-window attention), or null. */
  window: number | null;
  /** The rope of this layer (shared objects: one table per distinct rope), or null: NoPE. */
  rope: RopeScaling | null;
}

/** What the forward pass does differently from Llama, per model. */
export interface Features {
  /** RMSNorm output times `w` (Llama) or `(1 + w)` in f32 (Gemma). */
  norm: 'w' | 'one-plus-w';
  /** q/k/v projections have biases; o_proj has one. */
  qkvBias: boolean;
  oBias: boolean;
  /** Per-head RMSNorm of q and k (over head_dim) before rope (Qwen3, Gemma 3). */
  qkNorm: boolean;
  /** The MLP's activation on gate: silu (SwiGLU) or gelu_pytorch_tanh (GeGLU). */
  act: 'silu' | 'gelu_tanh';
  /** Embeddings times this (Gemma: √hidden_size), or null. */
  embedScale: number | null;
  /** Gemma 2/3: a norm after attention and pre/post norms around the MLP. */
  sandwichNorms: boolean;
  /** Attention scores' scale: 1/√head_dim, or 1/√query_pre_attn_scalar (Gemma). */
  attnScale: number;
  /** tanh soft-capping of attention scores / final logits (Gemma 2), or null. */
  attnSoftcap: number | null;
  finalSoftcap: number | null;
  /** Phi-3: qkv_proj and gate_up_proj stored fused. */
  fused: boolean;
  /** One entry per layer. */
  layers: LayerKind[];
}

/** config.json as read by the rules below; `get*` throw a one-line error naming the key. */
export interface ConfigReader {
  raw: Record<string, unknown>;
  int(key: string, fallback?: number): number;
  num(key: string, fallback?: number): number;
  bool(key: string, fallback: boolean): boolean;
  has(key: string): boolean;
  bad(key: string, why: string): Error;
}

/**
 * Which layers slide. Older transformers versions compute it in the attention module,
 * newer ones write `layer_types` into the config; both are accepted (layer_types first).
 */
type WindowRule =
  | 'all' // Mistral, Phi-3: every layer when sliding_window is set (modeling_mistral.py MistralAttention)
  | 'qwen2' // Qwen2/Qwen3/SmolLM3: only with use_sliding_window, layers ≥ max_window_layers (configuration_qwen2.py layer_types)
  | 'gemma2' // even layers (modeling_gemma2.py: `not bool(layer_idx % 2)`; configuration_gemma2.py layer_types)
  | 'gemma3' // all but every sliding_window_pattern-th (configuration_gemma3.py: `(i + 1) % pattern`)
  | 'none';

export interface Family {
  /** For messages: what runs. */
  label: string;
  architectures: string[];
  norm: Features['norm'];
  /** 'attention_bias': q, k, v and o when attention_bias (Llama, Qwen3, SmolLM3); 'qkv': q, k, v always, never o (Qwen2). */
  bias: 'attention_bias' | 'qkv' | 'none';
  qkNorm: boolean;
  /** config key of the activation (Gemma 2/3 read hidden_activation, others hidden_act). */
  actKey: 'hidden_act' | 'hidden_activation';
  embedScale: boolean;
  sandwichNorms: boolean;
  /** Gemma: scores scaled by query_pre_attn_scalar^-0.5. */
  queryPreAttnScalar: boolean;
  softcaps: boolean;
  fused: boolean;
  windows: WindowRule;
  /** SmolLM3: layers without rope (no_rope_layers, or every no_rope_layer_interval-th). */
  noRopeLayers: boolean;
  /** Gemma 3: local (sliding) layers use rope_local_base_freq, without scaling. */
  localRope: boolean;
  /** The family's rope defaults (its config class's), for parseRope. */
  rope: Omit<RopeParseOptions, 'file'>;
}

const LLAMA: Family = {
  label: 'Llama 1–3.3',
  architectures: ['LlamaForCausalLM'],
  norm: 'w',
  bias: 'attention_bias', // modeling_llama.py: q/k/v/o_proj(bias=config.attention_bias)
  qkNorm: false,
  actKey: 'hidden_act',
  embedScale: false,
  sandwichNorms: false,
  queryPreAttnScalar: false,
  softcaps: false,
  fused: false,
  windows: 'none',
  noRopeLayers: false,
  localRope: false,
  rope: {},
};

const GEMMA2: Family = {
  ...LLAMA,
  label: 'Gemma 2',
  architectures: ['Gemma2ForCausalLM'],
  norm: 'one-plus-w', // Gemma2RMSNorm: output * (1.0 + self.weight.float())
  bias: 'attention_bias',
  actKey: 'hidden_activation',
  embedScale: true, // Gemma2Model.forward: hidden_states * normalizer (hidden_size**0.5)
  sandwichNorms: true, // Gemma2DecoderLayer: post_attention, pre_feedforward, post_feedforward norms
  queryPreAttnScalar: true, // Gemma2Attention.scaling = query_pre_attn_scalar**-0.5
  softcaps: true, // attn_logit_softcapping, final_logit_softcapping
  windows: 'gemma2',
};

export const FAMILIES: readonly Family[] = [
  LLAMA,
  { ...LLAMA, label: 'Mistral', architectures: ['MistralForCausalLM'], bias: 'none', windows: 'all' },
  // modeling_qwen2.py: q/k/v_proj(bias=True), o_proj(bias=False) — attention_bias ignored.
  { ...LLAMA, label: 'Qwen2/2.5', architectures: ['Qwen2ForCausalLM'], bias: 'qkv', windows: 'qwen2' },
  // modeling_qwen3.py: bias=config.attention_bias on all four; q_norm/k_norm on head_dim.
  { ...LLAMA, label: 'Qwen3', architectures: ['Qwen3ForCausalLM'], qkNorm: true, windows: 'qwen2' },
  GEMMA2,
  // modeling_gemma3.py (text): Gemma 2's layer plus q_norm/k_norm, local rope base, no soft-capping by default.
  // Gemma3TextConfig: rope_theta 1e6, rope_local_base_freq 1e4.
  { ...GEMMA2, label: 'Gemma 3 (text)', architectures: ['Gemma3ForCausalLM'], qkNorm: true, windows: 'gemma3', localRope: true, rope: { defaultTheta: 1e6, defaultLocalTheta: 1e4 } },
  // modeling_phi3.py: qkv_proj and gate_up_proj fused, no biases, partial rotary (Phi-4-mini);
  // Phi3Config: original_max_position_embeddings 4096, legacy rope types su/yarn = longrope.
  {
    ...LLAMA,
    label: 'Phi-3/3.5/4-mini',
    architectures: ['Phi3ForCausalLM'],
    bias: 'none',
    fused: true,
    windows: 'all',
    rope: { originalMaxPositionEmbeddings: 4096, typeAliases: { su: 'longrope', yarn: 'longrope' } },
  },
  // modeling_smollm3.py: Llama with NoPE layers and Qwen2's sliding-window rule.
  { ...LLAMA, label: 'SmolLM3', architectures: ['SmolLM3ForCausalLM'], windows: 'qwen2', noRopeLayers: true },
];

/** The family of a config.json's `architectures`, or undefined. */
export function familyOf(architectures: unknown): { family: Family; architecture: string } | undefined {
  if (!Array.isArray(architectures)) return undefined;
  for (const a of architectures) {
    const family = FAMILIES.find((f) => f.architectures.includes(a as string));
    if (family) return { family, architecture: a as string };
  }
  return undefined;
}

/** What runs, for UNSUPPORTED_ARCH messages: generated from the table. */
export function supportedList(): string {
  return FAMILIES.map((f) => `${f.label} (${f.architectures.join(', ')})`).join(', ');
}

/** The features of `family` as config.json `c` sets them. */
export function features(family: Family, c: ConfigReader, shape: { hiddenSize: number; headDim: number; numLayers: number }, rope: RopeSettings): Features {
  const attentionBias = c.bool('attention_bias', false);
  const softcap = (key: string): number | null => (family.softcaps && c.raw[key] != null ? c.num(key) : null);
  return {
    norm: family.norm,
    qkvBias: family.bias === 'qkv' || (family.bias === 'attention_bias' && attentionBias),
    oBias: family.bias === 'attention_bias' && attentionBias,
    qkNorm: family.qkNorm,
    act: activation(family, c),
    embedScale: family.embedScale ? inTorchDtype(Math.sqrt(shape.hiddenSize), c.raw.torch_dtype) : null,
    sandwichNorms: family.sandwichNorms,
    attnScale: 1 / Math.sqrt(family.queryPreAttnScalar ? c.num('query_pre_attn_scalar', shape.headDim) : shape.headDim),
    attnSoftcap: softcap('attn_logit_softcapping'),
    finalSoftcap: softcap('final_logit_softcapping'),
    fused: family.fused,
    layers: layerKinds(family, c, shape.numLayers, rope),
  };
}

/**
 * Gemma builds its normalizer as `torch.tensor(hidden_size**0.5, dtype=hidden_states.dtype)`:
 * in the model's dtype (√2304 = 48 exactly, but √1152 = 33.94 is 34.0 in bf16), so the
 * scale is rounded to the checkpoint's torch_dtype, as the model runs in transformers.
 */
function inTorchDtype(x: number, torchDtype: unknown): number {
  if (torchDtype === 'bfloat16') {
    const bits = f32ToBf16Bits(new Uint32Array(new Float32Array([x]).buffer)[0]) << 16;
    return new Float32Array(new Uint32Array([bits >>> 0]).buffer)[0];
  }
  if (torchDtype === 'float16') return roundToF16(x);
  return Math.fround(x);
}

function activation(family: Family, c: ConfigReader): Features['act'] {
  // Gemma 2/3 configs carry both keys; transformers uses hidden_activation there.
  const act = c.raw[family.actKey] ?? c.raw.hidden_act ?? 'silu';
  if (act === 'silu' || act === 'swish') return 'silu';
  if (act === 'gelu_pytorch_tanh' || act === 'gelu_tanh') return 'gelu_tanh';
  throw Object.assign(c.bad(family.actKey, `${JSON.stringify(act)} is not supported (silu, gelu_pytorch_tanh)`), { unsupported: true });
}

function layerKinds(family: Family, c: ConfigReader, numLayers: number, rope: RopeSettings): LayerKind[] {
  const window = c.raw.sliding_window == null ? null : c.int('sliding_window');
  const slides = slidingLayers(family, c, numLayers, window !== null);
  const noRope = family.noRopeLayers ? noRopeLayers(c, numLayers) : [];
  return Array.from({ length: numLayers }, (_, i) => ({
    window: slides[i] ? window : null,
    // Gemma 3's sliding layers use the local rope (configuration_gemma3.py rope_parameters per layer type).
    rope: noRope[i] ? null : ropeForLayer(rope, family.localRope && slides[i] ? 'sliding_attention' : 'full_attention'),
  }));
}

function slidingLayers(family: Family, c: ConfigReader, n: number, hasWindow: boolean): boolean[] {
  const types = c.raw.layer_types;
  if (Array.isArray(types) && family.windows !== 'none') {
    if (types.length !== n || !types.every((t) => t === 'sliding_attention' || t === 'full_attention')) {
      throw c.bad('layer_types', `must list "sliding_attention" or "full_attention" for each of the ${n} layers`);
    }
    if (types.includes('sliding_attention') && !hasWindow) throw c.bad('sliding_window', 'is missing, but layer_types has sliding layers');
    return types.map((t) => t === 'sliding_attention');
  }
  if (!hasWindow) return new Array<boolean>(n).fill(false);
  switch (family.windows) {
    case 'all':
      return new Array<boolean>(n).fill(true);
    case 'qwen2': {
      if (!c.bool('use_sliding_window', false)) return new Array<boolean>(n).fill(false);
      const from = c.int('max_window_layers', 28); // Qwen2Config's default
      return Array.from({ length: n }, (_, i) => i >= from);
    }
    case 'gemma2':
      return Array.from({ length: n }, (_, i) => i % 2 === 0);
    case 'gemma3': {
      const pattern = c.int('sliding_window_pattern', 6);
      return Array.from({ length: n }, (_, i) => (i + 1) % pattern !== 0);
    }
    case 'none':
      return new Array<boolean>(n).fill(false);
  }
}

/** SmolLM3: no_rope_layers[i] is 1 where layer i uses rope (configuration_smollm3.py). */
function noRopeLayers(c: ConfigReader, n: number): boolean[] {
  const list = c.raw.no_rope_layers;
  if (Array.isArray(list)) {
    if (list.length !== n || !list.every((x) => x === 0 || x === 1)) throw c.bad('no_rope_layers', `must list 0 or 1 for each of the ${n} layers`);
    return list.map((x) => x === 0);
  }
  const interval = c.int('no_rope_layer_interval', 4);
  return Array.from({ length: n }, (_, i) => (i + 1) % interval === 0);
}

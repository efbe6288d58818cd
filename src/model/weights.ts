// HF weight names → the tensors the forward pass reads, checked against a checkpoint's
// list before anything is loaded: every missing tensor, wrong shape and unexpected name is
// reported at once, naming them, rather than failing mid-load.

import type { TensorInfo } from '../checkpoint/types.js';
import { SluiceError } from '../errors.js';
import type { PackedLinear } from '../gpu/load-prequantized.js';
import type { ModelConfig } from './config.js';
import { isPacked, type LinearSlot, packedLinears } from './packed-weights.js';

export interface LayerWeights {
  inputNorm: string; // (hidden)
  /** q/k/v projections; for a fused qkv_proj, the row ranges `splits` cuts out of it. */
  q: string; // (numHeads·headDim, hidden)
  k: string; // (numKvHeads·headDim, hidden)
  v: string; // (numKvHeads·headDim, hidden)
  o: string; // (hidden, numHeads·headDim)
  qBias: string | null; // (numHeads·headDim)
  kBias: string | null; // (numKvHeads·headDim)
  vBias: string | null; // (numKvHeads·headDim)
  oBias: string | null; // (hidden)
  qNorm: string | null; // (headDim) per-head q norm (Qwen3, Gemma 3)
  kNorm: string | null; // (headDim)
  /** Gemma: the norm of the attention output, before the residual add. */
  postAttnNorm: string | null; // (hidden)
  /** The norm before the MLP: post_attention_layernorm (Llama) or pre_feedforward_layernorm (Gemma). */
  preMlpNorm: string; // (hidden)
  /** Gemma: the norm of the MLP output, before the residual add. */
  postMlpNorm: string | null; // (hidden)
  /** gate and up, or one fused gate_up_proj whose rows are [gate; up] (Phi-3). */
  gateUp: { gate: string; up: string } | { fused: string }; // (intermediate, hidden) each, or (2·intermediate, hidden)
  down: string; // (hidden, intermediate)
  /** MLP biases: only a pre-quantized linear carries one (GPTQ-for-LLaMa wrote zero biases for every QuantLinear). */
  gateBias: string | null; // (intermediate)
  upBias: string | null; // (intermediate)
  downBias: string | null; // (hidden)
}

/** A fused tensor the loader splits by rows on the GPU: parts in order, each its own tensor. */
export interface RowSplit {
  from: string;
  parts: Array<{ name: string; rows: number }>;
}

export interface WeightNames {
  embed: string; // (vocab, hidden)
  norm: string; // (hidden)
  /** The LM head: lm_head.weight, or the embedding table when tied. (vocab, hidden) */
  lmHead: string;
  layers: LayerWeights[];
  /** Every tensor to load (the loader's filter). */
  all: Set<string>;
  /** Fused tensors to split after loading (Phi-3's qkv_proj). */
  splits: RowSplit[];
  /**
   * The matrices a quantized load may quantize: every projection and an untied LM head.
   * Not the embedding table (gathered by row), norms, biases, or a tensor split after
   * loading (Phi-3's qkv_proj, split by rows of the dense tensor).
   */
  linear: Set<string>;
  /** A pre-quantized checkpoint's packed linears, repacked on load into GpuTensors.quantized (not in `all`). */
  packed: PackedLinear[];
}

const FLOAT_DTYPES: readonly string[] = ['F32', 'F16', 'BF16'];

// Tensors some checkpoints carry that the forward pass recomputes or does not need.
const IGNORED = [/\.rotary_emb\.inv_freq$/, /\.self_attn\.rotary_emb\./];

/**
 * The names for `config`, checked against `tensors`; throws naming every problem. A
 * pre-quantized checkpoint's linears may be stored packed (packed-weights.ts): those are
 * checked against their method's layout and listed in `packed`.
 */
export function weightNames(config: ModelConfig, tensors: readonly TensorInfo[], where: string): WeightNames {
  const present = new Map(tensors.map((t) => [t.name, t]));
  const q = config.quantization;
  // A packed linear may carry a bias its family has none of (AutoGPTQ's QuantLinear has an optional one).
  const optionalBias = (bias: string) => q !== null && present.has(bias) && isPacked(q, bias.replace(/bias$/, 'weight'), present);
  const { names, expected, slots } = layout(config, optionalBias);
  if (!q) {
    checkTensors(config, expected, tensors, where);
    return names;
  }
  const packed = packedLinears(q, slots, present);
  for (const l of packed.linears) expected.delete(`${l.module}.weight`);
  const problems = [...packed.problems];
  if (!packed.linears.length) {
    const example = `${slots[0].weight.replace(/weight$/, '')}${q.format === 'pack-quantized' ? 'weight_packed' : q.format === 'int-quantized' ? 'weight (I8) + weight_scale' : 'qweight'}`;
    problems.push(`config.json's quantization_config says ${q.method} (${q.format}), but no linear is stored packed (e.g. ${example})`);
  }
  checkTensors(config, expected, tensors.filter((t) => !packed.sources.has(t.name)), where, problems);
  const packedWeights = new Set(packed.linears.map((l) => `${l.module}.weight`));
  // A packed fused qkv_proj is repacked straight into q, k and v (by output rows), not split.
  return { ...names, all: new Set(expected.keys()), splits: names.splits.filter((s) => !packedWeights.has(s.from)), packed: packed.linears };
}

/**
 * Every tensor a checkpoint of `config` holds, name → shape, in HF's order (what a writer
 * of such a checkpoint must produce: the synthetic bench models).
 */
export function expectedWeights(config: ModelConfig): Map<string, number[]> {
  return layout(config, () => false).expected;
}

/**
 * The names the forward pass reads for `config`, every expected tensor's shape (dense), and
 * the linears; `optionalBias(name)` says which biases beyond the family's rule a checkpoint carries.
 */
function layout(config: ModelConfig, optionalBias: (bias: string) => boolean): { names: WeightNames; expected: Map<string, number[]>; slots: LinearSlot[] } {
  const { hiddenSize: h, intermediateSize: inter, numHeads, numKvHeads, headDim, vocabSize, features: f } = config;
  const qDim = numHeads * headDim;
  const kvDim = numKvHeads * headDim;
  const expected = new Map<string, number[]>();
  const want = (name: string, shape: number[]) => (expected.set(name, shape), name);
  const maybe = (on: boolean, name: string, shape: number[]) => (on ? want(name, shape) : null);
  const slots: LinearSlot[] = [];
  // A linear: its dense weight (expected unless it is stored packed) and the names the forward pass reads.
  const linearOf = (name: string, shape: [number, number], outputs?: LinearSlot['outputs']) => {
    slots.push({ weight: name, shape, outputs: outputs ?? [{ name, firstOutput: 0, rows: shape[0] }] });
    return want(name, shape);
  };
  // The bias of a module: the family's rule, or one a packed linear carries (optional there).
  const bias = (rule: boolean, module: string, rows: number) => maybe(rule || optionalBias(`${module}.bias`), `${module}.bias`, [rows]);

  const embed = want('model.embed_tokens.weight', [vocabSize, h]);
  const norm = want('model.norm.weight', [h]);
  // Tied models sometimes still ship lm_head.weight (a copy); HF uses the embedding then.
  const lmHead = config.tieWordEmbeddings ? embed : want('lm_head.weight', [vocabSize, h]); // a linear slot too, added last
  const layers: LayerWeights[] = [];
  const splits: RowSplit[] = [];
  for (let i = 0; i < config.numLayers; i++) {
    const p = `model.layers.${i}`;
    // Phi-3 stores [q; k; v] as one qkv_proj (modeling_phi3.py splits its output by
    // columns; the same as splitting the weight by rows, which the loader does on the GPU).
    const inputNorm = want(`${p}.input_layernorm.weight`, [h]);
    let qkv: Pick<LayerWeights, 'q' | 'k' | 'v'>;
    if (f.fused) {
      const fused = `${p}.self_attn.qkv_proj.weight`;
      qkv = { q: `${fused}[q]`, k: `${fused}[k]`, v: `${fused}[v]` };
      const parts = [{ name: qkv.q, rows: qDim }, { name: qkv.k, rows: kvDim }, { name: qkv.v, rows: kvDim }];
      linearOf(fused, [qDim + 2 * kvDim, h], parts.map((part, j) => ({ ...part, firstOutput: j === 0 ? 0 : qDim + (j - 1) * kvDim })));
      splits.push({ from: fused, parts });
    } else {
      qkv = { q: linearOf(`${p}.self_attn.q_proj.weight`, [qDim, h]), k: linearOf(`${p}.self_attn.k_proj.weight`, [kvDim, h]), v: linearOf(`${p}.self_attn.v_proj.weight`, [kvDim, h]) };
    }
    const o = linearOf(`${p}.self_attn.o_proj.weight`, [h, qDim]);
    const attnBiases = {
      qBias: bias(f.qkvBias, `${p}.self_attn.q_proj`, qDim),
      kBias: bias(f.qkvBias, `${p}.self_attn.k_proj`, kvDim),
      vBias: bias(f.qkvBias, `${p}.self_attn.v_proj`, kvDim),
      oBias: bias(f.oBias, `${p}.self_attn.o_proj`, h),
    };
    const norms = {
      qNorm: maybe(f.qkNorm, `${p}.self_attn.q_norm.weight`, [headDim]),
      kNorm: maybe(f.qkNorm, `${p}.self_attn.k_norm.weight`, [headDim]),
      // Gemma's post_attention_layernorm normalises the attention output; Llama's is the MLP's input norm.
      postAttnNorm: maybe(f.sandwichNorms, `${p}.post_attention_layernorm.weight`, [h]),
      preMlpNorm: want(f.sandwichNorms ? `${p}.pre_feedforward_layernorm.weight` : `${p}.post_attention_layernorm.weight`, [h]),
      postMlpNorm: maybe(f.sandwichNorms, `${p}.post_feedforward_layernorm.weight`, [h]),
    };
    const gateUp = f.fused
      ? { fused: linearOf(`${p}.mlp.gate_up_proj.weight`, [2 * inter, h]) }
      : { gate: linearOf(`${p}.mlp.gate_proj.weight`, [inter, h]), up: linearOf(`${p}.mlp.up_proj.weight`, [inter, h]) };
    const down = linearOf(`${p}.mlp.down_proj.weight`, [h, inter]);
    layers.push({
      inputNorm, ...qkv, o, ...attnBiases, ...norms, gateUp, down,
      gateBias: f.fused ? null : bias(false, `${p}.mlp.gate_proj`, inter),
      upBias: f.fused ? null : bias(false, `${p}.mlp.up_proj`, inter),
      downBias: bias(false, `${p}.mlp.down_proj`, h),
    });
  }

  const split = new Set(splits.map((x) => x.from));
  const linear = new Set(
    layers.flatMap((l) => [l.q, l.k, l.v, l.o, ...('fused' in l.gateUp ? [l.gateUp.fused] : [l.gateUp.gate, l.gateUp.up]), l.down]).filter((n) => expected.has(n) && !split.has(n)),
  );
  if (lmHead !== embed) {
    linear.add(lmHead);
    slots.push({ weight: lmHead, shape: [vocabSize, h], outputs: [{ name: lmHead, firstOutput: 0, rows: vocabSize }] });
  }
  return { names: { embed, norm, lmHead, layers, all: new Set(expected.keys()), splits, linear, packed: [] }, expected, slots };
}

/** Throws one UNSUPPORTED_ARCH naming every missing, misshapen and unexpected tensor (and the packed linears' `packedProblems`). */
function checkTensors(config: ModelConfig, expected: Map<string, number[]>, tensors: readonly TensorInfo[], where: string, packedProblems: string[] = []): void {
  const present = new Map(tensors.map((t) => [t.name, t]));
  const missing = [...expected.keys()].filter((name) => !present.has(name));
  const wrongShape = [...expected].flatMap(([name, shape]) => {
    const t = present.get(name);
    return t && (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i]))
      ? [`${name} is [${t.shape.join(', ')}], expected [${shape.join(', ')}]`]
      : [];
  });
  const tiedCopy = config.tieWordEmbeddings ? 'lm_head.weight' : null;
  const unexpected = [...present.keys()].filter((name) => !expected.has(name) && name !== tiedCopy && !IGNORED.some((re) => re.test(name)));
  const problems = [
    ...(missing.length ? [`missing ${list(missing)}`] : []),
    ...(wrongShape.length ? [`wrong shape: ${list(wrongShape)}`] : []),
    ...(unexpected.length ? [`unexpected ${list(unexpected)}`] : []),
    ...(packedProblems.length ? [list(packedProblems)] : []),
  ];
  // Dense weights are floats: an F8 or integer tensor would otherwise reach a kernel as raw
  // bytes and fail there, or compute garbage (packed linears are not in `expected`).
  const notFloat = [...expected.keys()].map((name) => present.get(name)).find((t) => t && !FLOAT_DTYPES.includes(t.dtype));
  if (notFloat && !problems.length) {
    throw new SluiceError('UNSUPPORTED_DTYPE', `${where}: tensor ${JSON.stringify(notFloat.name)} is ${notFloat.dtype}; sluice runs models whose weights are ${FLOAT_DTYPES.join(', ')}`);
  }
  if (problems.length) {
    throw new SluiceError('UNSUPPORTED_ARCH', `${where}: the weights do not match config.json (${config.architecture}, ${config.numLayers} layers): ${problems.join('; ')}`);
  }
}

/** The first few items, and how many more: messages stay one readable line. */
function list(items: string[], shown = 5): string {
  const head = items.slice(0, shown).join(', ');
  return items.length > shown ? `${head} and ${items.length - shown} more` : head;
}

// HF weight names → the tensors the forward pass reads, checked against a checkpoint's
// list before anything is loaded: every missing tensor, wrong shape and unexpected name is
// reported at once, naming them, rather than failing mid-load.

import type { TensorInfo } from '../checkpoint/types.js';
import { SluiceError } from '../errors.js';
import type { ModelConfig } from './config.js';

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
}

const FLOAT_DTYPES: readonly string[] = ['F32', 'F16', 'BF16'];

// Tensors some checkpoints carry that the forward pass recomputes or does not need.
const IGNORED = [/\.rotary_emb\.inv_freq$/, /\.self_attn\.rotary_emb\./];

/** The names for `config`, checked against `tensors`; throws naming every problem. */
export function weightNames(config: ModelConfig, tensors: readonly TensorInfo[], where: string): WeightNames {
  const { names, expected } = layout(config);
  checkTensors(config, expected, tensors, where);
  return names;
}

/**
 * Every tensor a checkpoint of `config` holds, name → shape, in HF's order (what a writer
 * of such a checkpoint must produce: the synthetic bench models).
 */
export function expectedWeights(config: ModelConfig): Map<string, number[]> {
  return layout(config).expected;
}

/** The names the forward pass reads for `config`, and every expected tensor's shape. */
function layout(config: ModelConfig): { names: WeightNames; expected: Map<string, number[]> } {
  const { hiddenSize: h, intermediateSize: inter, numHeads, numKvHeads, headDim, vocabSize, features: f } = config;
  const qDim = numHeads * headDim;
  const kvDim = numKvHeads * headDim;
  const expected = new Map<string, number[]>();
  const want = (name: string, shape: number[]) => (expected.set(name, shape), name);
  const maybe = (on: boolean, name: string, shape: number[]) => (on ? want(name, shape) : null);

  const embed = want('model.embed_tokens.weight', [vocabSize, h]);
  const norm = want('model.norm.weight', [h]);
  // Tied models sometimes still ship lm_head.weight (a copy); HF uses the embedding then.
  const lmHead = config.tieWordEmbeddings ? embed : want('lm_head.weight', [vocabSize, h]);
  const layers: LayerWeights[] = [];
  const splits: RowSplit[] = [];
  for (let i = 0; i < config.numLayers; i++) {
    const p = `model.layers.${i}`;
    // Phi-3 stores [q; k; v] as one qkv_proj (modeling_phi3.py splits its output by
    // columns; the same as splitting the weight by rows, which the loader does on the GPU).
    let qkv: Pick<LayerWeights, 'q' | 'k' | 'v'>;
    if (f.fused) {
      const fused = want(`${p}.self_attn.qkv_proj.weight`, [qDim + 2 * kvDim, h]);
      qkv = { q: `${fused}[q]`, k: `${fused}[k]`, v: `${fused}[v]` };
      splits.push({ from: fused, parts: [{ name: qkv.q, rows: qDim }, { name: qkv.k, rows: kvDim }, { name: qkv.v, rows: kvDim }] });
    } else {
      qkv = { q: want(`${p}.self_attn.q_proj.weight`, [qDim, h]), k: want(`${p}.self_attn.k_proj.weight`, [kvDim, h]), v: want(`${p}.self_attn.v_proj.weight`, [kvDim, h]) };
    }
    layers.push({
      inputNorm: want(`${p}.input_layernorm.weight`, [h]),
      ...qkv,
      o: want(`${p}.self_attn.o_proj.weight`, [h, qDim]),
      qBias: maybe(f.qkvBias, `${p}.self_attn.q_proj.bias`, [qDim]),
      kBias: maybe(f.qkvBias, `${p}.self_attn.k_proj.bias`, [kvDim]),
      vBias: maybe(f.qkvBias, `${p}.self_attn.v_proj.bias`, [kvDim]),
      oBias: maybe(f.oBias, `${p}.self_attn.o_proj.bias`, [h]),
      qNorm: maybe(f.qkNorm, `${p}.self_attn.q_norm.weight`, [headDim]),
      kNorm: maybe(f.qkNorm, `${p}.self_attn.k_norm.weight`, [headDim]),
      // Gemma's post_attention_layernorm normalises the attention output; Llama's is the MLP's input norm.
      postAttnNorm: maybe(f.sandwichNorms, `${p}.post_attention_layernorm.weight`, [h]),
      preMlpNorm: want(f.sandwichNorms ? `${p}.pre_feedforward_layernorm.weight` : `${p}.post_attention_layernorm.weight`, [h]),
      postMlpNorm: maybe(f.sandwichNorms, `${p}.post_feedforward_layernorm.weight`, [h]),
      gateUp: f.fused
        ? { fused: want(`${p}.mlp.gate_up_proj.weight`, [2 * inter, h]) }
        : { gate: want(`${p}.mlp.gate_proj.weight`, [inter, h]), up: want(`${p}.mlp.up_proj.weight`, [inter, h]) },
      down: want(`${p}.mlp.down_proj.weight`, [h, inter]),
    });
  }

  const split = new Set(splits.map((x) => x.from));
  const linear = new Set(
    layers.flatMap((l) => [l.q, l.k, l.v, l.o, ...('fused' in l.gateUp ? [l.gateUp.fused] : [l.gateUp.gate, l.gateUp.up]), l.down]).filter((n) => expected.has(n) && !split.has(n)),
  );
  if (lmHead !== embed) linear.add(lmHead);
  return { names: { embed, norm, lmHead, layers, all: new Set(expected.keys()), splits, linear }, expected };
}

/** Throws one UNSUPPORTED_ARCH naming every missing, misshapen and unexpected tensor. */
function checkTensors(config: ModelConfig, expected: Map<string, number[]>, tensors: readonly TensorInfo[], where: string): void {
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
  ];
  // Float weights only, until quantized formats (step 13): an F8 or integer tensor would
  // otherwise reach a kernel as raw bytes and fail there, or compute garbage.
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

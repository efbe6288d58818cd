// HF weight names → the tensors the forward pass reads, checked against a checkpoint's
// list before anything is loaded: every missing tensor, wrong shape and unexpected name is
// reported at once, naming them, rather than failing mid-load.

import type { TensorInfo } from '../checkpoint/types.js';
import { SluiceError } from '../errors.js';
import type { ModelConfig } from './config.js';

export interface LayerWeights {
  inputNorm: string; // (hidden)
  q: string; // (numHeads·headDim, hidden)
  k: string; // (numKvHeads·headDim, hidden)
  v: string; // (numKvHeads·headDim, hidden)
  o: string; // (hidden, numHeads·headDim)
  qBias: string | null; // (numHeads·headDim)
  kBias: string | null; // (numKvHeads·headDim)
  vBias: string | null; // (numKvHeads·headDim)
  oBias: string | null; // (hidden)
  postNorm: string; // (hidden)
  gate: string; // (intermediate, hidden)
  up: string; // (intermediate, hidden)
  down: string; // (hidden, intermediate)
}

export interface WeightNames {
  embed: string; // (vocab, hidden)
  norm: string; // (hidden)
  /** The LM head: lm_head.weight, or the embedding table when tied. (vocab, hidden) */
  lmHead: string;
  layers: LayerWeights[];
  /** Every tensor to load (the loader's filter). */
  all: Set<string>;
}

// Tensors some checkpoints carry that the forward pass recomputes or does not need.
const IGNORED = [/\.rotary_emb\.inv_freq$/, /\.self_attn\.rotary_emb\./];

/** The names for `config`, checked against `tensors`; throws naming every problem. */
export function weightNames(config: ModelConfig, tensors: readonly TensorInfo[], where: string): WeightNames {
  const { hiddenSize: h, intermediateSize: inter, numHeads, numKvHeads, headDim, vocabSize } = config;
  const qDim = numHeads * headDim;
  const kvDim = numKvHeads * headDim;
  const expected = new Map<string, number[]>();
  const want = (name: string, shape: number[]) => (expected.set(name, shape), name);
  const maybe = (on: boolean, name: string, shape: number[]) => (on ? want(name, shape) : null);

  const present = new Map(tensors.map((t) => [t.name, t]));
  const embed = want('model.embed_tokens.weight', [vocabSize, h]);
  const norm = want('model.norm.weight', [h]);
  // Tied models sometimes still ship lm_head.weight (a copy); HF uses the embedding then.
  const lmHead = config.tieWordEmbeddings ? embed : want('lm_head.weight', [vocabSize, h]);
  const layers: LayerWeights[] = [];
  for (let i = 0; i < config.numLayers; i++) {
    const p = `model.layers.${i}`;
    layers.push({
      inputNorm: want(`${p}.input_layernorm.weight`, [h]),
      q: want(`${p}.self_attn.q_proj.weight`, [qDim, h]),
      k: want(`${p}.self_attn.k_proj.weight`, [kvDim, h]),
      v: want(`${p}.self_attn.v_proj.weight`, [kvDim, h]),
      o: want(`${p}.self_attn.o_proj.weight`, [h, qDim]),
      qBias: maybe(config.qkvBias, `${p}.self_attn.q_proj.bias`, [qDim]),
      kBias: maybe(config.qkvBias, `${p}.self_attn.k_proj.bias`, [kvDim]),
      vBias: maybe(config.qkvBias, `${p}.self_attn.v_proj.bias`, [kvDim]),
      oBias: maybe(config.oBias, `${p}.self_attn.o_proj.bias`, [h]),
      postNorm: want(`${p}.post_attention_layernorm.weight`, [h]),
      gate: want(`${p}.mlp.gate_proj.weight`, [inter, h]),
      up: want(`${p}.mlp.up_proj.weight`, [inter, h]),
      down: want(`${p}.mlp.down_proj.weight`, [h, inter]),
    });
  }

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
  if (problems.length) {
    throw new SluiceError('UNSUPPORTED_ARCH', `${where}: the weights do not match config.json (${config.architecture}, ${config.numLayers} layers): ${problems.join('; ')}`);
  }
  return { embed, norm, lmHead, layers, all: new Set(expected.keys()) };
}

/** The first few items, and how many more: messages stay one readable line. */
function list(items: string[], shown = 5): string {
  const head = items.slice(0, shown).join(', ');
  return items.length > shown ? `${head} and ${items.length - shown} more` : head;
}

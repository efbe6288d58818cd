// Weight names for a config, checked against a checkpoint's tensor list: the real tiny
// Llama fixture passes; each kind of mismatch is named in one error.

import { describe, expect, it } from 'vitest';
import type { TensorInfo } from '../../src/checkpoint/types.js';
import { isSluiceError } from '../../src/errors.js';
import { modelConfig, type ModelConfig } from '../../src/model/config.js';
import { weightNames } from '../../src/model/weights.js';

const base: ModelConfig = modelConfig({
  architectures: ['LlamaForCausalLM'], hidden_size: 8, intermediate_size: 12, num_hidden_layers: 2,
  num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 10, tie_word_embeddings: false,
});

/** The tensor list a checkpoint of `config` has (as HF writes it). */
function tensorsOf(config: ModelConfig, qwenBias = config.features.qkvBias): TensorInfo[] {
  const h = config.hiddenSize;
  const kv = config.numKvHeads * config.headDim;
  const q = config.numHeads * config.headDim;
  const t = (name: string, shape: number[]): TensorInfo => ({ name, dtype: 'BF16', shape, byteLength: shape.reduce((a, b) => a * b, 2), file: 'm.safetensors' });
  const out = [t('model.embed_tokens.weight', [config.vocabSize, h]), t('model.norm.weight', [h])];
  if (!config.tieWordEmbeddings) out.push(t('lm_head.weight', [config.vocabSize, h]));
  for (let i = 0; i < config.numLayers; i++) {
    const p = `model.layers.${i}`;
    out.push(
      t(`${p}.input_layernorm.weight`, [h]), t(`${p}.post_attention_layernorm.weight`, [h]),
      t(`${p}.self_attn.q_proj.weight`, [q, h]), t(`${p}.self_attn.k_proj.weight`, [kv, h]),
      t(`${p}.self_attn.v_proj.weight`, [kv, h]), t(`${p}.self_attn.o_proj.weight`, [h, q]),
      t(`${p}.mlp.gate_proj.weight`, [config.intermediateSize, h]), t(`${p}.mlp.up_proj.weight`, [config.intermediateSize, h]),
      t(`${p}.mlp.down_proj.weight`, [h, config.intermediateSize]),
    );
    if (qwenBias) out.push(t(`${p}.self_attn.q_proj.bias`, [q]), t(`${p}.self_attn.k_proj.bias`, [kv]), t(`${p}.self_attn.v_proj.bias`, [kv]));
  }
  return out;
}

function problem(config: ModelConfig, tensors: TensorInfo[]): string {
  try {
    weightNames(config, tensors, 'model/');
  } catch (e) {
    expect(isSluiceError(e, 'UNSUPPORTED_ARCH')).toBe(true);
    return (e as Error).message;
  }
  throw new Error('no error');
}

describe('weightNames', () => {
  it('a complete checkpoint: every name, the LM head, and the loader filter', () => {
    const names = weightNames(base, tensorsOf(base), 'model/');
    expect(names.layers).toHaveLength(2);
    expect(names.layers[1].down).toBe('model.layers.1.mlp.down_proj.weight');
    expect(names.layers[0].qBias).toBeNull();
    expect(names.lmHead).toBe('lm_head.weight');
    expect(names.all.size).toBe(3 + 2 * 9);
  });

  it('tied embeddings: the LM head is the table; a stray lm_head copy and rotary inv_freq are ignored', () => {
    const tied = { ...base, tieWordEmbeddings: true };
    const tensors = [...tensorsOf(tied), ...tensorsOf(base).filter((t) => t.name === 'lm_head.weight')];
    tensors.push({ ...tensors[0], name: 'model.layers.0.self_attn.rotary_emb.inv_freq', shape: [1] });
    const names = weightNames(tied, tensors, 'model/');
    expect(names.lmHead).toBe('model.embed_tokens.weight');
    expect(names.all.has('lm_head.weight')).toBe(false);
  });

  it('Qwen2-style q/k/v biases are expected when the config says so', () => {
    const qwen = { ...base, features: { ...base.features, qkvBias: true } };
    expect(weightNames(qwen, tensorsOf(qwen), 'model/').layers[0].kBias).toBe('model.layers.0.self_attn.k_proj.bias');
    expect(problem(qwen, tensorsOf(qwen, false))).toMatch(/missing model\.layers\.0\.self_attn\.q_proj\.bias, .* and 1 more/);
  });

  it('missing, wrong-shape and unexpected tensors are all named in one message', () => {
    const tensors = tensorsOf(base).filter((t) => t.name !== 'model.norm.weight');
    tensors[0] = { ...tensors[0], shape: [11, 8] };
    tensors.push({ ...tensors[1], name: 'model.layers.0.mlp.extra.weight' });
    expect(problem(base, tensors)).toBe(
      'model/: the weights do not match config.json (LlamaForCausalLM, 2 layers): missing model.norm.weight; ' +
        'wrong shape: model.embed_tokens.weight is [11, 8], expected [10, 8]; unexpected model.layers.0.mlp.extra.weight',
    );
  });

  it('a checkpoint with more layers than the config: the extra layers are unexpected', () => {
    const more = { ...base, numLayers: 3 };
    expect(problem(base, tensorsOf(more))).toMatch(/unexpected model\.layers\.2\.input_layernorm\.weight, .* and 4 more$/);
  });
});

describe('weightNames for the step 12 families', () => {
  const shapeOf = { architectures: ['Qwen3ForCausalLM'], hidden_size: 8, intermediate_size: 12, num_hidden_layers: 1, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 4, vocab_size: 10 };
  const t = (name: string, shape: number[]): TensorInfo => ({ name, dtype: 'BF16', shape, byteLength: shape.reduce((a, b) => a * b, 2), file: 'm.safetensors' });

  it('Qwen3 without q_norm: the missing tensor is named', () => {
    const qwen3 = modelConfig(shapeOf);
    const tensors = [...tensorsOf(qwen3), t('model.layers.0.self_attn.k_norm.weight', [4])];
    expect(problem(qwen3, tensors)).toMatch(/^model\/: the weights do not match config\.json \(Qwen3ForCausalLM, 1 layers\): missing model\.layers\.0\.self_attn\.q_norm\.weight$/);
  });

  it('Phi-3: fused qkv_proj and gate_up_proj are expected as stored; a wrong-sized fused tensor is named with both shapes', () => {
    const phi3 = modelConfig({ ...shapeOf, architectures: ['Phi3ForCausalLM'], head_dim: undefined, num_attention_heads: 2, num_key_value_heads: 1 });
    const p = 'model.layers.0';
    const tensors = [
      t('model.embed_tokens.weight', [10, 8]), t('model.norm.weight', [8]), t('lm_head.weight', [10, 8]),
      t(`${p}.input_layernorm.weight`, [8]), t(`${p}.post_attention_layernorm.weight`, [8]),
      t(`${p}.self_attn.qkv_proj.weight`, [16, 8]), t(`${p}.self_attn.o_proj.weight`, [8, 8]),
      t(`${p}.mlp.gate_up_proj.weight`, [24, 8]), t(`${p}.mlp.down_proj.weight`, [8, 12]),
    ];
    const names = weightNames(phi3, tensors, 'model/');
    expect(names.splits).toEqual([{ from: `${p}.self_attn.qkv_proj.weight`, parts: [{ name: `${p}.self_attn.qkv_proj.weight[q]`, rows: 8 }, { name: `${p}.self_attn.qkv_proj.weight[k]`, rows: 4 }, { name: `${p}.self_attn.qkv_proj.weight[v]`, rows: 4 }] }]);
    expect(names.layers[0].gateUp).toEqual({ fused: `${p}.mlp.gate_up_proj.weight` });
    tensors[5] = t(`${p}.self_attn.qkv_proj.weight`, [12, 8]);
    expect(problem(phi3, tensors)).toMatch(/wrong shape: model\.layers\.0\.self_attn\.qkv_proj\.weight is \[12, 8\], expected \[16, 8\]$/);
  });
});

it('a weight stored as F8 (or any non-float dtype) is refused at load, naming it, not run as raw bytes', () => {
  const tensors = tensorsOf(base).map((t) => (t.name === 'model.layers.1.mlp.up_proj.weight' ? { ...t, dtype: 'F8_E4M3FNUZ' as const } : t));
  expect(() => weightNames(base, tensors, 'model/')).toThrow(/^model\/: tensor "model\.layers\.1\.mlp\.up_proj\.weight" is F8_E4M3FNUZ; sluice runs models whose weights are F32, F16, BF16$/);
});

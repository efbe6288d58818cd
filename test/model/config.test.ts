// config.json → ModelConfig on real configs (test/fixtures/configs/), and every refusal:
// an unsupported architecture, activation or rope type is UNSUPPORTED_ARCH naming it and
// listing what is supported; a malformed field is INVALID_JSON naming the key.

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { isSluiceError } from '../../src/errors.js';
import { parseModelConfig } from '../../src/model/config.js';

const fixture = (name: string) => readFileSync(`test/fixtures/configs/${name}.json`, 'utf8');
const edited = (name: string, change: Record<string, unknown>) => JSON.stringify({ ...JSON.parse(fixture(name)), ...change });

function refusal(text: string, code: string): string {
  try {
    parseModelConfig(text, 'x/config.json');
  } catch (e) {
    expect(isSluiceError(e, code as never), String(e)).toBe(true);
    return (e as Error).message;
  }
  throw new Error('no error');
}

describe('real configs', () => {
  it('SmolLM2-135M-Instruct: GQA 9/3, head_dim 64, tied embeddings, no rope scaling', () => {
    const c = parseModelConfig(fixture('smollm2-135m-instruct'));
    expect(c).toMatchObject({
      architecture: 'LlamaForCausalLM', hiddenSize: 576, intermediateSize: 1536, numLayers: 30, numHeads: 9, numKvHeads: 3,
      headDim: 64, vocabSize: 49152, rmsNormEps: 1e-5,
      maxPositionEmbeddings: 8192, tieWordEmbeddings: true, torchDtype: 'bfloat16', bosTokenId: 1, eosTokenIds: [2],
    });
    expect(c.rope.rope).toMatchObject({ type: 'default', theta: 100000, headDim: 64, rotaryDim: 64, attentionFactor: 1 });
    expect(c.features).toMatchObject({ norm: 'w', qkvBias: false, oBias: false, qkNorm: false, act: 'silu', embedScale: null, fused: false });
    expect(c.features.layers).toEqual(new Array(30).fill({ window: null, rope: c.rope.rope }));
  });

  it('Llama-3.2-1B-Instruct: llama3 rope scaling, three eos ids', () => {
    const c = parseModelConfig(fixture('llama-3.2-1b-instruct'));
    expect(c.rope.rope).toMatchObject({ type: 'llama3', theta: 500000, factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 });
    expect(c.eosTokenIds).toEqual([128001, 128008, 128009]);
    expect([c.headDim, c.numKvHeads]).toEqual([64, 8]);
  });

  it('Qwen2-0.5B-Instruct: q/k/v biases, sliding window present but not in use', () => {
    const c = parseModelConfig(fixture('qwen2-0.5b-instruct'));
    expect([c.features.qkvBias, c.features.oBias, c.headDim, c.rmsNormEps]).toEqual([true, false, 64, 1e-6]);
    expect(c.features.layers.every((l) => l.window === null)).toBe(true);
    // use_sliding_window: layers from max_window_layers on slide (configuration_qwen2.py).
    const windowed = parseModelConfig(edited('qwen2-0.5b-instruct', { use_sliding_window: true, max_window_layers: 21 }));
    expect(windowed.features.layers.map((l) => l.window)).toEqual([...new Array(21).fill(null), 32768, 32768, 32768]);
  });

  it('Qwen2: attention_bias never gives o_proj a bias (transformers ignores it there)', () => {
    const c = parseModelConfig(edited('qwen2-0.5b-instruct', { attention_bias: true }));
    expect([c.features.qkvBias, c.features.oBias]).toEqual([true, false]);
  });

  it('TinyLlama: head_dim derived from hidden_size / heads, untied embeddings', () => {
    const c = parseModelConfig(fixture('tinyllama-1.1b-chat'));
    expect([c.headDim, c.numKvHeads, c.tieWordEmbeddings]).toEqual([64, 4, false]);
  });

  it('Mistral: v0.2 has no window; v0.1 has a 4096 window (a longer context is refused later)', () => {
    expect(parseModelConfig(fixture('mistral-7b-instruct-v0.2')).features.layers.every((l) => l.window === null)).toBe(true);
    expect(parseModelConfig(fixture('mistral-7b-instruct-v0.1')).features.layers.every((l) => l.window === 4096)).toBe(true);
  });

  it('linear rope scaling, and the older "type" key', () => {
    const c = parseModelConfig(edited('tinyllama-1.1b-chat', { rope_scaling: { type: 'linear', factor: 4 } }));
    expect(c.rope.rope).toMatchObject({ type: 'linear', factor: 4 });
  });
});

describe('refusals', () => {
  it('an unsupported architecture names it and lists the supported ones', () => {
    const message = refusal(edited('tinyllama-1.1b-chat', { architectures: ['GPTNeoXForCausalLM'] }), 'UNSUPPORTED_ARCH');
    expect(message).toMatch(/^x\/config\.json: architecture \["GPTNeoXForCausalLM"\] is not supported; sluice runs Llama 1–3.3 \(LlamaForCausalLM\), Mistral \(MistralForCausalLM\), Qwen2\/2.5 \(Qwen2ForCausalLM\), Qwen3 \(Qwen3ForCausalLM\), Gemma 2/);
  });

  it.each([
    [{ rope_scaling: { rope_type: 'mrope', factor: 4 } }, /rope_scaling\.rope_type "mrope" is not supported \(supported: default, linear, dynamic, yarn, longrope, llama3\)/],
    [{ hidden_act: 'gelu' }, /hidden_act "gelu" is not supported \(silu, gelu_pytorch_tanh\)/],
    [{ mlp_bias: true }, /mlp_bias true is not supported/],
  ])('UNSUPPORTED_ARCH for %j', (change, pattern) => {
    expect(refusal(edited('tinyllama-1.1b-chat', change), 'UNSUPPORTED_ARCH')).toMatch(pattern);
  });

  it.each([
    [{ hidden_size: 0 }, /hidden_size must be a positive integer, not 0/],
    [{ num_hidden_layers: undefined }, /num_hidden_layers is missing/],
    [{ num_key_value_heads: 5 }, /num_key_value_heads \(5\) must divide num_attention_heads \(32\)/],
    [{ hidden_size: 2050, head_dim: undefined }, /not a multiple of num_attention_heads/],
    [{ rms_norm_eps: 'small' }, /rms_norm_eps must be a positive number/],
    [{ tie_word_embeddings: 'yes' }, /tie_word_embeddings must be true or false/],
    [{ rope_scaling: { rope_type: 'llama3', factor: 8 } }, /rope_scaling\.low_freq_factor is missing/],
  ])('INVALID_JSON for %j', (change, pattern) => {
    expect(refusal(edited('tinyllama-1.1b-chat', change), 'INVALID_JSON')).toMatch(pattern);
  });

  it('not JSON, or not an object', () => {
    expect(refusal('{', 'INVALID_JSON')).toMatch(/^x\/config\.json: not valid JSON/);
    expect(refusal('[1]', 'INVALID_JSON')).toMatch(/not a JSON object/);
  });
});

describe('real configs of the step 12 families (test/fixtures/configs/real/)', () => {
  const real = (name: string) => parseModelConfig(readFileSync(`test/fixtures/configs/real/${name}.json`, 'utf8'), `${name}/config.json`);
  const kinds = (c: ReturnType<typeof real>) => c.features.layers.map((l) => [l.window, l.rope && `${l.rope.type}/${l.rope.theta}/${l.rope.rotaryDim}`]);

  it('Qwen3-0.6B: per-head q/k norms, no biases, head_dim 128 ≠ hidden / heads', () => {
    const c = real('qwen3-0.6b');
    expect([c.family, c.hiddenSize, c.numHeads, c.numKvHeads, c.headDim, c.tieWordEmbeddings]).toEqual(['Qwen3', 1024, 16, 8, 128, true]);
    expect(c.features).toMatchObject({ norm: 'w', qkNorm: true, qkvBias: false, oBias: false, act: 'silu', fused: false, sandwichNorms: false });
    expect(new Set(kinds(c).map(String))).toEqual(new Set([String([null, 'default/1000000/128'])]));
  });

  it('gemma-3-1b-it: Gemma norms and GeGLU, √1152 in bf16 (34), 5 local layers of 512 per global one, two rope bases', () => {
    const c = real('gemma-3-1b-it');
    expect(c.features).toMatchObject({
      norm: 'one-plus-w', qkNorm: true, act: 'gelu_tanh', embedScale: 34, sandwichNorms: true, attnScale: 1 / 16, attnSoftcap: null, finalSoftcap: null,
    });
    const local = [512, 'default/10000/256'];
    const global = [null, 'default/1000000/256'];
    expect(kinds(c)).toEqual(Array.from({ length: 26 }, (_, i) => ((i + 1) % 6 === 0 ? global : local)));
  });

  it('Phi-4-mini-instruct: fused qkv/gate_up, partial rotary 0.75 (96 of 128), longrope', () => {
    const c = real('phi-4-mini-instruct');
    expect([c.family, c.numHeads, c.numKvHeads, c.headDim]).toEqual(['Phi-3/3.5/4-mini', 24, 8, 128]);
    expect(c.features).toMatchObject({ fused: true, qkvBias: false, qkNorm: false });
    expect(c.rope.rope).toMatchObject({ type: 'longrope', rotaryDim: 96, originalMaxPositionEmbeddings: 4096 });
    expect((c.rope.rope as { shortFactor: readonly number[] }).shortFactor).toHaveLength(48);
  });

  it('Phi-3.5-mini-instruct: fused tensors, full rotary (96), longrope with the real factor lists', () => {
    const c = real('phi-3.5-mini-instruct');
    expect([c.numHeads, c.numKvHeads, c.headDim]).toEqual([32, 32, 96]);
    expect(c.rope.rope).toMatchObject({ type: 'longrope', rotaryDim: 96 });
    expect(c.rope.rope.attentionFactor).toBeCloseTo(Math.sqrt(1 + Math.log(32) / Math.log(4096)), 6);
  });
});

describe('configs that contradict themselves or the family', () => {
  const tiny = (change: Record<string, unknown>) =>
    JSON.stringify({ architectures: ['Gemma3ForCausalLM'], hidden_size: 64, intermediate_size: 96, num_hidden_layers: 4, num_attention_heads: 4, num_key_value_heads: 1, head_dim: 16, vocab_size: 256, sliding_window: 8, ...change });
  it.each([
    [{ layer_types: ['sliding_attention', 'full_attention'] }, /layer_types must list "sliding_attention" or "full_attention" for each of the 4 layers/],
    [{ layer_types: ['sliding_attention', 'sliding_attention', 'sliding_attention', 'full_attention'], sliding_window: null }, /sliding_window is missing, but layer_types has sliding layers/],
    [{ architectures: ['SmolLM3ForCausalLM'], no_rope_layers: [1, 0] }, /no_rope_layers must list 0 or 1 for each of the 4 layers/],
    [{ hidden_activation: 'relu' }, /hidden_activation "relu" is not supported/],
  ])('%j → one line naming the file and key', (change, pattern) => {
    const message = refusal(tiny(change), /not supported/.test(String(pattern)) ? 'UNSUPPORTED_ARCH' : 'INVALID_JSON');
    expect(message).toMatch(/^x\/config\.json: /);
    expect(message).toMatch(pattern);
  });
});

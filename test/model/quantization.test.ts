// quantization_config as the Hub ships it → a typed Quantization, and every other method
// refused by name with the list of what is read. (Loading the packed weights:
// test/model/prequantized.test.ts.)

import { describe, expect, it } from 'vitest';
import { isSluiceError } from '../../src/errors.js';
import { parseQuantization } from '../../src/model/quantization.js';

const parse = (quantization_config: unknown, extra: Record<string, unknown> = {}) => parseQuantization({ quantization_config, ...extra }, 'm/config.json');
function refusal(quantization_config: unknown, extra: Record<string, unknown> = {}): string {
  try {
    parse(quantization_config, extra);
  } catch (e) {
    expect(isSluiceError(e)).toBe(true);
    return (e as Error).message;
  }
  throw new Error('no error');
}

describe('what is read', () => {
  it('none: a dense checkpoint', () => {
    expect(parseQuantization({ architectures: ['LlamaForCausalLM'] })).toBeNull();
  });

  it('AutoGPTQ 4-bit, group 128, act-order', () => {
    const q = parse({ bits: 4, group_size: 128, damp_percent: 0.01, desc_act: true, static_groups: false, sym: true, true_sequential: true, model_name_or_path: null, model_file_base_name: 'model', quant_method: 'gptq' });
    expect(q).toEqual({ method: 'gptq', bits: 4, groupSize: 128, symmetric: true, actOrder: true, format: 'gptq', dense: [] });
  });

  it('GPTQModel gptq_v2, 8-bit, asymmetric, one group per row (-1)', () => {
    expect(parse({ bits: 8, group_size: -1, desc_act: false, sym: false, quant_method: 'gptq', checkpoint_format: 'gptq_v2' })).toMatchObject({ bits: 8, groupSize: null, symmetric: false, format: 'gptq_v2' });
  });

  it('AutoAWQ GEMM', () => {
    expect(parse({ quant_method: 'awq', bits: 4, group_size: 128, zero_point: true, version: 'gemm', modules_to_not_convert: null })).toEqual({
      method: 'awq', bits: 4, groupSize: 128, symmetric: false, actOrder: false, format: 'awq-gemm', dense: [],
    });
  });

  it('compressed-tensors W4A16 (pack-quantized, group 128) and W8 int-quantized per channel', () => {
    const group = (weights: Record<string, unknown>) => ({ group_0: { targets: ['Linear'], weights, input_activations: null, output_activations: null } });
    expect(parse({
      quant_method: 'compressed-tensors', format: 'pack-quantized', quantization_status: 'compressed', ignore: ['lm_head'],
      config_groups: group({ num_bits: 4, type: 'int', symmetric: true, group_size: 128, strategy: 'group', dynamic: false, actorder: null, observer: 'minmax' }),
    })).toEqual({ method: 'compressed-tensors', bits: 4, groupSize: 128, symmetric: true, actOrder: false, format: 'pack-quantized', dense: ['lm_head'] });
    expect(parse({
      quant_method: 'compressed-tensors', format: 'int-quantized',
      config_groups: group({ num_bits: 8, type: 'int', symmetric: true, group_size: null, strategy: 'channel' }),
    })).toMatchObject({ bits: 8, groupSize: null, format: 'int-quantized' });
  });
});

describe('what is refused, by name, listing what is read', () => {
  it.each([
    [{ quant_method: 'bitsandbytes', load_in_4bit: true, bnb_4bit_quant_type: 'nf4' }, /quantized with "bitsandbytes", which is not supported; sluice reads GPTQ/],
    [{ quant_method: 'hqq', nbits: 4 }, /"hqq"/],
    [{ quant_method: 'fp8', activation_scheme: 'dynamic' }, /"fp8"/],
    [{ quant_method: 'exl2', bits: 4.65 }, /"exl2"/],
    [{ quant_method: 'gptq', bits: 3, group_size: 128 }, /gptq with bits "3" is not supported \(4 or 8\)/],
    [{ quant_method: 'gptq', bits: 4, checkpoint_format: 'marlin' }, /checkpoint_format "marlin"/],
    [{ quant_method: 'awq', bits: 4, group_size: 128, version: 'gemv' }, /awq version "gemv" is not supported \(only gemm\)/],
    [{ quant_method: 'compressed-tensors', format: 'float-quantized', config_groups: { g: { weights: { num_bits: 8, type: 'float' } } } }, /format "float-quantized"/],
    [{ quant_method: 'compressed-tensors', format: 'int-quantized', config_groups: { g: { weights: { num_bits: 8, type: 'int', strategy: 'channel' }, input_activations: { num_bits: 8 } } } }, /quantized activations \(W8A8\)/],
  ])('%j', (config, pattern) => {
    const message = refusal(config);
    expect(message).toMatch(/^m\/config\.json: /);
    expect(message).toMatch(pattern);
    expect(message).toContain('sluice reads GPTQ (4/8-bit, incl. act-order and gptq_v2), AWQ GEMM (4-bit), compressed-tensors');
  });

  it('MLX (top-level "quantization") is refused too', () => {
    expect(refusal(undefined, { quantization: { group_size: 64, bits: 4 } })).toMatch(/quantized by MLX/);
  });

  it('malformed values are INVALID_JSON naming the key', () => {
    expect(refusal({ quant_method: 'gptq', bits: 4, group_size: 100 })).toMatch(/quantization_config\.group_size must be a multiple of 8 \(or -1\), not "100"/);
    expect(refusal({ bits: 4 })).toMatch(/quantization_config\.quant_method is missing/);
  });
});

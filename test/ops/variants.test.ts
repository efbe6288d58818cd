// Every variant of every shader compiles on this adapter with no message at all (errors or
// warnings), and builds a pipeline. Variants come from src/ops/variants.ts.

import { expect, it } from 'vitest';
import { pipelineCache } from '../../src/gpu/pipeline-cache.js';
import { allVariants } from '../../src/ops/variants.js';
import { useGpuTestDevice } from '../support/gpu-helpers.js';

const gpu = useGpuTestDevice('test.variants');

it('every shader variant compiles cleanly and builds a pipeline', async () => {
  const variants = allVariants(gpu.device.features as ReadonlySet<string>);
  const keys = variants.map((v) => v.key);
  expect(new Set(keys).size).toBe(keys.length); // keys name variants uniquely
  // The variants of the Qwen3 / Gemma 2/3 / Phi-4-mini / SmolLM3 work are listed, so compiled below.
  expect(keys).toEqual(
    expect.arrayContaining([
      'rms_norm_f32_one_plus_w_wg256',
      'swiglu_f32_gelu_tanh_wg256',
      'swiglu_f32_fused_gelu_tanh_wg256',
      'rope_f32_scaled_wg256',
      'embedding_f32_scaled_wg256',
      'softcap_f32_wg256',
      'attention_f32_softcap_wg64',
      'attention_f32_window_wg64',
      'attention_split_f32_softcap_window_wg64',
      'attention_combine_f32_window_wg64',
      'quantize_q4_from_f32_wg64',
      'qgemv_q4_f32_block_r4_wg32',
      'qmatmul_q8_f32_wgmem_m16k16_wg64',
    ]),
  );
  for (const { key, spec } of variants) {
    const info = await pipelineCache(gpu.device).module(spec.shader, spec.flags).getCompilationInfo();
    const messages = info.messages.map((m) => `${m.type} ${spec.shader}.wgsl:${m.lineNum}:${m.linePos} ${m.message}`);
    expect(messages, key).toEqual([]);
    const pipeline = await pipelineCache(gpu.device).get(key, spec);
    expect(pipeline.label).toBe(key);
  }
});

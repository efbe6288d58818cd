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
  for (const { key, spec } of variants) {
    const info = await pipelineCache(gpu.device).module(spec.shader, spec.flags).getCompilationInfo();
    const messages = info.messages.map((m) => `${m.type} ${spec.shader}.wgsl:${m.lineNum}:${m.linePos} ${m.message}`);
    expect(messages, key).toEqual([]);
    const pipeline = await pipelineCache(gpu.device).get(key, spec);
    expect(pipeline.label).toBe(key);
  }
});

// A variant that does not compile: one line naming the pipeline and the file and line the
// error is on, mapped back through #include (the compiler counts lines of the expanded text).

import { afterAll, expect, it } from 'vitest';
import { nodeShaderLoader } from '../../src/gpu/node-shaders.js';
import { pipelineCache } from '../../src/gpu/pipeline-cache.js';
import { setShaderLoader } from '../../src/gpu/shader-library.js';
import { useGpuTestDevice } from '../support/gpu-helpers.js';

const gpu = useGpuTestDevice('test.pipeline-cache');
const BROKEN = `#include "common/dtype.wgsl"
@compute @workgroup_size(1)
fn main() {
  let x: T = undefined_name;
}
`;
setShaderLoader((name) => (name === 'test_broken' ? BROKEN : nodeShaderLoader(name)));
afterAll(() => setShaderLoader(nodeShaderLoader));

it('names the shader file and line of a compile error, past the lines an include added', async () => {
  const failure = pipelineCache(gpu.device).get('test_broken_f32', { shader: 'test_broken', flags: [] });
  await expect(failure).rejects.toMatchObject({ code: 'SHADER_ERROR' });
  const message = ((await failure.catch((e: unknown) => e)) as Error).message;
  expect(message).toMatch(/^pipeline test_broken_f32 does not compile: test_broken\.wgsl:4, column \d+: .*undefined_name/);
  expect(message).not.toContain('\n');
  // The module's own validation error (uncaptured) is expected here, not a leak.
  expect(gpu.context.takeErrors().errors.length).toBeGreaterThan(0);
});

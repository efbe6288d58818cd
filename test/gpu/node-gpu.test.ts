// What only a whole Node process shows: that it exits by itself with a live device, and
// that Dawn writes nothing to stdout for an uncaptured error. The child runs the compiled
// dist/ (Node 20 cannot run TypeScript), built by ensureBuilt().
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt, root } from '../support/build.js';

const nodeGpuUrl = pathToFileURL(join(root, 'dist', 'gpu', 'node-gpu.js')).href;

interface Result {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs an ES module source in a fresh Node, killed after `timeoutMs`. */
function runNode(source: string, timeoutMs = 20_000): Promise<Result> {
  const started = performance.now();
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--input-type=module', '-e', source],
      { cwd: root, timeout: timeoutMs, killSignal: 'SIGKILL' },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : null) : 0;
        const signal = (error?.signal as NodeJS.Signals | undefined) ?? null;
        resolve({ code, signal, stdout, stderr, ms: performance.now() - started });
      },
    );
  });
}

describe('a Node process using the Dawn device', () => {
  beforeAll(() => ensureBuilt());

  it('exits by itself after a dispatch, without destroy()', async () => {
    const result = await runNode(`
      import { acquireNodeDevice } from ${JSON.stringify(nodeGpuUrl)};
      const { device } = await acquireNodeDevice({ label: 'exit-test' });
      const y = device.createBuffer({ label: 'exit-test.y', size: 400, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
      const read = device.createBuffer({ label: 'exit-test.read', size: 400, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
      const module = device.createShaderModule({ label: 'exit-test', code: \`
        @group(0) @binding(0) var<storage, read_write> y: array<f32>;
        @compute @workgroup_size(64) fn main(@builtin(global_invocation_id) id: vec3u) {
          if (id.x < arrayLength(&y)) { y[id.x] = f32(id.x) * 2.0 + 1.0; }
        }\` });
      const pipeline = device.createComputePipeline({ label: 'exit-test', layout: 'auto', compute: { module } });
      const bindGroup = device.createBindGroup({ label: 'exit-test', layout: pipeline.getBindGroupLayout(0),
        entries: [{ binding: 0, resource: { buffer: y } }] });
      const encoder = device.createCommandEncoder();
      const pass = encoder.beginComputePass();
      pass.setPipeline(pipeline); pass.setBindGroup(0, bindGroup); pass.dispatchWorkgroups(2); pass.end();
      encoder.copyBufferToBuffer(y, 0, read, 0, 400);
      device.queue.submit([encoder.finish()]);
      await read.mapAsync(GPUMapMode.READ);
      console.log(new Float32Array(read.getMappedRange())[99]);
      // Left mapped and alive on purpose: nothing is cleaned up.
    `);
    expect(result.signal, 'killed: the process did not exit by itself').toBeNull();
    expect(result).toMatchObject({ code: 0, stdout: '199\n' });
  });

  it('writes nothing to stdout for an uncaptured error (Dawn prints it unless cancelled)', async () => {
    const result = await runNode(`
      import { acquireNodeDevice } from ${JSON.stringify(nodeGpuUrl)};
      const context = await acquireNodeDevice({ label: 'quiet-test' });
      context.device.createBuffer({ label: 'quiet-test.bad', size: 4, usage: 0 });
      let errors = [];
      for (let i = 0; i < 100 && errors.length === 0; i++) {
        await new Promise((resolve) => setTimeout(resolve, 20));
        errors = context.takeErrors().errors;
      }
      console.log(errors.length);
      context.destroy();
    `);
    expect(result).toMatchObject({ code: 0, stdout: '1\n' });
  });
});

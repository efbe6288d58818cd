// timeOps: both methods measure real work (more work takes longer), and the read limit
// probe reads what it should.

import { expect, it } from 'vitest';
import { timeOps } from '../../src/gpu/profiler.js';
import { BANDWIDTH_GROUPS, BANDWIDTH_WORKGROUP, Bandwidth } from '../../src/ops/bandwidth.js';
import { runOps } from '../../src/ops/op.js';
import { useGpuTestDevice } from '../support/gpu-helpers.js';
import { outputBuffer, readArray, uploadArray } from '../support/op-helpers.js';

const gpu = useGpuTestDevice('test.profiler');

it.each(['read', 'segmented'] as const)('the %s probe sums every element once; copy copies', async (kind) => {
  const n = 4 * 100_003; // not a multiple of the grid
  const values = Float32Array.from({ length: n }, (_, i) => (i % 7) - 3);
  const src = uploadArray(gpu.device, values, 'F32');
  const sums = outputBuffer(gpu.device, BANDWIDTH_GROUPS * BANDWIDTH_WORKGROUP, 4);
  const read = (await Bandwidth.create(gpu.device, kind)).prepare('test.read', n * 4, src, sums);
  const copyDst = outputBuffer(gpu.device, n, 4);
  const copy = (await Bandwidth.create(gpu.device, 'copy')).prepare('test.copy', n * 4, src, copyDst);
  await runOps(gpu.device, [read, copy]);
  const partial = await readArray(gpu.device, sums, BANDWIDTH_GROUPS * BANDWIDTH_WORKGROUP, 'F32');
  expect(partial.reduce((a, b) => a + b, 0)).toBe(values.reduce((a, b) => a + b, 0));
  expect(await readArray(gpu.device, copyDst, n, 'F32')).toEqual(values);
  for (const b of [src, sums, copyDst]) b.destroy();
  read.destroy();
  copy.destroy();
});

it.each([false, true])('timeOps (wall clock: %s): positive, and 8× the bytes takes longer', async (wall) => {
  const bytes = 16 << 20;
  const src = gpu.device.createBuffer({ size: bytes * 8, usage: GPUBufferUsage.STORAGE });
  const sums = outputBuffer(gpu.device, BANDWIDTH_GROUPS * BANDWIDTH_WORKGROUP, 4);
  const probe = await Bandwidth.create(gpu.device, 'read');
  const small = probe.prepare('test.small', bytes, src, sums);
  const large = probe.prepare('test.large', bytes * 8, src, sums);
  // Best of three each: a busy machine (2 cores, tests in parallel) only ever adds time.
  const best = async (op: typeof small) => {
    const runs = [];
    for (let i = 0; i < 3; i++) runs.push(await timeOps(gpu.device, [op], { repeat: 4, wall }));
    return runs.reduce((x, y) => (y.seconds < x.seconds ? y : x));
  };
  const a = await best(small);
  const b = await best(large);
  expect(a.method).toBe(wall || !gpu.device.features.has('timestamp-query') ? 'wall' : 'timestamp');
  expect(a.seconds).toBeGreaterThan(0);
  expect(b.seconds).toBeGreaterThan(a.seconds * 2); // 8× the reads; at least 2× the time, noise allowed
  for (const op of [small, large]) op.destroy();
  src.destroy();
  sums.destroy();
});

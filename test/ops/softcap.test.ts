// softcap: x ← tanh(x / cap) · cap in place on f32 logits (Gemma 2's final logit
// soft-capping), on seeded sizes that are not multiples of the workgroup and caps of
// Gemma 2 (30) and others, with |x| far past where an unclamped tanh overflows, against a
// float64 reference of the stored values.

import { expect, it } from 'vitest';
import { pipelineCache } from '../../src/gpu/pipeline-cache.js';
import { runOps } from '../../src/ops/op.js';
import { SOFTCAP_WORKGROUP, Softcap, softcapVariants } from '../../src/ops/softcap.js';
import { spyDevice, useGpuTestDevice } from '../support/gpu-helpers.js';
import { closeness, outputBuffer, randomValues, readArray, uploadArray } from '../support/op-helpers.js';
import { mulberry32 } from '../support/safetensors-bytes.js';

const gpu = useGpuTestDevice('test.softcap');

// Named sizes first (one value; one short of and one past a workgroup; a vocabulary),
// then seeded random sizes and caps.
const rng = mulberry32(0x50f7);
const CASES: [n: number, cap: number][] = [
  [1, 30],
  [SOFTCAP_WORKGROUP - 1, 30],
  [SOFTCAP_WORKGROUP + 1, 50],
  [32_003, 30],
  ...Array.from({ length: 12 }, (): [number, number] => [1 + Math.floor(rng() * 5000), [1, 5, 30, 50, 0.1][Math.floor(rng() * 5)]]),
];

const reference = (x: Float32Array, cap: number): Float64Array => Float64Array.from(x, (v) => Math.tanh(v / cap) * cap);

/**
 * f32. WGSL promises tanh only to the accuracy of sinh/cosh, i.e. absolute near 0: lavapipe
 * measured ≤ 2^-22.4 · cap absolute over 400,000 values (relative 2^-13.6 at |x| ≈ 1e-3 · cap);
 * abs 2^-21 · cap. On the logits that is ≤ 1.4e-5 at cap 30, nothing to a softmax. rel 2^-20
 * for x / cap (2.5 ulp) and the × cap rounding at large values.
 */
const tolerance = (cap: number): [number, number] => [2 ** -21 * cap, 2 ** -20];

async function check(device: GPUDevice, x: Float32Array, cap: number): Promise<Float32Array> {
  const buffer = uploadArray(gpu.device, x, 'F32');
  const op = (await Softcap.create(device)).prepare(`test.softcap.${x.length}`, x.length, buffer, cap);
  await runOps(device, [op]);
  const got = await readArray(gpu.device, buffer, x.length, 'F32');
  expect(closeness(got, reference(x, cap), ...tolerance(cap)), `n=${x.length} cap=${cap}`).toBeNull();
  op.destroy();
  buffer.destroy();
  return got;
}

it('every variant compiles with no message', async () => {
  for (const { key, spec } of softcapVariants()) {
    const info = await pipelineCache(gpu.device).module(spec.shader, spec.flags).getCompilationInfo();
    expect(info.messages.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`), key).toEqual([]);
  }
});

it(`${CASES.length} seeded sizes and caps, logits within ±4 caps`, async () => {
  for (const [n, cap] of CASES) await check(gpu.device, randomValues(rng, n, -4 * cap, 4 * cap), cap);
});

it('saturates at ±cap without NaN far past tanh overflow; keeps 0, signs and small values', async () => {
  const x = Float32Array.from([0, -0, 1e-30, -1e-30, 1e-3, 29.9, 30, 300, -300, 1320, -1320, 1e6, -1e6, 3e38, -3e38, Infinity, -Infinity]);
  const got = await check(gpu.device, x, 30);
  expect(got.findIndex(Number.isNaN)).toBe(-1);
  expect([...got.slice(9)]).toEqual([30, -30, 30, -30, 30, -30, 30, -30]); // |x / cap| ≥ 44: exactly ±cap
});

it('values past the per-dimension workgroup limit spill into y', async () => {
  // A device that claims 4 workgroups per dimension: 3000 values = 12 workgroups → (4, 3).
  const spy = spyDevice(gpu.device, { limits: { maxComputeWorkgroupsPerDimension: 4 } });
  await check(spy.device, randomValues(rng, 3000, -100, 100), 30);
});

it('prepare refuses bad sizes and caps, and short buffers', async () => {
  const softcap = await Softcap.create(gpu.device);
  const buffer = outputBuffer(gpu.device, 8, 4);
  expect(() => softcap.prepare('x', 9, buffer, 30)).toThrow(/holds 32 bytes, 9 f32 need 36/);
  expect(() => softcap.prepare('x', 0, buffer, 30)).toThrow(/n must be/);
  expect(() => softcap.prepare('x', 8, buffer, 0)).toThrow(/cap must be a positive number/);
  expect(() => softcap.prepare('x', 8, buffer, Number.NaN)).toThrow(/cap must be/);
  buffer.destroy();
});

// norm_add_norm: Gemma's x += post_norm(y), then next_norm(x), in one dispatch, compared
// byte for byte with the three ops it replaces (RmsNorm y → tmp, Add x += tmp in place,
// RmsNorm x → out) run on the same inputs: F32 and F16, the plain and the (1 + w) norm,
// with and without the next norm, on widths and row counts that are not multiples of the
// workgroup. Those ops are tested against their TypeScript references (rms-norm.test.ts,
// add.test.ts), so their composition is this kernel's reference.

import { describe, expect, it } from 'vitest';
import { pipelineCache } from '../../src/gpu/pipeline-cache.js';
import { Add } from '../../src/ops/add.js';
import { NORM_ADD_NORM_WORKGROUP, NormAddNorm, normAddNormVariants } from '../../src/ops/norm-add-norm.js';
import { computeBytes, runOps, type ComputeDtype, type PreparedOp } from '../../src/ops/op.js';
import { RmsNorm } from '../../src/ops/rms-norm.js';
import { firstMismatch, spyDevice, useGpuTestDevice } from '../support/gpu-helpers.js';
import { asDtype, encode, outputBuffer, randomValues, uploadArray, uploadWeights } from '../support/op-helpers.js';
import { mulberry32 } from '../support/safetensors-bytes.js';

const gpu = useGpuTestDevice('test.norm_add_norm');
const EPS = 1e-6; // Gemma's rms_norm_eps

// Gemma widths (640: 270m, 1152: 1b, 2304: 2-2b, 2560: 4b), tiny ones and one past the
// workgroup; one row (decode), a few, a prefill chunk.
const HIDDEN = [1, 3, 100, NORM_ADD_NORM_WORKGROUP + 1, 640, 1152, 2304, 2560];
const ROWS = [1, 5, 64];
const SHAPES = ROWS.flatMap((rows) => HIDDEN.map((hidden): [number, number] => [rows, hidden]));

const noF16 = (dtype: ComputeDtype): boolean => dtype === 'F16' && !gpu.device.features.has('shader-f16');

/**
 * The first `bytes` of each buffer (each a multiple of 4), copied into one staging buffer
 * and mapped once: a test of many shapes then waits for the GPU twice, not per buffer.
 */
async function readAll(device: GPUDevice, parts: readonly { buffer: GPUBuffer; bytes: number }[]): Promise<Uint8Array[]> {
  const total = parts.reduce((sum, p) => sum + p.bytes, 0);
  const staging = device.createBuffer({ label: 'test.norm_add_norm.readback', size: total, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const encoder = device.createCommandEncoder({ label: 'test.norm_add_norm.readback' });
  let at = 0;
  for (const { buffer, bytes } of parts) {
    encoder.copyBufferToBuffer(buffer, 0, staging, at, bytes);
    at += bytes;
  }
  device.queue.submit([encoder.finish()]);
  await staging.mapAsync(GPUMapMode.READ);
  const all = new Uint8Array(staging.getMappedRange().slice(0));
  staging.destroy();
  at = 0;
  return parts.map(({ bytes }) => all.subarray(at, (at += bytes)));
}

/**
 * For every shape: the three unfused ops on x, and the fused op with and without the next
 * norm on two copies of x, all in one pass; fails with the shape and the first differing
 * element unless all agree byte for byte.
 */
async function compare(device: GPUDevice, dtype: ComputeDtype, onePlusWeight: boolean, shapes: readonly [number, number][], seed: number): Promise<void> {
  const rng = mulberry32(seed);
  const width = computeBytes(dtype);
  // Gemma's weights sit around 0 (the norm is 1 + w): −1.5 … 1.5 makes 1 + w change sign.
  const [lo, hi] = onePlusWeight ? [-1.5, 1.5] : [-2, 2];
  const weights = await uploadWeights(
    device,
    Object.fromEntries(shapes.flatMap(([, hidden], i) => ['w1', 'w2'].map((w) => [`${w}.${i}`, { shape: [hidden], values: randomValues(rng, hidden, lo, hi) }]))),
    dtype,
  );
  const options = { eps: EPS, onePlusWeight };
  const [norm, add, fused] = await Promise.all([RmsNorm.create(device, dtype, options), Add.create(device, dtype, { inPlace: true }), NormAddNorm.create(device, dtype, options)]);
  const cases = shapes.map(([rows, hidden], i) => {
    const n = rows * hidden;
    // y: a block's output; an offset keeps its mean square off eps. x: the residual stream.
    const y = asDtype(randomValues(rng, n, -2, 3), dtype);
    const x = asDtype(randomValues(rng, n, -4, 4), dtype);
    const [w1, w2] = [weights.tensors.get(`w1.${i}`)!, weights.tensors.get(`w2.${i}`)!];
    const yBuf = uploadArray(device, y, dtype);
    const [xRef, xNext, xOnly] = [0, 1, 2].map(() => uploadArray(device, x, dtype));
    const [tmp, outRef, outFused] = [0, 1, 2].map(() => outputBuffer(device, n, width));
    const tag = `test.norm_add_norm.${dtype}.${onePlusWeight ? 'one_plus.' : ''}${rows}x${hidden}`;
    const ops: PreparedOp[] = [
      norm.prepare(`${tag}.post_norm`, rows, hidden, yBuf, w1, tmp),
      add.prepare(`${tag}.add`, n, xRef, tmp),
      norm.prepare(`${tag}.next_norm`, rows, hidden, xRef, w2, outRef),
      fused.prepare(`${tag}.fused`, rows, hidden, yBuf, w1, xNext, { weight: w2, out: outFused }),
      fused.prepare(`${tag}.fused_no_next`, rows, hidden, yBuf, w1, xOnly, null),
    ];
    const bytes = Math.ceil((n * width) / 4) * 4; // padding is zero in every buffer here
    return { rows, hidden, n, x, ops, buffers: [yBuf, xRef, xNext, xOnly, tmp, outRef, outFused], read: [xRef, outRef, xNext, xOnly, outFused].map((buffer) => ({ buffer, bytes })) };
  });
  const ops = cases.flatMap((c) => c.ops);
  expect(ops.every((op) => op.dispatches.length === 1)).toBe(true);
  await runOps(device, ops, 'test.norm_add_norm');
  const got = await readAll(device, cases.flatMap((c) => c.read));
  cases.forEach(({ rows, hidden, n, x }, i) => {
    const [want, wantOut, xNext, xOnly, out] = got.slice(5 * i, 5 * i + 5);
    const where = `${dtype} onePlus=${onePlusWeight} rows=${rows} hidden=${hidden}:`;
    expect(firstMismatch(xNext, want, width), `${where} x (with next)`).toBeNull();
    expect(firstMismatch(xOnly, want, width), `${where} x (no next)`).toBeNull();
    expect(firstMismatch(out, wantOut, width), `${where} out`).toBeNull();
    // Not a vacuous match: the residual moved.
    expect(Buffer.from(want.subarray(0, n * width)).equals(encode(x, dtype)), `${where} x unchanged`).toBe(false);
  });
  for (const op of ops) op.destroy();
  for (const buffer of cases.flatMap((c) => c.buffers)) buffer.destroy();
  weights.destroy();
}

it('every variant compiles with no message', async () => {
  const features = gpu.device.features as ReadonlySet<string>;
  const variants = normAddNormVariants(features.has('shader-f16') ? ['F32', 'F16'] : ['F32'], features);
  const keys = variants.map((v) => v.key);
  expect(keys).toContain(`norm_add_norm_f32_one_plus_w_wg${NORM_ADD_NORM_WORKGROUP}`);
  expect(keys).toContain(`norm_add_f32_wg${NORM_ADD_NORM_WORKGROUP}`);
  expect(new Set(keys).size).toBe(keys.length);
  for (const { key, spec } of variants) {
    const info = await pipelineCache(gpu.device).module(spec.shader, spec.flags).getCompilationInfo();
    expect(info.messages.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`), key).toEqual([]);
  }
});

describe.each(['F32', 'F16'] as const)('norm_add_norm %s', (dtype) => {
  it.each([true, false])(`onePlusWeight %s: byte for byte the three ops, ${SHAPES.length} shapes`, async (onePlusWeight) => {
    if (noF16(dtype)) return expect(noF16(dtype)).toBe(true); // said, not silent: no F16 on this adapter
    await compare(gpu.device, dtype, onePlusWeight, SHAPES, 0x5a4d);
  });
});

it('rows past the per-dimension workgroup limit spill into y', async () => {
  // A device that claims 4 workgroups per dimension: 11 rows need a (4, 3) grid, one spare.
  const spy = spyDevice(gpu.device, { limits: { maxComputeWorkgroupsPerDimension: 4 } });
  const fused = await NormAddNorm.create(spy.device, 'F32', { eps: EPS, onePlusWeight: true });
  const weights = await uploadWeights(gpu.device, { w: { shape: [9], values: new Float32Array(9) } }, 'F32');
  const buf = () => outputBuffer(gpu.device, 11 * 9, 4);
  const op = fused.prepare('test.norm_add_norm.spill', 11, 9, buf(), weights.tensors.get('w')!, buf(), null);
  expect(op.dispatches[0].workgroups).toEqual([4, 3]);
  op.destroy();
  weights.destroy();
  // …and the kernel indexes rows that way: compared with the three ops on the spy device.
  await compare(spy.device, 'F32', true, [[11, 9]], 0x591);
});

it('prepare refuses bad shapes, weights, short buffers and aliased buffers', async () => {
  const fused = await NormAddNorm.create(gpu.device, 'F32', { eps: EPS, onePlusWeight: false });
  const weights = await uploadWeights(gpu.device, { w: { shape: [8], values: new Float32Array(8) }, v: { shape: [7], values: new Float32Array(7) } }, 'F32');
  const [w, v] = [weights.tensors.get('w')!, weights.tensors.get('v')!];
  const [y, x, out] = [0, 1, 2].map(() => outputBuffer(gpu.device, 16, 4));
  const short = outputBuffer(gpu.device, 12, 4); // 48 bytes, (2, 8) F32 needs 64
  expect(() => fused.prepare('t', 0, 8, y, w, x, null)).toThrow(/t: norm_add_norm needs rows ≥ 1 and hidden ≥ 1, got rows 0/);
  expect(() => fused.prepare('t', 2, 2.5, y, w, x, null)).toThrow(/hidden 2.5/);
  expect(() => fused.prepare('t', 2, 7, y, w, x, null)).toThrow(/w is F32 \[8\], expected F32 \[7\]/);
  expect(() => fused.prepare('t', 2, 8, y, w, x, { weight: v, out })).toThrow(/v is F32 \[7\], expected F32 \[8\]/);
  expect(() => fused.prepare('t', 2, 8, short, w, x, null)).toThrow(/y holds 48 bytes, \(2, 8\) F32 needs 64/);
  expect(() => fused.prepare('t', 2, 8, y, w, short, null)).toThrow(/x holds 48 bytes/);
  expect(() => fused.prepare('t', 2, 8, y, w, x, { weight: w, out: short })).toThrow(/out holds 48 bytes/);
  expect(() => fused.prepare('t', 2, 8, x, w, x, null)).toThrow(/x and y are one buffer/);
  expect(() => fused.prepare('t', 2, 8, y, w, x, { weight: w, out: x })).toThrow(/out and x are one buffer/);
  expect(() => fused.prepare('t', 2, 8, y, w, x, { weight: w, out: y })).toThrow(/out and y are one buffer/);
  await expect(NormAddNorm.create(gpu.device, 'F32', { eps: Number.NaN, onePlusWeight: false })).rejects.toThrow(/eps/);
  await expect(NormAddNorm.create(gpu.device, 'F32', { eps: -1, onePlusWeight: false })).rejects.toThrow(/eps/);
  if (gpu.device.features.has('shader-f16')) {
    const f16 = await NormAddNorm.create(gpu.device, 'F16', { eps: EPS, onePlusWeight: true });
    expect(() => f16.prepare('t', 1, 8, y, w, x, null)).toThrow(/w is F32 \[8\], expected F16 \[8\]/);
  }
  for (const buffer of [y, x, out, short]) buffer.destroy();
  weights.destroy();
});

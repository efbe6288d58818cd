// qgemv's ROPE_STORE epilogue: the joined [q; k; v] projection of a decode row with a quantized
// weight, rotated and stored by the qgemv itself. Bit for bit the unfused decode (the same
// qgemv without the epilogue into [q | k | v], then qkv_rope_store.wgsl), q4 and q8, F32 and
// F16, x shared by subgroups or not, with and without the RMSNorm in the kernel and a bias;
// real models' head shapes (SmolLM2's on the per-word path, Qwen2.5's with bias on the block
// path), partial rotary, NoPE, a scaled rope, slots and positions far into the cache, zero
// points or not, f16 or f32 scales, and seeded shapes; the cache rows it does not own keep
// their stale bytes. The refusals, the storage-buffer limit among them.

import { describe, expect, it } from 'vitest';
import type { GpuTensor } from '../../src/gpu/gpu-tensor.js';
import { pipelineCache } from '../../src/gpu/pipeline-cache.js';
import { destroyQuantized, type QuantKind } from '../../src/gpu/quantized-tensor.js';
import { Step } from '../../src/gpu/step.js';
import { type ComputeDtype, runOps } from '../../src/ops/op.js';
import { canShareX, QGemv, type QGemvOptions, qgemvPath, qgemvRopeStoreFits, qgemvVariants } from '../../src/ops/qgemv.js';
import { QkvRopeStore } from '../../src/ops/qkv-rope-store.js';
import { Rope } from '../../src/ops/rope.js';
import { useGpuTestDevice, withStorageLimit } from '../support/gpu-helpers.js';
import { asDtype, outputBuffer, randomValues, uploadArray, uploadWeights } from '../support/op-helpers.js';
import { randomQuantized, uploadQuantized } from '../support/quantized-weights.js';
import { invFreqOf, type RopeStoreCase, ropeStoreOutputs } from '../support/rope-store.js';
import { mulberry32 } from '../support/safetensors-bytes.js';

const gpu = useGpuTestDevice('test.qgemv-rope-store');
const rng = mulberry32(0x9e5);

interface Case extends RopeStoreCase {
  /** The weight's group size. */
  g: number;
  zeros: boolean;
  scaleDtype: 'F16' | 'F32';
}

const base = { factor: 1, g: 32, bias: false, rms: true, zeros: true, scaleDtype: 'F16', slots: 1, slot: 0 } as const;
const CASES: Case[] = [
  // SmolLM2-135M (9 heads, 3 KV, head 64, K 576: the per-word path), Qwen2.5-0.5B (14/2, bias, K 896: the block path)
  { ...base, nHeads: 9, nKvHeads: 3, headDim: 64, rotary: 64, k: 576, maxSeq: 40, position: 39 },
  { ...base, nHeads: 14, nKvHeads: 2, headDim: 64, rotary: 64, k: 896, bias: true, zeros: false, maxSeq: 30, slots: 3, slot: 2, position: 17 },
  // the same without the norm in the kernel (the families whose norms do not fuse), f32 scales
  { ...base, nHeads: 9, nKvHeads: 3, headDim: 64, rotary: 64, k: 576, rms: false, scaleDtype: 'F32', maxSeq: 8, position: 0 },
  { ...base, nHeads: 14, nKvHeads: 2, headDim: 64, rotary: 64, k: 896, bias: true, rms: false, maxSeq: 5, slots: 2, slot: 1, position: 4 },
  // partial rotary (96 of 128), scaled; NoPE; a position far into the context; tiny heads, G 8
  { ...base, nHeads: 6, nKvHeads: 2, headDim: 128, rotary: 96, factor: 1.19, k: 256, g: 64, maxSeq: 20, position: 11 },
  { ...base, nHeads: 4, nKvHeads: 4, headDim: 96, rotary: null, k: 384, g: 128, bias: true, maxSeq: 9, slots: 2, slot: 1, position: 8 },
  { ...base, nHeads: 2, nKvHeads: 1, headDim: 64, rotary: 64, factor: 0.9, k: 128, maxSeq: 20_000, position: 19_999 },
  { ...base, nHeads: 3, nKvHeads: 1, headDim: 4, rotary: 4, k: 40, g: 8, bias: true, zeros: false, maxSeq: 7, slots: 2, position: 6 },
  ...Array.from({ length: 6 }, (): Case => {
    const headDim = [2, 6, 16, 64, 80, 128][Math.floor(rng() * 6)];
    const nKvHeads = 1 + Math.floor(rng() * 3);
    const [k, g] = [[128, 32], [256, 128], [192, 64], [168, 24], [96, 32]][Math.floor(rng() * 5)];
    const [maxSeq, slots] = [1 + Math.floor(rng() * 60), 1 + Math.floor(rng() * 3)];
    return {
      nHeads: nKvHeads * (1 + Math.floor(rng() * 4)),
      nKvHeads,
      headDim,
      rotary: rng() < 0.2 ? null : rng() < 0.3 ? 2 * (1 + Math.floor((rng() * headDim) / 2)) : headDim,
      factor: rng() < 0.3 ? 1.1 : 1,
      k,
      g,
      bias: rng() < 0.5,
      rms: rng() < 0.7,
      zeros: rng() < 0.5,
      scaleDtype: rng() < 0.3 ? 'F32' : 'F16',
      maxSeq,
      slots,
      slot: Math.floor(rng() * slots),
      position: Math.floor(rng() * maxSeq),
    };
  }),
];

const noF16 = (dtype: ComputeDtype): boolean => dtype === 'F16' && !gpu.device.features.has('shader-f16');

/** Runs one case fused (the ROPE_STORE qgemv) and unfused (the qgemv into [q | k | v], then QkvRopeStore) and checks their bytes equal. Returns the path taken. */
async function check(kind: QuantKind, dtype: ComputeDtype, subgroups: boolean, c: Case): Promise<string> {
  const { device } = gpu;
  const { nHeads, nKvHeads, headDim: d, maxSeq, slots, k, g } = c;
  const [qDim, kvDim, bytes] = [nHeads * d, nKvHeads * d, dtype === 'F16' ? 2 : 4];
  const n = qDim + 2 * kvDim;
  const what = `${kind} ${dtype} subgroups=${subgroups} ${JSON.stringify(c)}`;
  const options: QGemvOptions = { subgroups, bias: c.bias, ...(c.rms ? { rmsNorm: { eps: 1e-5 } } : {}) };
  const scaled = c.factor !== 1;
  const [fused, plain, glue] = await Promise.all([
    QGemv.create(device, kind, dtype, { ...options, ropeStore: { scaled } }),
    QGemv.create(device, kind, dtype, options),
    QkvRopeStore.create(device, dtype, { scaled }),
  ]);
  expect(fused.ropeStore).toEqual({ scaled });
  const weight = uploadQuantized(device, randomQuantized(rng, kind, n, k, g, c.zeros), { kind, n, k, groupSize: g, scaleDtype: c.scaleDtype }, false);
  // The normed row has rms 1: g sets the projections' size (q8's weights are ~16× q4's). Signs mixed.
  const gSpan = kind === 'q8' ? 1 / 8 : 2;
  const tensors = await uploadWeights(device, {
    ...(c.rms ? { g: { shape: [k], values: asDtype(randomValues(rng, k, -gSpan, gSpan), dtype) } } : {}),
    ...(c.bias ? { b: { shape: [n], values: asDtype(randomValues(rng, n), dtype) } } : {}),
  }, dtype);
  const [norm, b] = [tensors.tensors.get('g'), tensors.tensors.get('b')] as [GpuTensor | undefined, GpuTensor | undefined];
  const x = uploadArray(device, asDtype(randomValues(rng, k, c.rms ? -3 : -0.3, c.rms ? 3 : 0.3), dtype), dtype);
  const rope = c.rotary === null ? null : await Rope.create(device, dtype, { invFreq: invFreqOf(c.rotary), attentionFactor: c.factor });
  const step = new Step(device, 'test.step', { rows: 1, positions: maxSeq, slots });
  step.write([c.position], [c.slot]);
  const shape = { nHeads, nKvHeads, headDim: d, maxSeq, slots, rows: 1 };
  const outputs = ropeStoreOutputs(device, dtype, shape, rng);
  const qkv = outputBuffer(device, n, bytes);
  const ops = [
    fused.prepareRopeStore('test.fused', weight, x, { shape, step, ...outputs.fused, rope }, b, norm),
    plain.prepare('test.qkv_proj', weight, x, qkv, b, norm),
    glue.prepare('test.qkv_rope_store', shape, outputs.glueBuffers(step, qkv, rope)),
  ];
  await runOps(device, ops);
  await outputs.expectSame(what, [{ slot: c.slot, position: c.position }]);
  const path = qgemvPath(weight);
  for (const op of ops) op.destroy();
  for (const buf of [x, qkv]) buf.destroy();
  outputs.destroy();
  step.destroy();
  rope?.destroy();
  destroyQuantized(weight);
  tensors.destroy();
  return path;
}

it('every ROPE_STORE variant compiles with no message: kinds × dtypes × x sharing × paths × rmsNorm × bias × scaled', async () => {
  const features = gpu.device.features as ReadonlySet<string>;
  const dtypes: ComputeDtype[] = features.has('shader-f16') ? ['F32', 'F16'] : ['F32'];
  const variants = qgemvVariants(dtypes, features).filter((v) => (v.spec.flags ?? []).includes('ROPE_STORE'));
  expect(variants.length).toBe(2 * dtypes.length * (features.has('subgroups') ? 2 : 1) * 2 * 8);
  expect(variants.map((v) => v.key)).toContain('qgemv_q4_f32_word_bias_rms_ropestore_scaled_r4_wg32');
  for (const { key, spec } of variants) {
    expect((spec.flags ?? []).filter((f) => ['GLU', 'OUT_F32', 'RESIDUAL'].includes(f)), key).toEqual([]);
    const info = await pipelineCache(gpu.device).module(spec.shader, spec.flags).getCompilationInfo();
    expect(info.messages.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`), key).toEqual([]);
  }
});

for (const kind of ['q4', 'q8'] as QuantKind[]) {
  describe.each(['F32', 'F16'] as const)(`qgemv ROPE_STORE ${kind} %s`, (dtype) => {
    it(`${CASES.length} cases, x shared where it can be: the bits of the qgemv then qkv_rope_store`, async () => {
      if (noF16(dtype)) return expect(noF16(dtype)).toBe(true); // said, not silent: no F16 on this adapter
      const paths = new Set<string>();
      for (const c of CASES) paths.add(await check(kind, dtype, canShareX(gpu.device), c));
      expect([...paths].sort()).toEqual(['block', 'word']);
    });

    it('x loaded by every invocation (no subgroups): the real shapes', async () => {
      if (noF16(dtype)) return expect(noF16(dtype)).toBe(true);
      if (!canShareX(gpu.device)) return expect(canShareX(gpu.device)).toBe(false); // said: the case above ran without subgroups
      for (const c of CASES.slice(0, 4)) await check(kind, dtype, false, c);
    });
  });
}

describe('qgemv ROPE_STORE refusals', () => {
  it('refuses what the epilogue cannot do, each in one line', async () => {
    const { device } = gpu;
    const refusal = /^qgemv: ropeStore takes no glu, residual or outF32$/;
    await expect(QGemv.create(device, 'q4', 'F32', { ropeStore: { scaled: false }, residual: true })).rejects.toThrow(refusal);
    await expect(QGemv.create(device, 'q4', 'F32', { ropeStore: { scaled: false }, glu: 'silu' })).rejects.toThrow(refusal);
    if (device.features.has('shader-f16')) await expect(QGemv.create(device, 'q4', 'F16', { ropeStore: { scaled: false }, outF32: true })).rejects.toThrow(refusal);
    await expect(QGemv.create(device, 'q4', 'F32', { ropeStore: { scaled: false }, tokens: 2 })).rejects.toThrow(/^qgemv: one row of x only, not tokens = 2$/);

    const [fused, fusedRms, plain] = await Promise.all([
      QGemv.create(device, 'q4', 'F32', { ropeStore: { scaled: false } }),
      QGemv.create(device, 'q4', 'F32', { ropeStore: { scaled: false }, rmsNorm: { eps: 1e-5 } }),
      QGemv.create(device, 'q4', 'F32', {}),
    ]);
    expect(plain.ropeStore).toBeNull();
    const [n, k] = [24, 32];
    const w = uploadQuantized(device, randomQuantized(rng, 'q4', n, k, 32, false), { kind: 'q4', n, k, groupSize: 32, scaleDtype: 'F16' }, false);
    const chunked = uploadQuantized(device, randomQuantized(rng, 'q4', n, k, 32, false), { kind: 'q4', n, k, groupSize: 32, scaleDtype: 'F16' }, true);
    const q8 = uploadQuantized(device, randomQuantized(rng, 'q8', n, k, 32, false), { kind: 'q8', n, k, groupSize: 32, scaleDtype: 'F16' }, false);
    const norms = await uploadWeights(device, { g: { shape: [k], values: new Float32Array(k).fill(1) } }, 'F32');
    const g = norms.tensors.get('g')!;
    const [x, q, kc, vc] = [k, 16, 40, 40].map((len) => outputBuffer(device, len, 4));
    const step = new Step(device, 'test.step', { rows: 1, positions: 5 });
    const rope = await Rope.create(device, 'F32', { invFreq: invFreqOf(4) });
    const targets = { shape: { nHeads: 4, nKvHeads: 1, headDim: 4, maxSeq: 5, slots: 1, rows: 1 }, step, qOut: q, kCache: kc, vCache: vc, rope };
    const oneLine = (f: () => unknown, re: RegExp) => expect(f).toThrow(re);
    oneLine(() => fused.prepare('t.fused', w, x, q), /^t\.fused: a ropeStore qgemv runs through prepareRopeStore$/);
    oneLine(() => plain.prepareRopeStore('t.plain', w, x, targets), /^t\.plain: prepareRopeStore needs a qgemv created with ropeStore$/);
    oneLine(() => fused.prepareRopeStore('t.rows', w, x, { ...targets, shape: { ...targets.shape, nHeads: 3 } }), /^t\.rows: qgemv ropeStore's weight has 24 rows, \(3 \+ 2·1\)·4 = 20 are q, k and v$/);
    expect(chunked.chunks.length).toBeGreaterThan(1);
    oneLine(() => fused.prepareRopeStore('t.chunked', chunked, x, targets), /^t\.chunked: qgemv ropeStore takes its \[q; k; v\] in one chunk/);
    oneLine(() => fused.prepareRopeStore('t.two', w, x, { ...targets, shape: { ...targets.shape, rows: 2 } }), /^t\.two: qgemv ropeStore was created with tokens 1, the shape says rows 2$/);
    oneLine(() => fused.prepareRopeStore('t.odd', w, x, { ...targets, shape: { ...targets.shape, headDim: 3 } }), /^t\.odd: qgemv ropeStore needs an even headDim, got 3$/);
    oneLine(() => fused.prepareRopeStore('t.cache', w, x, { ...targets, shape: { ...targets.shape, maxSeq: 50 } }), /^t\.cache: .*kCache holds 160 bytes, needs 800/);
    oneLine(() => fused.prepareRopeStore('t.inplace', w, x, { ...targets, kCache: x }), /kCache is also an input/);
    const small = outputBuffer(device, 8, 4);
    oneLine(() => fused.prepareRopeStore('t.q', w, x, { ...targets, qOut: small }), /^t\.q: qgemv y holds 32 bytes, \(16,\) needs 64$/);
    oneLine(() => fused.prepareRopeStore('t.kind', q8, x, targets), /^t\.kind: qgemv was created for q4 weights, test\.qw is q8$/);
    oneLine(() => fusedRms.prepareRopeStore('t.norm', w, x, targets), /^t\.norm: qgemv was created with rmsNorm, prepare got no norm weight$/);
    oneLine(() => fused.prepareRopeStore('t.norm2', w, x, targets, undefined, g), /^t\.norm2: qgemv was created without rmsNorm, prepare got a norm weight$/);
    const scaledRope = await Rope.create(device, 'F32', { invFreq: invFreqOf(4), attentionFactor: 1.5 });
    oneLine(() => fused.prepareRopeStore('t.scaled', w, x, { ...targets, rope: scaledRope }), /create the op with scaled: true/);
    expect(() => fusedRms.prepareRopeStore('t.ok', w, x, targets, undefined, g).destroy()).not.toThrow();
    for (const buf of [x, q, kc, vc, small]) buf.destroy();
    for (const r of [rope, scaledRope, step]) r.destroy();
    for (const t of [w, chunked, q8]) destroyQuantized(t);
    norms.destroy();
  });

  it("refuses where the device binds too few storage buffers a stage (9 to 11: WebGPU's default is 8)", async () => {
    const { device } = gpu;
    expect(qgemvRopeStoreFits(device, { bias: true, rmsNorm: true }), 'this adapter (lavapipe: 16)').toBe(device.limits.maxStorageBuffersPerShaderStage >= 11);
    const eight = withStorageLimit(device, 8);
    const ten = withStorageLimit(device, 10);
    expect(qgemvRopeStoreFits(eight, { bias: false, rmsNorm: false })).toBe(false);
    expect(qgemvRopeStoreFits(ten, { bias: true, rmsNorm: false })).toBe(true);
    expect(qgemvRopeStoreFits(ten, { bias: true, rmsNorm: true })).toBe(false);
    await expect(QGemv.create(eight, 'q4', 'F32', { ropeStore: { scaled: false } })).rejects.toThrow(/^qgemv: ropeStore binds 9 storage buffers, the device's maxStorageBuffersPerShaderStage is 8$/);
    await expect(QGemv.create(ten, 'q4', 'F32', { ropeStore: { scaled: true }, bias: true, rmsNorm: { eps: 1e-5 } })).rejects.toThrow(/^qgemv: ropeStore binds 11 storage buffers, the device's maxStorageBuffersPerShaderStage is 10$/);
    // the plain qgemv binds at most 7 (5 + bias + norm): no limit to refuse it
    await expect(QGemv.create(eight, 'q4', 'F32', { bias: true, rmsNorm: { eps: 1e-5 } })).resolves.toBeInstanceOf(QGemv);
  });
});

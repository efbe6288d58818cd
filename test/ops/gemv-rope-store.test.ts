// The dense gemvs' ROPE_STORE epilogue, in both kernel families (Gemv, the software one, and
// GemvCoalesced, the hardware-GPU one): the joined [q; k; v] projection of a decode row,
// rotated and stored by the gemv itself. Bit for bit the unfused decode (the same gemv
// without the epilogue into [q | k | v], then qkv_rope_store.wgsl), F32 and F16, both
// reductions, with and without bias and the folded RMSNorm; real models' head shapes (GQA,
// head 64/80/96/128), partial rotary, NoPE, a scaled rope, slots and positions far into the
// cache, K off the vector width and past GemvCoalesced's x cache; the cache rows it does not
// own keep their stale bytes. Gemv batched (tokens > 1, the batched decode pass): rows of
// unrelated slots and positions, fewer run than prepared. GemvCoalesced's 64-lane row
// groups (a wave64 device). The refusals.

import { describe, expect, it } from 'vitest';
import type { GpuTensor } from '../../src/gpu/gpu-tensor.js';
import { pipelineCache, type PipelineSpec } from '../../src/gpu/pipeline-cache.js';
import { Step } from '../../src/gpu/step.js';
import { Gemv, type GemvOptions, gemvVariants } from '../../src/ops/gemv.js';
import { GemvCoalesced, gemvCoalescedVariants } from '../../src/ops/gemv-coalesced.js';
import { type ComputeDtype, runOps } from '../../src/ops/op.js';
import { QkvRopeStore } from '../../src/ops/qkv-rope-store.js';
import { Rope } from '../../src/ops/rope.js';
import { useGpuTestDevice, withSubgroupWidth } from '../support/gpu-helpers.js';
import { asDtype, outputBuffer, randomValues, uploadArray, uploadWeights } from '../support/op-helpers.js';
import { invFreqOf, type RopeStoreCase, ropeStoreOutputs } from '../support/rope-store.js';
import { mulberry32 } from '../support/safetensors-bytes.js';

const gpu = useGpuTestDevice('test.gemv-rope-store');
const rng = mulberry32(0x20e5);

interface Case extends RopeStoreCase {
  /** A batched gemv of `tokens` rows, the step running `rows` (else one row at slot, position). */
  batch?: { tokens: number; rows: { slot: number; position: number }[] };
}

const base = { factor: 1, bias: false, rms: true, slots: 1, slot: 0 } as const;
const CASES: Case[] = [
  // SmolLM2-135M (9 heads, 3 KV, head 64, K 576), Qwen2.5 (bias, head 64), Llama-3.2-1B (K 2048)
  { ...base, nHeads: 9, nKvHeads: 3, headDim: 64, rotary: 64, k: 576, maxSeq: 40, position: 39 },
  { ...base, nHeads: 14, nKvHeads: 2, headDim: 64, rotary: 64, k: 896, bias: true, maxSeq: 30, slots: 3, slot: 2, position: 17 },
  { ...base, nHeads: 32, nKvHeads: 8, headDim: 64, rotary: 64, k: 2048, maxSeq: 20, slots: 2, slot: 1, position: 0 },
  // Phi-4-mini: partial rotary (96 of 128), scaled (longrope)
  { ...base, nHeads: 6, nKvHeads: 2, headDim: 128, rotary: 96, factor: 1.19, k: 300, maxSeq: 20, position: 11 },
  // SmolLM3's NoPE layer; a plain (unfolded) input with bias, head 80
  { ...base, nHeads: 4, nKvHeads: 4, headDim: 96, rotary: null, k: 100, maxSeq: 9, slots: 2, slot: 1, position: 8 },
  { ...base, nHeads: 5, nKvHeads: 1, headDim: 80, rotary: 40, k: 77, bias: true, rms: false, maxSeq: 12, position: 3 },
  // a position far into the context (the angle's range reduction); tiny heads, K below the vector width
  { ...base, nHeads: 2, nKvHeads: 1, headDim: 64, rotary: 64, factor: 0.9, k: 64, maxSeq: 20_000, position: 19_999 },
  { ...base, nHeads: 3, nKvHeads: 1, headDim: 4, rotary: 4, k: 5, bias: true, maxSeq: 7, slots: 2, slot: 0, position: 6 },
  // batched: 4 rows of 3 slots (one slot twice, positions apart); 3 of 5 prepared rows run; 8 rows, bias, scaled
  { ...base, nHeads: 9, nKvHeads: 3, headDim: 64, rotary: 64, k: 576, maxSeq: 40, slots: 3, position: 0, batch: { tokens: 4, rows: [{ slot: 2, position: 39 }, { slot: 0, position: 0 }, { slot: 2, position: 5 }, { slot: 1, position: 17 }] } },
  { ...base, nHeads: 4, nKvHeads: 2, headDim: 96, rotary: 64, k: 100, maxSeq: 12, slots: 4, position: 0, batch: { tokens: 5, rows: [{ slot: 3, position: 11 }, { slot: 1, position: 2 }, { slot: 0, position: 7 }] } },
  { ...base, nHeads: 2, nKvHeads: 1, headDim: 16, rotary: 16, factor: 1.2, k: 37, bias: true, maxSeq: 9, slots: 8, position: 0, batch: { tokens: 8, rows: Array.from({ length: 8 }, (_, i) => ({ slot: 7 - i, position: i })) } },
  // K past GemvCoalesced's x cache in both dtypes (read through L1, not workgroup memory)
  { ...base, nHeads: 2, nKvHeads: 1, headDim: 16, rotary: 16, k: 4104, bias: true, maxSeq: 4, position: 2 },
  ...Array.from({ length: 8 }, (): Case => {
    const headDim = [2, 6, 16, 64, 80, 96, 128][Math.floor(rng() * 7)];
    const nKvHeads = 1 + Math.floor(rng() * 4);
    const [maxSeq, slots] = [1 + Math.floor(rng() * 60), 1 + Math.floor(rng() * 3)];
    return {
      nHeads: nKvHeads * (1 + Math.floor(rng() * 4)),
      nKvHeads,
      headDim,
      rotary: rng() < 0.2 ? null : rng() < 0.3 ? 2 * (1 + Math.floor((rng() * headDim) / 2)) : headDim,
      factor: rng() < 0.3 ? 1.1 : 1,
      k: 1 + Math.floor(rng() * 400),
      bias: rng() < 0.5,
      rms: rng() < 0.7,
      maxSeq,
      slots,
      slot: Math.floor(rng() * slots),
      position: Math.floor(rng() * maxSeq),
    };
  }),
];

const noF16 = (dtype: ComputeDtype): boolean => dtype === 'F16' && !gpu.device.features.has('shader-f16');

/** A kernel family's dense gemv, as the tests make it. */
interface Kernel {
  name: 'gemv' | 'gemv_coalesced';
  create: (device: GPUDevice, dtype: ComputeDtype, options: GemvOptions) => Promise<Gemv | GemvCoalesced>;
  variants: (dtypes: ComputeDtype[], features: ReadonlySet<string>) => { key: string; spec: PipelineSpec }[];
  /** Takes tokens > 1 (the batched decode pass). */
  batch: boolean;
}

const KERNELS: Kernel[] = [
  { name: 'gemv', create: (device, dtype, options) => Gemv.create(device, dtype, options), variants: gemvVariants, batch: true },
  { name: 'gemv_coalesced', create: (device, dtype, options) => GemvCoalesced.create(device, dtype, options), variants: gemvCoalescedVariants, batch: false },
];

/**
 * Runs one case fused (the ROPE_STORE gemv) and unfused (the gemv into [q | k | v], then
 * QkvRopeStore) and checks their bytes equal. gemvDevice: the device the two gemvs are made
 * on (one reporting a wider subgroup), the real one by default.
 */
async function check(kernel: Kernel, dtype: ComputeDtype, subgroups: boolean, c: Case, gemvDevice: GPUDevice = gpu.device): Promise<void> {
  const { device } = gpu;
  const { nHeads, nKvHeads, headDim: d, maxSeq, slots, k } = c;
  const [qDim, kvDim, bytes] = [nHeads * d, nKvHeads * d, dtype === 'F16' ? 2 : 4];
  const n = qDim + 2 * kvDim;
  const what = `${kernel.name} ${dtype} subgroups=${subgroups} ${JSON.stringify(c)}`;
  const tokens = c.batch?.tokens ?? 1;
  const stepRows = c.batch?.rows ?? [{ slot: c.slot, position: c.position }];
  const options = { subgroups, bias: c.bias, ...(tokens > 1 ? { tokens } : {}), ...(c.rms ? { rmsNorm: { eps: 1e-5 } } : {}) };
  const scaled = c.factor !== 1;
  const [fused, plain, glue] = await Promise.all([
    kernel.create(gemvDevice, dtype, { ...options, ropeStore: { scaled } }),
    kernel.create(gemvDevice, dtype, options),
    QkvRopeStore.create(device, dtype, { scaled }),
  ]);
  expect(fused.ropeStore).toEqual({ scaled });
  const weights = await uploadWeights(device, { w: { shape: [n, k], values: asDtype(randomValues(rng, n * k, -0.5, 0.5), dtype) }, ...(c.bias ? { b: { shape: [n], values: asDtype(randomValues(rng, n), dtype) } } : {}) }, dtype);
  const [w, b] = [weights.tensors.get('w')!, weights.tensors.get('b')] as [GpuTensor, GpuTensor | undefined];
  const x = uploadArray(device, asDtype(randomValues(rng, tokens * k, -2, 2), dtype), dtype);
  const rope = c.rotary === null ? null : await Rope.create(device, dtype, { invFreq: invFreqOf(c.rotary), attentionFactor: c.factor });
  const step = new Step(device, 'test.step', { rows: tokens, positions: maxSeq, slots });
  step.write(stepRows.map((r) => r.position), stepRows.map((r) => r.slot));
  const shape = { nHeads, nKvHeads, headDim: d, maxSeq, slots, rows: tokens };
  const outputs = ropeStoreOutputs(device, dtype, shape, rng);
  const qkv = outputBuffer(device, tokens * n, bytes);
  const ops = [
    fused.prepareRopeStore('test.fused', w, x, { shape, step, ...outputs.fused, rope }, b),
    plain.prepare('test.qkv_proj', w, x, qkv, b),
    glue.prepare('test.qkv_rope_store', shape, outputs.glueBuffers(step, qkv, rope)),
  ];
  await runOps(device, ops);
  await outputs.expectSame(what, stepRows);
  for (const op of ops) op.destroy();
  for (const buf of [x, qkv]) buf.destroy();
  outputs.destroy();
  step.destroy();
  rope?.destroy();
  weights.destroy();
}

describe.each(KERNELS)('$name ROPE_STORE', (kernel) => {
  it('every variant compiles with no message: rmsNorm × bias × scaled, no GLU, OUT_F32 or RESIDUAL', async () => {
    const features = gpu.device.features as ReadonlySet<string>;
    const all = kernel.variants(features.has('shader-f16') ? ['F32', 'F16'] : ['F32'], features);
    const variants = all.filter((v) => (v.spec.flags ?? []).includes('ROPE_STORE'));
    expect(variants.length).toBe((features.has('shader-f16') ? 2 : 1) * (features.has('subgroups') ? 2 : 1) * 8); // dtypes × reductions × rmsNorm × bias × scaled
    expect(variants.filter((v) => (v.spec.flags ?? []).some((f) => ['GLU', 'OUT_F32', 'RESIDUAL'].includes(f)))).toEqual([]);
    for (const { key, spec } of variants) {
      const info = await pipelineCache(gpu.device).module(spec.shader, spec.flags).getCompilationInfo();
      expect(info.messages.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`), key).toEqual([]);
    }
  });

  describe.each(['F32', 'F16'] as const)('%s', (dtype) => {
    it.each([true, false])(`subgroups %s: ${CASES.length} cases, the bits of the gemv then qkv_rope_store`, async (subgroups) => {
      if (noF16(dtype)) return expect(noF16(dtype)).toBe(true); // said, not silent: no F16 on this adapter
      if (subgroups && !gpu.device.features.has('subgroups')) return expect(subgroups).toBe(true); // said: no subgroups here
      // a batch needs the subgroup reduction, and Gemv (GemvCoalesced takes one row)
      for (const c of CASES) if (!c.batch || (subgroups && kernel.batch)) await check(kernel, dtype, subgroups, c);
    });
  });

  it('refuses what the epilogue cannot do, each in one line', async () => {
    const { device } = gpu;
    const op = kernel.name;
    await expect(kernel.create(device, 'F32', { ropeStore: { scaled: false }, residual: true })).rejects.toThrow(new RegExp(`^${op}: ropeStore takes no glu, residual or outF32$`));
    await expect(kernel.create(device, 'F32', { ropeStore: { scaled: false }, glu: 'silu' })).rejects.toThrow(new RegExp(`^${op}: ropeStore takes no glu, residual or outF32$`));
    if (device.features.has('shader-f16')) await expect(kernel.create(device, 'F16', { ropeStore: { scaled: false }, outF32: true })).rejects.toThrow(new RegExp(`^${op}: ropeStore takes no glu, residual or outF32$`));
    if (!kernel.batch) await expect(kernel.create(device, 'F32', { ropeStore: { scaled: false }, tokens: 2 })).rejects.toThrow(new RegExp(`^${op}: the ROPE_STORE epilogue is for one token, not 2$`));
    const [fused, plain] = await Promise.all([kernel.create(device, 'F32', { ropeStore: { scaled: false } }), kernel.create(device, 'F32', {})]);
    expect(plain.ropeStore).toBeNull();
    const weights = await uploadWeights(device, { w: { shape: [24, 8], values: randomValues(rng, 24 * 8) } }, 'F32');
    const chunked = await uploadWeights(device, { w: { shape: [24, 8], values: randomValues(rng, 24 * 8) } }, 'F32', 16 * 8 * 4);
    const [x, q, kc, vc] = [40, 16, 40, 40].map((len) => outputBuffer(device, len, 4));
    const step = new Step(device, 'test.step', { rows: 1, positions: 5 });
    const rope = await Rope.create(device, 'F32', { invFreq: invFreqOf(4) });
    const targets = { shape: { nHeads: 4, nKvHeads: 1, headDim: 4, maxSeq: 5, slots: 1, rows: 1 }, step, qOut: q, kCache: kc, vCache: vc, rope };
    const w = weights.tensors.get('w')!;
    expect(() => fused.prepare('test.fused', w, x, q)).toThrow(/^test\.fused: a ropeStore gemv runs through prepareRopeStore$/);
    expect(() => plain.prepareRopeStore('test.plain', w, x, targets)).toThrow(/^test\.plain: prepareRopeStore needs a gemv created with ropeStore$/);
    expect(() => fused.prepareRopeStore('test.rows', w, x, { ...targets, shape: { ...targets.shape, nHeads: 3 } })).toThrow(/^test\.rows: gemv ropeStore's weight has 24 rows, \(3 \+ 2·1\)·4 = 20 are q, k and v$/);
    expect(() => fused.prepareRopeStore('test.chunked', chunked.tensors.get('w')!, x, targets)).toThrow(/^test\.chunked: gemv ropeStore takes its \[q; k; v\] in one chunk/);
    expect(() => fused.prepareRopeStore('test.two', w, x, { ...targets, shape: { ...targets.shape, rows: 2 } })).toThrow(/^test\.two: gemv ropeStore was created with tokens 1, the shape says rows 2$/);
    expect(() => fused.prepareRopeStore('test.odd', w, x, { ...targets, shape: { ...targets.shape, headDim: 3 } })).toThrow(/^test\.odd: gemv ropeStore needs an even headDim, got 3$/);
    expect(() => fused.prepareRopeStore('test.cache', w, x, { ...targets, shape: { ...targets.shape, maxSeq: 50 } })).toThrow(/^test\.cache: .*kCache holds 160 bytes, needs 800/);
    expect(() => fused.prepareRopeStore('test.inplace', w, x, { ...targets, kCache: x })).toThrow(/kCache is also an input/);
    const scaledRope = await Rope.create(device, 'F32', { invFreq: invFreqOf(4), attentionFactor: 1.5 });
    expect(() => fused.prepareRopeStore('test.scaled', w, x, { ...targets, rope: scaledRope })).toThrow(/create the op with scaled: true/);
    for (const buf of [x, q, kc, vc]) buf.destroy();
    for (const r of [rope, scaledRope, step]) r.destroy();
    weights.destroy();
    chunked.destroy();
  });
});

describe.each(['F32', 'F16'] as const)('gemv_coalesced ROPE_STORE %s in 64-lane row groups (a wave64 device)', (dtype) => {
  it('both reductions: the same bits', async () => {
    if (noF16(dtype)) return expect(noF16(dtype)).toBe(true); // said: no F16 on this adapter
    const wide = withSubgroupWidth(gpu.device, 64);
    for (const subgroups of gpu.device.features.has('subgroups') ? [true, false] : [false]) {
      for (const c of [CASES[1], CASES[3], CASES[7]]) await check(KERNELS[1], dtype, subgroups, c, wide);
    }
  });
});

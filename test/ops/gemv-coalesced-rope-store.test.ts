// gemv_coalesced's ROPE_STORE epilogue (the hardware-GPU gemv; gemv-rope-store.test.ts is
// the software one's): the joined [q; k; v] projection of one decode row, rotated and stored
// by the gemv itself. Bit for bit the unfused decode (the same GemvCoalesced without the
// epilogue into [q | k | v], then qkv_rope_store.wgsl), F32 and F16, both reductions, with
// and without bias and the folded RMSNorm; real models' head shapes (GQA, head 64/80/96/128),
// partial rotary, NoPE, a scaled rope, slots and positions far into the cache, K off the
// vector width and past the x cache; 64-lane row groups (a wave64 device); the cache rows it
// does not own keep their stale bytes. The refusals.

import { describe, expect, it } from 'vitest';
import type { GpuTensor } from '../../src/gpu/gpu-tensor.js';
import { pipelineCache } from '../../src/gpu/pipeline-cache.js';
import { readBuffer } from '../../src/gpu/read-back.js';
import { Step } from '../../src/gpu/step.js';
import { parseRope, ropeTables } from '../../src/model/rope-scaling.js';
import { GemvCoalesced, gemvCoalescedVariants } from '../../src/ops/gemv-coalesced.js';
import { type ComputeDtype, runOps } from '../../src/ops/op.js';
import { QkvRopeStore } from '../../src/ops/qkv-rope-store.js';
import { Rope } from '../../src/ops/rope.js';
import { useGpuTestDevice } from '../support/gpu-helpers.js';
import { asDtype, decode, encode, outputBuffer, randomValues, uploadArray, uploadWeights } from '../support/op-helpers.js';
import { mulberry32 } from '../support/safetensors-bytes.js';

const gpu = useGpuTestDevice('test.gemv-coalesced-rope-store');
const rng = mulberry32(0xc0a1);

interface Case {
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  /** Rotated elements per head, or null: a NoPE layer. */
  rotary: number | null;
  /** The rope's attention factor (1: unscaled). */
  factor: number;
  /** x's width. */
  k: number;
  bias: boolean;
  /** x is the un-normed residual stream (the folded norm in the kernel). */
  rms: boolean;
  maxSeq: number;
  slots: number;
  slot: number;
  position: number;
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
  // K past the x cache in both dtypes (read through L1, not workgroup memory)
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
const invFreqOf = (rotary: number): Float32Array => ropeTables(parseRope({ head_dim: rotary, rope_theta: rotary % 64 === 0 ? 500_000 : 10_000 }).rope).invFreq;

async function readBytes(buffer: GPUBuffer, bytes: number): Promise<Uint8Array> {
  return readBuffer(gpu.device, buffer, 0, Math.ceil(bytes / 4) * 4).then((b) => b.subarray(0, bytes));
}

/** Index and values of the first element where two byte strings of `dtype` differ, or null. */
function firstDiff(got: Uint8Array, want: Uint8Array, dtype: ComputeDtype): string | null {
  if (Buffer.from(got.buffer, got.byteOffset, got.byteLength).equals(want)) return null;
  const size = dtype === 'F16' ? 2 : 4;
  for (let i = 0; i < want.length; i += size) {
    if (!Buffer.from(got.subarray(i, i + size)).equals(want.subarray(i, i + size))) return `element ${i / size}: got ${decode(got.subarray(i, i + size), dtype)[0]}, unfused ${decode(want.subarray(i, i + size), dtype)[0]}`;
  }
  return null;
}

/** The device with its adapter reporting subgroups up to `width` wide (what the launcher sizes row groups by), as gemv-coalesced.test.ts's. */
function withSubgroupWidth(device: GPUDevice, width: number): GPUDevice {
  const adapterInfo = { subgroupMinSize: device.adapterInfo.subgroupMinSize, subgroupMaxSize: width };
  return new Proxy(device, {
    get(target, prop) {
      if (prop === 'adapterInfo') return adapterInfo;
      const value = Reflect.get(target, prop, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

/**
 * Runs one case fused (the ROPE_STORE gemv) and unfused (the gemv into [q | k | v], then
 * QkvRopeStore) and checks their bytes equal. gemvDevice: the device the two gemvs are made
 * on (a wider subgroup width's), the real one by default.
 */
async function check(dtype: ComputeDtype, subgroups: boolean, c: Case, gemvDevice: GPUDevice = gpu.device): Promise<void> {
  const { device } = gpu;
  const { nHeads, nKvHeads, headDim: d, maxSeq, slots, k } = c;
  const [qDim, kvDim, bytes] = [nHeads * d, nKvHeads * d, dtype === 'F16' ? 2 : 4];
  const n = qDim + 2 * kvDim;
  const what = `${dtype} subgroups=${subgroups} ${JSON.stringify(c)}`;
  const options = { subgroups, bias: c.bias, ...(c.rms ? { rmsNorm: { eps: 1e-5 } } : {}) };
  const scaled = c.factor !== 1;
  const [fused, plain, glue] = await Promise.all([
    GemvCoalesced.create(gemvDevice, dtype, { ...options, ropeStore: { scaled } }),
    GemvCoalesced.create(gemvDevice, dtype, options),
    QkvRopeStore.create(device, dtype, { scaled }),
  ]);
  expect(fused.ropeStore).toEqual({ scaled });
  const weights = await uploadWeights(device, { w: { shape: [n, k], values: asDtype(randomValues(rng, n * k, -0.5, 0.5), dtype) }, ...(c.bias ? { b: { shape: [n], values: asDtype(randomValues(rng, n), dtype) } } : {}) }, dtype);
  const [w, b] = [weights.tensors.get('w')!, weights.tensors.get('b')] as [GpuTensor, GpuTensor | undefined];
  const x = uploadArray(device, asDtype(randomValues(rng, k, -2, 2), dtype), dtype);
  const rope = c.rotary === null ? null : await Rope.create(device, dtype, { invFreq: invFreqOf(c.rotary), attentionFactor: c.factor });
  const step = new Step(device, 'test.step', { rows: 1, positions: maxSeq, slots });
  step.writeRange(c.position, 1, c.slot);
  const stale = asDtype(randomValues(rng, slots * kvDim * maxSeq, -4, 4), dtype); // what a cache row holds until written
  const qStale = asDtype(randomValues(rng, qDim), dtype);
  const [kCache, vCache, kRef, vRef] = [0, 1, 2, 3].map(() => uploadArray(device, stale, dtype));
  const [qOut, qRef] = [0, 1].map(() => uploadArray(device, qStale, dtype));
  const qkv = outputBuffer(device, n, bytes);
  const shape = { nHeads, nKvHeads, headDim: d, maxSeq, slots, rows: 1 };
  const view = (offset: number) => ({ buffer: qkv, offset, stride: n });
  const ops = [
    fused.prepareRopeStore('test.fused', w, x, { shape, step, qOut, kCache, vCache, rope }, b),
    plain.prepare('test.qkv_proj', w, x, qkv, b),
    glue.prepare('test.qkv_rope_store', shape, { step, q: view(0), k: view(qDim), v: view(qDim + kvDim), qOut: qRef, kCache: kRef, vCache: vRef, rope }),
  ];
  await runOps(device, ops);
  const cacheBytes = slots * kvDim * maxSeq * bytes;
  const [qGot, qWant, kGot, kWant, vGot, vWant] = await Promise.all([
    readBytes(qOut, qDim * bytes),
    readBytes(qRef, qDim * bytes),
    ...[kCache, kRef, vCache, vRef].map((buf) => readBytes(buf, cacheBytes)),
  ]);
  expect(firstDiff(qGot, qWant, dtype), `q ${what}`).toBeNull();
  expect(firstDiff(kGot, kWant, dtype), `k cache ${what}`).toBeNull();
  expect(firstDiff(vGot, vWant, dtype), `v cache ${what}`).toBeNull();
  // and the rows were written at all: the row's own cache entries changed, the others did not
  const at = (c.slot * nKvHeads * maxSeq + c.position) * d * bytes; // KV head 0's row
  const staleBytes = encode(stale, dtype);
  expect(Buffer.from(vGot.subarray(at, at + d * bytes)).equals(staleBytes.subarray(at, at + d * bytes)), `v row written ${what}`).toBe(false);
  for (const op of ops) op.destroy();
  for (const buf of [x, qkv, kCache, vCache, kRef, vRef, qOut, qRef]) buf.destroy();
  step.destroy();
  rope?.destroy();
  weights.destroy();
}

it('every ROPE_STORE variant compiles with no message', async () => {
  const features = gpu.device.features as ReadonlySet<string>;
  const variants = gemvCoalescedVariants(features.has('shader-f16') ? ['F32', 'F16'] : ['F32'], features).filter((v) => (v.spec.flags ?? []).includes('ROPE_STORE'));
  expect(variants.length).toBe((features.has('shader-f16') ? 2 : 1) * (features.has('subgroups') ? 2 : 1) * 8); // dtypes × reductions × rmsNorm × bias × scaled
  expect(variants.filter((v) => (v.spec.flags ?? []).some((f) => ['GLU', 'OUT_F32', 'RESIDUAL'].includes(f)))).toEqual([]);
  for (const { key, spec } of variants) {
    const info = await pipelineCache(gpu.device).module(spec.shader, spec.flags).getCompilationInfo();
    expect(info.messages.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`), key).toEqual([]);
  }
});

describe.each(['F32', 'F16'] as const)('gemv_coalesced ROPE_STORE %s', (dtype) => {
  it.each([true, false])(`subgroups %s: ${CASES.length} cases, the bits of the gemv then qkv_rope_store`, async (subgroups) => {
    if (noF16(dtype)) return expect(noF16(dtype)).toBe(true); // said, not silent: no F16 on this adapter
    if (subgroups && !gpu.device.features.has('subgroups')) return expect(subgroups).toBe(true); // said: no subgroups here
    for (const c of CASES) await check(dtype, subgroups, c);
  });

  it('64-lane row groups (a wave64 device), both reductions: the same bits', async () => {
    if (noF16(dtype)) return expect(noF16(dtype)).toBe(true); // said: no F16 on this adapter
    const wide = withSubgroupWidth(gpu.device, 64);
    for (const subgroups of gpu.device.features.has('subgroups') ? [true, false] : [false]) {
      for (const c of [CASES[1], CASES[3], CASES[7]]) await check(dtype, subgroups, c, wide);
    }
  });
});

it('refuses what the epilogue cannot do, each in one line', async () => {
  const { device } = gpu;
  await expect(GemvCoalesced.create(device, 'F32', { ropeStore: { scaled: false }, residual: true })).rejects.toThrow(/^gemv_coalesced: ropeStore takes no glu, residual or outF32$/);
  await expect(GemvCoalesced.create(device, 'F32', { ropeStore: { scaled: false }, glu: 'silu' })).rejects.toThrow(/^gemv_coalesced: ropeStore takes no glu, residual or outF32$/);
  if (device.features.has('shader-f16')) await expect(GemvCoalesced.create(device, 'F16', { ropeStore: { scaled: false }, outF32: true })).rejects.toThrow(/^gemv_coalesced: ropeStore takes no glu, residual or outF32$/);
  await expect(GemvCoalesced.create(device, 'F32', { ropeStore: { scaled: false }, tokens: 2 })).rejects.toThrow(/^gemv_coalesced: the ROPE_STORE epilogue is for one token, not 2$/);
  const [fused, plain] = await Promise.all([GemvCoalesced.create(device, 'F32', { ropeStore: { scaled: false } }), GemvCoalesced.create(device, 'F32')]);
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

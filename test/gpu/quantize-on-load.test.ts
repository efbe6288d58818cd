// loadTensors with `quantize` (src/gpu/quantize-on-load.ts): the selected tensors land in
// GpuTensors.quantized bit-exact with quantizeReference over the values a dense load of the
// same checkpoint holds (read back), whatever their storage dtype, chunking or staging
// pieces; the others are byte-identical to the dense load; what cannot be quantized stays
// dense with a note; device bytes shrink by the expected amount and the peak never holds a
// selected tensor dense; a failure mid-load frees everything.
import { describe, expect, it } from 'vitest';
import { openCheckpointSource } from '../../src/checkpoint/open.js';
import { SluiceError } from '../../src/errors.js';
import type { Dtype } from '../../src/formats/dtypes.js';
import { serializeSafetensors } from '../../src/formats/safetensors/writer.js';
import { type LoadOptions, type LoadProgress, loadTensors } from '../../src/gpu/load-tensors.js';
import { f16BitsRne, type QuantKind, type QuantizedTensor, rowBytes } from '../../src/gpu/quantized-tensor.js';
import { readBuffer, readTensor } from '../../src/gpu/read-back.js';
import { MemorySource } from '../../src/io/memory-source.js';
import { quantizeReference } from '../../src/ops/quantize.js';
import { f32ToF16Bits } from '../support/dtype-reference.js';
import { trackPeak } from '../support/device-peak.js';
import { type DeviceSpy, spyDevice, useGpuTestDevice } from '../support/gpu-helpers.js';
import { decode, randomValues } from '../support/op-helpers.js';
import { mulberry32, randomBytes, type TensorSpec } from '../support/safetensors-bytes.js';

const gpu = useGpuTestDevice('test.quantize-on-load');

const rng = mulberry32(0x9a17);
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** Finite weights: N(ish) values per row at a row-dependent scale, with an all-zero, a constant and an all-positive group. */
function weights(n: number, k: number): Float32Array {
  const v = randomValues(rng, n * k);
  for (let r = 0; r < n; r++) for (let i = 0; i < k; i++) v[r * k + i] *= [1, 1e-3, 40, 0.2][r % 4];
  v.fill(0, 0, 32);
  if (n * k >= 96) v.fill(0.375, 32, 64).forEach((x, i, a) => i >= 64 && i < 96 && (a[i] = Math.abs(x) + 0.01));
  return v;
}

function spec(name: string, dtype: Dtype, shape: number[]): TensorSpec {
  const v = weights(shape[0], shape.slice(1).reduce((a, b) => a * b, 1));
  if (dtype === 'F32') return { name, dtype, shape, data: new Uint8Array(v.buffer) };
  const out = new Uint16Array(v.length);
  v.forEach((x, i) => {
    f32[0] = x;
    out[i] = dtype === 'F16' ? f32ToF16Bits(u32[0]) : u32[0] >>> 16; // BF16: truncated, any finite value will do
  });
  return { name, dtype, shape, data: new Uint8Array(out.buffer) };
}

const TENSORS = [
  spec('a.bf16', 'BF16', [40, 64]),
  spec('b.f16', 'F16', [24, 96]),
  spec('c.f32', 'F32', [16, 32]),
  spec('big', 'BF16', [96, 64]), // many pieces and (with SMALL) many quantized chunks
  spec('odd', 'F16', [8, 48]), // K not a multiple of 32: stays dense
  spec('norm', 'F32', [64]), // 1-D: stays dense
  spec('emb', 'BF16', [16, 64]), // not selected
  { name: 'ids', dtype: 'I32', shape: [17], data: randomBytes(rng, 68) },
] satisfies TensorSpec[];
const QUANTIZED = ['a.bf16', 'b.f16', 'c.f32', 'big'];
const select = (t: { name: string }) => t.name !== 'emb' && t.name !== 'ids';
// 1 KiB slots and chunks: `big` streams in 8-row pieces into 15-row (q8) or 31-row (q4) chunks.
const SMALL = { maxChunkBytes: 1024, stagingBytes: 2048, stagingSlots: 2 } as const;

const open = async () => openCheckpointSource(new MemorySource(await serializeSafetensors(TENSORS), 'model.safetensors'));

/** A quantized tensor's data words, scale bits and zero bytes, chunks concatenated. */
async function readQuantized(t: QuantizedTensor) {
  const per = rowBytes(t.kind, t.shape[1], t.groupSize, t.scaleDtype, t.hasZeros);
  const part = async (b: GPUBuffer | undefined, bytes: number) => (b ? (await readBuffer(gpu.device, b)).subarray(0, bytes) : new Uint8Array());
  const cat = (xs: Uint8Array[]) => Buffer.concat(xs);
  const data = [], scales = [], zeros = [];
  for (const c of t.chunks) {
    data.push(await part(c.data, c.rows * per.data));
    scales.push(await part(c.scales, c.rows * per.scales));
    zeros.push(await part(c.zeros, c.rows * per.zeros));
  }
  return { data: cat(data), scales: cat(scales), zeros: cat(zeros) };
}

/** What readQuantized must give: quantizeReference over the dense values, in the layout's bytes. */
function expectedQuantized(t: QuantizedTensor, values: Float32Array) {
  const ref = quantizeReference(t.kind, values, t.shape, t.groupSize);
  const scales = t.scaleDtype === 'F16' ? new Uint16Array(ref.scales.length).map((_, i) => f16BitsRne(ref.scales[i])) : ref.scales;
  return {
    data: Buffer.from(ref.data.buffer),
    scales: Buffer.from(scales.buffer),
    zeros: ref.zeros ? Buffer.from(Uint8Array.from(ref.zeros)) : Buffer.alloc(0),
  };
}

describe.each([
  ['q8', 'auto', true],
  ['q4', 'auto', true],
  ['q4', 'f32', true],
  ['q8', 'auto', false], // a device without shader-f16: F32 compute, F32 scales
] as const)('quantize %s, dtype %s, shader-f16 %s', (kind: QuantKind, dtype, f16) => {
  it('quantized tensors match quantizeReference over the dense load; the rest is the dense load; bytes and peak as designed', async () => {
    const checkpoint = await open();
    const spy = spyDevice(gpu.device, f16 ? {} : { features: new Set(['timestamp-query']) });
    const options: LoadOptions = { ...SMALL, dtype };
    const dense = await loadTensors(checkpoint, spy.device, options);
    const { device, state } = trackPeak(spy);
    const progress: LoadProgress[] = [];
    const loaded = await loadTensors(checkpoint, device, { ...options, quantize: { kind, select }, onProgress: (p) => progress.push(p) });
    try {
      expect(loaded.computeDtype).toBe(dense.computeDtype);
      expect([...loaded.quantized.keys()].sort()).toEqual([...QUANTIZED].sort());
      expect([...loaded.keys()].sort()).toEqual(['emb', 'ids', 'norm', 'odd']);
      expect(loaded.notes).toEqual([
        expect.stringMatching(/^norm: kept dense F(16|32) \(shape \[64\] is not a 2-D/),
        expect.stringMatching(/^odd: kept dense F(16|32) \(K = 48 is not a multiple of the group size 32\)$/),
      ]);
      expect(loaded.quantized.get('big')!.chunks.length).toBe(kind === 'q8' ? 7 : 4);
      // Progress: source bytes, every tensor, ending in 'done'.
      expect(progress.at(-1)).toMatchObject({ phase: 'done', bytesDone: loaded.sourceBytes, tensorsDone: TENSORS.length });

      for (const [name, t] of loaded) expect(Buffer.from(await readTensor(gpu.device, t)).equals(await readTensor(gpu.device, dense.get(name)!)), name).toBe(true);
      let saved = 0;
      for (const [name, t] of loaded.quantized) {
        const d = dense.get(name)!;
        expect({ kind: t.kind, shape: t.shape, groupSize: t.groupSize, scaleDtype: t.scaleDtype }).toEqual({ kind, shape: d.shape, groupSize: 32, scaleDtype: f16 ? 'F16' : 'F32' });
        const values = decode(await readTensor(gpu.device, d), dense.computeDtype as 'F16' | 'F32');
        const got = await readQuantized(t);
        const want = expectedQuantized(t, values);
        for (const part of ['data', 'scales', 'zeros'] as const) expect(got[part].equals(want[part]), `${name}.${part}`).toBe(true);
        saved += d.chunks.reduce((s, c) => s + c.buffer.size, 0) - t.chunks.reduce((s, c) => s + c.data.size + c.scales.size + (c.zeros?.size ?? 0), 0);
      }
      expect(saved).toBeGreaterThan(0);
      expect(loaded.deviceBytes).toBe(dense.deviceBytes - saved);
      expect(loaded.denseBytes + loaded.quantizedBytes).toBe(loaded.deviceBytes);
      expect(loaded.denseBytes).toBe(['emb', 'ids', 'norm', 'odd'].reduce((s, n) => s + dense.get(n)!.chunks.reduce((a, c) => a + c.buffer.size, 0), 0));
      // Peak: what stays + the load's scratch (+ a few Params uniforms), never a dense copy of `big`.
      expect(state.live).toBe(loaded.deviceBytes);
      expect(state.peak).toBeLessThanOrEqual(loaded.deviceBytes + loaded.scratchBytes + 256);
      expect(loaded.scratchBytes).toBeLessThan(dense.get('big')!.byteLength);
    } finally {
      loaded.destroy();
      dense.destroy();
      await gpu.device.queue.onSubmittedWorkDone();
      expect(spy.live()).toEqual([]);
      await checkpoint.close();
    }
  });
});

describe('failures', () => {
  async function expectAllFreed(spy: DeviceSpy) {
    await gpu.device.queue.onSubmittedWorkDone();
    const live = spy.live();
    for (const b of spy.created) if (!spy.destroyed.has(b)) b.destroy();
    expect(live).toEqual([]);
  }

  it('an abort after some tensors are quantized → ABORTED, every buffer freed', async () => {
    const checkpoint = await open();
    const spy = spyDevice(gpu.device);
    const controller = new AbortController();
    const onProgress = (p: LoadProgress) => {
      if (p.phase === 'upload' && p.tensor === 'big' && p.bytesDone > 0 && !controller.signal.aborted) controller.abort(new Error('stop'));
    };
    const e = await loadTensors(checkpoint, spy.device, { ...SMALL, quantize: { kind: 'q4', select }, signal: controller.signal, onProgress }).catch((e: unknown) => e);
    expect(e).toBeInstanceOf(SluiceError);
    expect((e as SluiceError).code).toBe('ABORTED');
    expect(spy.created.some((b) => b.label.includes('big#0.data'))).toBe(true);
    await expectAllFreed(spy);
    await checkpoint.close();
  });

  it('out of memory allocating a quantized tensor → OUT_OF_MEMORY naming it, every buffer freed', async () => {
    const checkpoint = await open();
    const spy: DeviceSpy = spyDevice(gpu.device, {
      // Allocation is create-then-pop, one tensor at a time: the first pops after big's buffers exist are its own.
      popErrorScope: (real) => (spy.created.some((b) => b.label === 'weights.big#0.data') ? { message: 'fake OOM' } : real),
    });
    const e = await loadTensors(checkpoint, spy.device, { ...SMALL, quantize: { kind: 'q8', select } }).catch((e: unknown) => e);
    expect(e).toBeInstanceOf(SluiceError);
    expect([(e as SluiceError).code, (e as Error).message]).toEqual(['OUT_OF_MEMORY', expect.stringContaining('tensor "big"')]);
    await expectAllFreed(spy);
    await checkpoint.close();
  });

  it('a read failing mid-tensor → the error, every buffer freed', async () => {
    const bytes = await serializeSafetensors(TENSORS);
    const source = new MemorySource(bytes, 'model.safetensors');
    const checkpoint = await openCheckpointSource(source);
    let reads = 0;
    const read = source.read.bind(source);
    source.read = (offset, length, into) => (++reads === 12 ? Promise.reject(new Error('disk gone')) : read(offset, length, into));
    const spy = spyDevice(gpu.device);
    await expect(loadTensors(checkpoint, spy.device, { ...SMALL, quantize: { kind: 'q4', select } })).rejects.toThrow('disk gone');
    await expectAllFreed(spy);
    await checkpoint.close();
  });

  it('a group size that is not a multiple of 8 → USAGE before anything is allocated', async () => {
    const checkpoint = await open();
    const spy = spyDevice(gpu.device);
    const e = await loadTensors(checkpoint, spy.device, { quantize: { kind: 'q8', select, groupSize: 12 } }).catch((e: unknown) => e);
    expect((e as SluiceError).code).toBe('USAGE');
    expect(spy.created).toEqual([]);
    await checkpoint.close();
  });
});

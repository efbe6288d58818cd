// quantize: dense F32/F16 rows → q8/q4 on the GPU, bit for bit equal to quantizeReference
// (packed words, scales, zero bytes), on seeded (N, K) with K a multiple of the group size,
// chunked sources and destinations, f16 and f32 scale storage, all-zero and constant groups;
// and the dequantized weights within the scheme's error bound of the input.

import { expect, it } from 'vitest';
import { alignUp } from '../../src/gpu/gpu-tensor.js';
import { createQuantizedTensor, dequantizeHost, destroyQuantized, ELEMENTS_PER_WORD, f16BitsRne, type QuantKind, type QuantizedTensor, type ScaleDtype } from '../../src/gpu/quantized-tensor.js';
import { readBuffer } from '../../src/gpu/read-back.js';
import { Quantize, quantizeReference } from '../../src/ops/quantize.js';
import { runOps, type ComputeDtype } from '../../src/ops/op.js';
import { useGpuTestDevice } from '../support/gpu-helpers.js';
import { f32ToF16Bits } from '../support/dtype-reference.js';
import { asDtype, randomValues, uploadWeights } from '../support/op-helpers.js';
import { mulberry32 } from '../support/safetensors-bytes.js';

const gpu = useGpuTestDevice('test.quantize');
const rng = mulberry32(0x9a4);

// Named: one group, one row, odd group counts per row (f16 scale pairs and zero bytes
// straddle rows), then seeded shapes; K = 32·groups.
const SHAPES: [number, number][] = [
  [1, 32],
  [3, 32],
  [5, 96],
  [7, 160],
  [2, 512],
  [33, 64],
  ...Array.from({ length: 10 }, (): [number, number] => [1 + Math.floor(rng() * 40), 32 * (1 + Math.floor(rng() * 16))]),
];

/** Seeded weights with a few all-zero groups, a constant group and a wide-range row. */
function weights(n: number, k: number): Float32Array<ArrayBuffer> {
  const v = randomValues(rng, n * k, -0.5, 0.5);
  const groups = (n * k) / 32;
  for (let e = 0; e < groups; e += 5) v.fill(0, e * 32, e * 32 + 32);
  if (groups > 3) v.fill(0.25, 64, 96);
  for (let i = 0; i < Math.min(k, 32); i++) v[i] *= 40;
  return v;
}

async function bytesOf(buffer: GPUBuffer, bytes: number): Promise<Uint8Array> {
  return readBuffer(gpu.device, buffer, 0, alignUp(bytes, 4));
}

/** The tensor's buffers read back in one host layout: words, scale values, zero bytes. */
async function readBack(t: QuantizedTensor): Promise<{ data: Uint32Array; scales: Float32Array; zeros?: Int32Array }> {
  const [n, k] = t.shape;
  const groups = k / t.groupSize;
  const data = new Uint32Array((n * k) / ELEMENTS_PER_WORD[t.kind]);
  const scales = new Float32Array(n * groups);
  const zeros = t.hasZeros ? new Int32Array(n * groups) : undefined;
  for (const c of t.chunks) {
    const words = (c.rows * k) / ELEMENTS_PER_WORD[t.kind];
    const d = await bytesOf(c.data, words * 4);
    data.set(new Uint32Array(d.buffer, d.byteOffset, words), (c.firstRow * k) / ELEMENTS_PER_WORD[t.kind]);
    const count = c.rows * groups;
    const s = await bytesOf(c.scales, count * (t.scaleDtype === 'F16' ? 2 : 4));
    const view = new DataView(s.buffer, s.byteOffset);
    for (let i = 0; i < count; i++) {
      const bits = t.scaleDtype === 'F16' ? view.getUint16(2 * i, true) : 0;
      scales[c.firstRow * groups + i] = t.scaleDtype === 'F16' ? f16(bits) : view.getFloat32(4 * i, true);
    }
    if (zeros && c.zeros) {
      const z = await bytesOf(c.zeros, count);
      for (let i = 0; i < count; i++) zeros[c.firstRow * groups + i] = t.kind === 'q8' ? (z[i] << 24) >> 24 : z[i];
    }
  }
  return { data, scales, zeros };
}

const f16 = (bits: number) => ((bits >>> 10) === 0 ? (bits & 0x3ff) * 2 ** -24 : (1 + (bits & 0x3ff) / 1024) * 2 ** ((bits >>> 10) - 15));

it('f16BitsRne rounds like the f16 conversion the uploader is tested against', () => {
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  for (let i = 0; i < 20000; i++) {
    f[0] = 2 ** (-28 + rng() * 44) * rng();
    expect(f16BitsRne(f[0]), `${f[0]}`).toBe(Math.min(f32ToF16Bits(u[0]), 0x7bff));
  }
});

for (const kind of ['q8', 'q4'] as QuantKind[]) {
  it(`${kind}: ${SHAPES.length} seeded shapes, F32 and F16 rows, chunked, f16/f32 scales: bit-exact with the reference`, async () => {
    const device = gpu.device;
    const srcDtypes: ComputeDtype[] = device.features.has('shader-f16') ? ['F32', 'F16'] : ['F32'];
    const ops = new Map<ComputeDtype, Quantize>();
    for (const [i, [n, k]] of SHAPES.entries()) {
      const dtype = srcDtypes[i % srcDtypes.length];
      const scaleDtype: ScaleDtype = i % 4 < 2 ? 'F16' : 'F32';
      const chunkSrc = i % 3 === 1;
      const chunkDst = i % 3 === 2 || i % 5 === 0;
      if (!ops.has(dtype)) ops.set(dtype, await Quantize.create(device, kind, dtype));
      const values = weights(n, k);
      const srcBytesPerRow = k * (dtype === 'F16' ? 2 : 4);
      const src = await uploadWeights(device, { w: { shape: [n, k], values } }, dtype, chunkSrc ? alignUp(Math.ceil(n / 3) * srcBytesPerRow, 16) : undefined);
      const dst = createQuantizedTensor(device, 'test.q', { kind, shape: [n, k], scaleDtype, hasZeros: kind === 'q4' }, chunkDst ? 16 + Math.ceil(n / 2) * (k / ELEMENTS_PER_WORD[kind]) * 4 : undefined);
      const op = ops.get(dtype)!.prepare(`test.quantize.${n}x${k}`, src.tensors.get('w')!, dst);
      await runOps(device, [op]);
      const got = await readBack(dst);
      const want = quantizeReference(kind, asDtype(values, dtype), [n, k]);
      const what = `${kind} N=${n} K=${k} ${dtype} scales ${scaleDtype} chunks ${src.tensors.get('w')!.chunks.length}→${dst.chunks.length}`;
      if (chunkDst && n > 2) expect(dst.chunks.length, what).toBeGreaterThan(1);
      const firstBad = (a: ArrayLike<number>, b: ArrayLike<number>) => Array.from(a).findIndex((v, j) => v !== b[j]);
      expect(firstBad(got.scales, want.scales), `${what} scales`).toBe(-1);
      expect(firstBad(got.data, want.data), `${what} data`).toBe(-1);
      if (kind === 'q4') expect(firstBad(got.zeros!, want.zeros!), `${what} zeros`).toBe(-1);
      // The scheme's bound: |w − ŵ| ≤ scale/2 inside the range (plus f16 rounding of the scale).
      const deq = dequantizeHost(kind, [n, k], 32, want);
      const x = asDtype(values, dtype);
      const over = Array.from(deq).findIndex((d, j) => !(Math.abs(d - x[j]) <= want.scales[Math.floor(j / 32)] * 0.51 + Math.abs(x[j]) * 2 ** -9 + 1e-7));
      expect(over, `${what}: first weight past scale/2`).toBe(-1);
      op.destroy();
      src.destroy();
      destroyQuantized(dst);
    }
  });
}

it('refuses K that is not a multiple of the group size, and mismatched destinations', async () => {
  expect(() => createQuantizedTensor(gpu.device, 'w', { kind: 'q4', shape: [4, 40], scaleDtype: 'F32', hasZeros: true })).toThrow(/K = 40 is not a multiple of the group size 32/);
  expect(() => quantizeReference('q8', new Float32Array(40), [1, 40])).toThrow(/not a multiple of the group size 32/);
  const op = await Quantize.create(gpu.device, 'q8', 'F32');
  const dst = createQuantizedTensor(gpu.device, 'w', { kind: 'q8', shape: [4, 32], scaleDtype: 'F32', hasZeros: true });
  const src = gpu.device.createBuffer({ size: 4 * 32 * 4, usage: GPUBufferUsage.STORAGE });
  expect(() => op.prepareRows('t', src, 0, 4, dst)).toThrow(/q8 has no zero points; w was made with/);
  destroyQuantized(dst);
  src.destroy();
});

// quantize: dense F32/F16 rows → q8/q4 on the GPU, bit for bit equal to quantizeReference
// (packed words, scales, zero bytes), on seeded (N, K) with K a multiple of the group size,
// chunked sources and destinations, f16 and f32 scale storage, all-zero and constant groups;
// and the dequantized weights within the scheme's error bound of the input.

import { expect, it } from 'vitest';
import { alignUp } from '../../src/gpu/gpu-tensor.js';
import { createQuantizedTensor, dequantizeHost, destroyQuantized, ELEMENTS_PER_WORD, f16BitsRne, type QuantKind, type QuantizedTensor, type ScaleDtype, unpackElement } from '../../src/gpu/quantized-tensor.js';
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

// Group sizes other than quantize-on-load's 32: below it (a group is fewer 8-element steps than
// the kernel keeps in registers), above it (steps past those are read again), not a power of
// two; seeded shapes with odd group counts per row, some chunked.
const GROUP_CASES: [number, number, number][] = [
  [3, 8 * 5, 8],
  [5, 16 * 3, 16],
  [4, 24 * 7, 24],
  [7, 64 * 3, 64],
  [2, 96 * 2, 96],
  [3, 128 * 5, 128],
  [2, 256, 256],
  ...Array.from({ length: 3 }, (): [number, number, number] => {
    const g = 8 * (1 + Math.floor(rng() * 20));
    return [1 + Math.floor(rng() * 9), g * (1 + Math.floor(rng() * 5)), g];
  }),
];

it(`q8 and q4 with group sizes 8 to 256 (${GROUP_CASES.length} cases): bit-exact with the reference`, async () => {
  const device = gpu.device;
  const srcDtypes: ComputeDtype[] = device.features.has('shader-f16') ? ['F32', 'F16'] : ['F32'];
  for (const kind of ['q8', 'q4'] as QuantKind[]) {
    for (const [i, [n, k, g]] of GROUP_CASES.entries()) {
      const dtype = srcDtypes[i % srcDtypes.length];
      const scaleDtype: ScaleDtype = i % 3 === 0 ? 'F32' : 'F16';
      const values = randomValues(rng, n * k, -2, 2);
      for (let e = 0; e < (n * k) / g; e += 4) values.fill(0, e * g, e * g + g); // all-zero groups
      const src = await uploadWeights(device, { w: { shape: [n, k], values } }, dtype);
      const dst = createQuantizedTensor(device, 'test.q', { kind, shape: [n, k], groupSize: g, scaleDtype, hasZeros: kind === 'q4' }, i % 2 ? 16 + Math.ceil(n / 2) * (k / ELEMENTS_PER_WORD[kind]) * 4 : undefined);
      const op = (await Quantize.create(device, kind, dtype)).prepare(`test.quantize.g${g}`, src.tensors.get('w')!, dst);
      await runOps(device, [op]);
      const got = await readBack(dst);
      const want = quantizeReference(kind, asDtype(values, dtype), [n, k], g);
      const what = `${kind} N=${n} K=${k} G=${g} ${dtype} scales ${scaleDtype} chunks ${dst.chunks.length}`;
      const firstBad = (a: ArrayLike<number>, b: ArrayLike<number>) => Array.from(a).findIndex((v, j) => v !== b[j]);
      expect(firstBad(got.scales, want.scales), `${what} scales`).toBe(-1);
      expect(firstBad(got.data, want.data), `${what} data`).toBe(-1);
      if (kind === 'q4') expect(firstBad(got.zeros!, want.zeros!), `${what} zeros`).toBe(-1);
      op.destroy();
      src.destroy();
      destroyQuantized(dst);
    }
  }
});

it('rounds ties to even, keeps q within its range at the f16 scale limits, and zero groups at 0', async () => {
  const device = gpu.device;
  // Group 0: absmax 127·s with s = 2^-7 exactly (an f16 value), the rest exact halves (q ± ½)·s,
  // so rne(x / s) meets every tie: q8 stores even neighbours, q4 the even one of q + zero.
  // Group 1: values past 65504·127 (the scale clamps to 65504: q clamps to ±127 or 0..15).
  // Group 2: tiny values whose scale rounds to an f16 subnormal or to 0. Group 3: zeros.
  const s = 2 ** -7;
  const k = 32;
  const values = new Float32Array(4 * k);
  values[0] = 127 * s;
  for (let i = 1; i < k; i++) values[i] = (Math.floor(i / 2) - 8 + 0.5) * s * (i % 2 ? 1 : -1);
  for (let i = 0; i < k; i++) values[k + i] = (i % 2 ? 1 : -1) * 1e7 * (1 + i);
  for (let i = 0; i < k; i++) values[2 * k + i] = (i - 16) * 2 ** -30;
  for (const kind of ['q8', 'q4'] as QuantKind[]) {
    const src = await uploadWeights(device, { w: { shape: [4, k], values } }, 'F32');
    const dst = createQuantizedTensor(device, 'test.q', { kind, shape: [4, k], scaleDtype: 'F16', hasZeros: kind === 'q4' });
    const op = (await Quantize.create(device, kind, 'F32')).prepare('test.quantize.ties', src.tensors.get('w')!, dst);
    await runOps(device, [op]);
    const got = await readBack(dst);
    const want = quantizeReference(kind, values, [4, k]);
    expect(Array.from(got.data), `${kind} data`).toEqual(Array.from(want.data));
    expect(Array.from(got.scales), `${kind} scales`).toEqual(Array.from(want.scales));
    if (kind === 'q4') expect(Array.from(got.zeros!), `${kind} zeros`).toEqual(Array.from(want.zeros!));
    if (kind === 'q8') {
      // The reference itself: ties went to even q (scale exactly s), and the clamped group stays in ±127.
      expect(want.scales[0]).toBe(s);
      for (let i = 1; i < k; i++) expect(Math.abs(unpackElement('q8', want.data, i) % 2), `tie ${values[i] / s}`).toBe(0);
      for (let i = 0; i < k; i++) expect(Math.abs(unpackElement('q8', want.data, k + i))).toBeLessThanOrEqual(127);
      expect(want.scales[1]).toBe(65504);
    }
    expect(want.scales[3]).toBe(0);
    for (let i = 0; i < k; i++) expect(unpackElement(kind, want.data, 3 * k + i)).toBe(0);
    op.destroy();
    src.destroy();
    destroyQuantized(dst);
  }
});

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

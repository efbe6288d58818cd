// sluice's quantized Linear weight: (N rows, K) as packed integers with one scale (and
// optionally one zero point) per group of `groupSize` consecutive elements of a row, row-
// chunked exactly like GpuTensor so a 128k-vocab LM head fits 128 MiB bindings. Quantize on
// load (src/ops/quantize.ts) writes it; the repackers of pre-quantized checkpoints (GPTQ,
// AWQ, compressed-tensors) will write it; QGemv / QMatmul read it.
//
// Byte layout of one chunk of `rows` rows (all little-endian, row-major along K; G = groupSize,
// groups = K / G per row, e = row·groups + g the flat group index inside the chunk):
//   data    (rows, K / EPW) u32, EPW elements per word:
//             q8: EPW = 4, element k in byte k % 4 of word k / 4, a signed int8 (two's complement)
//             q4: EPW = 8, element k in bits 4·(k % 8) .. +3 of word k / 8, an unsigned nibble
//           G is a multiple of 8, so a word never straddles two groups (nor two rows).
//   scales  (rows, groups) f16 (two per u32, group e in half e % 2 of word e / 2) where the
//           device has shader-f16, else f32 (one per u32). Whatever the storage, a scale made
//           by quantize is an f16 value (see quantize.ts), so both storages dequantize alike.
//   zeros   optional, (rows, groups) one byte per group, 4 per u32 (group e in byte e % 4 of
//           word e / 4): q4 an unsigned 0..15, q8 a signed int8 (the same domain as its q).
//           value = scale · (q − zero); without zeros q4 takes zero = 8 and q8 zero = 0
//           (symmetric: value = scale · q).
//   Every buffer is padded to 16 bytes.
// Why a byte per zero point: q4 zeros would fit a nibble, but a byte costs 1/G byte per weight
// (0.03 at G = 32) and gives q4 and q8 (GPTQ 8-bit asym) one layout and one address
// computation; per-group scales already cost 2/G.
//
// Napkin math, bytes per weight (G = 32, f16 scales): q8 = 1 + 2/32 (+1/32 zeros) ≈ 1.06-1.09;
// q4 = 0.5 + 2/32 (+1/32) ≈ 0.56-0.59, against 2 for f16: a Llama-3.2-1B's 1.24 G weights
// read per token fall from 2.5 GB to ~1.3 GB (q8) or ~0.7 GB (q4).

import { f16ToF32Bits, f32ToF16Bits } from '../formats/float-bits.js';

export type QuantKind = 'q8' | 'q4';
/** How scales are stored: F16 where the device has shader-f16, else F32. */
export type ScaleDtype = 'F16' | 'F32';

/** Elements per packed u32 word. */
export const ELEMENTS_PER_WORD: Readonly<Record<QuantKind, number>> = { q8: 4, q4: 8 };
/** The zero point a tensor without zeros uses. */
export const DEFAULT_ZERO: Readonly<Record<QuantKind, number>> = { q8: 0, q4: 8 };
/** The default group size (quantize on load); pre-quantized checkpoints use 32, 64 or 128. */
export const DEFAULT_GROUP_SIZE = 32;

export interface QuantizedChunk {
  /** (rows, K / EPW) u32 packed integers. */
  readonly data: GPUBuffer;
  /** (rows, K / groupSize) scales in `scaleDtype`. */
  readonly scales: GPUBuffer;
  /** (rows, K / groupSize) one byte each, when the tensor has zero points. */
  readonly zeros?: GPUBuffer;
  /** Index of the chunk's first row in the tensor. */
  readonly firstRow: number;
  readonly rows: number;
  /** Bytes of data + scales + zeros of this chunk (without padding). */
  readonly byteLength: number;
}

export interface QuantizedTensor {
  readonly name: string;
  readonly kind: QuantKind;
  /** [N, K]. */
  readonly shape: readonly [number, number];
  readonly groupSize: number;
  readonly scaleDtype: ScaleDtype;
  readonly hasZeros: boolean;
  /** Every chunk but the last has rowsPerChunk rows. */
  readonly chunks: readonly QuantizedChunk[];
  readonly rowsPerChunk: number;
  /** Bytes of all chunks' data + scales + zeros (what a gemv reads). */
  readonly byteLength: number;
}

export interface QuantizedLayout {
  kind: QuantKind;
  shape: readonly [number, number];
  groupSize?: number;
  scaleDtype: ScaleDtype;
  hasZeros: boolean;
}

/** The scale storage of a device: F16 where it has shader-f16. */
export function deviceScaleDtype(device: GPUDevice): ScaleDtype {
  return device.features.has('shader-f16') ? 'F16' : 'F32';
}

/** Throws unless the shape and group size make a valid layout. */
export function checkQuantizedShape(name: string, [n, k]: readonly [number, number], groupSize: number): void {
  if (!Number.isInteger(groupSize) || groupSize < 8 || groupSize % 8 !== 0) {
    throw new Error(`${name}: the group size must be a positive multiple of 8, got ${groupSize}`);
  }
  if (!Number.isInteger(n) || !Number.isInteger(k) || n < 1 || k < 1) throw new Error(`${name}: a quantized weight needs N ≥ 1 and K ≥ 1, got [${n}, ${k}]`);
  if (k % groupSize !== 0) throw new Error(`${name}: K = ${k} is not a multiple of the group size ${groupSize}`);
}

/** Bytes per row of each buffer (unpadded). */
export function rowBytes(kind: QuantKind, k: number, groupSize: number, scaleDtype: ScaleDtype, hasZeros: boolean) {
  const groups = k / groupSize;
  return { data: (k / ELEMENTS_PER_WORD[kind]) * 4, scales: groups * (scaleDtype === 'F16' ? 2 : 4), zeros: hasZeros ? groups : 0 };
}

const pad16 = (n: number) => Math.max(16, Math.ceil(n / 16) * 16);

/**
 * Allocates an empty quantized tensor (buffers zeroed, STORAGE | COPY_DST | COPY_SRC),
 * chunked by whole rows so that no buffer exceeds `maxChunkBytes` (default: the device's
 * maxStorageBufferBindingSize).
 */
export function createQuantizedTensor(device: GPUDevice, name: string, layout: QuantizedLayout, maxChunkBytes?: number): QuantizedTensor {
  const groupSize = layout.groupSize ?? DEFAULT_GROUP_SIZE;
  const [n, k] = layout.shape;
  checkQuantizedShape(name, layout.shape, groupSize);
  const per = rowBytes(layout.kind, k, groupSize, layout.scaleDtype, layout.hasZeros);
  const limit = Math.floor((maxChunkBytes ?? device.limits.maxStorageBufferBindingSize) / 16) * 16;
  // data is the largest of the three buffers per row; padding adds < 16 bytes.
  const rowsPerChunk = Math.min(n, Math.floor((limit - 16) / per.data));
  if (rowsPerChunk < 1) throw new Error(`${name}: one row of ${per.data} bytes exceeds the chunk limit of ${limit} bytes`);
  const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC;
  const chunks: QuantizedChunk[] = [];
  for (let firstRow = 0; firstRow < n; firstRow += rowsPerChunk) {
    const rows = Math.min(rowsPerChunk, n - firstRow);
    const tag = `${name}#${chunks.length}`;
    chunks.push({
      data: device.createBuffer({ label: `${tag}.data`, size: pad16(rows * per.data), usage }),
      scales: device.createBuffer({ label: `${tag}.scales`, size: pad16(rows * per.scales), usage }),
      zeros: layout.hasZeros ? device.createBuffer({ label: `${tag}.zeros`, size: pad16(rows * per.zeros), usage }) : undefined,
      firstRow,
      rows,
      byteLength: rows * (per.data + per.scales + per.zeros),
    });
  }
  return {
    name,
    kind: layout.kind,
    shape: [n, k],
    groupSize,
    scaleDtype: layout.scaleDtype,
    hasZeros: layout.hasZeros,
    chunks,
    rowsPerChunk,
    byteLength: n * (per.data + per.scales + per.zeros),
  };
}

/** Host copy of a quantized weight in the layout above, all rows (one chunk's worth each). */
export interface HostQuantized {
  /** (N, K / EPW) packed words. */
  data: Uint32Array;
  /** (N, K / G) scale values (f16 values when they will be stored as F16). */
  scales: Float32Array;
  /** (N, K / G) zero points (q4 0..15, q8 −128..127), or none. */
  zeros?: Int32Array;
}

/** Writes host values into a tensor made by createQuantizedTensor (tests, CPU repacks). */
export function writeQuantized(device: GPUDevice, tensor: QuantizedTensor, host: HostQuantized): void {
  const [, k] = tensor.shape;
  const wordsPerRow = k / ELEMENTS_PER_WORD[tensor.kind];
  const groups = k / tensor.groupSize;
  for (const c of tensor.chunks) {
    const words = new Uint32Array(host.data.subarray(c.firstRow * wordsPerRow, (c.firstRow + c.rows) * wordsPerRow));
    device.queue.writeBuffer(c.data, 0, words);
    const s = host.scales.subarray(c.firstRow * groups, (c.firstRow + c.rows) * groups);
    device.queue.writeBuffer(c.scales, 0, tensor.scaleDtype === 'F16' ? packF16(s) : new Float32Array(s));
    if (c.zeros) {
      if (!host.zeros) throw new Error(`${tensor.name}: the tensor has zero points, the host copy none`);
      const z = host.zeros.subarray(c.firstRow * groups, (c.firstRow + c.rows) * groups);
      const bytes = new Uint8Array(Math.ceil(z.length / 4) * 4);
      z.forEach((v, i) => (bytes[i] = v & 0xff));
      device.queue.writeBuffer(c.zeros, 0, bytes);
    }
  }
}

/** The packed element i of a row of words, as the integer q (q8 signed, q4 unsigned). */
export function unpackElement(kind: QuantKind, words: Uint32Array, i: number): number {
  const w = words[Math.floor(i / ELEMENTS_PER_WORD[kind])];
  if (kind === 'q4') return (w >>> (4 * (i % 8))) & 0xf;
  return ((w >>> (8 * (i % 4))) << 24) >> 24;
}

/** value = scale · (q − zero) for every element: the (N, K) weights the kernels compute with. */
export function dequantizeHost(kind: QuantKind, [n, k]: readonly [number, number], groupSize: number, host: HostQuantized): Float32Array {
  const out = new Float32Array(n * k);
  const groups = k / groupSize;
  for (let i = 0; i < n * k; i++) {
    const e = Math.floor(i / k) * groups + Math.floor((i % k) / groupSize);
    const zero = host.zeros ? host.zeros[e] : DEFAULT_ZERO[kind];
    out[i] = host.scales[e] * (unpackElement(kind, host.data, i) - zero);
  }
  return out;
}

/** f32 → f16 bits, round half to even, for non-negative finite x; past 65504 gives 65504 (0x7bff). */
export function f16BitsRne(x: number): number {
  return Math.min(f32ToF16Bits(new Uint32Array(new Float32Array([x]).buffer)[0]), 0x7bff);
}

/** The value of non-negative f16 bits. */
export function f16Value(bits: number): number {
  return new Float32Array(new Uint32Array([f16ToF32Bits(bits)]).buffer)[0];
}

/** f16 values (non-negative) packed two per u32. */
function packF16(values: Float32Array): Uint32Array<ArrayBuffer> {
  const out = new Uint32Array(Math.ceil(values.length / 2));
  values.forEach((v, i) => (out[i >> 1] |= f16BitsRne(v) << (16 * (i & 1))));
  return out;
}

export function destroyQuantized(tensor: QuantizedTensor): void {
  for (const c of tensor.chunks) {
    c.data.destroy();
    c.scales.destroy();
    c.zeros?.destroy();
  }
}

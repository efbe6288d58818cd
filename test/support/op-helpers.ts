// Helpers of the kernel tests: activations up and down in either compute dtype, weights
// through the real loader (chunked on demand), f16 rounding as the GPU stores it, seeded
// random data and shapes, and the error measures with their one-line reasons.

import { openCheckpointSource } from '../../src/checkpoint/open.js';
import { serializeSafetensors } from '../../src/formats/safetensors/writer.js';
import type { GpuTensor } from '../../src/gpu/gpu-tensor.js';
import { loadTensors } from '../../src/gpu/load-tensors.js';
import { readBuffer } from '../../src/gpu/read-back.js';
import { MemorySource } from '../../src/io/memory-source.js';
import type { ComputeDtype } from '../../src/ops/op.js';
import { f16ToF32Bits, f32ToF16Bits } from './dtype-reference.js';

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** x rounded to the nearest f16 (ties to even), as a number: what an f16 buffer stores. */
export function roundF16(x: number): number {
  f32[0] = x;
  u32[0] = f16ToF32Bits(f32ToF16Bits(u32[0]));
  return f32[0];
}

/** Values as the GPU will see them in `dtype`: rounded to f16, or to f32. */
export function asDtype(values: Float32Array, dtype: ComputeDtype): Float32Array {
  return dtype === 'F16' ? values.map(roundF16) : values.slice();
}

/** Little-endian bytes of `values` in `dtype`. */
export function encode(values: Float32Array, dtype: ComputeDtype): Uint8Array<ArrayBuffer> {
  if (dtype === 'F32') return new Uint8Array(values.slice().buffer);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) {
    f32[0] = values[i];
    out[i] = f32ToF16Bits(u32[0]);
  }
  return new Uint8Array(out.buffer);
}

/** Decodes little-endian `dtype` bytes to numbers. */
export function decode(bytes: Uint8Array, dtype: ComputeDtype, count = bytes.byteLength / (dtype === 'F16' ? 2 : 4)): Float32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    if (dtype === 'F32') out[i] = view.getFloat32(4 * i, true);
    else {
      u32[0] = f16ToF32Bits(view.getUint16(2 * i, true));
      out[i] = f32[0];
    }
  }
  return out;
}

/** A storage buffer (STORAGE | COPY_SRC | COPY_DST) holding `values` in `dtype`, padded to 16 bytes. */
export function uploadArray(device: GPUDevice, values: Float32Array | Uint32Array | Int32Array, dtype: ComputeDtype | 'U32', label = 'test.array'): GPUBuffer {
  const bytes = dtype === 'U32' ? new Uint8Array(values.buffer, values.byteOffset, values.byteLength) : encode(values as Float32Array, dtype);
  const buffer = device.createBuffer({
    label,
    size: Math.max(16, Math.ceil(bytes.byteLength / 16) * 16),
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
    mappedAtCreation: true,
  });
  new Uint8Array(buffer.getMappedRange()).set(bytes);
  buffer.unmap();
  return buffer;
}

/** An empty storage buffer for `count` elements of `bytesPerElement`. */
export function outputBuffer(device: GPUDevice, count: number, bytesPerElement: number, label = 'test.out'): GPUBuffer {
  return device.createBuffer({
    label,
    size: Math.max(16, Math.ceil((count * bytesPerElement) / 16) * 16),
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
  });
}

/** `count` elements of a buffer as numbers. */
export async function readArray(device: GPUDevice, buffer: GPUBuffer, count: number, dtype: ComputeDtype): Promise<Float32Array> {
  const size = count * (dtype === 'F16' ? 2 : 4);
  return decode(await readBuffer(device, buffer, 0, Math.ceil(size / 4) * 4), dtype, count);
}

/** `count` u32 of a buffer. */
export async function readU32(device: GPUDevice, buffer: GPUBuffer, count: number): Promise<Uint32Array> {
  const bytes = await readBuffer(device, buffer, 0, count * 4);
  return new Uint32Array(bytes.buffer, bytes.byteOffset, count);
}

/**
 * Weights on the GPU as the model gets them: F32 values written as a safetensors tensor,
 * loaded by loadTensors in `dtype`, split into row-chunks of at most `maxChunkBytes`.
 */
export async function uploadWeights(
  device: GPUDevice,
  tensors: Record<string, { shape: number[]; values: Float32Array }>,
  dtype: ComputeDtype,
  maxChunkBytes?: number,
): Promise<{ tensors: Map<string, GpuTensor>; destroy(): void }> {
  const bytes = await serializeSafetensors(
    Object.entries(tensors).map(([name, t]) => ({ name, dtype: 'F32' as const, shape: t.shape, data: encode(t.values, 'F32') })),
  );
  const checkpoint = await openCheckpointSource(new MemorySource(bytes, 'test-weights.safetensors'));
  const loaded = await loadTensors(checkpoint, device, { dtype: dtype === 'F16' ? 'f16' : 'f32', maxChunkBytes });
  return { tensors: loaded, destroy: () => loaded.destroy() };
}

/** Seeded uniform values in [lo, hi). */
export function randomValues(rng: () => number, count: number, lo = -1, hi = 1): Float32Array<ArrayBuffer> {
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) out[i] = lo + (hi - lo) * rng();
  return out;
}

/** Normalised mean squared error: Σ(got − want)² / Σ want² (0 for exact). */
export function nmse(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let err = 0;
  let ref = 0;
  for (let i = 0; i < want.length; i++) {
    err += (got[i] - want[i]) ** 2;
    ref += want[i] ** 2;
  }
  return ref === 0 ? err : err / ref;
}

/**
 * null when every |got − want| ≤ abs + rel·|want|; else a line naming the first element
 * out of tolerance and how many are.
 */
export function closeness(got: ArrayLike<number>, want: ArrayLike<number>, abs: number, rel: number): string | null {
  if (got.length !== want.length) return `length ${got.length}, expected ${want.length}`;
  let bad = 0;
  let first = -1;
  for (let i = 0; i < want.length; i++) {
    const ok = Math.abs(got[i] - want[i]) <= abs + rel * Math.abs(want[i]);
    if (!ok || Number.isNaN(got[i]) !== Number.isNaN(want[i])) {
      if (first < 0) first = i;
      bad++;
    }
  }
  return bad ? `${bad} of ${want.length} out of tolerance; first: [${first}] got ${got[first]}, expected ${want[first]}` : null;
}

/**
 * y = x·Wᵀ (+ b) in float64 from the stored values: x (m, k), W (n, k), y (m, n), all
 * row-major; a gemv is m = 1. The reference of gemv, matmul and their quantized forms.
 */
export function linearReference(x: ArrayLike<number>, w: ArrayLike<number>, [m, n, k]: readonly [number, number, number], bias?: ArrayLike<number>): Float64Array {
  const y = new Float64Array(m * n);
  for (let r = 0; r < m; r++) {
    for (let c = 0; c < n; c++) {
      let sum = bias ? bias[c] : 0;
      for (let i = 0; i < k; i++) sum += x[r * k + i] * w[c * k + i];
      y[r * n + c] = sum;
    }
  }
  return y;
}

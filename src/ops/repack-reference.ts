// The TypeScript reference of shaders/repack.wgsl: the same repack from host copies of the
// packed tensors, value by value, bit-exact with the kernel (tests compare the two, and both
// with the weights the reference packers of test/fixtures/quantized_packers.py dequantize to).
// Layouts: repack-layout.ts; rules (q − 128, zero points, scale rounding): repack.ts.

import type { Dtype } from '../formats/dtypes.js';
import { bf16ToF32Bits, f16ToF32Bits, f32ToF16Bits } from '../formats/float-bits.js';
import { ELEMENTS_PER_WORD, type HostQuantized, type ScaleDtype } from '../gpu/quantized-tensor.js';
import { checkPackedShapes, type PackedTensorInfo, zeroOffset, zeroPointError } from './repack-layout.js';
import type { RepackSpec } from './repack.js';

/** A packed tensor on the host: its little-endian bytes as the checkpoint stores them. */
export interface HostPackedTensor extends PackedTensorInfo {
  readonly bytes: Uint8Array;
}

export interface HostPackedSources {
  qweight: HostPackedTensor;
  scales: HostPackedTensor;
  zeros?: HostPackedTensor;
}

export type HostRepackSpec = Omit<RepackSpec, 'perm'> & { perm?: Uint32Array };

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
const valueOf = (bits: number) => ((u32[0] = bits), f32[0]);

/** Little-endian u32 words of `bytes` (zero-padded to a whole word). */
function words(bytes: Uint8Array): Uint32Array {
  const out = new Uint32Array(Math.ceil(bytes.byteLength / 4));
  new Uint8Array(out.buffer).set(bytes);
  return out;
}

/** A scale's f32 bits, from its storage dtype. */
function scaleBits(w: Uint32Array, dtype: Dtype, i: number): number {
  const half = (w[i >>> 1] >>> (16 * (i & 1))) & 0xffff;
  return dtype === 'F16' ? f16ToF32Bits(half) : dtype === 'BF16' ? bf16ToF32Bits(half) : w[i];
}

/**
 * The destination rows [0, rows) — source outputs [firstOutput, firstOutput + rows) — of a
 * repack into `scaleDtype` storage, as HostQuantized (scales as the values stored). Throws
 * what the kernel's check reports for an unrepresentable zero point.
 */
export function repackReference(name: string, spec: HostRepackSpec, src: HostPackedSources, dst: { rows: number; scaleDtype: ScaleDtype }): HostQuantized {
  const { format, bits, groupSize, k, n, perm } = spec;
  const first = spec.firstOutput ?? 0;
  checkPackedShapes(name, format, bits, groupSize, k, n, src);
  if (first < 0 || first + dst.rows > n) throw new Error(`${name}: outputs ${first}..${first + dst.rows - 1} are outside the source's ${n}`);
  const kind = bits === 8 ? 'q8' : 'q4';
  const epw = ELEMENTS_PER_WORD[kind];
  const mask = (1 << bits) - 1;
  const groups = k / groupSize;
  const qw = words(src.qweight.bytes);
  const sw = words(src.scales.bytes);
  const zw = src.zeros ? words(src.zeros.bytes) : undefined;
  const awq = (o: number) => 4 * (((o % 8) >> 1) + 4 * (o & 1)); // bit offset of AWQ_REVERSE_ORDER[o % 8]
  const ct = format === 'pack-quantized' || format === 'int-quantized';
  // The stored unsigned field of output o, input column c.
  const field =
    format === 'awq-gemm'
      ? (o: number, c: number) => (qw[c * (n / 8) + (o >> 3)] >>> awq(o)) & 0xf
      : ct
        ? (o: number, c: number) => (qw[o * (k / epw) + Math.floor(c / epw)] >>> (bits * (c % epw))) & mask
        : (o: number, c: number) => (qw[Math.floor(c / epw) * n + o] >>> (bits * (c % epw))) & mask;
  const offset = zeroOffset(format, bits, src.zeros?.dtype);
  // The zero point as an unsigned u (valid in [0, 2^b)).
  const zeroU = (o: number, g: number): number => {
    if (!zw) return NaN;
    if (format === 'awq-gemm') return (zw[g * (n / 8) + (o >> 3)] >>> awq(o)) & 0xf;
    if (!ct) return ((zw[g * (n / epw) + Math.floor(o / epw)] >>> (bits * (o % epw))) & mask) + offset;
    if (src.zeros!.dtype === 'I8') return ((src.zeros!.bytes[o * groups + g] << 24) >> 24) + offset;
    return (zw[Math.floor(o / epw) * groups + g] >>> (bits * (o % epw))) & mask;
  };
  const flip = bits === 8 && format !== 'int-quantized' ? 0x80 : 0; // unsigned byte → signed q8

  const data = new Uint32Array((dst.rows * k) / epw);
  const scales = new Float32Array(dst.rows * groups);
  const zeros = zw ? new Int32Array(dst.rows * groups) : undefined;
  for (let r = 0; r < dst.rows; r++) {
    const o = first + r;
    for (let j = 0; j < k; j++) {
      const q = field(o, perm ? perm[j] : j) ^ flip;
      const at = r * k + j;
      data[Math.floor(at / epw)] |= (q << (bits * (at % epw))) >>> 0;
    }
    for (let g = 0; g < groups; g++) {
      const e = r * groups + g;
      const bits32 = scaleBits(sw, src.scales.dtype, ct ? o * groups + g : g * n + o);
      scales[e] = valueOf(dst.scaleDtype === 'F16' ? f16ToF32Bits(f32ToF16Bits(bits32)) : bits32);
      if (!zeros) continue;
      const u = zeroU(o, g);
      if (u < 0 || u > mask) throw zeroPointError(src.zeros!.name ?? `${name}.zeros`, format, bits, o, g);
      zeros[e] = kind === 'q8' ? u - 128 : u;
    }
  }
  return { data, scales, zeros };
}

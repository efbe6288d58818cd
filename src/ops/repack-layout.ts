// The packed layouts of pre-quantized checkpoints, as the Hub ships them, and the host-side
// checks shared by the loader and the GPU repack (src/ops/repack.ts): tensor shapes and
// dtypes against bits / group size, GPTQ act-order g_idx → column permutation, and the one
// error for a zero point sluice's layout cannot hold.
//
// Layouts (b bits, pf = 32 / b values per int32 word, G group size, groups = K / G; N outputs,
// K inputs; reference code named per layout; test/fixtures/quantized_packers.py packs them):
//   gptq, gptq_v2  AutoGPTQ auto_gptq/nn_modules/qlinear/qlinear_cuda.py QuantLinear.pack() /
//                  forward(); GPTQModel gptqmodel/nn_modules/qlinear/__init__.py
//                  PackableQuantLinear.dequantize_weight (v2).
//       qweight I32 [K/pf, N]   input k in bits b·(k % pf) of word (k / pf)·N + n
//       qzeros  I32 [groups, N/pf]  output n in bits b·(n % pf) of word g·N/pf + n / pf;
//               v1 stores zero − 1 (forward: zeros = (field & mask) + 1), v2 the zero
//       scales  [groups, N];  g_idx I32 [K] the group of each input column (act-order)
//       w[n, k] = scales[g_idx[k], n] · (q − zeros[g_idx[k], n]), q and zeros unsigned
//   awq-gemm       AutoAWQ awq/modules/linear/gemm.py WQLinear_GEMM.from_linear() (pack),
//                  awq/utils/packing_utils.py unpack_awq + reverse_awq_order (4-bit only).
//       qweight I32 [K, N/8]  output 8·col + AWQ_ORDER[i] in nibble i of word k·N/8 + col,
//               AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]; qzeros I32 [groups, N/8] the same;
//       scales  [groups, N];  w = s · (q − z)
//   pack-quantized neuralmagic/compressed-tensors compressors/quantized_compressors/
//                  pack_quantized.py pack_to_int32 / unpack_from_int32 / compress_weight.
//       weight_packed I32 [N, K/pf]  k in bits b·(k % pf) of word n·K/pf + k / pf, holding
//               q + 2^(b−1) (q signed); weight_scale [N, groups] ([N, 1]: channel strategy);
//       weight_zero_point (asymmetric only) I32 [ceil(N/pf), groups] packed along N the same
//               way (since compressed-tensors #296), or I8 [N, groups] as older versions
//               wrote it; w = s · (q − zp)
//   int-quantized  compressed-tensors naive_quantized.py: weight I8 [N, K], weight_scale
//       [N, 1] (channel), optional weight_zero_point I8 [N, 1]; w = s · (q − zp)
// In every layout the source pf equals sluice's elements per word (8 for 4 bits, 4 for 8).

import type { Dtype } from '../formats/dtypes.js';
import { SluiceError } from '../errors.js';

export type PackedFormat = 'gptq' | 'gptq_v2' | 'awq-gemm' | 'pack-quantized' | 'int-quantized';

/** What a check needs of a tensor: a GpuTensor or a checkpoint TensorInfo both fit. */
export interface PackedTensorInfo {
  readonly name?: string;
  readonly shape: readonly number[];
  readonly dtype: Dtype;
}

/** The tensors of one packed Linear (GPTQ/AWQ qweight/scales/qzeros/g_idx; CT weight_packed/weight_scale/weight_zero_point/weight_g_idx). */
export interface PackedShapes {
  qweight: PackedTensorInfo;
  scales: PackedTensorInfo;
  zeros?: PackedTensorInfo;
  gIdx?: PackedTensorInfo;
}

/** The checkpoint's suffix of each tensor, for messages about a tensor given without a name. */
export const PACKED_TENSOR_NAMES: Readonly<Record<PackedFormat, Readonly<Record<keyof PackedShapes, string>>>> = {
  gptq: { qweight: 'qweight', scales: 'scales', zeros: 'qzeros', gIdx: 'g_idx' },
  gptq_v2: { qweight: 'qweight', scales: 'scales', zeros: 'qzeros', gIdx: 'g_idx' },
  'awq-gemm': { qweight: 'qweight', scales: 'scales', zeros: 'qzeros', gIdx: 'g_idx' },
  'pack-quantized': { qweight: 'weight_packed', scales: 'weight_scale', zeros: 'weight_zero_point', gIdx: 'weight_g_idx' },
  'int-quantized': { qweight: 'weight', scales: 'weight_scale', zeros: 'weight_zero_point', gIdx: 'weight_g_idx' },
};

export const SCALE_DTYPES: readonly Dtype[] = ['F16', 'BF16', 'F32'];
const WORD_DTYPES: readonly Dtype[] = ['I32', 'U32'];

const isGptq = (format: PackedFormat) => format === 'gptq' || format === 'gptq_v2';

/** Values per int32 word of the source (and of sluice's layout). */
export const valuesPerWord = (bits: 4 | 8) => 32 / bits;

/** Throws unless the format packs weights of `bits` bits (AWQ GEMM: 4 only; int-quantized: 8 only). */
export function checkFormatBits(name: string, format: PackedFormat, bits: number): asserts bits is 4 | 8 {
  if (!(format in PACKED_TENSOR_NAMES)) throw new SluiceError('UNSUPPORTED_FORMAT', `${name}: unknown packed format ${JSON.stringify(format)}`);
  if (bits !== 4 && bits !== 8) throw new SluiceError('UNSUPPORTED_FORMAT', `${name}: ${format} with ${String(bits)} bits is not supported (4 or 8)`);
  if (format === 'awq-gemm' && bits !== 4) throw new SluiceError('UNSUPPORTED_FORMAT', `${name}: awq-gemm packs 4-bit weights only, not ${bits}`);
  if (format === 'int-quantized' && bits !== 8) throw new SluiceError('UNSUPPORTED_FORMAT', `${name}: int-quantized weights are 8-bit, not ${bits}`);
}

/**
 * Throws a one-line SluiceError naming the tensor unless every tensor of a packed Linear
 * (N outputs, K inputs) has the shape and dtype its format, bits and group size (K for per
 * channel) give. The loader checks before it loads; Repack.encode checks again.
 */
export function checkPackedShapes(name: string, format: PackedFormat, bits: 4 | 8, groupSize: number, k: number, n: number, shapes: PackedShapes): void {
  const names = PACKED_TENSOR_NAMES[format];
  const nameOf = (role: keyof PackedShapes) => shapes[role]?.name ?? `${name}.${names[role]}`;
  checkFormatBits(name, format, bits);
  if (!Number.isSafeInteger(k) || !Number.isSafeInteger(n) || k < 1 || n < 1) throw new SluiceError('SHAPE_MISMATCH', `${name}: K = ${k} and N = ${n} must be positive integers`);
  if (!Number.isSafeInteger(groupSize) || groupSize < 8 || groupSize % 8 !== 0) {
    throw new SluiceError('SHAPE_MISMATCH', `${name}: the group size must be a multiple of 8, got ${groupSize}`);
  }
  if (k % groupSize !== 0) throw new SluiceError('SHAPE_MISMATCH', `${name}: K = ${k} is not a multiple of the group size ${groupSize}`);
  if (format === 'int-quantized' && groupSize !== k) throw new SluiceError('SHAPE_MISMATCH', `${name}: int-quantized weights have one scale per row (group size K = ${k}), not groups of ${groupSize}`);
  const pf = valuesPerWord(bits);
  const packsOutputs = isGptq(format) ? pf : format === 'awq-gemm' ? 8 : 1;
  if (n % packsOutputs !== 0) throw new SluiceError('SHAPE_MISMATCH', `${name}: N = ${n} is not a multiple of ${packsOutputs}, the outputs ${format} packs in one ${nameOf('zeros')} word`);
  const groups = k / groupSize;
  const qweightBy = `with ${bits} bits, K = ${k} and N = ${n}`;
  const scalesBy = `with group size ${groupSize}, K = ${k} and N = ${n}`;
  const zerosBy = `with ${bits} bits, group size ${groupSize}, K = ${k} and N = ${n}`;
  const expect = (role: keyof PackedShapes, dtypes: readonly Dtype[], shape: readonly number[], because: string) => {
    const t = shapes[role];
    if (!t) throw new SluiceError('TENSOR_NOT_FOUND', `${nameOf(role)} is missing; ${format} stores it`);
    if (!dtypes.includes(t.dtype)) throw new SluiceError('DTYPE_MISMATCH', `${nameOf(role)} is ${t.dtype}; ${format} stores it as ${dtypes.join(' or ')}`);
    const same = t.shape.length === shape.length && t.shape.every((d, i) => d === shape[i]);
    if (!same) throw new SluiceError('SHAPE_MISMATCH', `${nameOf(role)} is [${t.shape.join(', ')}]; ${because} expected [${shape.join(', ')}]`);
  };
  if (isGptq(format) || format === 'awq-gemm') {
    const awq = format === 'awq-gemm';
    expect('qweight', WORD_DTYPES, awq ? [k, n / 8] : [k / pf, n], qweightBy);
    expect('scales', SCALE_DTYPES, [groups, n], scalesBy);
    expect('zeros', WORD_DTYPES, [groups, n / (awq ? 8 : pf)], zerosBy);
    if (shapes.gIdx) expect('gIdx', ['I32'], [k], `with K = ${k}`);
    return;
  }
  const int8 = format === 'int-quantized';
  expect('qweight', int8 ? ['I8'] : WORD_DTYPES, int8 ? [n, k] : [n, k / pf], qweightBy);
  expect('scales', SCALE_DTYPES, [n, groups], scalesBy);
  const z = shapes.zeros;
  if (z) expect('zeros', z.dtype === 'I8' || int8 ? ['I8'] : ['I32', 'I8'], z.dtype === 'I8' || int8 ? [n, groups] : [Math.ceil(n / pf), groups], zerosBy);
  if (shapes.gIdx) expect('gIdx', ['I32'], [k], `with K = ${k}`);
}

/**
 * GPTQ act-order: the column permutation that makes each group's columns contiguous, perm =
 * stable argsort(g_idx): destination column j takes source input column perm[j], so group g
 * holds columns [g·G, (g+1)·G) in sluice's layout and W'·x' = W·x with x'[j] = x[perm[j]].
 * null when g_idx is already k / G (no act-order, or static groups). Throws naming the
 * tensor on a value out of range or a group without exactly G columns.
 */
export function actOrderPerm(name: string, gIdx: Int32Array, groupSize: number): Uint32Array | null {
  const k = gIdx.length;
  if (!Number.isSafeInteger(groupSize) || groupSize < 1 || k % groupSize !== 0) {
    throw new SluiceError('SHAPE_MISMATCH', `${name}: ${k} columns are not a whole number of groups of ${groupSize}`);
  }
  const groups = k / groupSize;
  const count = new Uint32Array(groups);
  let identity = true;
  for (let c = 0; c < k; c++) {
    const g = gIdx[c];
    if (g < 0 || g >= groups) throw new SluiceError('INVALID_INDEX', `${name}: value ${g} at column ${c} is out of range (${groups} groups)`);
    count[g]++;
    identity &&= g === Math.floor(c / groupSize);
  }
  const uneven = count.findIndex((c) => c !== groupSize);
  if (uneven >= 0) throw new SluiceError('INVALID_INDEX', `${name}: group ${uneven} has ${count[uneven]} columns, expected ${groupSize} (K = ${k})`);
  if (identity) return null;
  // A counting sort by group, stable: within a group, columns keep their order.
  const next = Uint32Array.from({ length: groups }, (_, g) => g * groupSize);
  const perm = new Uint32Array(k);
  for (let c = 0; c < k; c++) perm[next[gIdx[c]]++] = c;
  return perm;
}

/**
 * How a stored zero point becomes an unsigned zero u in [0, 2^b) (sluice q4 takes u, q8
 * u − 128): GPTQ v1 adds 1 to the field, compressed-tensors' I8 zero points add 2^(b−1).
 */
export function zeroOffset(format: PackedFormat, bits: 4 | 8, zerosDtype: Dtype | undefined): number {
  if (format === 'gptq') return 1;
  return (format === 'pack-quantized' || format === 'int-quantized') && zerosDtype === 'I8' ? 1 << (bits - 1) : 0;
}

/** The error for a zero point that does not fit b bits, same words from the GPU check and the reference. */
export function zeroPointError(tensor: string, format: PackedFormat, bits: 4 | 8, output: number, group: number): SluiceError {
  const why =
    format === 'gptq'
      ? `is stored as ${(1 << bits) - 1} (GPTQ v1 stores zero − 1), so it reads as ${1 << bits}, which ${bits}-bit weights cannot hold (a zero of 0 that v1 cannot store)`
      : `is outside the ${bits}-bit range ${-(1 << (bits - 1))}..${(1 << (bits - 1)) - 1}`;
  return new SluiceError('UNSUPPORTED_FORMAT', `${tensor}: the zero point of output ${output}, group ${group} ${why}`);
}

// What the tensors of a pre-quantized checkpoint come to, from the header alone: how many
// matrices are stored packed, how many parameters (weights of the original matrix) they
// stand for, and the bytes they take with their scales, zeros and indices, so that
// `sluice inspect` can say "0.52 bytes per parameter" beside F16's 2.
//
// The parameters come from the packed tensor's shape, since the checkpoint holds no dense
// copy: one int32 word holds 32/bits values, packed along the dim each layout names:
//   GPTQ (AutoGPTQ QuantLinear.pack):         qweight (K·bits/32, N) int32 → K·N = rows·(32/bits)·cols
//   AWQ GEMM (AutoAWQ WQLinear_GEMM.from_linear): qweight (K, N·bits/32) int32 → rows·cols·(32/bits)
//   compressed-tensors pack-quantized (compressed_tensors pack_to_int32, packed_dim 1):
//                                               weight_packed (N, ⌈K·bits/32⌉) int32 → rows·cols·(32/bits)
//     (pack_to_int32 pads each row to whole words: up to 32/bits − 1 columns per row too many;
//      the exact K is in weight_shape's data, which a header-only read does not see)
//   compressed-tensors int-quantized: weight (N, K) int8 → rows·cols
// bytes per parameter = Σ bytes of those tensors and their companions ÷ Σ parameters.
// The rest of the checkpoint (embedding, norms, biases, modules left dense) is counted apart.
//
// Only shapes and names are read here; whether the shapes agree with each other (scales vs
// groups, g_idx vs K) is the loader's check.

import { elementCount, type ExactShape } from './summary.js';
import type { TensorInfo } from './types.js';

/** The packings of model/quantization.ts's Quantization.format (kept apart: checkpoint/ knows no models). */
export type PackedFormat = 'gptq' | 'gptq_v2' | 'awq-gemm' | 'pack-quantized' | 'int-quantized';

interface PackedLayout {
  /** Suffix of the tensor holding the integers, one per quantized matrix (`<module>.<packed>`). */
  packed: string;
  /** Its dtype: int32 words of 32/bits values each (whichever dim they pack), or int8 values. */
  dtype: 'I32' | 'I8';
  /** `<module>.<suffix>` tensors that belong to the quantization beside it. */
  companions: readonly string[];
}

const LAYOUTS: Record<PackedFormat, PackedLayout> = {
  gptq: { packed: 'qweight', dtype: 'I32', companions: ['qzeros', 'scales', 'g_idx'] },
  gptq_v2: { packed: 'qweight', dtype: 'I32', companions: ['qzeros', 'scales', 'g_idx'] },
  'awq-gemm': { packed: 'qweight', dtype: 'I32', companions: ['qzeros', 'scales'] },
  'pack-quantized': { packed: 'weight_packed', dtype: 'I32', companions: ['weight_scale', 'weight_zero_point', 'weight_shape', 'weight_g_idx'] },
  'int-quantized': { packed: 'weight', dtype: 'I8', companions: ['weight_scale', 'weight_zero_point'] },
};

export interface QuantizedSummary {
  /** The packed tensors looked for, for messages: `*.qweight (I32)`. */
  packed: string;
  /** Matrices stored packed (one packed tensor each). */
  modules: number;
  /** Weights those matrices stand for (rows × columns of the original matrices). */
  parameters: bigint;
  /** Bytes of the packed tensors and their companions (scales, zeros, g_idx, shape). */
  bytes: bigint;
  /** Every other tensor: elements and bytes (embedding, norms, biases, dense modules). */
  otherParameters: bigint;
  otherBytes: bigint;
}

/** Sums the tensors of a checkpoint quantized as `format` with `bits`-bit values. */
export function summarizeQuantized(tensors: readonly (TensorInfo & ExactShape)[], format: PackedFormat, bits: 4 | 8): QuantizedSummary {
  const layout = LAYOUTS[format];
  const suffix = `.${layout.packed}`;
  const perWord = BigInt(32 / bits);
  const byName = new Map(tensors.map((t) => [t.name, t]));
  const counted = new Set<string>();
  let modules = 0;
  let parameters = 0n;
  let bytes = 0n;
  for (const t of tensors) {
    if (!t.name.endsWith(suffix) || t.dtype !== layout.dtype || t.shape.length !== 2) continue;
    // int-quantized's packed tensor is a plain `.weight`: only an int8 one with a scale is quantized.
    const module = t.name.slice(0, -suffix.length);
    if (layout.dtype === 'I8' && !byName.has(`${module}.weight_scale`)) continue;
    modules++;
    parameters += elementCount(t) * (layout.dtype === 'I32' ? perWord : 1n);
    for (const name of [t.name, ...layout.companions.map((c) => `${module}.${c}`)]) {
      const part = byName.get(name);
      if (!part || counted.has(name)) continue;
      counted.add(name);
      bytes += BigInt(part.byteLength);
    }
  }
  let otherParameters = 0n;
  let otherBytes = 0n;
  for (const t of tensors) {
    if (counted.has(t.name)) continue;
    otherParameters += elementCount(t);
    otherBytes += BigInt(t.byteLength);
  }
  return { packed: `*.${layout.packed} (${layout.dtype})`, modules, parameters, bytes, otherParameters, otherBytes };
}

/** Bytes ÷ parameters, null when there are none. (Both well under 2^53 for any real model; a ratio needs no more.) */
export function bytesPerParameter(bytes: bigint, parameters: bigint): number | null {
  return parameters > 0n ? Number(bytes) / Number(parameters) : null;
}

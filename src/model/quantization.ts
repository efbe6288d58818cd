// config.json's `quantization_config` (and MLX's `quantization`), parsed once into a typed
// record: the three layouts the Hub ships for llama-family models that sluice will read as
// they are (packed-weights.ts names their tensors, src/gpu/load-prequantized.ts repacks them on
// the GPU), and a clear refusal of every other method, by name.
//
// - GPTQ (AutoGPTQ / GPTQModel): {quant_method: "gptq", bits, group_size, desc_act, sym,
//   checkpoint_format: "gptq" | "gptq_v2"} — AutoGPTQ's BaseQuantizeConfig.to_dict.
// - AWQ (AutoAWQ): {quant_method: "awq", bits, group_size, zero_point, version: "gemm"} —
//   AutoAWQ's AwqConfig; only the GEMM packing (GEMV and Marlin pack differently).
// - compressed-tensors (llm-compressor): {quant_method: "compressed-tensors", format,
//   config_groups: {name: {targets, weights: {num_bits, type, symmetric, group_size,
//   strategy}}}, ignore} with format "pack-quantized" (int4/int8 packed in int32) or
//   "int-quantized" (int8 per channel) — compressed_tensors' QuantizationConfig.

import { quote, SluiceError } from '../errors.js';

export type QuantizationMethod = 'gptq' | 'awq' | 'compressed-tensors';

export interface Quantization {
  method: QuantizationMethod;
  /** Bits of each weight: 4 or 8. */
  bits: 4 | 8;
  /** Input columns sharing one scale (and zero); null: one group per row (per channel). */
  groupSize: number | null;
  /** Zero points stored (asymmetric), or symmetric around 0. */
  symmetric: boolean;
  /** GPTQ act-order: a g_idx maps each input column to its group. */
  actOrder: boolean;
  /** The packing, as the checkpoint names it: gptq, gptq_v2 (zeros not off by one), awq-gemm, pack-quantized, int-quantized. */
  format: 'gptq' | 'gptq_v2' | 'awq-gemm' | 'pack-quantized' | 'int-quantized';
  /** Module names left dense (compressed-tensors `ignore`, AWQ `modules_to_not_convert`). */
  dense: string[];
}

export const SUPPORTED_QUANTIZATION = 'GPTQ (4/8-bit, incl. act-order and gptq_v2), AWQ GEMM (4-bit), compressed-tensors pack-quantized (W4A16/W8A16) and int-quantized (W8)';

/** The quantization config.json declares, null for a dense checkpoint. */
export function parseQuantization(c: Record<string, unknown>, file = 'config.json'): Quantization | null {
  const raw = c.quantization_config;
  const refuse = (what: string) => new SluiceError('UNSUPPORTED_ARCH', `${file}: ${what}; sluice reads ${SUPPORTED_QUANTIZATION}`);
  const bad = (key: string, why: string) => new SluiceError('INVALID_JSON', `${file}: quantization_config.${key} ${why}`);
  // mlx-lm writes its own top-level `quantization` ({group_size, bits}) and MLX's packing.
  if (raw == null) {
    if (c.quantization != null) throw refuse('the weights are quantized by MLX (config.json "quantization")');
    return null;
  }
  if (typeof raw !== 'object' || Array.isArray(raw)) throw bad('', 'must be an object');
  const q = raw as Record<string, unknown>;
  const method = q.quant_method;
  if (typeof method !== 'string') throw bad('quant_method', 'is missing');
  const bits = (v: unknown, key: string): 4 | 8 => {
    if (v === 4 || v === 8) return v;
    throw refuse(`${method} with ${key} ${quote(String(v))} is not supported (4 or 8)`);
  };
  const group = (v: unknown, key: string): number | null => {
    if (v === -1 || v == null) return null; // GPTQ's -1: one group per row
    if (!Number.isSafeInteger(v) || (v as number) < 8 || (v as number) % 8 !== 0) throw bad(key, `must be a multiple of 8 (or -1), not ${quote(String(v))}`);
    return v as number;
  };
  const names = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []);

  if (method === 'gptq') {
    const format = q.checkpoint_format ?? 'gptq';
    if (format !== 'gptq' && format !== 'gptq_v2') throw refuse(`gptq checkpoint_format ${quote(String(format))} is not supported (gptq, gptq_v2)`);
    return { method, bits: bits(q.bits, 'bits'), groupSize: group(q.group_size, 'group_size'), symmetric: q.sym !== false, actOrder: q.desc_act === true, format, dense: [] };
  }
  if (method === 'awq') {
    const version = String(q.version ?? 'gemm').toLowerCase();
    if (version !== 'gemm') throw refuse(`awq version ${quote(version)} is not supported (only gemm)`);
    return { method, bits: bits(q.bits ?? q.w_bit, 'bits'), groupSize: group(q.group_size ?? q.q_group_size, 'group_size'), symmetric: q.zero_point === false, actOrder: false, format: 'awq-gemm', dense: names(q.modules_to_not_convert) };
  }
  if (method === 'compressed-tensors') {
    const format = q.format;
    if (format !== 'pack-quantized' && format !== 'int-quantized') throw refuse(`compressed-tensors format ${quote(String(format))} is not supported (pack-quantized, int-quantized)`);
    const groups = q.config_groups;
    if (typeof groups !== 'object' || groups === null || Array.isArray(groups) || Object.keys(groups).length === 0) throw bad('config_groups', 'is missing');
    const schemes = Object.values(groups as Record<string, { weights?: Record<string, unknown>; input_activations?: unknown }>);
    if (schemes.length > 1) throw refuse('compressed-tensors with several config_groups (mixed schemes) is not supported');
    const w = schemes[0].weights;
    if (!w) throw bad('config_groups.*.weights', 'is missing');
    if (w.type !== 'int') throw refuse(`compressed-tensors weights of type ${quote(String(w.type))} are not supported (int)`);
    if (schemes[0].input_activations != null) throw refuse('compressed-tensors with quantized activations (W8A8) is not supported (weight-only)');
    const strategy = w.strategy;
    if (strategy !== 'group' && strategy !== 'channel') throw refuse(`compressed-tensors strategy ${quote(String(strategy))} is not supported (group, channel)`);
    return {
      method,
      bits: bits(w.num_bits, 'num_bits'),
      groupSize: strategy === 'channel' ? null : group(w.group_size, 'config_groups.*.weights.group_size'),
      symmetric: w.symmetric !== false,
      actOrder: w.actorder != null && w.actorder !== false,
      format,
      dense: names(q.ignore),
    };
  }
  throw refuse(`the weights are quantized with ${quote(method)}, which is not supported`);
}

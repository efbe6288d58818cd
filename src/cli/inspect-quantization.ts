// `sluice inspect`'s quantization lines: config.json beside the checkpoint says how its
// weights are quantized (model/quantization.ts parses it, the loader's own reading), and the
// tensors say what that comes to (checkpoint/quantized-summary.ts: bytes per parameter).
//
// A malformed quantization_config fails inspect with the parser's one-line error, as a
// malformed header does. A well-formed one that sluice cannot load (bitsandbytes, HQQ, MLX,
// 3-bit GPTQ…) is reported, not refused: inspect lists any checkpoint's tensors.

import { stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { isUrl } from '../checkpoint/open.js';
import { bytesPerParameter, type QuantizedSummary, summarizeQuantized } from '../checkpoint/quantized-summary.js';
import type { TensorInfo } from '../checkpoint/types.js';
import { isSluiceError, SluiceError } from '../errors.js';
import { ModelFolder } from '../io/model-folder.js';
import { MAX_SIDE_FILE_BYTES } from '../model/open-model.js';
import { parseQuantization, type Quantization } from '../model/quantization.js';
import { clip, exact, formatBytes, formatCount, jsonInteger } from './format.js';

export type QuantizationReport =
  | { supported: true; scheme: Quantization; tensors: QuantizedSummary }
  | { supported: false; method: string; reason: string };

/**
 * The quantization of the checkpoint at `path` (a file, or a directory) as the config.json
 * of its folder declares it: null when there is no config.json (or `path` is a URL), or the
 * config declares none.
 */
export async function readQuantization(path: string, tensors: readonly TensorInfo[]): Promise<QuantizationReport | null> {
  if (isUrl(path)) return null;
  const folder = await ModelFolder.open((await stat(path)).isDirectory() ? path : dirname(path));
  const file = folder.pathOf('config.json');
  const text = await folder.readText('config.json', MAX_SIDE_FILE_BYTES);
  if (text === null) return null;
  let config: unknown;
  try {
    config = JSON.parse(text);
  } catch (e) {
    throw new SluiceError('INVALID_JSON', `${file}: not valid JSON (${(e as Error).message})`);
  }
  if (typeof config !== 'object' || config === null || Array.isArray(config)) throw new SluiceError('INVALID_JSON', `${file}: not a JSON object`);
  const c = config as Record<string, unknown>;
  let scheme: Quantization | null;
  try {
    scheme = parseQuantization(c, file);
  } catch (e) {
    // The parser's refusals of what sluice cannot load; anything malformed stays an error.
    if (!isSluiceError(e, 'UNSUPPORTED_ARCH')) throw e;
    const raw = c.quantization_config as Record<string, unknown> | undefined;
    // Refused with a quant_method, or (no quantization_config) for MLX's own `quantization`.
    const method = typeof raw?.quant_method === 'string' ? raw.quant_method : 'mlx';
    return { supported: false, method, reason: e.message.startsWith(`${file}: `) ? e.message.slice(file.length + 2) : e.message };
  }
  if (!scheme) return null;
  return { supported: true, scheme, tensors: summarizeQuantized(tensors, scheme.format, scheme.bits) };
}

/** "gptq (gptq_v2), 4-bit, group 128, asymmetric, act-order; left dense: lm_head". */
function describeScheme(q: Quantization): string {
  const parts = [
    q.format === q.method ? q.method : `${q.method} (${q.format})`,
    `${q.bits}-bit`,
    q.groupSize === null ? 'per channel' : `group ${q.groupSize}`,
    q.symmetric ? 'symmetric' : 'asymmetric (zero points)',
    ...(q.actOrder ? ['act-order'] : []),
  ];
  return `${parts.join(', ')}${q.dense.length ? `; left dense: ${clip(q.dense.join(', '), 120)}` : ''}`;
}

const ratio = (x: number | null) => (x === null ? 'n/a' : x.toFixed(3));

/** Rows for inspect's totals table: [label, text]. */
export function quantizationRows(r: QuantizationReport): string[][] {
  if (!r.supported) return [['quantization', `${clip(r.method, 60)}: ${r.reason}`]];
  const t = r.tensors;
  const all = `all tensors ${ratio(bytesPerParameter(t.bytes + t.otherBytes, t.parameters + t.otherParameters))}`;
  const quantized = t.modules === 0
    ? `none: no 2-D ${t.packed} tensor; ${all}`
    : `${t.modules} matri${t.modules === 1 ? 'x' : 'ces'}: ${formatCount(t.parameters)} parameters (${exact(t.parameters)}) in ${formatBytes(Number(t.bytes))}` +
      ` = ${ratio(bytesPerParameter(t.bytes, t.parameters))} bytes per parameter; ${all}`;
  return [
    ['quantization', describeScheme(r.scheme)],
    ['quantized', quantized],
  ];
}

/** inspect --json's `quantization` member. */
export function quantizationJson(r: QuantizationReport): Record<string, unknown> {
  if (!r.supported) return { supported: false, method: r.method, reason: r.reason };
  const { scheme: q, tensors: t } = r;
  const round = (x: number | null) => (x === null ? null : Math.round(x * 1e4) / 1e4);
  return {
    supported: true,
    method: q.method,
    format: q.format,
    bits: q.bits,
    group_size: q.groupSize,
    symmetric: q.symmetric,
    act_order: q.actOrder,
    dense_modules: q.dense,
    quantized_matrices: t.modules,
    quantized_parameters: jsonInteger(t.parameters),
    quantized_bytes: jsonInteger(t.bytes),
    bytes_per_parameter: round(bytesPerParameter(t.bytes, t.parameters)),
    all_parameters: jsonInteger(t.parameters + t.otherParameters),
    all_bytes_per_parameter: round(bytesPerParameter(t.bytes + t.otherBytes, t.parameters + t.otherParameters)),
  };
}

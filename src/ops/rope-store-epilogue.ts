// The launcher side of the gemvs' ROPE_STORE epilogue (Gemv, GemvCoalesced, QGemv; the shader
// side is shaders/common/rope_store.wgsl and rope_store_params.wgsl): what the epilogue
// writes, the Params fields it reads after a gemv's own, and the checks every gemv makes
// before binding it (checkRopeStoreShape, then the gemv's own on its dense or quantized
// weight, then ropeStoreEpilogue). The epilogue is qkv_rope_store without qk-norm, so its
// shape, rope and output checks are QkvRopeStore's.

import { type GpuTensor, singleBuffer } from '../gpu/gpu-tensor.js';
import { type Step, stepProblem } from '../gpu/step.js';
import { checkLinearOperands, type LinearCreated } from './linear-prepare.js';
import type { ComputeDtype } from './op.js';
import { checkRopeFits, checkRopeStoreOutputs, type QkvRopeStoreShape } from './qkv-rope-store.js';
import type { Rope } from './rope.js';

/** What a ROPE_STORE gemv writes besides the projection: qkv_rope_store's shape and outputs (QkvRopeStoreBuffers without inputs or norms). */
export interface GemvRopeStoreTargets {
  readonly shape: QkvRopeStoreShape;
  readonly step: Step;
  /** (rows, nHeads, headDim): the rotated q. */
  readonly qOut: GPUBuffer;
  readonly kCache: GPUBuffer;
  readonly vCache: GPUBuffer;
  /** The layer's rope, or null for a NoPE layer. */
  readonly rope: Rope | null;
}

/** The Params fields after a gemv's own, in shaders/common/rope_store_params.wgsl's order. */
export const ROPE_STORE_FIELDS = [
  ['n_heads', 'u32'],
  ['n_kv_heads', 'u32'],
  ['head_dim', 'u32'],
  ['rot_half', 'u32'], // 0: NoPE
  ['attention_factor', 'f32'],
  ['max_seq', 'u32'],
  ['slots', 'u32'],
] as const;

type RopeStoreValues = { [F in (typeof ROPE_STORE_FIELDS)[number][0]]: number };

/** A checked ROPE_STORE pass: W's shape, the epilogue's Params values, and the bindings after W (x, qOut, the bias or null, step, inv_freq, kCache, vCache). */
export interface RopeStoreOperands {
  n: number;
  k: number;
  values: RopeStoreValues;
  bindings: (GPUBuffer | null)[];
}

/** The epilogue's own bindings, in shaders/common/rope_store.wgsl's order (from ROPE_STORE_FIRST_BINDING). */
export type RopeStoreBindings = [step: GPUBuffer, invFreq: GPUBuffer, kCache: GPUBuffer, vCache: GPUBuffer];

/**
 * Throws unless `shape` is whole and fits a gemv created with `tokens` rows. The first of the
 * checks (before the gemv's own on its weight, x and qOut): a shape that is not one makes
 * those meaningless. `op` names the gemv in the message.
 */
export function checkRopeStoreShape(label: string, op: string, tokens: number, shape: QkvRopeStoreShape): void {
  const { nHeads, nKvHeads, headDim, maxSeq, slots, rows } = shape;
  for (const [name, v] of Object.entries({ nHeads, nKvHeads, headDim, maxSeq, slots, rows })) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`${label}: ${op} ropeStore ${name} = ${v} is not a positive integer`);
  }
  if (headDim % 2 !== 0) throw new Error(`${label}: ${op} ropeStore needs an even headDim, got ${headDim}`);
  if (rows !== tokens) throw new Error(`${label}: ${op} ropeStore was created with tokens ${tokens}, the shape says rows ${rows}`);
}

/**
 * Throws unless the epilogue can run once the gemv has checked its weight (n rows), x and qOut: W the joined [q; k; v] ((nH + 2·nKV)·headDim rows) in one
 * chunk, the step, caches and rope as QkvRopeStore takes them. Returns the Params values and
 * the epilogue's bindings.
 */
export function ropeStoreEpilogue(
  label: string,
  op: string,
  created: { readonly dtype: ComputeDtype; readonly scaled: boolean },
  weight: { readonly name: string; readonly chunks: readonly unknown[] },
  n: number,
  x: GPUBuffer,
  targets: GemvRopeStoreTargets,
): { values: RopeStoreValues; bindings: RopeStoreBindings } {
  const { shape, step, kCache, vCache, rope } = targets;
  const { nHeads, nKvHeads, headDim, maxSeq, slots, rows } = shape;
  if (n !== (nHeads + 2 * nKvHeads) * headDim) throw new Error(`${label}: ${op} ropeStore's weight has ${n} rows, (${nHeads} + 2·${nKvHeads})·${headDim} = ${(nHeads + 2 * nKvHeads) * headDim} are q, k and v`);
  if (weight.chunks.length !== 1) throw new Error(`${label}: ${op} ropeStore takes its [q; k; v] in one chunk, ${weight.name} has ${weight.chunks.length}`);
  const problem = stepProblem(step, rows, maxSeq, slots);
  if (problem) throw new Error(`${label}: ${op} ropeStore ${problem}`);
  checkRopeStoreOutputs(label, created.dtype, shape, targets, [x]);
  const rotHalf = rope ? checkRopeFits(label, rope, headDim, step, created.scaled) : 0;
  const values = { n_heads: nHeads, n_kv_heads: nKvHeads, head_dim: headDim, rot_half: rotHalf, attention_factor: rope?.attentionFactor ?? 1, max_seq: maxSeq, slots };
  // A NoPE layer reads no inv_freq (rot_half = 0), but the binding needs a buffer: the step's.
  return { values, bindings: [step.buffer, rope ? rope.invFreqBuffer : step.buffer, kCache, vCache] };
}

/**
 * Throws unless a ROPE_STORE gemv created with `tokens` rows and `scaled` can run: W the
 * joined [q; k; v] ((nH + 2·nKV)·headDim, K) in one chunk, bias likewise, x and qOut large
 * enough, the step, caches and rope as QkvRopeStore takes them.
 */
export function ropeStoreOperands(
  label: string,
  created: LinearCreated & { readonly tokens: number; readonly scaled: boolean },
  weight: GpuTensor,
  x: GPUBuffer,
  targets: GemvRopeStoreTargets,
  bias: GpuTensor | undefined,
): RopeStoreOperands {
  checkRopeStoreShape(label, 'gemv', created.tokens, targets.shape);
  const { nHeads, headDim } = targets.shape;
  const [n, k] = checkLinearOperands(label, created, undefined, weight, x, targets.qOut, bias, created.tokens, nHeads * headDim); // y: the q rows, rotated
  const { values, bindings } = ropeStoreEpilogue(label, 'gemv', created, weight, n, x, targets);
  // The bias is binding 4, absent without one.
  return { n, k, values, bindings: [x, targets.qOut, bias ? singleBuffer(bias) : null, ...bindings] };
}

// The checks every attention launcher makes before it prepares (shape, score options, the
// caller's buffers and step), with one set of messages: every kernel family refuses the
// same inputs the same way, by name (SHAPE_MISMATCH).

import { SluiceError } from '../errors.js';
import { stepProblem } from '../gpu/step.js';
import type { AttentionBuffers, AttentionFeatures, AttentionShape } from './attention.js';
import { type ComputeDtype, computeBytes } from './op.js';

export function attentionFail(label: string, why: string): never {
  throw new SluiceError('SHAPE_MISMATCH', `${label}: attention ${why}`);
}

/** The shape's score options, checked: the Params values and the variant features they need. */
export function attentionScoreOptions(
  label: string,
  s: AttentionShape,
): { scale: number; softcap: number; window: number; features: Required<AttentionFeatures> } {
  const scale = s.scale ?? 1 / Math.sqrt(s.headDim);
  if (!Number.isFinite(scale) || scale <= 0) attentionFail(label, `scale must be a positive number, got ${scale}`);
  const softcap = s.softcap ?? 0;
  if (s.softcap != null && !(Number.isFinite(softcap) && softcap > 0)) attentionFail(label, `softcap must be a positive number or null, got ${s.softcap}`);
  if (s.window != null && !(Number.isInteger(s.window) && s.window >= 1)) attentionFail(label, `window must be an integer ≥ 1 or null, got ${s.window}`);
  // A window reaching every position of the cache masks nothing: the plain variant.
  const window = s.window != null && s.window < s.maxSeq ? s.window : 0;
  return { scale, softcap, window, features: { softcap: softcap > 0, window: window > 0 } };
}

/** Throws unless the shape's sizes are positive integers, nHeads a multiple of nKvHeads and headDim a multiple of 4 up to maxHeadDim. */
export function checkAttentionShape(label: string, s: AttentionShape, maxTokens: number, maxHeadDim: number): void {
  const { nHeads, nKvHeads, headDim, maxSeq, slots = 1 } = s;
  for (const [name, v] of Object.entries({ nHeads, nKvHeads, headDim, maxSeq, slots, maxTokens })) {
    if (!Number.isInteger(v) || v < 1) attentionFail(label, `${name} = ${v} is not a positive integer`);
  }
  if (nHeads % nKvHeads !== 0) attentionFail(label, `needs nHeads (${nHeads}) a multiple of nKvHeads (${nKvHeads})`);
  if (headDim % 4 !== 0 || headDim > maxHeadDim) attentionFail(label, `supports headDim a multiple of 4 up to ${maxHeadDim}, got ${headDim}`);
}

export function checkAttentionBuffer(label: string, name: string, buffer: GPUBuffer, bytes: number): void {
  if (buffer.size < bytes) attentionFail(label, `${name} holds ${buffer.size} bytes, needs ${bytes}`);
}

/** The step fits the shape (rows, positions, slots) and q, out and both caches hold what the shape needs in `dtype`. */
export function checkAttentionBuffers(label: string, shape: AttentionShape, buffers: AttentionBuffers, dtype: ComputeDtype): void {
  const { nHeads, nKvHeads, headDim, maxSeq, slots = 1 } = shape;
  const maxTokens = buffers.step.maxRows;
  const problem = stepProblem(buffers.step, maxTokens, maxSeq, slots);
  if (problem) attentionFail(label, problem);
  const bytes = computeBytes(dtype);
  checkAttentionBuffer(label, 'q', buffers.q, maxTokens * nHeads * headDim * bytes);
  checkAttentionBuffer(label, 'out', buffers.out, maxTokens * nHeads * headDim * bytes);
  checkAttentionBuffer(label, 'kCache', buffers.kCache, slots * nKvHeads * maxSeq * headDim * bytes);
  checkAttentionBuffer(label, 'vCache', buffers.vCache, slots * nKvHeads * maxSeq * headDim * bytes);
}

// A float64 TypeScript reference of the whole sampling math of shaders/sample.wgsl and
// shaders/logprobs.wgsl: allowed-token mask (a disallowed id is out before anything else) → logit bias → repetition penalty → frequency and presence penalties
// (vLLM's apply_penalties, counting generated ids only) → temperature → top-k → top-p →
// min-p → the kept renormalised distribution; the draw u = hash(seed, step) walked in index
// order; and the raw log-softmax with its top alternatives (ties → lower id).

import type { PenaltyParams, SamplingParams } from '../../src/ops/sample.js';

const range = (n: number, from = 0) => Array.from({ length: n }, (_, i) => from + i);

/** What the kernel sees of a row besides its logits. */
export interface RowContext {
  /** The row's history ids (prompt, then generated). */
  history?: readonly number[];
  /** history[generatedFrom ..] are this request's generated ids (default: none are). */
  generatedFrom?: number;
  /** Token id → bias. */
  bias?: ReadonlyMap<number, number>;
  /** Allowed-token bits (bit i & 31 of word i >> 5 = id i may be drawn); omitted → all may. */
  mask?: Uint32Array;
}

/** Whether `ctx`'s mask lets id `i` be drawn. */
export function allowedBy(ctx: RowContext, i: number): boolean {
  return !ctx.mask || ((ctx.mask[i >>> 5] >>> (i & 31)) & 1) === 1;
}

export type ReferenceParams = SamplingParams & Partial<PenaltyParams>;

/** z before temperature: bias, then the penalties, in float64 (NaN → -inf); NaN where the mask disallows. */
export function adjustedLogits(logits: Float32Array, p: ReferenceParams, ctx: RowContext = {}): Float64Array {
  const n = logits.length;
  const z = Float64Array.from(logits, (v) => (Number.isNaN(v) ? -Infinity : v));
  const out = adjusted(z, p, ctx, n);
  for (let i = 0; i < n; i++) if (!allowedBy(ctx, i)) out[i] = Number.NaN; // out before everything else
  return out;
}

function adjusted(z: Float64Array, p: ReferenceParams, ctx: RowContext, n: number): Float64Array {
  for (const [id, b] of ctx.bias ?? []) if (id < n) z[id] += b;
  const history = ctx.history ?? [];
  const from = ctx.generatedFrom ?? history.length;
  const counts = new Map<number, number>();
  for (const id of history.slice(from)) counts.set(id, (counts.get(id) ?? 0) + 1);
  for (const id of new Set(history)) {
    if (id >= n) continue;
    if (p.repetitionPenalty !== 1) z[id] = z[id] > 0 ? z[id] / p.repetitionPenalty : z[id] * p.repetitionPenalty;
    const c = counts.get(id) ?? 0;
    z[id] -= c * (p.frequencyPenalty ?? 0) + (c > 0 ? (p.presencePenalty ?? 0) : 0);
  }
  return z;
}

/**
 * The argmax of the adjusted logits over the allowed ids (ties → lowest id), and its margin
 * over the allowed runner-up; id 0xffffffff (the kernel's NONE) when the mask allows none.
 */
export function greedyReference(logits: Float32Array, p: ReferenceParams, ctx: RowContext = {}): { id: number; margin: number } {
  const z = adjustedLogits(logits, p, ctx);
  let id = -1;
  for (let i = 0; i < z.length; i++) if (allowedBy(ctx, i) && (id < 0 || z[i] > z[id])) id = i;
  if (id < 0) return { id: 0xffffffff, margin: Infinity };
  let second = -Infinity;
  for (let i = 0; i < z.length; i++) if (i !== id && allowedBy(ctx, i)) second = Math.max(second, z[i]);
  return { id, margin: z[id] - second };
}

/**
 * The ids the kernel keeps, in float64, and their renormalised probabilities (in id order).
 * `slack` loosens every threshold a little (top-p + slack, thresholds · (1 − slack)) so that
 * f32 rounding on the GPU cannot put an id just past a boundary outside the set.
 */
export function keptSet(logits: Float32Array, p: ReferenceParams, ctxOrHistory: RowContext | readonly number[] = {}, slack = 0): Map<number, number> {
  const ctx = Array.isArray(ctxOrHistory) ? { history: ctxOrHistory as readonly number[] } : (ctxOrHistory as RowContext);
  const n = logits.length;
  const z = adjustedLogits(logits, p, ctx);
  const m = z.reduce((a, b) => (Number.isNaN(b) ? a : Math.max(a, b / p.temperature)), -Infinity);
  const e = z.map((v) => (Number.isNaN(v) ? 0 : Math.exp(v / p.temperature - m))); // p ∝ e, p_max ∝ 1; a disallowed id 0
  const order = range(n).sort((a, b) => e[b] - e[a] || a - b);
  let thr = p.topK > 0 && p.topK < n ? e[order[p.topK - 1]] : 0;
  const topKMass = order.reduce((s, i) => s + (e[i] >= thr ? e[i] : 0), 0);
  if (p.topP < 1) {
    let acc = 0;
    for (const i of order) {
      acc += e[i];
      if (acc >= Math.min(1, p.topP + slack) * topKMass) {
        thr = Math.max(thr, e[i]);
        break;
      }
    }
  }
  thr = Math.min(Math.max(thr, p.minP), 1) * (1 - slack);
  const ids = range(n).filter((i) => e[i] >= thr && e[i] > 0);
  const w = ids.reduce((s, i) => s + e[i], 0);
  return new Map(ids.map((i) => [i, e[i] / w]));
}

/** PCG hash (Jarzynski & Olano 2020) in u32 arithmetic, as the shader's pcg(). */
function pcg(v: number): number {
  const state = (Math.imul(v >>> 0, 747796405) + 2891336453) >>> 0;
  const word = Math.imul(((state >>> ((state >>> 28) + 4)) ^ state) >>> 0, 277803737) >>> 0;
  return ((word >>> 22) ^ word) >>> 0;
}

/** The kernel's uniform draw in [0, 1): 23 bits of hash(seed, step). */
export function drawU(seed: number, step: number): number {
  return (pcg((seed ^ pcg(step)) >>> 0) >>> 9) / 8388608;
}

/**
 * The ids a seeded draw may give: the kept id whose cumulative interval (in id order) holds
 * u, and its neighbours when u lies within `tol` of an interval's end (f32 sums on the GPU).
 */
export function drawCandidates(kept: Map<number, number>, seed: number, step: number, tol = 1e-5): number[] {
  const u = drawU(seed, step);
  const ids = [...kept.keys()].sort((a, b) => a - b);
  const out: number[] = [];
  let acc = 0;
  for (const id of ids) {
    const lo = acc;
    acc += kept.get(id)!;
    if (u >= lo - tol && u < acc + tol) out.push(id);
  }
  return out.length ? out : [ids[ids.length - 1]];
}

/** Float64 log-softmax of the raw logits (NaN → -inf). */
export function logSoftmax(logits: Float32Array): Float64Array {
  const z = Float64Array.from(logits, (v) => (Number.isNaN(v) ? -Infinity : v));
  const m = z.reduce((a, b) => Math.max(a, b), -Infinity);
  const lse = m + Math.log(z.reduce((s, v) => s + Math.exp(v - m), 0));
  return z.map((v) => v - lse);
}

/** The `top` most likely ids of the raw logits, most likely first, ties → lower id. */
export function topLogprobs(logits: Float32Array, top: number): { id: number; logprob: number }[] {
  const lp = logSoftmax(logits);
  return range(lp.length)
    .sort((a, b) => lp[b] - lp[a] || a - b)
    .slice(0, top)
    .map((id) => ({ id, logprob: lp[id] }));
}

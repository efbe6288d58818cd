// The reference of the attention kernels, in float64 and written as the math reads:
//   O[t, h] = softmax_j(cap(Q[t, h] · K[h / group, j] · scale)) V[h / group, j],
//   p − window < j ≤ p = positions[t]
// where cap(s) = tanh(s / softcap) · softcap with a softcap (transformers'
// eager_attention_forward: after the scaling, before the mask), and the window bound is
// transformers' sliding_window_overlay `kv_idx > q_idx - sliding_window`.
// Three plain loops, no tiling, no online softmax: nothing shared with the kernel's scheme.
// Masked keys are never read (they may be NaN in the tests).

export interface ReferenceShape {
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  /** Positions per head in the cache arrays. */
  maxSeq: number;
  /** Default 1 / sqrt(headDim). */
  scale?: number;
  softcap?: number | null;
  window?: number | null;
}

/** Positions start, start + 1, …, start + count − 1: one sequence's next tokens. */
export function positionRange(start: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => start + i);
}

/**
 * q: (tokens, nHeads, headDim), row t at positions[t] (tokens = positions.length); kCache,
 * vCache: (nKvHeads, maxSeq, headDim). Returns O (tokens, nHeads, headDim) in float64.
 */
export function attentionReference(
  q: ArrayLike<number>,
  kCache: ArrayLike<number>,
  vCache: ArrayLike<number>,
  shape: ReferenceShape,
  positions: readonly number[],
): Float64Array {
  const { nHeads, nKvHeads, headDim: d, maxSeq } = shape;
  const tokens = positions.length;
  const group = nHeads / nKvHeads;
  const scale = shape.scale ?? 1 / Math.sqrt(d);
  const cap = shape.softcap ?? null;
  const out = new Float64Array(tokens * nHeads * d);
  const scores = new Float64Array(maxSeq);
  for (let t = 0; t < tokens; t++) {
    const p = positions[t];
    const keys = p + 1; // causal: positions 0 ..= p
    const first = shape.window == null ? 0 : Math.max(0, p - shape.window + 1); // p − window < j
    for (let h = 0; h < nHeads; h++) {
      const qOff = (t * nHeads + h) * d;
      const kvBase = Math.floor(h / group) * maxSeq * d;
      let max = -Infinity;
      for (let j = first; j < keys; j++) {
        let s = 0;
        for (let i = 0; i < d; i++) s += q[qOff + i] * kCache[kvBase + j * d + i];
        scores[j] = cap === null ? s * scale : Math.tanh((s * scale) / cap) * cap;
        max = Math.max(max, scores[j]);
      }
      let sum = 0;
      for (let j = first; j < keys; j++) {
        scores[j] = Math.exp(scores[j] - max);
        sum += scores[j];
      }
      for (let j = first; j < keys; j++) {
        const p = scores[j] / sum;
        for (let i = 0; i < d; i++) out[qOff + i] += p * vCache[kvBase + j * d + i];
      }
    }
  }
  return out;
}

/** The cache after storing new rows (T, nKvHeads, headDim), row t at positions[t] (T = positions.length). */
export function kvStoreReference(
  cache: Float32Array,
  rows: Float32Array,
  nKvHeads: number,
  headDim: number,
  maxSeq: number,
  positions: readonly number[],
): Float32Array {
  const out = cache.slice();
  for (let t = 0; t < positions.length; t++) {
    for (let h = 0; h < nKvHeads; h++) {
      const src = (t * nKvHeads + h) * headDim;
      out.set(rows.subarray(src, src + headDim), (h * maxSeq + positions[t]) * headDim);
    }
  }
  return out;
}

// The KV cache in slots (src/gpu/step.ts): caches (slots, nKvHeads, maxSeq, headDim), row
// r of a pass is token rows[r].position of the sequence in slot rows[r].slot. The
// references apply the one-sequence references of attention-reference.ts to each row's own
// slot of the cache, one row at a time: none of the kernels' slot arithmetic, blocks or runs
// is shared. And the caches the slot tests start from: NaN wherever no row may read.

import type { ComputeDtype } from '../../src/ops/op.js';
import { attentionReference, kvStoreReference, type ReferenceShape } from './attention-reference.js';
import { asDtype, randomValues } from './op-helpers.js';

export interface SlotRow {
  slot: number;
  position: number;
}

interface CacheShape {
  nKvHeads: number;
  headDim: number;
  maxSeq: number;
}

/** Slot `slot` of a (slots, nKvHeads, maxSeq, headDim) cache: a view, writes go through. */
function slotView(cache: Float32Array, slot: number, { nKvHeads, headDim, maxSeq }: CacheShape): Float32Array {
  const size = nKvHeads * maxSeq * headDim;
  return cache.subarray(slot * size, (slot + 1) * size);
}

/** The cache after storing new rows (R, nKvHeads, headDim), row r at (rows[r].slot, rows[r].position). */
export function slotKvStoreReference(cache: Float32Array, values: Float32Array, shape: CacheShape, rows: readonly SlotRow[]): Float32Array {
  const out = cache.slice();
  const width = shape.nKvHeads * shape.headDim;
  rows.forEach(({ slot, position }, r) => {
    const view = slotView(out, slot, shape);
    view.set(kvStoreReference(view, values.subarray(r * width, (r + 1) * width), shape.nKvHeads, shape.headDim, shape.maxSeq, [position]));
  });
  return out;
}

/** O (R, nHeads, headDim) in float64: row r attends over slot rows[r].slot's keys 0 ..= its position. */
export function slotAttentionReference(
  q: Float32Array,
  kCache: Float32Array,
  vCache: Float32Array,
  shape: ReferenceShape,
  rows: readonly SlotRow[],
): Float64Array {
  const width = shape.nHeads * shape.headDim;
  const out = new Float64Array(rows.length * width);
  rows.forEach(({ slot, position }, r) => {
    const qRow = q.subarray(r * width, (r + 1) * width);
    out.set(attentionReference(qRow, slotView(kCache, slot, shape), slotView(vCache, slot, shape), shape, [position]), r * width);
  });
  return out;
}

/** First key position the query at `pos` sees: pos + 1 − window, or 0. */
export const windowFirst = (pos: number, window: number | null | undefined): number => (window == null ? 0 : Math.max(0, pos + 1 - window));

/**
 * A (slots, nKvHeads, maxSeq, headDim) cache holding random values (rounded to `dtype`) in
 * each slot only at the positions its rows may read — from the window start of the
 * slot's smallest row position to its largest — and NaN everywhere else: other slots,
 * positions past, before the window. A kernel that reads outside its own row's range in
 * its own slot then writes NaN (or, reading NaN under a mask, 0 · NaN = NaN).
 */
export function poisonedSlotCache(rng: () => number, shape: CacheShape & { slots: number; window?: number | null }, rows: readonly SlotRow[], dtype: ComputeDtype): Float32Array {
  const { nKvHeads, headDim: d, maxSeq, slots } = shape;
  const cache = new Float32Array(slots * nKvHeads * maxSeq * d).fill(Number.NaN);
  for (let slot = 0; slot < slots; slot++) {
    const positions = rows.filter((r) => r.slot === slot).map((r) => r.position);
    if (positions.length === 0) continue;
    const lo = windowFirst(Math.min(...positions), shape.window);
    const hi = Math.max(...positions);
    const view = slotView(cache, slot, shape);
    for (let h = 0; h < nKvHeads; h++) view.set(asDtype(randomValues(rng, (hi + 1 - lo) * d), dtype), (h * maxSeq + lo) * d);
  }
  return cache;
}

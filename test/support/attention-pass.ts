// One pass of the attention tests (attention.test.ts, attention-slots.test.ts): a KV cache
// poisoned with NaN wherever no row may read (poisonedSlotCache), this pass's K/V stored
// by kv_store, then attention — prefill (prepare) or flash-decoding (prepareDecode) — in
// one submit; and the float64 reference of the same inputs (slot-reference.ts).

import { Step } from '../../src/gpu/step.js';
import type { Attention, AttentionShape } from '../../src/ops/attention.js';
import type { KvStore } from '../../src/ops/kv-store.js';
import { type ComputeDtype, runOps } from '../../src/ops/op.js';
import { asDtype, outputBuffer, randomValues, readArray, uploadArray } from './op-helpers.js';
import { poisonedSlotCache, type SlotRow, slotAttentionReference, slotKvStoreReference } from './slot-reference.js';

export interface PassCase extends AttentionShape {
  /** This call's rows: each one's slot and position. */
  rows: readonly SlotRow[];
  /** The step's rows (≥ rows.length): blocks past this call's must exit. */
  maxRows: number;
  /** prepareDecode (flash-decoding past one split) rather than prepare. */
  decode?: boolean;
}

export interface PassResult {
  /** The rows' outputs (rows, nHeads, headDim), as the GPU wrote them. */
  got: Float32Array;
  want: Float64Array;
  /** The attention op's pipeline labels, in dispatch order. */
  pipelines: string[];
}

/**
 * Runs `c` once with fresh random inputs from `rng`; `writeStep` fills the step (default:
 * step.write of the rows' positions and slots).
 */
export async function storeAndAttend(
  device: GPUDevice,
  // Only these two are called, so any launcher with Attention's prepare signatures will do (AttentionTiled).
  ops: { attention: Pick<Attention, 'prepare' | 'prepareDecode'>; store: KvStore },
  c: PassCase,
  dtype: ComputeDtype,
  rng: () => number,
  name: string,
  writeStep?: (step: Step) => void,
): Promise<PassResult> {
  const { rows, nHeads, nKvHeads: nKv, headDim: d, maxRows } = c;
  const slots = c.slots ?? 1;
  const kHost = poisonedSlotCache(rng, { ...c, slots }, rows, dtype);
  const vHost = poisonedSlotCache(rng, { ...c, slots }, rows, dtype);
  const kNew = asDtype(randomValues(rng, maxRows * nKv * d), dtype); // rows past the step's: never stored
  const vNew = asDtype(randomValues(rng, maxRows * nKv * d), dtype);
  const q = asDtype(randomValues(rng, maxRows * nHeads * d, -5, 5), dtype); // peaky softmax: rescaling matters
  const bufs = {
    q: uploadArray(device, q, dtype),
    kCache: uploadArray(device, kHost, dtype),
    vCache: uploadArray(device, vHost, dtype),
    out: outputBuffer(device, maxRows * nHeads * d, dtype === 'F16' ? 2 : 4),
    k: uploadArray(device, kNew, dtype),
    v: uploadArray(device, vNew, dtype),
  };
  const step = new Step(device, 'test.step', { rows: maxRows, positions: c.maxSeq, slots });
  const storeOp = ops.store.prepare('test.kv_store', c, { ...bufs, step });
  const attnOp = c.decode ? ops.attention.prepareDecode(name, c, { ...bufs, step }) : ops.attention.prepare(name, c, { ...bufs, step });
  if (writeStep) writeStep(step);
  else step.write(rows.map((r) => r.position), rows.map((r) => r.slot));
  try {
    await runOps(device, [storeOp, attnOp]);
    const got = await readArray(device, bufs.out, rows.length * nHeads * d, dtype);
    const kAll = slotKvStoreReference(kHost, kNew, c, rows);
    const vAll = slotKvStoreReference(vHost, vNew, c, rows);
    const want = slotAttentionReference(q, kAll, vAll, c, rows);
    return { got, want, pipelines: attnOp.dispatches.map((x) => x.pipeline.label) };
  } finally {
    storeOp.destroy();
    attnOp.destroy();
    step.destroy();
    for (const b of Object.values(bufs)) b.destroy();
  }
}

/** Where the first NaN of `values` is, or null. */
export function noNaN(values: Float32Array): string | null {
  const at = values.findIndex(Number.isNaN);
  return at < 0 ? null : `NaN at ${at}`;
}

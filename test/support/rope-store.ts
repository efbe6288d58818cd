// What the ROPE_STORE tests of the three gemvs (gemv-rope-store.test.ts, qgemv-rope-store.test.ts)
// share: the outputs of a fused run and of its unfused reference (the gemv into [q | k | v],
// then QkvRopeStore), both starting from the same stale bytes, and their byte-for-byte check.

import { expect } from 'vitest';
import { readBuffer } from '../../src/gpu/read-back.js';
import type { Step } from '../../src/gpu/step.js';
import { parseRope, ropeTables } from '../../src/model/rope-scaling.js';
import type { ComputeDtype } from '../../src/ops/op.js';
import type { QkvRopeStoreShape } from '../../src/ops/qkv-rope-store.js';
import type { Rope } from '../../src/ops/rope.js';
import { asDtype, decode, encode, randomValues, uploadArray } from './op-helpers.js';

/** One decode layer's shape and step row, as both tests' cases give it. */
export interface RopeStoreCase {
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  /** Rotated elements per head, or null: a NoPE layer. */
  rotary: number | null;
  /** The rope's attention factor (1: unscaled). */
  factor: number;
  /** x's width. */
  k: number;
  bias: boolean;
  /** x is the un-normed residual stream (the RMSNorm in the kernel). */
  rms: boolean;
  maxSeq: number;
  slots: number;
  /** The step row's KV slot and position. */
  slot: number;
  position: number;
}

/** inv_freq of a plain rope over `rotary` elements (theta 500,000 where rotary is a multiple of 64, else 10,000). */
export const invFreqOf = (rotary: number): Float32Array => ropeTables(parseRope({ head_dim: rotary, rope_theta: rotary % 64 === 0 ? 500_000 : 10_000 }).rope).invFreq;

/** Index and values of the first element where two byte strings of `dtype` differ, or null. */
export function firstDiff(got: Uint8Array, want: Uint8Array, dtype: ComputeDtype): string | null {
  if (Buffer.from(got.buffer, got.byteOffset, got.byteLength).equals(want)) return null;
  const size = dtype === 'F16' ? 2 : 4;
  for (let i = 0; i < want.length; i += size) {
    if (!Buffer.from(got.subarray(i, i + size)).equals(want.subarray(i, i + size))) return `element ${i / size}: got ${decode(got.subarray(i, i + size), dtype)[0]}, unfused ${decode(want.subarray(i, i + size), dtype)[0]}`;
  }
  return null;
}

/** The rows a step runs: each one's KV slot and position. */
export type StepRows = readonly { slot: number; position: number }[];

/**
 * The fused op's outputs (qOut, kCache, vCache) and the reference's (qRef, kRef, vRef), for
 * `shape` (shape.rows rows of q), all holding the same random stale values until written.
 * expectSame() reads both sets and checks them equal byte for byte, and that the first step
 * row's V and q were written at all.
 */
export function ropeStoreOutputs(device: GPUDevice, dtype: ComputeDtype, shape: QkvRopeStoreShape, rng: () => number) {
  const { nHeads, nKvHeads, headDim: d, maxSeq, slots, rows } = shape;
  const [qDim, kvDim, bytes] = [nHeads * d, nKvHeads * d, dtype === 'F16' ? 2 : 4];
  const stale = asDtype(randomValues(rng, slots * kvDim * maxSeq, -4, 4), dtype); // what a cache row holds until written
  const qStale = asDtype(randomValues(rng, rows * qDim), dtype);
  const [kCache, vCache, kRef, vRef] = [0, 1, 2, 3].map(() => uploadArray(device, stale, dtype));
  const [qOut, qRef] = [0, 1].map(() => uploadArray(device, qStale, dtype));
  const read = (buffer: GPUBuffer, size: number) => readBuffer(device, buffer, 0, Math.ceil(size / 4) * 4).then((b) => b.subarray(0, size));
  return {
    fused: { qOut, kCache, vCache },
    reference: { qOut: qRef, kCache: kRef, vCache: vRef },
    /** The unfused QkvRopeStore's buffers for `step`, its q, k and v views into `qkv` (rows of [q | k | v]). */
    glueBuffers(step: Step, qkv: GPUBuffer, rope: Rope | null) {
      const view = (offset: number) => ({ buffer: qkv, offset, stride: qDim + 2 * kvDim });
      return { step, q: view(0), k: view(qDim), v: view(qDim + kvDim), qOut: qRef, kCache: kRef, vCache: vRef, rope };
    },
    async expectSame(what: string, stepRows: StepRows): Promise<void> {
      const cacheBytes = slots * kvDim * maxSeq * bytes;
      const [qGot, qWant, kGot, kWant, vGot, vWant] = await Promise.all([
        read(qOut, rows * qDim * bytes),
        read(qRef, rows * qDim * bytes),
        ...[kCache, kRef, vCache, vRef].map((buf) => read(buf, cacheBytes)),
      ]);
      expect(firstDiff(qGot, qWant, dtype), `q ${what}`).toBeNull();
      expect(firstDiff(kGot, kWant, dtype), `k cache ${what}`).toBeNull();
      expect(firstDiff(vGot, vWant, dtype), `v cache ${what}`).toBeNull();
      // and written at all: the first row's V (KV head 0) and q differ from the stale bytes
      const at = (stepRows[0].slot * nKvHeads * maxSeq + stepRows[0].position) * d * bytes;
      expect(Buffer.from(vGot.subarray(at, at + d * bytes)).equals(encode(stale, dtype).subarray(at, at + d * bytes)), `v row written ${what}`).toBe(false);
      expect(Buffer.from(qGot.subarray(0, qDim * bytes)).equals(encode(qStale, dtype).subarray(0, qDim * bytes)), `q written ${what}`).toBe(false);
    },
    destroy(): void {
      for (const buf of [kCache, vCache, kRef, vRef, qOut, qRef]) buf.destroy();
    },
  };
}

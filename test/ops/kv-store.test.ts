// kv_store, F32 and F16, against its reference (test/support/attention-reference.ts): a
// bit-exact copy of each step row's K and V to its position, nothing else written; turn
// after turn through one prepared op (the step alone changes), rows at positions that are
// not consecutive nor in order, rows past the step's count left alone; a cache in slots
// (rows of several sequences, each at its own slot and position).

import { describe, expect, it } from 'vitest';
import { readBuffer } from '../../src/gpu/read-back.js';
import { Step } from '../../src/gpu/step.js';
import { KvStore } from '../../src/ops/kv-store.js';
import { type ComputeDtype, runOps } from '../../src/ops/op.js';
import { kvStoreReference, positionRange } from '../support/attention-reference.js';
import { useGpuTestDevice } from '../support/gpu-helpers.js';
import { asDtype, encode, outputBuffer, randomValues, uploadArray } from '../support/op-helpers.js';
import { mulberry32 } from '../support/safetensors-bytes.js';
import { type SlotRow, slotKvStoreReference } from '../support/slot-reference.js';

const gpu = useGpuTestDevice('test.kv_store');
const rng = mulberry32(0x5704e);

function write(buffer: GPUBuffer, values: Float32Array, dtype: ComputeDtype): void {
  gpu.device.queue.writeBuffer(buffer, 0, encode(values, dtype) as Uint8Array<ArrayBuffer>);
}

describe.each(['F32', 'F16'] as const)('%s', (dtype) => {
  const skip = (): boolean => dtype === 'F16' && !gpu.device.features.has('shader-f16');
  const bytes = dtype === 'F16' ? 2 : 4;

  it('writes each row at its step position exactly and nothing else, turn after turn', async () => {
    if (skip()) return expect(skip()).toBe(true); // said, not silent: no F16 on this adapter
    const store = await KvStore.create(gpu.device, dtype);
    // (nKvHeads, headDim, maxSeq, step rows): head rows of 1 to 40 units, thread counts not
    // multiples of the workgroup.
    for (const [nKv, d, maxSeq, maxRows] of [[2, 64, 40, 16], [3, 80, 29, 29], [1, 4, 7, 3], [5, 12, 300, 33]] as const) {
      let kHost = asDtype(randomValues(rng, nKv * maxSeq * d), dtype); // stale garbage
      let vHost = asDtype(randomValues(rng, nKv * maxSeq * d), dtype);
      const kCache = uploadArray(gpu.device, kHost, dtype);
      const vCache = uploadArray(gpu.device, vHost, dtype);
      const k = outputBuffer(gpu.device, maxRows * nKv * d, bytes);
      const v = outputBuffer(gpu.device, maxRows * nKv * d, bytes);
      const step = new Step(gpu.device, 'test.step', { rows: maxRows, positions: maxSeq });
      const op = store.prepare('test.kv_store', { nKvHeads: nKv, headDim: d, maxSeq }, { step, k, v, kCache, vCache });
      // Turns of the same prepared op: a prompt, one token, the tail of the cache, then rows
      // at scattered positions in no order.
      const first = Math.min(maxRows, maxSeq - 3);
      const scattered = [maxSeq - 1, 0, Math.floor(maxSeq / 2)].slice(0, maxRows);
      for (const positions of [positionRange(0, first), [first], positionRange(maxSeq - 2, 2), scattered]) {
        const kNew = asDtype(randomValues(rng, maxRows * nKv * d), dtype); // rows past the step's: never stored
        const vNew = asDtype(randomValues(rng, maxRows * nKv * d), dtype);
        write(k, kNew, dtype);
        write(v, vNew, dtype);
        step.write(positions);
        await runOps(gpu.device, [op]);
        kHost = kvStoreReference(kHost, kNew, nKv, d, maxSeq, positions);
        vHost = kvStoreReference(vHost, vNew, nKv, d, maxSeq, positions);
        for (const [buffer, host] of [[kCache, kHost], [vCache, vHost]] as const) {
          const got = await readBuffer(gpu.device, buffer, 0, host.length * bytes);
          expect(Buffer.from(got).equals(encode(host, dtype)), `${nKv}×${d}, positions ${positions.join(',')}`).toBe(true); // a copy: bit-exact
        }
      }
      op.destroy();
      step.destroy();
      for (const b of [kCache, vCache, k, v]) b.destroy();
    }
  });

  it('writes each row into its own slot of a cache in slots, nothing else', async () => {
    if (skip()) return expect(skip()).toBe(true);
    const store = await KvStore.create(gpu.device, dtype);
    // (nKvHeads, headDim, maxSeq, slots, rows): a decode pass of one row per slot, a chunk of
    // one slot, rows of several slots mixed.
    const passes: [number, number, number, number, SlotRow[]][] = [
      [2, 64, 40, 3, [{ slot: 2, position: 5 }, { slot: 0, position: 39 }, { slot: 1, position: 17 }]],
      [3, 20, 29, 4, positionRange(7, 11).map((position) => ({ slot: 3, position }))],
      [1, 4, 7, 5, [{ slot: 4, position: 6 }, { slot: 0, position: 0 }, { slot: 4, position: 5 }, { slot: 3, position: 6 }, { slot: 1, position: 2 }]],
    ];
    for (const [nKv, d, maxSeq, slots, rows] of passes) {
      const shape = { nKvHeads: nKv, headDim: d, maxSeq, slots };
      const kHost = asDtype(randomValues(rng, slots * nKv * maxSeq * d), dtype); // stale garbage
      const vHost = asDtype(randomValues(rng, slots * nKv * maxSeq * d), dtype);
      const kNew = asDtype(randomValues(rng, rows.length * nKv * d), dtype);
      const vNew = asDtype(randomValues(rng, rows.length * nKv * d), dtype);
      const bufs = {
        kCache: uploadArray(gpu.device, kHost, dtype),
        vCache: uploadArray(gpu.device, vHost, dtype),
        k: uploadArray(gpu.device, kNew, dtype),
        v: uploadArray(gpu.device, vNew, dtype),
      };
      const step = new Step(gpu.device, 'test.step', { rows: rows.length, positions: maxSeq, slots });
      const op = store.prepare('test.kv_store.slots', shape, { ...bufs, step });
      step.write(Uint32Array.from(rows, (r) => r.position), Uint32Array.from(rows, (r) => r.slot));
      await runOps(gpu.device, [op]);
      for (const [buffer, host, values] of [[bufs.kCache, kHost, kNew], [bufs.vCache, vHost, vNew]] as const) {
        const got = await readBuffer(gpu.device, buffer, 0, host.length * bytes);
        const want = encode(slotKvStoreReference(host, values, shape, rows), dtype);
        expect(Buffer.from(got).equals(want), JSON.stringify({ shape, rows })).toBe(true); // a copy: bit-exact
      }
      op.destroy();
      step.destroy();
      for (const b of Object.values(bufs)) b.destroy();
    }
  });
});

it('refuses a step that does not fit, and bad shapes, by name', async () => {
  const store = await KvStore.create(gpu.device, 'F32');
  const buf = outputBuffer(gpu.device, 1024, 4);
  const step = new Step(gpu.device, 'test.step', { rows: 4, positions: 8 });
  const shape = { nKvHeads: 2, headDim: 32, maxSeq: 8 };
  const bufs = { step, k: buf, v: buf, kCache: buf, vCache: buf };
  store.prepare('x', shape, bufs).destroy();
  expect(() => store.prepare('x', { ...shape, maxSeq: 7 }, bufs)).toThrow(/x: kv_store step test.step allows positions up to 8, the cache holds 7/);
  expect(() => store.prepare('x', { ...shape, headDim: 128 }, bufs)).toThrow(/kCache holds 4096 bytes, needs 8192/);
  expect(() => store.prepare('x', { ...shape, nKvHeads: 0 }, bufs)).toThrow(/nKvHeads = 0 is not a positive integer/);
  step.destroy();
  buf.destroy();
});

// The step buffer (src/gpu/step.ts): its bytes as the WGSL struct lays them out, one
// writeBuffer per write, its checks; the token ids a step may hold at an aligned offset,
// written in that same one writeBuffer (issue 21); and the struct declared identically in
// every shader that binds it.

import { readFileSync } from 'node:fs';
import { expect, it } from 'vitest';
import { readBuffer } from '../../src/gpu/read-back.js';
import { SluiceError } from '../../src/errors.js';
import { Step, STEP_WGSL, stepProblem } from '../../src/gpu/step.js';
import { countingDevice } from '../support/count-writes.js';
import { useGpuTestDevice } from '../support/gpu-helpers.js';

const gpu = useGpuTestDevice('test.step');

const words = async (step: Step, count: number, offset = 0): Promise<number[]> => {
  const bytes = await readBuffer(gpu.device, step.buffer, offset, count * 4);
  return [...new Uint32Array(bytes.buffer, bytes.byteOffset, count)];
};

/** Step.ids' offset: the rows' bytes rounded up to the device's storage offset alignment. */
const idsOffset = (rows: number): number => {
  const align = gpu.device.limits.minStorageBufferOffsetAlignment;
  return Math.ceil(((1 + 2 * rows) * 4) / align) * align;
};

it('lays out rows, then (slot, position) per row; a write covers only the rows in use', async () => {
  const step = new Step(gpu.device, 'test.step', { rows: 5, positions: 100, slots: 3 });
  expect(step.buffer.size).toBe(48); // (1 + 2·5) u32 = 44 bytes, padded to 16
  expect(await words(step, 11)).toEqual([5, 0, 0, 0, 1, 0, 2, 0, 3, 0, 4]); // made valid: positions 0..4
  step.writeRange(40, 3, 2);
  expect(await words(step, 11)).toEqual([3, 2, 40, 2, 41, 2, 42, 0, 3, 0, 4]); // rows 3, 4 left as they were
  step.write([5, 9, 10], [0, 1, 0]);
  expect(await words(step, 7)).toEqual([3, 0, 5, 1, 9, 0, 10]);
  step.write([99]);
  expect(await words(step, 3)).toEqual([1, 0, 99]);
  step.destroy();
});

it('refuses rows, positions and slots outside what it was made for, by name', () => {
  const step = new Step(gpu.device, 'model.decode', { rows: 2, positions: 16 });
  expect(() => step.writeRange(0, 3)).toThrow(/model.decode: step rows = 3, prepared for 1..2/);
  expect(() => step.writeRange(15, 2)).toThrow(/positions \[15, 17\) exceed the cache \(16\)/);
  expect(() => step.write([3, -1])).toThrow(/row 1: position -1 is outside the cache \(16\)/);
  expect(() => step.write([1.5])).toThrow(/position 1.5/);
  expect(() => step.write([1, 2], [0])).toThrow(/1 slots for 2 rows/);
  expect(() => step.writeRange(0, 1, 1)).toThrow(/slot 1 is not one of the 1 slots/);
  expect(() => new Step(gpu.device, 'x', { rows: 1, positions: 0 })).toThrow(/step positions = 0 is not a positive integer/);
  step.destroy();
});

it('writes rows from reused typed arrays; an op over a step checks its rows, positions and slots', async () => {
  const step = new Step(gpu.device, 'model.decode', { rows: 4, positions: 600, slots: 4 });
  const positions = new Uint32Array([130, 5, 17]);
  const slots = new Uint32Array([2, 0, 3]);
  step.write(positions, slots);
  expect(await words(step, 7)).toEqual([3, 2, 130, 0, 5, 3, 17]);
  positions[1] = 6; // the next token of each sequence, same arrays
  step.write(positions, slots);
  expect(await words(step, 7)).toEqual([3, 2, 130, 0, 6, 3, 17]);
  expect(stepProblem(step, 4, 600, 4)).toBeNull();
  expect(stepProblem(step, 3, 600, 4)).toBe('step model.decode has 4 rows, the buffers hold 3');
  expect(stepProblem(step, 4, 500, 4)).toBe('step model.decode allows positions up to 600, the cache holds 500');
  expect(stepProblem(step, 4, 600)).toBe('step model.decode allows slots up to 4, the cache holds 1');
  step.destroy();
});

it('with ids: rows, the gap and the ids of a write go up in one writeBuffer; the ids read back at the aligned offset', async () => {
  const counter = countingDevice(gpu.device);
  const step = new Step(counter.device, 'test.step', { rows: 5, positions: 100, slots: 3, ids: true });
  const at = idsOffset(5);
  expect(step.ids).toEqual({ buffer: step.buffer, offset: at, size: 20 });
  expect(step.buffer.size).toBe(Math.ceil((at + 20) / 16) * 16);
  expect(at % gpu.device.limits.minStorageBufferOffsetAlignment).toBe(0);
  expect(await words(step, 5, at)).toEqual([0, 0, 0, 0, 0]); // made valid: id 0 (a real row) until written
  expect(await words(step, 11)).toEqual([5, 0, 0, 0, 1, 0, 2, 0, 3, 0, 4]); // the rows as without ids

  step.writeRange(40, 3, 2, [7, 0, 2 ** 32 - 1]);
  expect(counter.writes).toEqual([{ label: 'test.step.step', offset: 0, bytes: at + 12 }]);
  expect(await words(step, 11)).toEqual([3, 2, 40, 2, 41, 2, 42, 0, 3, 0, 4]);
  expect(await words(step, 5, at)).toEqual([7, 0, 2 ** 32 - 1, 0, 0]);
  expect(await words(step, (at - 44) / 4, 44)).toEqual(new Array((at - 44) / 4).fill(0)); // the gap, written as zeros

  // Reused typed arrays (Float64Array: ids keep their sign, so a bad one is seen, not wrapped).
  const [positions, slots, ids] = [new Uint32Array([5, 9]), new Uint32Array([0, 1]), new Float64Array([11, 12])];
  step.write(positions, slots, ids);
  expect(counter.writes.length).toBe(2);
  expect(counter.writes[1].bytes).toBe(at + 8);
  expect(await words(step, 5)).toEqual([2, 0, 5, 1, 9]);
  expect(await words(step, 5, at)).toEqual([11, 12, 2 ** 32 - 1, 0, 0]);

  // Without ids: the rows only, the ids left as they were.
  step.write([3]);
  expect(counter.writes[2].bytes).toBe(12);
  expect(await words(step, 5, at)).toEqual([11, 12, 2 ** 32 - 1, 0, 0]);
  step.destroy();
});

it('ids start past the rows at any row count (64 rows: 516 bytes of rows)', async () => {
  const step = new Step(gpu.device, 'test.step64', { rows: 64, positions: 70, slots: 64, ids: true });
  const at = idsOffset(64);
  expect(at).toBeGreaterThanOrEqual(516);
  expect(step.ids?.offset).toBe(at);
  const ids = Array.from({ length: 64 }, (_, r) => 1000 + 3 * r);
  step.write(ids.map((_, r) => r), ids.map((_, r) => 63 - r), ids);
  expect(await words(step, 64, at)).toEqual(ids);
  expect((await words(step, 129)).slice(127)).toEqual([0, 63]); // the last row: slot 0, position 63
  expect(new Step(gpu.device, 'test.no_ids', { rows: 64, positions: 70 }).ids).toBeNull();
  step.destroy();
});

it('refuses token ids that are not one u32 per row, or a step without ids, before writing anything', () => {
  const counter = countingDevice(gpu.device);
  const step = new Step(counter.device, 'model.decode', { rows: 2, positions: 16, ids: true });
  const plain = new Step(counter.device, 'model.plain', { rows: 2, positions: 16 });
  const refusals: [() => void, RegExp][] = [
    [() => plain.writeRange(0, 1, 0, [3]), /model.plain: step was made without ids \(new Step\(…, \{ ids: true \}\)\)/],
    [() => step.writeRange(0, 1, 0, [3, 4]), /model.decode: step 2 token ids for 1 rows/],
    [() => step.write([0, 1], undefined, [5]), /1 token ids for 2 rows/],
    [() => step.writeRange(0, 2, 0, [5, -1]), /row 1: token id -1 is not a u32/],
    [() => step.writeRange(0, 1, 0, [1.5]), /row 0: token id 1.5 is not a u32/],
    [() => step.writeRange(0, 1, 0, [Number.NaN]), /token id NaN is not a u32/],
    [() => step.write([0], undefined, [2 ** 32]), /token id 4294967296 is not a u32/],
    [() => step.writeRange(0, 3, 0, [1, 2, 3]), /rows = 3, prepared for 1..2/],
  ];
  for (const [call, message] of refusals) {
    expect(call).toThrow(SluiceError);
    expect(call).toThrow(message);
  }
  expect(counter.writes).toEqual([]);
  step.destroy();
  plain.destroy();
});

it('every kernel reading the step declares the struct exactly as step.ts does', () => {
  for (const shader of ['rope', 'kv_store', 'attention', 'attention_tiled', 'qkv_rope_store']) {
    const source = readFileSync(`shaders/${shader}.wgsl`, 'utf8');
    expect(source, shader).toContain(STEP_WGSL);
    expect(source, shader).toMatch(/@binding\(1\) var<storage, read> step: Step;/);
  }
});

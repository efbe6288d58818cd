// The step buffer (src/gpu/step.ts): its bytes as the WGSL struct lays them out, one
// writeBuffer per write, its checks; and the struct declared identically in every shader
// that binds it.

import { readFileSync } from 'node:fs';
import { expect, it } from 'vitest';
import { readBuffer } from '../../src/gpu/read-back.js';
import { Step, STEP_WGSL, stepProblem } from '../../src/gpu/step.js';
import { useGpuTestDevice } from '../support/gpu-helpers.js';

const gpu = useGpuTestDevice('test.step');

const words = async (step: Step, count: number): Promise<number[]> => {
  const bytes = await readBuffer(gpu.device, step.buffer, 0, count * 4);
  return [...new Uint32Array(bytes.buffer, bytes.byteOffset, count)];
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

it('every kernel reading the step declares the struct exactly as step.ts does', () => {
  for (const shader of ['rope', 'kv_store', 'attention']) {
    const source = readFileSync(`shaders/${shader}.wgsl`, 'utf8');
    expect(source, shader).toContain(STEP_WGSL);
    expect(source, shader).toMatch(/@binding\(1\) var<storage, read> step: Step;/);
  }
});

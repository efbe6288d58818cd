// permute: y[r, j] = x[r, perm[j]] (the input gather of an act-order Linear), F32 and F16, on
// seeded random shapes (not multiples of the workgroup) and permutations, against the
// TypeScript reference: a copy, so exact. Plus the identity with W: permuting W's columns
// and x alike leaves W·x unchanged, which is why act-order needs nothing else.

import { describe, expect, it } from 'vitest';
import { runOps } from '../../src/ops/op.js';
import { Permute, permuteReference } from '../../src/ops/permute.js';
import { useGpuTestDevice } from '../support/gpu-helpers.js';
import { asDtype, outputBuffer, randomValues, readArray, uploadArray } from '../support/op-helpers.js';
import { arrayMismatch } from '../support/read-quantized.js';
import { mulberry32 } from '../support/safetensors-bytes.js';

const gpu = useGpuTestDevice('test.permute');
const rng = mulberry32(0x9e7);
const int = (lo: number, hi: number) => lo + Math.floor(rng() * (hi - lo + 1));

/** A seeded random permutation of 0..k−1 (Fisher–Yates). */
function randomPerm(k: number): Uint32Array {
  const perm = Uint32Array.from({ length: k }, (_, i) => i);
  for (let i = k - 1; i > 0; i--) {
    const j = int(0, i);
    [perm[i], perm[j]] = [perm[j], perm[i]];
  }
  return perm;
}

// Named: one element, one row, a workgroup ± 1; then seeded shapes.
const SHAPES: [number, number][] = [[1, 1], [1, 255], [3, 257], [2, 256], ...Array.from({ length: 12 }, (): [number, number] => [int(1, 9), int(2, 700)])];

describe.each(['F32', 'F16'] as const)('permute %s', (dtype) => {
  it(`${SHAPES.length} seeded shapes and permutations equal the reference exactly`, async () => {
    const skip = dtype === 'F16' && !gpu.device.features.has('shader-f16');
    if (skip) return expect(skip).toBe(true); // said, not silent: no F16 on this adapter
    const permute = await Permute.create(gpu.device, dtype);
    for (const [rows, k] of SHAPES) {
      const x = asDtype(randomValues(rng, rows * k, -10, 10), dtype);
      const perm = randomPerm(k);
      const buffers = [uploadArray(gpu.device, perm, 'U32'), uploadArray(gpu.device, x, dtype), outputBuffer(gpu.device, rows * k, dtype === 'F16' ? 2 : 4)];
      const op = permute.prepare(`test.permute.${rows}x${k}`, rows, k, buffers[0], buffers[1], buffers[2]);
      await runOps(gpu.device, [op]);
      const got = await readArray(gpu.device, buffers[2], rows * k, dtype);
      expect(arrayMismatch(`${rows}×${k}`, got, permuteReference(x, rows, k, perm)), `${rows}×${k}`).toBeNull();
      op.destroy();
      buffers.forEach((b) => b.destroy());
    }
  });
});

it('W[:, perm]·x[perm] = W·x: the reference gather is the one act-order needs', () => {
  const [n, k] = [5, 37];
  const w = randomValues(rng, n * k);
  const x = randomValues(rng, k);
  const perm = randomPerm(k);
  const wp = new Float32Array(n * k);
  for (let r = 0; r < n; r++) for (let j = 0; j < k; j++) wp[r * k + j] = w[r * k + perm[j]];
  const xp = permuteReference(x, 1, k, perm);
  for (let r = 0; r < n; r++) {
    let a = 0;
    let b = 0;
    for (let j = 0; j < k; j++) {
      a += w[r * k + j] * x[j];
      b += wp[r * k + j] * xp[j];
    }
    expect(b).toBeCloseTo(a, 9);
  }
});

it('prepare refuses in-place, empty shapes and short buffers', async () => {
  const permute = await Permute.create(gpu.device, 'F32');
  const small = outputBuffer(gpu.device, 4, 4);
  const big = outputBuffer(gpu.device, 64, 4);
  const other = outputBuffer(gpu.device, 64, 4);
  expect(() => permute.prepare('p', 2, 8, big, big, big)).toThrow('p: permute cannot run in place (x and y are one buffer)');
  expect(() => permute.prepare('p', 0, 8, big, big, small)).toThrow('p: permute needs rows ≥ 1 and k ≥ 1, got 0 × 8');
  expect(() => permute.prepare('p', 2, 8, small, big, other)).toThrow('p: permute perm holds 16 bytes, needs 32');
  expect(() => permute.prepare('p', 4, 8, big, small, big)).toThrow('p: permute x holds 16 bytes, needs 128');
  for (const b of [small, big, other]) b.destroy();
});

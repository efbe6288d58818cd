// add: out = a + b and a += b, F32 and F16, on seeded random lengths (not multiples of
// the workgroup), against a TypeScript reference.

import { describe, expect, it } from 'vitest';
import { Add } from '../../src/ops/add.js';
import { runOps, type ComputeDtype } from '../../src/ops/op.js';
import { useGpuTestDevice } from '../support/gpu-helpers.js';
import { asDtype, closeness, outputBuffer, randomValues, readArray, roundF16, uploadArray } from '../support/op-helpers.js';
import { mulberry32 } from '../support/safetensors-bytes.js';

const gpu = useGpuTestDevice('test.add');

// Named regression cases first, then seeded random lengths.
const rng = mulberry32(0xadd);
const LENGTHS = [1, 255, 256, 257, ...Array.from({ length: 12 }, () => 1 + Math.floor(rng() * 5000))];

/** The reference: the sum of the stored operands, rounded to the output dtype. */
function reference(a: Float32Array, b: Float32Array, dtype: ComputeDtype): Float32Array {
  const sum = a.map((x, i) => Math.fround(x + b[i]));
  return dtype === 'F16' ? sum.map(roundF16) : sum;
}

describe.each(['F32', 'F16'] as const)('add %s', (dtype) => {
  it.each([false, true])('in place: %s, %d random lengths', async (inPlace) => {
    const skip = dtype === 'F16' && !gpu.device.features.has('shader-f16');
    if (skip) return expect(skip).toBe(true); // said, not silent: no F16 on this adapter
    const add = await Add.create(gpu.device, dtype, { inPlace });
    const width = dtype === 'F16' ? 2 : 4;
    for (const n of LENGTHS) {
      const a = asDtype(randomValues(rng, n, -100, 100), dtype);
      const b = asDtype(randomValues(rng, n, -100, 100), dtype);
      const aBuf = uploadArray(gpu.device, a, dtype);
      const bBuf = uploadArray(gpu.device, b, dtype);
      const out = inPlace ? undefined : outputBuffer(gpu.device, n, width);
      const op = add.prepare(`test.add.${n}`, n, aBuf, bBuf, out);
      await runOps(gpu.device, [op]);
      const got = await readArray(gpu.device, out ?? aBuf, n, dtype);
      // F32: exact (one IEEE add, rounded once). F16: the reference rounds to f32 and then
      // to f16, which can differ from one rounding by an ulp (2^-10 relative) on rare ties.
      expect(closeness(got, reference(a, b, dtype), 0, dtype === 'F16' ? 2 ** -10 : 0), `n=${n}`).toBeNull();
      op.destroy();
      for (const buffer of [aBuf, bBuf, out]) buffer?.destroy();
    }
  });
});

it('prepare refuses an out buffer in place, and needs one otherwise', async () => {
  const inPlace = await Add.create(gpu.device, 'F32', { inPlace: true });
  const buf = outputBuffer(gpu.device, 4, 4);
  expect(() => inPlace.prepare('x', 4, buf, buf, buf)).toThrow(/in place takes no out buffer/);
  const plain = await Add.create(gpu.device, 'F32');
  expect(() => plain.prepare('x', 4, buf, buf)).toThrow(/needs an out buffer/);
  buf.destroy();
});

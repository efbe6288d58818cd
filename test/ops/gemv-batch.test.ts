// gemv over several rows of x (GemvOptions.tokens, the batched decode pass): y (T, N) =
// x (T, K) · Wᵀ (+ b), or y += that (residual). Each row must be bit for bit what the
// one-row gemv gives for that row alone (the batched decode equals each sequence's solo
// run), and close to the float64 reference. Seeded shapes with K off the vector widths (the
// scalar tail), N off the rows per workgroup, odd token counts (the lane pairs that share x
// load a padded last token), chunked weights, F32 and F16. The batch needs subgroups (the
// subgroup reduction; x shared by lane pairs where subgroups hold ≥ 8).

import { describe, expect, it } from 'vitest';
import { alignUp } from '../../src/gpu/gpu-tensor.js';
import { pipelineCache } from '../../src/gpu/pipeline-cache.js';
import { GEMV_MAX_TOKENS, GEMV_ROWS_PER_WORKGROUP, Gemv, gemvBatchVariants } from '../../src/ops/gemv.js';
import { runOps, type ComputeDtype } from '../../src/ops/op.js';
import { useGpuTestDevice } from '../support/gpu-helpers.js';
import { asDtype, linearReference, nmse, randomValues, readArray, uploadArray, uploadWeights } from '../support/op-helpers.js';
import { mulberry32 } from '../support/safetensors-bytes.js';

const gpu = useGpuTestDevice('test.gemv_batch');
const rng = mulberry32(0xb47c);

const noF16 = (dtype: ComputeDtype): boolean => dtype === 'F16' && !gpu.device.features.has('shader-f16');

// [N, K]: the scalar tail (K % 8 ≠ 0), one vector step fewer on some lanes (K / 8 not a
// multiple of 4), N past a workgroup, then seeded ones.
const SHAPES: [number, number][] = [
  [1, 3],
  [GEMV_ROWS_PER_WORKGROUP + 3, 40],
  [70, 33],
  [37, 104],
  ...Array.from({ length: 4 }, (_, i): [number, number] => [1 + Math.floor(rng() * 250), 8 * (1 + Math.floor(rng() * (i % 2 ? 120 : 20)))]),
];

interface Case {
  tokens: number;
  bias: boolean;
  outF32: boolean;
  residual: boolean;
  chunked: boolean;
}

/** Runs the batched op and the one-row op on each row of x; returns both outputs and the reference. */
async function runCase(dtype: ComputeDtype, subgroups: boolean, [n, k]: [number, number], c: Case) {
  const { device } = gpu;
  const [batched, single] = await Promise.all([
    Gemv.create(device, dtype, { tokens: c.tokens, bias: c.bias, outF32: c.outF32, residual: c.residual, subgroups }),
    Gemv.create(device, dtype, { bias: c.bias, outF32: c.outF32, residual: c.residual, subgroups }),
  ]);
  const w = randomValues(rng, n * k);
  const x = asDtype(randomValues(rng, c.tokens * k, -2, 2), dtype);
  const b = c.bias ? randomValues(rng, n) : undefined;
  const outDtype: ComputeDtype = c.outF32 ? 'F32' : dtype;
  const y0 = asDtype(c.residual ? randomValues(rng, c.tokens * n, -4, 4) : new Float32Array(c.tokens * n).fill(7), outDtype);
  const rowBytes = k * (dtype === 'F16' ? 2 : 4);
  const weights = await uploadWeights(device, { w: { shape: [n, k], values: w }, ...(b ? { b: { shape: [n], values: b } } : {}) }, dtype, c.chunked ? alignUp(Math.ceil(n / 3) * rowBytes, 16) : undefined);
  const [wt, bt] = [weights.tensors.get('w')!, weights.tensors.get('b')];
  const spare = 8;
  const withSpare = new Float32Array(c.tokens * n + spare).fill(7);
  withSpare.set(y0);
  const y = uploadArray(device, withSpare, outDtype, 'test.gemv_batch.y');
  const xBuf = uploadArray(device, x, dtype, 'test.gemv_batch.x');
  const op = batched.prepare('test.gemv_batch', wt, xBuf, y, bt);
  await runOps(device, [op]);
  const got = await readArray(device, y, c.tokens * n + spare, outDtype);
  // Row by row through the one-row gemv.
  const solo = new Float32Array(c.tokens * n);
  for (let t = 0; t < c.tokens; t++) {
    const xRow = uploadArray(device, x.subarray(t * k, (t + 1) * k), dtype, 'test.gemv_batch.x_row');
    const yRow = uploadArray(device, y0.subarray(t * n, (t + 1) * n), outDtype, 'test.gemv_batch.y_row');
    const one = single.prepare('test.gemv_batch.solo', wt, xRow, yRow, bt);
    await runOps(device, [one]);
    solo.set(await readArray(device, yRow, n, outDtype), t * n);
    one.destroy();
    xRow.destroy();
    yRow.destroy();
  }
  const projection = linearReference(x, asDtype(w, dtype), [c.tokens, n, k], b && asDtype(b, dtype));
  const want = c.residual ? projection.map((v, i) => v + y0[i]) : projection;
  op.destroy();
  weights.destroy();
  y.destroy();
  xBuf.destroy();
  return { got: got.subarray(0, c.tokens * n), spare: got.subarray(c.tokens * n), solo, want, chunks: wt.chunks.length };
}

it('the batched variants compile with no message', async () => {
  const features = gpu.device.features as ReadonlySet<string>;
  const variants = [2, 3, GEMV_MAX_TOKENS].flatMap((t) => gemvBatchVariants(features.has('shader-f16') ? ['F32', 'F16'] : ['F32'], features, t));
  expect(new Set(variants.map((v) => v.key)).size).toBe(variants.length);
  for (const { key, spec } of variants) {
    const info = await pipelineCache(gpu.device).module(spec.shader, spec.flags).getCompilationInfo();
    expect(info.messages.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`), key).toEqual([]);
  }
});

it('refuses a token count outside [1, GEMV_MAX_TOKENS] and buffers too small for the rows', async () => {
  await expect(Gemv.create(gpu.device, 'F32', { tokens: 0 })).rejects.toThrow(/tokens must be a whole number in \[1, 8\]/);
  await expect(Gemv.create(gpu.device, 'F32', { tokens: GEMV_MAX_TOKENS + 1 })).rejects.toThrow(/tokens/);
  await expect(Gemv.create(gpu.device, 'F32', { tokens: 2, subgroups: false })).rejects.toThrow(/needs the subgroup reduction/);
  const gemv = await Gemv.create(gpu.device, 'F32', { tokens: 4 });
  const weights = await uploadWeights(gpu.device, { w: { shape: [10, 16], values: randomValues(rng, 160) } }, 'F32');
  const x = uploadArray(gpu.device, new Float32Array(3 * 16), 'F32');
  const y = uploadArray(gpu.device, new Float32Array(4 * 10), 'F32');
  expect(() => gemv.prepare('test.small', weights.tensors.get('w')!, x, y)).toThrow(/x holds 192 bytes, \(4, 16\) F32 needs 256/);
  weights.destroy();
  x.destroy();
  y.destroy();
});

describe.each(['F32', 'F16'] as const)('gemv %s over several rows', (dtype) => {
  it('each row the bits of the one-row gemv, close to float64', async () => {
    if (noF16(dtype)) return expect(noF16(dtype)).toBe(true); // said, not silent: no F16 on this adapter
    if (!gpu.device.features.has('subgroups')) return expect(gpu.device.features.has('subgroups')).toBe(false); // said: the batch needs subgroups
    const subgroups = true;
    for (const [i, shape] of SHAPES.entries()) {
      const tokens = [2, 3, 4, GEMV_MAX_TOKENS, 5][i % 5];
      // Case i: bit 0 bias, bit 1 chunked, bit 2 residual (else outF32 in F16 on odd cases).
      const [bias, chunked, residual] = [i & 1, i & 2, i & 4].map(Boolean);
      const c: Case = { tokens, bias, chunked, residual, outF32: !residual && dtype === 'F16' && i % 3 === 0 };
      const { got, spare, solo, want, chunks } = await runCase(dtype, subgroups, shape, c);
      const what = `N=${shape[0]} K=${shape[1]} ${JSON.stringify(c)}`;
      if (chunked && shape[0] > 2) expect(chunks, what).toBeGreaterThan(1);
      expect([...got], `${what}: the one-row gemv's bits`).toEqual([...solo]);
      const f16Out = dtype === 'F16' && !c.outF32;
      expect(nmse(got, want), what).toBeLessThan(c.residual ? (f16Out ? 2 ** -20 : 1e-9) : f16Out ? 2 ** -22 + 1e-10 : 1e-10);
      expect([...spare], `${what}: y past T·N untouched`).toEqual(new Array(spare.length).fill(7));
    }
  });
});

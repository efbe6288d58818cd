// argmax: (rows, cols) f32 logits → u32 index per row, exactly against a TypeScript
// reference, on seeded random shapes: cols not multiples of the workgroup, ties (values
// drawn from a few integers), -inf and NaN entries, rows of only -inf or only NaN, and a
// Llama-3 vocabulary row.

import { expect, it } from 'vitest';
import { pipelineCache } from '../../src/gpu/pipeline-cache.js';
import { Argmax, ARGMAX_WORKGROUP, argmaxVariants, NO_TOKEN } from '../../src/ops/argmax.js';
import { runOps } from '../../src/ops/op.js';
import { useGpuTestDevice } from '../support/gpu-helpers.js';
import { outputBuffer, randomValues, readU32, uploadArray } from '../support/op-helpers.js';
import { mulberry32 } from '../support/safetensors-bytes.js';

const gpu = useGpuTestDevice('test.argmax');

interface Shape {
  rows: number;
  cols: number;
  /** Values from this many integers (many ties), or 0 for continuous values. */
  levels: number;
  /** Fractions of entries set to -inf and to NaN. */
  negInf: number;
  nan: number;
}

// Named cases first, then seeded random shapes.
const rng = mulberry32(0xa5a5);
const SHAPES: Shape[] = [
  { rows: 1, cols: 1, levels: 0, negInf: 0, nan: 0 },
  { rows: 3, cols: ARGMAX_WORKGROUP, levels: 2, negInf: 0, nan: 0 }, // ties across threads
  { rows: 2, cols: ARGMAX_WORKGROUP + 1, levels: 0, negInf: 0.5, nan: 0.2 },
  { rows: 2, cols: 300, levels: 0, negInf: 1, nan: 0 }, // only -inf → 0
  { rows: 2, cols: 300, levels: 0, negInf: 0, nan: 1 }, // only NaN → NO_TOKEN
  { rows: 2, cols: 40, levels: 0, negInf: 0.6, nan: 0.4 }, // -inf vs NaN: -inf wins
  { rows: 1, cols: 128256, levels: 0, negInf: 0.01, nan: 0.01 },
  ...Array.from({ length: 11 }, () => ({
    rows: 1 + Math.floor(rng() * 8),
    cols: 1 + Math.floor(rng() * 6000),
    levels: rng() < 0.5 ? 1 + Math.floor(rng() * 6) : 0,
    negInf: rng() < 0.3 ? rng() * 0.5 : 0,
    nan: rng() < 0.3 ? rng() * 0.2 : 0,
  })),
];

/** The first index of the largest non-NaN value; NO_TOKEN when there is none. */
function reference(x: Float32Array, rows: number, cols: number): Uint32Array {
  return Uint32Array.from({ length: rows }, (_, r) => {
    let best = NO_TOKEN;
    for (let j = 0; j < cols; j++) {
      const v = x[r * cols + j];
      if (!Number.isNaN(v) && (best === NO_TOKEN || v > x[r * cols + best])) best = j;
    }
    return best;
  });
}

function logits({ rows, cols, levels, negInf, nan }: Shape): Float32Array {
  const x = levels ? Float32Array.from({ length: rows * cols }, () => Math.floor(rng() * levels)) : randomValues(rng, rows * cols, -20, 20);
  for (let i = 0; i < x.length; i++) {
    const u = rng();
    if (u < negInf) x[i] = -Infinity;
    else if (u < negInf + nan) x[i] = NaN;
  }
  return x;
}

it('every variant compiles without messages', async () => {
  for (const { key, spec } of argmaxVariants(['F32', 'F16'], gpu.device.features as ReadonlySet<string>)) {
    const info = await pipelineCache(gpu.device).module(spec.shader, spec.flags).getCompilationInfo();
    expect(info.messages.map((m) => m.message), key).toEqual([]);
  }
});

it(`matches the reference exactly on ${SHAPES.length} shapes`, async () => {
  const argmax = await Argmax.create(gpu.device);
  for (const shape of SHAPES) {
    const { rows, cols } = shape;
    const x = logits(shape);
    const xBuf = uploadArray(gpu.device, x, 'F32');
    const out = outputBuffer(gpu.device, rows, 4);
    const op = argmax.prepare(`test.argmax.${rows}x${cols}`, rows, cols, xBuf, out);
    await runOps(gpu.device, [op]);
    expect([...(await readU32(gpu.device, out, rows))], JSON.stringify(shape)).toEqual([...reference(x, rows, cols)]);
    op.destroy();
    xBuf.destroy();
    out.destroy();
  }
});

it('the maximum in the last element, and in every thread position, is found', async () => {
  // A lone maximum moved through positions seen by different threads and loop trips.
  const cols = 3 * ARGMAX_WORKGROUP + 5;
  const positions = [0, 1, ARGMAX_WORKGROUP - 1, ARGMAX_WORKGROUP, 2 * ARGMAX_WORKGROUP + 7, cols - 1];
  const x = new Float32Array(positions.length * cols).fill(-1);
  positions.forEach((p, r) => (x[r * cols + p] = 1));
  const xBuf = uploadArray(gpu.device, x, 'F32');
  const out = outputBuffer(gpu.device, positions.length, 4);
  const op = (await Argmax.create(gpu.device)).prepare('test.argmax.positions', positions.length, cols, xBuf, out);
  await runOps(gpu.device, [op]);
  expect([...(await readU32(gpu.device, out, positions.length))]).toEqual(positions);
  op.destroy();
  xBuf.destroy();
  out.destroy();
});

it('prepare refuses an empty shape and buffers too small', async () => {
  const argmax = await Argmax.create(gpu.device);
  const buf = outputBuffer(gpu.device, 4, 4);
  expect(() => argmax.prepare('x', 1, 0, buf, buf)).toThrow(/cols ≥ 1/);
  expect(() => argmax.prepare('x', 1, 5, buf, buf)).toThrow(/needs x ≥ 20 B/);
  buf.destroy();
});

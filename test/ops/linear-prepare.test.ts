// linear-prepare: the operand and option checks of the gpu-family Linear launchers, in gemv
// mode (m undefined) and matmul mode, each refusal a one-line error naming the label and the
// problem; prepareChunks' one dispatch per chunk and its cleanup when a chunk is refused.
// No GPU: the checks read shapes, dtypes and buffer sizes only.

import { describe, expect, it } from 'vitest';
import type { GpuTensor, GpuTensorChunk } from '../../src/gpu/gpu-tensor.js';
import { checkLinearOperands, checkLinearOptions, type LinearCreated, prepareChunks } from '../../src/ops/linear-prepare.js';

/** A stand-in buffer: the checks read its size; destroy() is recorded. */
function buffer(size: number, destroyed?: Set<unknown>): GPUBuffer {
  const b = { size, destroy: () => destroyed?.add(b) };
  return b as unknown as GPUBuffer;
}

function tensor(name: string, shape: number[], dtype: 'F32' | 'F16' = 'F32', rowsPerChunk = shape[0]): GpuTensor {
  const chunks: GpuTensorChunk[] = [];
  for (let first = 0; first < shape[0]; first += rowsPerChunk) {
    const rows = Math.min(rowsPerChunk, shape[0] - first);
    chunks.push({ buffer: buffer(16), firstRow: first, rows, byteLength: 16 });
  }
  return { name, shape, storageDtype: dtype, dtype, chunks, rowsPerChunk, byteLength: 16 };
}

const plain: LinearCreated = { dtype: 'F32', bias: false, outF32: false };
const withBias: LinearCreated = { ...plain, bias: true };
const [n, k] = [8, 6];
const w = tensor('w', [n, k]);
const b = tensor('b', [n]);

describe.each([
  ['gemv', undefined, 1],
  ['matmul', 3, 3],
] as const)('checkLinearOperands, %s mode', (op, m, rows) => {
  const x = buffer(rows * k * 4);
  const y = buffer(rows * n * 4);

  it('returns [N, K] for good operands', () => {
    expect(checkLinearOperands('t', plain, m, w, x, y, undefined)).toEqual([n, k]);
    expect(checkLinearOperands('t', withBias, m, w, x, y, b)).toEqual([n, k]);
    expect(checkLinearOperands('t', { ...plain, outF32: true }, m, w, x, buffer(rows * n * 4), undefined)).toEqual([n, k]);
  });

  it.each([
    ['a bias it was not created with', () => checkLinearOperands('t', plain, m, w, x, y, b), `t: ${op} was created without bias, prepare got one`],
    ['no bias when created with one', () => checkLinearOperands('t', withBias, m, w, x, y, undefined), `t: ${op} was created with bias, prepare got none`],
    ['a bias of the wrong shape', () => checkLinearOperands('t', withBias, m, w, x, y, w), 't: w is F32 [8, 6], expected F32 [8]'],
    ['a 1-D weight', () => checkLinearOperands('t', plain, m, b, x, y, undefined), `t: ${op} needs a 2-D weight, b is [8]`],
    ['an empty weight', () => checkLinearOperands('t', plain, m, tensor('e', [0, k]), x, y, undefined), `t: ${op} needs N ≥ 1 and K ≥ 1, e is [0, 6]`],
    ['a weight in another dtype', () => checkLinearOperands('t', plain, m, tensor('h', [n, k], 'F16'), x, y, undefined), 't: h is F16 [8, 6], expected F32 [8, 6]'],
    ['a short x', () => checkLinearOperands('t', plain, m, w, buffer(16), y, undefined), `t: ${op} x holds 16 bytes, ${m ? `(${m}, ${k})` : `(${k},)`} F32 needs ${rows * k * 4}`],
    ['a short y', () => checkLinearOperands('t', plain, m, w, x, buffer(16), undefined), `t: ${op} y holds 16 bytes, ${m ? `(${m}, ${n})` : `(${n},)`} needs ${rows * n * 4}`],
    ['a y too short for f32 output', () => checkLinearOperands('t', { dtype: 'F16', bias: false, outF32: true }, m, tensor('h', [n, k], 'F16'), x, buffer(rows * n * 2), undefined), `needs ${rows * n * 4}`],
    ['x and y one buffer', () => checkLinearOperands('t', plain, m, w, y, y, undefined), `t: ${op} cannot run in place (x and y are one buffer)`],
  ])('refuses %s', (_what, call, message) => {
    expect(call).toThrow(message);
  });
});

it('matmul mode refuses a row count that is not a whole number ≥ 1, or past u32 indexes', () => {
  const [x, y] = [buffer(2 ** 20), buffer(2 ** 20)];
  for (const m of [0, -1, 1.5, Number.NaN]) {
    expect(() => checkLinearOperands('t', plain, m, w, x, y, undefined)).toThrow(`t: matmul needs M ≥ 1 rows, got ${m}`);
  }
  expect(() => checkLinearOperands('t', plain, 2 ** 30, w, x, y, undefined)).toThrow('more elements than u32 indexes');
});

it('checkLinearOptions: F16 needs shader-f16; residual never with outF32', () => {
  const device = { features: new Set<string>() } as unknown as GPUDevice;
  expect(() => checkLinearOptions('op', device, 'F16', {})).toThrow("op: F16 compute needs the device feature 'shader-f16'");
  expect(() => checkLinearOptions('op', device, 'F32', { residual: true, outF32: true })).toThrow('op: residual writes the compute dtype (the residual stream), not outF32');
  expect(() => checkLinearOptions('op', device, 'F32', { residual: true })).not.toThrow();
});

describe('prepareChunks', () => {
  const device = { createBindGroup: (d: GPUBindGroupDescriptor) => d } as unknown as GPUDevice;
  const pipeline = { getBindGroupLayout: () => ({}) } as unknown as GPUComputePipeline;
  const chunked = tensor('w', [10, k], 'F32', 4); // chunks of 4, 4 and 2 rows

  it('makes one dispatch per chunk, named by chunk when there are several, params bound first', () => {
    const destroyed = new Set<unknown>();
    const params: GPUBuffer[] = [];
    const op = prepareChunks(device, pipeline, 'p', chunked, (chunk, name) => {
      params.push(buffer(16, destroyed));
      return { params: params[params.length - 1], buffers: [chunk.buffer], workgroups: [chunk.rows] };
    });
    expect(op.dispatches.map((d) => [d.label, d.workgroups[0]])).toEqual([['p.chunk0', 4], ['p.chunk1', 4], ['p.chunk2', 2]]);
    const entries = (op.dispatches[1].bindGroup as unknown as GPUBindGroupDescriptor).entries as GPUBindGroupEntry[];
    expect(entries.map((e) => (e.resource as GPUBufferBinding).buffer)).toEqual([params[1], chunked.chunks[1].buffer]);
    expect(prepareChunks(device, pipeline, 'one', w, () => ({ params: buffer(16), buffers: [], workgroups: [1] })).dispatches[0].label).toBe('one');
    op.destroy();
    expect(destroyed.size).toBe(3);
  });

  it('frees the Params made so far when a chunk is refused, and passes the error on', () => {
    const destroyed = new Set<unknown>();
    const call = () =>
      prepareChunks(device, pipeline, 'p', chunked, (chunk, name) => {
        if (chunk.firstRow === 8) throw new Error(`${name}: too many workgroups`);
        return { params: buffer(16, destroyed), buffers: [], workgroups: [1] };
      });
    expect(call).toThrow('p.chunk2: too many workgroups');
    expect(destroyed.size).toBe(2);
  });
});

// concatQuantizedRows: a qgemv over the joined tensor gives, bit for bit, the qgemvs over the
// parts one after another (q8, q4; zero points or not; f16 and f32 scales; both qgemv paths;
// odd row counts; chunked parts and a small chunk limit so the join's chunks straddle the
// parts); mismatched parts and rows that would start mid-word are refused.

import { describe, expect, it } from 'vitest';
import { concatQuantizedRows, rowsWordAligned } from '../../src/gpu/concat-quantized.js';
import { readBuffer } from '../../src/gpu/read-back.js';
import { createQuantizedTensor, destroyQuantized, ELEMENTS_PER_WORD, type QuantizedTensor, type QuantKind, type ScaleDtype } from '../../src/gpu/quantized-tensor.js';
import { computeBytes, type ComputeDtype, runOps } from '../../src/ops/op.js';
import { QGemv, qgemvPath } from '../../src/ops/qgemv.js';
import { useGpuTestDevice } from '../support/gpu-helpers.js';
import { asDtype, outputBuffer, randomValues, uploadArray } from '../support/op-helpers.js';
import { randomQuantized, uploadQuantized } from '../support/quantized-weights.js';
import { mulberry32 } from '../support/safetensors-bytes.js';

const gpu = useGpuTestDevice('test.concat-quantized');
const rng = mulberry32(0xc0c4);

interface Case {
  kind: QuantKind;
  /** Rows of each part. */
  rows: number[];
  k: number;
  groupSize: number;
  scaleDtype: ScaleDtype;
  zeros: boolean;
  /** Rows per chunk of the join (a small chunk limit), or the device's limit. */
  rowsPerChunk?: number;
}

// Row counts odd (q, k, v of a GQA layer, scaled down), parts chunked by uploadQuantized,
// the join's chunks of 7 or 4 rows so that part boundaries fall inside them.
const CASES: Case[] = [
  { kind: 'q8', rows: [13, 5, 5], k: 256, groupSize: 32, scaleDtype: 'F16', zeros: true, rowsPerChunk: 7 },
  { kind: 'q4', rows: [13, 5, 5], k: 256, groupSize: 64, scaleDtype: 'F32', zeros: false, rowsPerChunk: 7 },
  { kind: 'q4', rows: [9, 11], k: 64, groupSize: 8, scaleDtype: 'F16', zeros: true, rowsPerChunk: 4 }, // the per-word path
  { kind: 'q8', rows: [3, 1, 7], k: 96, groupSize: 24, scaleDtype: 'F32', zeros: false },
  // 18 groups: zero rows of 18 bytes, f16 scale rows of 36. Even counts before the last part
  // keep every part word-aligned; the last chunk's single row is an 18-byte copy (rounded up).
  { kind: 'q4', rows: [6, 2, 1], k: 144, groupSize: 8, scaleDtype: 'F16', zeros: true, rowsPerChunk: 4 },
];

/** Bytes of y after `op` over `weight` (N rows) for x. */
async function qgemvBytes(op: QGemv, weight: QuantizedTensor, x: GPUBuffer, dtype: ComputeDtype): Promise<Uint8Array> {
  const n = weight.shape[0];
  const y = outputBuffer(gpu.device, n, computeBytes(dtype), 'test.y');
  const prepared = op.prepare(`test.qgemv.${weight.name}`, weight, x, y);
  await runOps(gpu.device, [prepared]);
  const bytes = await readBuffer(gpu.device, y, 0, Math.ceil((n * computeBytes(dtype)) / 4) * 4);
  prepared.destroy();
  y.destroy();
  return bytes.slice(0, n * computeBytes(dtype));
}

const dtypeOf = (device: GPUDevice): ComputeDtype => (device.features.has('shader-f16') ? 'F16' : 'F32');

describe('concatQuantizedRows', () => {
  it.each(CASES.map((c, i) => [i, c] as const))('case %i: qgemv over the join is the qgemvs over the parts, bit for bit', async (_, c) => {
    const device = gpu.device;
    const dtype = dtypeOf(device);
    const { kind, k, groupSize, scaleDtype } = c;
    const parts = c.rows.map((n, i) => ({ ...uploadQuantized(device, randomQuantized(rng, kind, n, k, groupSize, c.zeros), { kind, n, k, groupSize, scaleDtype }, n > 2), name: `part${i}` }));
    const dataRow = (k / ELEMENTS_PER_WORD[kind]) * 4;
    const limit = c.rowsPerChunk ? 16 + c.rowsPerChunk * dataRow : undefined;
    const joined = concatQuantizedRows(device, 'joined', parts, limit);
    const total = c.rows.reduce((a, b) => a + b, 0);
    const what = `${kind} rows ${c.rows.join('+')} K=${k} G=${groupSize} ${scaleDtype} zeros=${c.zeros} path=${qgemvPath(joined)}`;
    expect([joined.name, joined.kind, ...joined.shape, joined.groupSize, joined.scaleDtype, joined.hasZeros], what).toEqual(['joined', kind, total, k, groupSize, scaleDtype, c.zeros]);
    expect(joined.byteLength, what).toBe(parts.reduce((n, p) => n + p.byteLength, 0));
    if (c.rowsPerChunk) expect(joined.chunks.map((ch) => ch.rows), what).toEqual(Array.from({ length: Math.ceil(total / c.rowsPerChunk) }, (_, i) => Math.min(c.rowsPerChunk!, total - i * c.rowsPerChunk!)));

    const op = await QGemv.create(device, kind, dtype);
    const x = uploadArray(device, asDtype(randomValues(rng, k, -2, 2), dtype), dtype, 'test.x');
    const got = await qgemvBytes(op, joined, x, dtype);
    const want = new Uint8Array(got.length);
    let at = 0;
    for (const p of parts) {
      const bytes = await qgemvBytes(op, p, x, dtype);
      want.set(bytes, at);
      at += bytes.length;
    }
    const row = Math.floor(got.findIndex((b, i) => b !== want[i]) / computeBytes(dtype));
    expect(row < 0 ? 'same bits' : `row ${row} differs`, what).toBe('same bits');
    [joined, ...parts].forEach(destroyQuantized);
    x.destroy();
  });

  it('refuses parts that differ in kind, K, group size, scale storage or zero points, naming both', () => {
    const device = gpu.device;
    const make = (name: string, kind: QuantKind, k: number, groupSize: number, scaleDtype: ScaleDtype, hasZeros: boolean) =>
      createQuantizedTensor(device, name, { kind, shape: [3, k], groupSize, scaleDtype, hasZeros });
    const q = make('q_proj', 'q4', 64, 32, 'F16', false);
    const others = [
      make('k_kind', 'q8', 64, 32, 'F16', false),
      make('k_cols', 'q4', 128, 32, 'F16', false),
      make('k_group', 'q4', 64, 16, 'F16', false),
      make('k_scales', 'q4', 64, 32, 'F32', false),
      make('k_zeros', 'q4', 64, 32, 'F16', true),
    ];
    for (const o of others) {
      expect(() => concatQuantizedRows(device, 'qkv', [q, o])).toThrow(new RegExp(`^qkv: cannot join ${o.name} \\(.*\\) to q_proj \\(q4 \\[3, 64\\] group size 32, F16 scales, without zero points\\)$`));
    }
    expect(() => concatQuantizedRows(device, 'qkv', [])).toThrow('qkv: nothing to concatenate');
    [q, ...others].forEach(destroyQuantized);
  });

  it('refuses a part whose rows would start mid-word (18 one-byte zero points after an odd row count)', () => {
    const device = gpu.device;
    const make = (name: string, n: number) => createQuantizedTensor(device, name, { kind: 'q4', shape: [n, 144], groupSize: 8, scaleDtype: 'F32', hasZeros: true });
    const [a, b] = [make('gate', 3), make('up', 4)];
    expect(() => concatQuantizedRows(device, 'gate_up', [a, b])).toThrow('gate_up: cannot join up: its zeros rows are 18 bytes, so row 3 of the join starts mid-word in a buffer (copies move 4-byte words)');
    expect([a, b].map(rowsWordAligned)).toEqual([false, false]);
    [a, b].forEach(destroyQuantized);
  });

  it('says which layouts join whatever the row counts', () => {
    const layout = (k: number, groupSize: number, scaleDtype: ScaleDtype, hasZeros: boolean) => ({ kind: 'q4' as const, shape: [5, k] as const, groupSize, scaleDtype, hasZeros });
    // Llama shapes at G = 32/128 (64 and 16 groups), f32 scales of any group count, 6 groups without zeros in f16.
    expect([layout(2048, 32, 'F16', true), layout(2048, 128, 'F16', true), layout(72, 8, 'F32', false), layout(48, 8, 'F16', false)].map(rowsWordAligned)).toEqual([true, true, true, true]);
    // 9 f16 scales are 18 bytes; 18 zero points 18 bytes; 6 zero points 6 bytes.
    expect([layout(72, 8, 'F16', false), layout(576, 32, 'F16', true), layout(48, 8, 'F32', true)].map(rowsWordAligned)).toEqual([false, false, false]);
  });
});

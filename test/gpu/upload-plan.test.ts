// planTensor (src/gpu/upload-plan.ts), pure arithmetic: for seeded random shapes, dtypes and
// limits, the chunks and pieces it plans must tile the tensor exactly and respect every rule
// the loader and WebGPU rely on (binding size, 16-byte buffers, 4-byte copy offsets, whole
// f16 words for the convert kernel), plus the edge shapes and the too-large refusal.
import { describe, expect, it } from 'vitest';
import type { TensorInfo } from '../../src/checkpoint/types.js';
import { SluiceError } from '../../src/errors.js';
import { DTYPES, type Dtype, dtypeBits, dtypeBytes } from '../../src/formats/dtypes.js';
import { type ComputeDtype, ELEMENTS_PER_INVOCATION, needsConversion } from '../../src/ops/convert.js';
import { bufferDtype, type PlanLimits, planTensor, type TensorPlan } from '../../src/gpu/upload-plan.js';
import { mulberry32, randInt } from '../support/safetensors-bytes.js';

const BYTE_DTYPES = DTYPES.filter((d) => dtypeBytes(d) !== undefined);
const SUB_BYTE = DTYPES.filter((d) => dtypeBytes(d) === undefined);

function info(name: string, dtype: Dtype, shape: number[]): TensorInfo {
  const bits = shape.reduce((a, b) => a * b, 1) * dtypeBits(dtype);
  if (bits % 8 !== 0) throw new Error(`test bug: ${dtype} [${shape}] does not end on a byte`);
  return { name, dtype, shape, byteLength: bits / 8, file: 'model.safetensors' };
}

/** Every invariant of a plan; `where` prefixes failures so a seeded case can be found. */
function checkPlan(plan: TensorPlan, compute: ComputeDtype, limits: PlanLimits, where: string): void {
  // Plain checks, not expect(): a random case has thousands of pieces.
  const ok = (cond: boolean, what: string) => {
    if (!cond) throw new Error(`${where}: ${what}\n${JSON.stringify({ ...plan, info: undefined }).slice(0, 2000)}`);
  };
  const { info: t } = plan;
  ok(plan.dtype === bufferDtype(t.dtype, compute), `dtype ${plan.dtype}`);
  ok(plan.convert === needsConversion(t.dtype, compute), `convert ${plan.convert}`);
  const inBytes = dtypeBytes(t.dtype);
  const outBytes = dtypeBytes(plan.dtype);
  const rows = t.shape.length === 0 ? 1 : t.shape[0];
  const perRow = t.shape.slice(1).reduce((a, b) => a * b, 1);
  const outTotal = outBytes === undefined ? t.byteLength : rows * perRow * outBytes;

  // Chunks: consecutive rows from 0, all rows exactly once, each within one binding.
  ok(plan.chunks.length >= 1, 'at least one chunk');
  let row = 0;
  let bytes = 0;
  plan.chunks.forEach((c, i) => {
    ok(c.firstRow === row && c.firstRow === i * plan.rowsPerChunk, `chunk ${i} firstRow ${c.firstRow}`);
    ok(i < plan.chunks.length - 1 ? c.rows === plan.rowsPerChunk : c.rows <= plan.rowsPerChunk, `chunk ${i} rows ${c.rows}`);
    if (outBytes !== undefined) ok(c.byteLength === c.rows * perRow * outBytes, `chunk ${i} byteLength ${c.byteLength}`);
    ok(c.bufferSize % 16 === 0, `chunk ${i} bufferSize ${c.bufferSize} not a multiple of 16`);
    ok(c.bufferSize >= Math.max(c.byteLength, 16) && c.bufferSize < Math.max(c.byteLength, 1) + 16, `chunk ${i} bufferSize ${c.bufferSize} vs byteLength ${c.byteLength}`);
    ok(c.bufferSize <= limits.maxChunkBytes, `chunk ${i} bufferSize ${c.bufferSize} > maxChunkBytes`);
    row += c.rows;
    bytes += c.byteLength;
  });
  ok(row === rows, `rows covered ${row} of ${rows}`);
  ok(bytes === outTotal, `bytes covered ${bytes} of ${outTotal}`);
  if (plan.chunks.length > 1) {
    // As many rows per chunk as fit: one more would not.
    const maxChunk = Math.floor(limits.maxChunkBytes / 16) * 16;
    ok((plan.rowsPerChunk + 1) * perRow * outBytes! > maxChunk, `rowsPerChunk ${plan.rowsPerChunk} is not the most that fit`);
  }

  // Pieces: the source bytes in order, exactly once, each within a slot; the element
  // mapping agrees with the chunk's rows; destinations fit the chunk buffer.
  let at = 0;
  plan.pieces.forEach((p, i) => {
    const c = plan.chunks[p.chunk];
    ok(c !== undefined, `piece ${i}: no chunk ${p.chunk}`);
    ok(p.sourceOffset === at, `piece ${i} sourceOffset ${p.sourceOffset}, expected ${at}`);
    ok(p.sourceLength > 0 && p.sourceLength <= limits.pieceBytes, `piece ${i} sourceLength ${p.sourceLength}`);
    if (i > 0) ok(p.chunk >= plan.pieces[i - 1].chunk, `piece ${i} goes back a chunk`);
    if (inBytes === undefined) {
      ok(p.chunkElement === p.sourceOffset && p.elements === p.sourceLength, `sub-byte piece ${i} not in bytes`);
    } else {
      ok(p.sourceLength === p.elements * inBytes, `piece ${i} elements ${p.elements}`);
      ok(c.firstRow * perRow + p.chunkElement === p.sourceOffset / inBytes, `piece ${i} chunkElement ${p.chunkElement}`);
      ok((p.chunkElement + p.elements) * outBytes! <= c.byteLength, `piece ${i} overruns its chunk`);
      // The loader's byte copy lands at chunkElement × outBytes: copyBufferToBuffer needs 4-byte offsets.
      ok((p.chunkElement * outBytes!) % 4 === 0, `piece ${i} destination byte ${p.chunkElement * outBytes!} not 4-aligned`);
      if (plan.dtype === 'F16') ok(p.chunkElement % 2 === 0, `F16 piece ${i} starts at odd element ${p.chunkElement}`);
      // What Converter.encode accepts as a piece's first element.
      if (plan.convert) ok(p.chunkElement % ELEMENTS_PER_INVOCATION === 0, `converted piece ${i} starts at element ${p.chunkElement}`);
      // A piece that does not end its chunk must be whole 4-byte words of the source.
      if (p.chunkElement + p.elements !== c.rows * perRow) ok(p.sourceLength % 4 === 0, `inner piece ${i} of ${p.sourceLength} bytes`);
    }
    at += p.sourceLength;
  });
  ok(at === t.byteLength, `source bytes covered ${at} of ${t.byteLength}`);
}

function tooLarge(fn: () => unknown): SluiceError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(SluiceError);
    expect((e as SluiceError).code).toBe('TENSOR_TOO_LARGE');
    return e as SluiceError;
  }
  throw new Error('expected TENSOR_TOO_LARGE');
}

describe('planTensor', () => {
  it('tiles 1500 seeded random tensors exactly, within every limit', () => {
    const rng = mulberry32(0x5eed_0001);
    let chunked = 0;
    let refused = 0;
    for (let n = 0; n < 1500; n++) {
      const dtype = BYTE_DTYPES[randInt(rng, 0, BYTE_DTYPES.length - 1)];
      const compute: ComputeDtype = rng() < 0.5 ? 'F16' : 'F32';
      const rank = randInt(rng, 0, 4);
      const shape = Array.from({ length: rank }, (_, d) => (rng() < 0.05 ? 0 : randInt(rng, 1, d === 0 ? 300 : 12)));
      const limits = { maxChunkBytes: randInt(rng, 16, 6000), pieceBytes: 16 * randInt(rng, 4, 80) }; // slots ≥ 64 bytes, as the loader
      const t = info(`t${n}`, dtype, shape);
      const where = `case ${n}: ${dtype}→${compute} [${shape}] ${JSON.stringify(limits)}`;
      const outBytes = dtypeBytes(bufferDtype(dtype, compute))!;
      const rowBytes = shape.slice(1).reduce((a, b) => a * b, 1) * outBytes;
      if (rowBytes > Math.floor(limits.maxChunkBytes / 16) * 16) {
        expect(tooLarge(() => planTensor(t, compute, limits)).message, where).toContain(`"t${n}"`);
        refused++;
        continue;
      }
      const plan = planTensor(t, compute, limits);
      checkPlan(plan, compute, limits, where);
      if (plan.chunks.length > 1) chunked++;
    }
    // The seed exercises each path often.
    expect(chunked).toBeGreaterThan(200);
    expect(refused).toBeGreaterThan(30);
  });

  it('the checker itself catches broken plans', () => {
    const limits = { maxChunkBytes: 256, pieceBytes: 64 };
    const good = () => planTensor(info('w', 'BF16', [20, 10]), 'F16', limits);
    checkPlan(good(), 'F16', limits, 'good');
    const breaks: Array<(p: TensorPlan) => void> = [
      (p) => (p.pieces[1].sourceOffset += 2),
      (p) => p.pieces.splice(3, 1),
      (p) => (p.pieces[1].chunkElement += 1),
      (p) => (p.chunks[0].bufferSize += 8),
      (p) => (p.chunks[1].firstRow += 1),
      (p) => p.chunks.pop(),
      (p) => (p.rowsPerChunk -= 1),
    ];
    for (const [i, mutate] of breaks.entries()) {
      const plan = good();
      mutate(plan);
      expect(() => checkPlan(plan, 'F16', limits, `break ${i}`), `break ${i}`).toThrow();
    }
  });

  it('float dtypes: which are converted under each compute dtype', () => {
    const limits = { maxChunkBytes: 1 << 20, pieceBytes: 64 };
    const table = (compute: ComputeDtype) =>
      (['F32', 'F16', 'BF16', 'F64', 'I32', 'U8'] as const).map((d) => {
        const p = planTensor(info('x', d, [4]), compute, limits);
        return `${d}→${p.dtype}${p.convert ? ' (kernel)' : ''}`;
      });
    expect(table('F16')).toEqual(['F32→F16 (kernel)', 'F16→F16', 'BF16→F16 (kernel)', 'F64→F64', 'I32→I32', 'U8→U8']);
    expect(table('F32')).toEqual(['F32→F32', 'F16→F32 (kernel)', 'BF16→F32 (kernel)', 'F64→F64', 'I32→I32', 'U8→U8']);
  });

  it('a scalar is one row of one element', () => {
    for (const compute of ['F16', 'F32'] as const) {
      const limits = { maxChunkBytes: 16, pieceBytes: 64 };
      const plan = planTensor(info('s', 'BF16', []), compute, limits);
      checkPlan(plan, compute, limits, 'scalar');
      const outBytes = compute === 'F16' ? 2 : 4;
      expect(plan.chunks).toEqual([{ firstRow: 0, rows: 1, byteLength: outBytes, bufferSize: 16 }]);
      expect(plan.pieces).toEqual([{ chunk: 0, sourceOffset: 0, sourceLength: 2, chunkElement: 0, elements: 1 }]);
    }
  });

  it('empty tensors ([0, 4], [4, 0], [0]) get one 16-byte buffer and no pieces', () => {
    for (const shape of [[0, 4], [4, 0], [0], [3, 0, 5]]) {
      const limits = { maxChunkBytes: 64, pieceBytes: 64 };
      const plan = planTensor(info('e', 'F32', shape), 'F16', limits);
      checkPlan(plan, 'F16', limits, `[${shape}]`);
      expect(plan.chunks).toEqual([{ firstRow: 0, rows: shape[0], byteLength: 0, bufferSize: 16 }]);
      expect(plan.pieces).toEqual([]);
    }
  });

  it('a 1-D tensor splits into chunks of single-element rows', () => {
    const limits = { maxChunkBytes: 100, pieceBytes: 64 }; // 96 bytes per chunk: 48 f16 / 24 f32
    const f16 = planTensor(info('v', 'F32', [101]), 'F16', limits);
    checkPlan(f16, 'F16', limits, '1-D F16');
    expect(f16.rowsPerChunk).toBe(48);
    expect(f16.chunks.map((c) => c.rows)).toEqual([48, 48, 5]);
    expect(new Set(f16.pieces.map((p) => p.chunk))).toEqual(new Set([0, 1, 2]));
    const f32 = planTensor(info('v', 'F16', [101]), 'F32', limits);
    checkPlan(f32, 'F32', limits, '1-D F32');
    expect(f32.chunks.map((c) => c.rows)).toEqual([24, 24, 24, 24, 5]);
  });

  it('odd element counts: the last piece of a chunk may be odd, no other', () => {
    const limits = { maxChunkBytes: 4096, pieceBytes: 64 };
    for (const dtype of ['F32', 'BF16', 'F16', 'U8', 'I16', 'F64'] as const) {
      for (const compute of ['F16', 'F32'] as const) {
        const plan = planTensor(info('odd', dtype, [7, 3]), compute, limits);
        checkPlan(plan, compute, limits, `${dtype}→${compute}`);
        expect(plan.pieces.slice(0, -1).every((p) => p.elements % 2 === 0)).toBe(true);
      }
    }
  });

  it('sub-byte dtypes are one chunk of opaque bytes, in pieces', () => {
    for (const dtype of SUB_BYTE) {
      const limits = { maxChunkBytes: 4096, pieceBytes: 16 };
      const t = info('packed', dtype, [8, 12]); // 96 elements: whole bytes for 4 and 6 bits
      const plan = planTensor(t, 'F16', limits);
      checkPlan(plan, 'F16', limits, dtype);
      expect([plan.dtype, plan.convert, plan.chunks.length, plan.rowsPerChunk]).toEqual([dtype, false, 1, 8]);
      expect(plan.chunks[0].byteLength).toBe(t.byteLength);
      expect(plan.pieces.length).toBe(Math.ceil(t.byteLength / 16));
    }
    const big = info('huge.packed', 'F4', [64, 64]); // 2048 bytes, cannot split
    expect(tooLarge(() => planTensor(big, 'F32', { maxChunkBytes: 2047, pieceBytes: 64 })).message).toMatch(/"huge\.packed".*sub-byte/);
    checkPlan(planTensor(big, 'F32', { maxChunkBytes: 2048, pieceBytes: 64 }), 'F32', { maxChunkBytes: 2048, pieceBytes: 64 }, 'F4 at the limit');
  });

  it('TENSOR_TOO_LARGE when one row exceeds the limit, naming the tensor, dtype, shape and sizes', () => {
    const t = info('model.embed_tokens.weight', 'BF16', [10, 300]);
    // 300 f32 = 1200 bytes per row; 300 f16 = 600.
    const e = tooLarge(() => planTensor(t, 'F32', { maxChunkBytes: 1199, pieceBytes: 64 }));
    expect(e.message).toContain('"model.embed_tokens.weight"');
    expect(e.message).toContain('BF16 [10, 300]');
    expect(e.message).toContain('model.safetensors');
    expect(e.message).toContain('1200 bytes');
    expect(e.message).toContain('1184 bytes'); // the limit rounded down to 16
    // The same tensor fits in F16, and at exactly one row per chunk in F32.
    expect(planTensor(t, 'F16', { maxChunkBytes: 1199, pieceBytes: 64 }).rowsPerChunk).toBe(1);
    expect(planTensor(t, 'F32', { maxChunkBytes: 1200, pieceBytes: 64 }).chunks).toHaveLength(10);
    // A non-multiple of 16 rounds down: 1215 → 1200 fits, 1215 does not become 1215.
    expect(tooLarge(() => planTensor(info('x', 'F32', [2, 301]), 'F32', { maxChunkBytes: 1215, pieceBytes: 64 })).message).toContain('"x"');
  });
});

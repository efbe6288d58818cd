// loadTensors (src/gpu/load-tensors.ts) on the real software GPU: every dtype lands bit for
// bit (converted floats against the TypeScript reference, everything else unchanged), row
// chunks and staging pieces tile each tensor, and the bytes do not depend on where they came
// from (file, URL, Blob, .pth or .safetensors, torch's own fixtures). Failure paths (abort,
// out of memory, truncated files, missing shader-f16) are in load-tensors-failures.test.ts.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openCheckpointSource, openCheckpointUrl } from '../../src/checkpoint/open.js';
import { openCheckpoint } from '../../src/checkpoint/open-path.js';
import type { Checkpoint } from '../../src/checkpoint/types.js';
import { type Dtype, dtypeBytes } from '../../src/formats/dtypes.js';
import { writeTorchCheckpoint } from '../../src/formats/pytorch/writer.js';
import { writeSafetensors } from '../../src/formats/safetensors/write-file.js';
import { serializeSafetensors } from '../../src/formats/safetensors/writer.js';
import { alignUp } from '../../src/gpu/gpu-tensor.js';
import { type LoadOptions, type LoadProgress, loadTensors } from '../../src/gpu/load-tensors.js';
import { readBuffer, readTensor } from '../../src/gpu/read-back.js';
import { bufferDtype } from '../../src/gpu/upload-plan.js';
import { BlobSource } from '../../src/io/blob-source.js';
import { MemorySource } from '../../src/io/memory-source.js';
import { root } from '../support/build.js';
import { expectedBytes, ShuffledSource, tensorMismatch, useGpuTestDevice } from '../support/gpu-helpers.js';
import { TestServer } from '../support/http-server.js';
import { buildValid, byteSize, mulberry32, randomBytes, type TensorSpec } from '../support/safetensors-bytes.js';

const gpu = useGpuTestDevice('test.load');

const rng = mulberry32(0x10ad);
/** A tensor of seeded random bytes. */
const spec = (name: string, dtype: Dtype, shape: number[]): TensorSpec => ({ name, dtype, shape, data: randomBytes(rng, byteSize(dtype, shape)) });
const open = (bytes: Uint8Array, name = 'model.safetensors') => openCheckpointSource(new MemorySource(bytes, name));
const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

/**
 * Loads `checkpoint`, checks every tensor (metadata, chunks, bytes against the reference,
 * padding when asked) and returns the bytes read back by name; frees the buffers.
 */
async function loadChecked(checkpoint: Checkpoint, options: LoadOptions = {}, padding = false): Promise<Map<string, Uint8Array>> {
  const loaded = await loadTensors(checkpoint, gpu.device, options);
  const out = new Map<string, Uint8Array>();
  try {
    const infos = checkpoint.tensors().filter((t) => options.filter?.(t) ?? true);
    expect([...loaded.keys()]).toEqual(infos.map((t) => t.name));
    expect(loaded.sourceBytes).toBe(infos.reduce((a, t) => a + t.byteLength, 0));
    const maxChunk = Math.min(options.maxChunkBytes ?? Infinity, gpu.device.limits.maxStorageBufferBindingSize);
    let deviceBytes = 0;
    for (const info of infos) {
      const t = loaded.get(info.name)!;
      const dtype = bufferDtype(info.dtype, loaded.computeDtype);
      const where = `${info.name} (${info.dtype} [${info.shape}] → ${dtype})`;
      expect({ name: t.name, storageDtype: t.storageDtype, dtype: t.dtype, shape: t.shape }, where).toEqual({ ...info, dtype, storageDtype: info.dtype, byteLength: undefined, file: undefined });
      // Chunks: consecutive rows, rowsPerChunk each but the last, within the binding limit.
      const rows = info.shape.length === 0 ? 1 : info.shape[0];
      const rowBytes = info.shape.slice(1).reduce((a, b) => a * b, 1) * (dtypeBytes(dtype) ?? 0);
      let row = 0;
      t.chunks.forEach((c, i) => {
        expect([c.firstRow, c.firstRow === i * t.rowsPerChunk], `${where} chunk ${i}`).toEqual([row, true]);
        if (i < t.chunks.length - 1) expect(c.rows, `${where} chunk ${i} rows`).toBe(t.rowsPerChunk);
        if (rowBytes) expect(c.byteLength, `${where} chunk ${i} bytes`).toBe(c.rows * rowBytes);
        expect(c.buffer.size, `${where} chunk ${i} buffer`).toBe(Math.max(alignUp(c.byteLength, 16), 16));
        expect(c.buffer.size).toBeLessThanOrEqual(maxChunk);
        expect(c.buffer.usage & (GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST)).toBe(GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST);
        row += c.rows;
        deviceBytes += c.buffer.size;
      });
      expect(row, `${where} rows`).toBe(rows);
      expect(t.byteLength).toBe(t.chunks.reduce((a, c) => a + c.byteLength, 0));
      const raw = await checkpoint.read(info.name);
      const got = await readTensor(gpu.device, t);
      expect(tensorMismatch(got, expectedBytes(raw, info.dtype, dtype), dtype, info.dtype, raw), where).toBeNull();
      if (padding) {
        for (const c of t.chunks) {
          const whole = await readBuffer(gpu.device, c.buffer);
          expect(whole.subarray(c.byteLength).every((b) => b === 0), `${where}: padding is zero`).toBe(true);
        }
      }
      out.set(info.name, got);
    }
    expect(loaded.deviceBytes).toBe(deviceBytes);
  } finally {
    loaded.destroy();
  }
  return out;
}

/** Both maps hold the same names and the same bytes. */
function expectSameBytes(a: Map<string, Uint8Array>, b: Map<string, Uint8Array>, what: string): void {
  expect([...b.keys()].sort(), what).toEqual([...a.keys()].sort());
  for (const [name, bytes] of a) expect(Buffer.from(b.get(name)!).equals(bytes), `${what}: ${name}`).toBe(true);
}

const EVERY_DTYPE: TensorSpec[] = [
  spec('f32.odd', 'F32', [7]), spec('f32.mat', 'F32', [3, 5]), spec('f32.scalar', 'F32', []), spec('f32.empty', 'F32', [0, 5]),
  spec('f16.odd', 'F16', [7]), spec('f16.three', 'F16', [3]), spec('f16.scalar', 'F16', []), spec('f16.empty', 'F16', [5, 0]),
  spec('bf16.mat', 'BF16', [2, 7]), spec('bf16.scalar', 'BF16', []), spec('bf16.one', 'BF16', [1]), spec('bf16.empty', 'BF16', [0, 5]),
  spec('i64', 'I64', [3]), spec('i32', 'I32', [7]), spec('i16', 'I16', [3]), spec('i8', 'I8', [7]), spec('u8', 'U8', [3]),
  spec('bool', 'BOOL', [5]), spec('f64', 'F64', [3]), spec('u16', 'U16', [5]), spec('u32', 'U32', [3]), spec('u64', 'U64', [2]),
  spec('f8', 'F8_E4M3', [7]), spec('f4', 'F4', [6]), spec('f6', 'F6_E2M3', [4]), spec('i32.scalar', 'I32', []),
];

describe('loadTensors: every dtype', () => {
  it.each(['f16', 'f32'] as const)('dtype %s: floats converted, others copied unchanged, padding zero', async (dtype) => {
    const checkpoint = await open(await serializeSafetensors(EVERY_DTYPE));
    await loadChecked(checkpoint, { dtype }, true);
    const loaded = await loadTensors(checkpoint, gpu.device, { dtype });
    expect(loaded.computeDtype).toBe(dtype === 'f16' ? 'F16' : 'F32');
    const dtypes = Object.fromEntries([...loaded].map(([n, t]) => [n, `${t.storageDtype}→${t.dtype}`]));
    const float = dtype === 'f16' ? 'F16' : 'F32';
    expect([dtypes['f32.odd'], dtypes['f16.odd'], dtypes['bf16.mat']]).toEqual([`F32→${float}`, `F16→${float}`, `BF16→${float}`]);
    expect([dtypes.f64, dtypes.i64, dtypes.bool, dtypes.f4]).toEqual(['F64→F64', 'I64→I64', 'BOOL→BOOL', 'F4→F4']);
    loaded.destroy();
    await checkpoint.close();
  });
});

describe('loadTensors: chunks and pieces', () => {
  const CHUNKED = [
    spec('f32.wide', 'F32', [100, 37]), spec('bf16.table', 'BF16', [64, 33]), spec('f16.odd', 'F16', [50, 21]),
    spec('i32', 'I32', [40, 9]), spec('u8', 'U8', [300, 7]), spec('f64', 'F64', [20, 5]), spec('f32.vector', 'F32', [1000]),
    spec('bf16.vector', 'BF16', [999]),
  ];
  it.each([
    ['f16', 4096, 1024, 3],
    ['f32', 4096, 1024, 3],
    ['f16', 1000, 2000, 2], // 1000 → 992 per chunk; 992-byte slots
    ['f32', 1000, 200, 1], // one 192-byte slot: every piece waits for the previous one
  ] as const)('dtype %s, maxChunkBytes %i, staging %i in %i slots', async (dtype, maxChunkBytes, stagingBytes, stagingSlots) => {
    const checkpoint = await open(await serializeSafetensors(CHUNKED));
    const loaded = await loadTensors(checkpoint, gpu.device, { dtype, maxChunkBytes, stagingBytes, stagingSlots });
    const table = loaded.get('f32.wide')!;
    const rowBytes = 37 * (dtype === 'f16' ? 2 : 4);
    expect(table.rowsPerChunk).toBe(Math.floor(Math.floor(maxChunkBytes / 16) * 16 / rowBytes));
    expect(table.chunks.length).toBe(Math.ceil(100 / table.rowsPerChunk));
    expect(table.chunks.length).toBeGreaterThan(1);
    loaded.destroy();
    await loadChecked(checkpoint, { dtype, maxChunkBytes, stagingBytes, stagingSlots });
    await checkpoint.close();
  });

  it('examples/tiny: small chunks and staging, both dtypes', async () => {
    const checkpoint = await openCheckpoint(join(root, 'examples/tiny/model.safetensors'));
    for (const dtype of ['f16', 'f32'] as const) await loadChecked(checkpoint, { dtype, maxChunkBytes: 4096, stagingBytes: 4096 });
    await checkpoint.close();
  });

  it('tensors at odd byte offsets in the file load correctly', async () => {
    const tensors = [
      spec('u8', 'U8', [3]), spec('f16', 'F16', [5]), spec('bf16', 'BF16', [7]), spec('f32', 'F32', [3]),
      spec('i8', 'I8', [1]), spec('f32.mat', 'F32', [9, 3]), spec('i16', 'I16', [3]), spec('bf16.mat', 'BF16', [5, 3]),
    ];
    const checkpoint = await open(buildValid(tensors)); // back to back, in this order
    expect(checkpoint.tensors().map((t) => t.name)).toEqual(tensors.map((t) => t.name));
    for (const dtype of ['f16', 'f32'] as const) {
      await loadChecked(checkpoint, { dtype });
      await loadChecked(checkpoint, { dtype, maxChunkBytes: 48, stagingBytes: 64, stagingSlots: 1 });
    }
    await checkpoint.close();
  });
});

describe('loadTensors: sources and formats give the same buffers', () => {
  const TENSORS = [spec('embed', 'BF16', [40, 24]), spec('norm', 'F32', [24]), spec('proj', 'F16', [24, 13]), spec('ids', 'I64', [5])];
  const options: LoadOptions = { dtype: 'f16', maxChunkBytes: 512, stagingBytes: 1024, stagingSlots: 4 };

  it('local file, URL and Blob', async () => {
    const bytes = await serializeSafetensors(TENSORS);
    const path = join(gpu.dir, 'model.safetensors');
    await writeSafetensors(path, TENSORS);
    expect(Buffer.from(readFileSync(path)).equals(bytes)).toBe(true);
    const server = await TestServer.start({ '/m/model.safetensors': bytes });
    try {
      const results = [];
      for (const checkpoint of [
        await openCheckpoint(path),
        await openCheckpointUrl(server.url('/m/model.safetensors'), { prefetch: 256 }), // then Range requests
        await openCheckpointSource(new BlobSource(new Blob([bytes.slice()]), 'model.safetensors')),
      ]) {
        results.push(await loadChecked(checkpoint, options));
        await checkpoint.close();
      }
      expect(server.requests.filter((r) => r.status === 206).length).toBeGreaterThan(1);
      expectSameBytes(results[0], results[1], 'file vs URL');
      expectSameBytes(results[0], results[2], 'file vs Blob');
    } finally {
      await server.close();
    }
  });

  it('reads that complete out of order still land in place', async () => {
    const bytes = await serializeSafetensors(TENSORS);
    const source = new ShuffledSource(new MemorySource(bytes, 'model.safetensors'), 0x5107);
    const checkpoint = await openCheckpointSource(source);
    const shuffled = await loadChecked(checkpoint, { ...options, stagingBytes: 512, stagingSlots: 8 });
    expect(source.finished).not.toEqual(source.issued); // the seed's delays do reorder them
    expectSameBytes(await loadChecked(await open(bytes), options), shuffled, 'in order vs shuffled');
  });

  it('.pth written by writeTorchCheckpoint vs .safetensors', async () => {
    const tensors = [...TENSORS, spec('scalar', 'F32', []), spec('mask', 'BOOL', [6]), spec('i8', 'I8', [7]), spec('f64', 'F64', [3]),
      spec('empty', 'BF16', [0, 4]), spec('u8', 'U8', [5]), spec('i16', 'I16', [3]), spec('i32', 'I32', [3])];
    await writeSafetensors(join(gpu.dir, 'same.safetensors'), tensors);
    await writeTorchCheckpoint(join(gpu.dir, 'same.pth'), tensors.map((t) => ({ ...t, byteLength: t.data.byteLength, data: () => [t.data] })));
    for (const dtype of ['f16', 'f32'] as const) {
      const [st, pt] = [await openCheckpoint(join(gpu.dir, 'same.safetensors')), await openCheckpoint(join(gpu.dir, 'same.pth'))];
      expect(pt.format).toBe('pytorch');
      expectSameBytes(await loadChecked(st, { ...options, dtype }), await loadChecked(pt, { ...options, dtype }), `.pth vs .safetensors (${dtype})`);
      await Promise.all([st.close(), pt.close()]);
    }
  });

  it('torch fixtures: both/ .bin = .safetensors', async () => {
    const both = join(root, 'test/fixtures/pytorch/both');
    const st = await openCheckpoint(join(both, 'model.safetensors'));
    const pt = await openCheckpoint(join(both, 'pytorch_model.bin'));
    expectSameBytes(await loadChecked(st, { dtype: 'f16' }), await loadChecked(pt, { dtype: 'f16' }), 'both/');
    await Promise.all([st.close(), pt.close()]);
  });

  // The fixtures' conversions (sha256 of torch's .half() / .float() bytes, NaNs included):
  // big-endian, strided views, shards, scalars and empty tensors included.
  const FIXTURES = ['tiny-llama', 'tiny-llama-sharded', 'both', 'dtypes', 'bigendian', 'little-byteorder', 'views', 'module', 'nested'];
  it.each(FIXTURES)("torch fixture %s lands as torch's .half() and .float() bytes", async (name) => {
    const fixtures = join(root, 'test/fixtures/pytorch');
    const expected = JSON.parse(readFileSync(join(fixtures, `${name}.expected.json`), 'utf8')) as {
      tensors: Array<{ name: string; dtype: Dtype; sha256: string; converted?: Record<string, string> }>;
    };
    const checkpoint = await openCheckpoint(join(fixtures, existsSync(join(fixtures, name)) ? name : `${name}.pth`));
    for (const dtype of ['f16', 'f32'] as const) {
      const got = await loadChecked(checkpoint, { dtype, maxChunkBytes: 1024, stagingBytes: 2048 });
      expect(got.size).toBe(expected.tensors.length);
      for (const t of expected.tensors) {
        const to = dtype.toUpperCase();
        expect(sha256(got.get(t.name)!), `${name} ${t.name} ${dtype}`).toBe(t.converted?.[to] ?? t.sha256);
      }
    }
    await checkpoint.close();
  });
});

describe('loadTensors: filter and progress', () => {
  it('loads only the filtered tensors; progress runs compile → upload → done with monotone bytes', async () => {
    const tensors = [spec('a.weight', 'BF16', [30, 20]), spec('a.bias', 'F32', [20]), spec('b.weight', 'F16', [40, 10]), spec('b.ids', 'I32', [9]), spec('b.empty', 'F32', [0])];
    const checkpoint = await open(await serializeSafetensors(tensors));
    const events: LoadProgress[] = [];
    const filter = (t: { name: string }) => t.name.startsWith('b.');
    const got = await loadChecked(checkpoint, { dtype: 'f32', filter, stagingBytes: 256, stagingSlots: 2, onProgress: (p) => events.push(p) });
    expect([...got.keys()].sort()).toEqual(['b.empty', 'b.ids', 'b.weight']);
    const total = 40 * 10 * 2 + 9 * 4;
    const phases = events.map((e) => e.phase);
    expect(phases[0]).toBe('compile');
    expect(phases.at(-1)).toBe('done');
    expect(phases.filter((p) => p === 'compile' || p === 'done')).toHaveLength(2);
    const order = ['compile', 'upload', 'done'];
    for (let i = 1; i < events.length; i++) {
      expect(order.indexOf(phases[i])).toBeGreaterThanOrEqual(order.indexOf(phases[i - 1]));
      expect(events[i].bytesDone).toBeGreaterThanOrEqual(events[i - 1].bytesDone);
      expect(events[i].tensorsDone).toBeGreaterThanOrEqual(events[i - 1].tensorsDone);
    }
    expect(events.length).toBeGreaterThan(8); // one per piece, at least
    for (const e of events) {
      expect([e.bytesTotal, e.tensorsTotal]).toEqual([total, 3]);
      expect(e.bytesDone).toBeLessThanOrEqual(total);
      if (e.phase === 'upload') expect(['b.weight', 'b.ids', 'b.empty']).toContain(e.tensor);
      else expect(e.tensor).toBeNull();
    }
    expect(events.at(-1)).toMatchObject({ bytesDone: total, tensorsDone: 3 });
    // A filter that takes nothing loads nothing, and still reports done.
    const none: LoadProgress[] = [];
    const empty = await loadTensors(checkpoint, gpu.device, { filter: () => false, onProgress: (p) => none.push(p) });
    expect([empty.size, empty.deviceBytes, none.map((p) => p.phase)]).toEqual([0, 0, ['compile', 'done']]);
    await checkpoint.close();
  });
});

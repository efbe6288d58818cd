// loadTensors when things go wrong: an abort mid-way, the gpu.device running out of memory, a
// file truncated under the loader, a gpu.device without shader-f16, limits too small. Each
// failure must be a SluiceError with its code and a message naming what failed, and must
// leave no buffer of the load alive. The gpu.device is wrapped in a spy (a Proxy, see
// test/support/gpu-helpers.ts) that records every buffer and its destroy(), and fakes what
// the real software GPU cannot be made to do on demand.
import { truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openCheckpointSource } from '../../src/checkpoint/open.js';
import { openCheckpoint } from '../../src/checkpoint/open-path.js';
import { type ErrorCode, SluiceError } from '../../src/errors.js';
import type { Dtype } from '../../src/formats/dtypes.js';
import { writeSafetensors } from '../../src/formats/safetensors/write-file.js';
import { serializeSafetensors } from '../../src/formats/safetensors/writer.js';
import { type LoadProgress, loadTensors, resolveComputeDtype } from '../../src/gpu/load-tensors.js';
import { readTensor } from '../../src/gpu/read-back.js';
import { MemorySource } from '../../src/io/memory-source.js';
import { expectedBytes, spyDevice, tensorMismatch, useGpuTestDevice } from '../support/gpu-helpers.js';
import { byteSize, mulberry32, randomBytes, type TensorSpec } from '../support/safetensors-bytes.js';

const gpu = useGpuTestDevice('test.load-failures');

const rng = mulberry32(0xfa11);
const spec = (name: string, dtype: Dtype, shape: number[]): TensorSpec => ({ name, dtype, shape, data: randomBytes(rng, byteSize(dtype, shape)) });

// Storage order (the writer sorts by dtype, then name): F32, I32, BF16, F16.
const TENSORS = [
  spec('layers.0.w', 'BF16', [48, 32]), spec('layers.1.w', 'BF16', [48, 32]), spec('layers.2.w', 'BF16', [48, 32]),
  spec('norm', 'F32', [32]), spec('proj', 'F16', [32, 24]), spec('ids', 'I32', [17]),
];
const NAMES = ['norm', 'ids', 'layers.0.w', 'layers.1.w', 'layers.2.w', 'proj'];
const SMALL = { maxChunkBytes: 1024, stagingBytes: 1024, stagingSlots: 2 } as const; // many chunks and pieces
const fileBytes = () => serializeSafetensors(TENSORS);
async function open() {
  const checkpoint = await openCheckpointSource(new MemorySource(await fileBytes(), 'model.safetensors'));
  expect(checkpoint.tensors().map((t) => t.name)).toEqual(NAMES);
  return checkpoint;
}

/** The SluiceError a promise rejects with (fails the test when it resolves or throws something else). */
async function rejection(p: Promise<unknown>, code: ErrorCode): Promise<SluiceError> {
  const e = await p.then(
    () => expect.fail(`expected SluiceError ${code}, but it resolved`),
    (e: unknown) => e,
  );
  expect(e).toBeInstanceOf(SluiceError);
  expect([(e as SluiceError).code, (e as Error).message]).toEqual([code, expect.any(String)]);
  return e as SluiceError;
}

/** Every buffer the load made through the spy is destroyed (after the queue settles). */
async function expectAllFreed(spy: ReturnType<typeof spyDevice>, atLeast: number): Promise<void> {
  await gpu.device.queue.onSubmittedWorkDone();
  const live = spy.live();
  for (const b of spy.created) if (!spy.destroyed.has(b)) b.destroy(); // so a failure leaks nothing into later tests
  expect(spy.created.length).toBeGreaterThanOrEqual(atLeast);
  expect(live).toEqual([]);
}

describe('abort', () => {
  it('an AbortSignal fired from onProgress mid-upload → ABORTED, every buffer freed', async () => {
    const checkpoint = await open();
    const spy = spyDevice(gpu.device);
    const controller = new AbortController();
    const reason = new Error('user pressed stop');
    const seen: LoadProgress[] = [];
    const onProgress = (p: LoadProgress) => {
      seen.push(p);
      if (p.phase === 'upload' && p.tensorsDone === 2 && !controller.signal.aborted) controller.abort(reason);
    };
    const e = await rejection(loadTensors(checkpoint, spy.device, { ...SMALL, signal: controller.signal, onProgress }), 'ABORTED');
    expect(e.message).toContain('model.safetensors');
    expect(e.message).toMatch(/aborted after 2 of 6 tensors/);
    expect(e.cause).toBe(reason);
    expect(seen.some((p) => p.phase === 'done')).toBe(false);
    // 2 staging slots, scratch, params, norm, ids and the 3 f16 chunks of layers.0.w (allocated, then aborted).
    await expectAllFreed(spy, 2 + 2 + 1 + 1 + 3);
    await checkpoint.close();
  });

  it('a signal aborted before the call → ABORTED before any upload', async () => {
    const checkpoint = await open();
    const spy = spyDevice(gpu.device);
    const e = await rejection(loadTensors(checkpoint, spy.device, { signal: AbortSignal.abort() }), 'ABORTED');
    expect(e.message).toMatch(/after 0 of 6 tensors/);
    await expectAllFreed(spy, 0);
    await checkpoint.close();
  });
});

describe('a throwing onProgress', () => {
  it.each(['upload', 'done'] as const)('throwing in phase %s: the error propagates, no buffer is left', async (phase) => {
    const checkpoint = await open();
    const spy = spyDevice(gpu.device);
    const bug = new Error(`progress bar bug in ${phase}`);
    const onProgress = (p: LoadProgress) => {
      if (p.phase === phase && p.bytesDone > 0) throw bug;
    };
    await expect(loadTensors(checkpoint, spy.device, { ...SMALL, onProgress })).rejects.toBe(bug);
    await expectAllFreed(spy, 4);
    await checkpoint.close();
  });
});

describe('out of memory', () => {
  // popErrorScope is called twice per tensor: the validation scope, then out-of-memory.
  it.each([
    ['out-of-memory', 1],
    ['validation', 0],
  ] as const)('a %s error allocating the 4th tensor → OUT_OF_MEMORY naming it; earlier buffers freed', async (_scope, which) => {
    const checkpoint = await open();
    const fail = 3; // 'layers.1.w'
    const spy = spyDevice(gpu.device, {
      popErrorScope: (real, call) => (call === 2 * fail + which ? { message: 'fake OOM:\n  no room for it' } : real),
    });
    const e = await rejection(loadTensors(checkpoint, spy.device, { ...SMALL, dtype: 'f32' }), 'OUT_OF_MEMORY');
    expect(e.message).toContain(`tensor "${NAMES[fail]}"`);
    // 48 × 32 f32 in 1024-byte chunks: 8 rows each, 6 chunks = 6144 bytes.
    expect(e.message).toContain('(6.14 kB)');
    // norm (128 B), ids (68 → 80 B), layers.0.w (6 × 1024 B): 6352 bytes allocated before.
    expect(e.message).toMatch(/after 3 of 6 tensors, 6\.35 kB on the device: fake OOM: no room for it$/);
    await expectAllFreed(spy, 2 + 2 + 1 + 1 + 6 + 6); // the failed tensor's 6 chunks too
    await checkpoint.close();
  });
});

describe('truncated source', () => {
  it('a file truncated after opening → SOURCE_CHANGED naming the file; nothing left allocated', async () => {
    const path = join(gpu.dir, 'truncated.safetensors');
    const { bytes } = await writeSafetensors(path, TENSORS);
    const checkpoint = await openCheckpoint(path);
    await truncate(path, Math.floor(bytes * 0.6));
    const spy = spyDevice(gpu.device);
    const e = await rejection(loadTensors(checkpoint, spy.device, SMALL), 'SOURCE_CHANGED');
    expect(e.message).toContain(path);
    await expectAllFreed(spy, 4);
    await checkpoint.close();
  });

  it('a file emptied after opening fails too, with the default staging', async () => {
    const path = join(gpu.dir, 'emptied.safetensors');
    await writeSafetensors(path, TENSORS);
    const checkpoint = await openCheckpoint(path);
    await truncate(path, 0);
    const spy = spyDevice(gpu.device);
    const e = await loadTensors(checkpoint, spy.device).catch((e: unknown) => e);
    expect(e).toBeInstanceOf(SluiceError);
    expect(['SOURCE_CHANGED', 'IO_ERROR']).toContain((e as SluiceError).code);
    expect((e as Error).message).toContain(path);
    await expectAllFreed(spy, 4);
    await checkpoint.close();
  });
});

describe('a gpu.device without shader-f16', () => {
  it("dtype 'f16' → USAGE before anything is allocated; 'auto' → F32", async () => {
    const checkpoint = await open();
    const spy = spyDevice(gpu.device, { features: new Set(['timestamp-query']) });
    expect(resolveComputeDtype(spy.device, 'auto')).toBe('F32');
    expect(resolveComputeDtype(gpu.device, 'auto')).toBe('F16');
    const e = await rejection(loadTensors(checkpoint, spy.device, { dtype: 'f16' }), 'USAGE');
    expect(e.message).toContain('shader-f16');
    expect(spy.created).toEqual([]);

    for (const dtype of ['auto', undefined] as const) {
      const loaded = await loadTensors(checkpoint, spy.device, { ...SMALL, dtype });
      expect(loaded.computeDtype).toBe('F32');
      for (const [name, t] of loaded) {
        expect(t.dtype, name).toBe(t.storageDtype === 'I32' ? 'I32' : 'F32');
        const raw = await checkpoint.read(name);
        expect(tensorMismatch(await readTensor(gpu.device, t), expectedBytes(raw, t.storageDtype, t.dtype), t.dtype), name).toBeNull();
      }
      loaded.destroy();
    }
    await expectAllFreed(spy, 1);
    await checkpoint.close();
  });
});

describe('refusals before any upload, and a good load through the spy', () => {
  it('a row larger than maxChunkBytes → TENSOR_TOO_LARGE, nothing allocated', async () => {
    const checkpoint = await open();
    const spy = spyDevice(gpu.device);
    const e = await rejection(loadTensors(checkpoint, spy.device, { dtype: 'f32', maxChunkBytes: 120 }), 'TENSOR_TOO_LARGE');
    expect(e.message).toContain('"layers.0.w"'); // 32 f32 = 128 bytes per row; norm is 1-D, fits
    expect(spy.created).toEqual([]);
    await checkpoint.close();
  });

  it('staging too small → USAGE', async () => {
    const checkpoint = await open();
    const spy = spyDevice(gpu.device);
    await rejection(loadTensors(checkpoint, spy.device, { stagingBytes: 255, stagingSlots: 4 }), 'USAGE');
    await rejection(loadTensors(checkpoint, spy.device, { stagingSlots: 0 }), 'USAGE');
    expect(spy.created).toEqual([]);
    await checkpoint.close();
  });

  it('the happy path through the spy frees everything but the tensors, and destroy() frees those', async () => {
    const checkpoint = await open();
    const spy = spyDevice(gpu.device);
    const loaded = await loadTensors(checkpoint, spy.device, SMALL);
    const chunks = [...loaded.values()].flatMap((t) => t.chunks.map((c) => c.buffer.label));
    expect(spy.live().sort()).toEqual(chunks.sort());
    loaded.destroy();
    await expectAllFreed(spy, chunks.length + 4);
    await checkpoint.close();
  });
});

describe('staging larger than a storage binding', () => {
  it('staging slots larger than a storage binding: correct data or a USAGE error, never silent zeros', async () => {
    // One 129 MiB slot: the convert kernel binds the scratch buffer (slot-sized) as storage,
    // over the 128 MiB maxStorageBufferBindingSize of lavapipe.
    const checkpoint = await open();
    const stagingBytes = gpu.device.limits.maxStorageBufferBindingSize + (1 << 20);
    const result = await loadTensors(checkpoint, gpu.device, { dtype: 'f32', stagingBytes, stagingSlots: 1, filter: (t) => t.name === 'layers.0.w' }).catch((e: unknown) => e);
    if (result instanceof SluiceError) {
      expect(result.code).toBe('USAGE');
    } else {
      const loaded = result as Awaited<ReturnType<typeof loadTensors>>;
      const t = loaded.get('layers.0.w')!;
      const raw = await checkpoint.read(t.name);
      expect(tensorMismatch(await readTensor(gpu.device, t), expectedBytes(raw, t.storageDtype, t.dtype), t.dtype)).toBeNull();
      loaded.destroy();
    }
    await checkpoint.close();
    // afterEach: no validation error either.
  });
});

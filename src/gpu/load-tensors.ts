// The loader: checkpoint tensors → GPU buffers, streamed piece by piece through a small
// staging ring, converted to the compute dtype on the GPU.
//
// Per piece: read its bytes from the source → copy them into a mapped staging slot →
// unmap → on the GPU, copy to the tensor's buffer (same dtype) or to a scratch buffer
// that the convert kernel widens/narrows into the tensor's buffer → submit → remap the
// slot. The ring has several slots, so several pieces are in flight: reading the next
// overlaps the GPU's copy and conversion of the previous ones (and a URL source gets
// parallel Range requests). Host memory: the slots and the pieces being read, never a
// whole tensor: slots × slotBytes × 2 at most.

import type { Checkpoint, TensorInfo } from '../checkpoint/types.js';
import { SluiceError } from '../errors.js';
import { dtypeBytes } from '../formats/dtypes.js';
import { formatBytes } from '../units.js';
import { type ComputeDtype, Converter } from '../ops/convert.js';
import { alignUp, destroyTensor, type GpuTensor, type GpuTensorChunk } from './gpu-tensor.js';
import { StagingRing } from './staging-ring.js';
import { planTensor, type TensorPlan } from './upload-plan.js';

export type DtypeChoice = 'auto' | 'f16' | 'f32';

export interface LoadProgress {
  /** 'compile': building conversion pipelines; 'upload': streaming; 'done': all on the GPU. */
  phase: 'compile' | 'upload' | 'done';
  /** Checkpoint bytes read and handed to the GPU so far. */
  bytesDone: number;
  bytesTotal: number;
  /** The tensor being streamed (null outside 'upload'). */
  tensor: string | null;
  tensorsDone: number;
  tensorsTotal: number;
}

export interface LoadOptions {
  /** Compute dtype of float tensors: 'auto' (default) = F16 where the device has shader-f16, else F32. */
  dtype?: DtypeChoice;
  /** Which tensors to load (default: all). */
  filter?: (info: TensorInfo) => boolean;
  signal?: AbortSignal;
  onProgress?: (progress: LoadProgress) => void;
  /** Total staging memory (default 32 MiB), split into `stagingSlots` slots (default 4). */
  stagingBytes?: number;
  stagingSlots?: number;
  /** Largest buffer per chunk: default the device's maxStorageBufferBindingSize (tests lower it). */
  maxChunkBytes?: number;
  /** Prefix of every buffer label (default 'weights'). */
  label?: string;
}

export const DEFAULT_STAGING_BYTES = 32 * 1024 * 1024;
export const DEFAULT_STAGING_SLOTS = 4;

/** The loaded tensors by name, plus totals; destroy() frees every buffer. */
export class GpuTensors extends Map<string, GpuTensor> {
  constructor(
    readonly computeDtype: ComputeDtype,
    /** Checkpoint bytes read. */
    readonly sourceBytes: number,
    /** Bytes of buffers allocated on the device (padding included). */
    readonly deviceBytes: number,
    entries: Iterable<[string, GpuTensor]>,
  ) {
    super(entries);
  }

  destroy(): void {
    for (const tensor of this.values()) destroyTensor(tensor);
    this.clear();
  }
}

/** The compute dtype a choice gives on a device. */
export function resolveComputeDtype(device: GPUDevice, choice: DtypeChoice = 'auto'): ComputeDtype {
  const hasF16 = device.features.has('shader-f16');
  if (choice === 'f32') return 'F32';
  if (choice === 'f16') {
    if (!hasF16) throw new SluiceError('USAGE', "dtype f16 needs the 'shader-f16' feature, which this GPU device lacks; use f32 or auto");
    return 'F16';
  }
  return hasF16 ? 'F16' : 'F32';
}

export async function loadTensors(checkpoint: Checkpoint, device: GPUDevice, options: LoadOptions = {}): Promise<GpuTensors> {
  const computeDtype = resolveComputeDtype(device, options.dtype);
  const label = options.label ?? 'weights';
  const slots = options.stagingSlots ?? DEFAULT_STAGING_SLOTS;
  const bindingLimit = Math.min(device.limits.maxStorageBufferBindingSize, device.limits.maxBufferSize);
  // A slot is also the scratch buffer the convert kernel binds whole: at most one binding.
  const slotBytes = Math.floor(Math.min((options.stagingBytes ?? DEFAULT_STAGING_BYTES) / slots, bindingLimit) / 16) * 16;
  if (!(Number.isInteger(slots) && slots >= 1 && slotBytes >= 64)) {
    throw new SluiceError('USAGE', `staging of ${slots} slots × ${slotBytes} bytes: need at least 1 slot of 64 bytes`);
  }
  const maxChunkBytes = Math.min(options.maxChunkBytes ?? Infinity, bindingLimit);
  const infos = checkpoint.tensors().filter((t) => options.filter?.(t) ?? true);
  const plans = infos.map((info) => planTensor(info, computeDtype, { maxChunkBytes, pieceBytes: slotBytes }));
  const where = checkpoint.files[0] ?? 'checkpoint';

  const progress: LoadProgress = {
    phase: 'compile',
    bytesDone: 0,
    bytesTotal: infos.reduce((sum, t) => sum + t.byteLength, 0),
    tensor: null,
    tensorsDone: 0,
    tensorsTotal: infos.length,
  };
  const report = () => options.onProgress?.({ ...progress });
  report();

  // One converter per (storage dtype → compute dtype) pair present.
  const converters = new Map<string, Converter>();
  for (const plan of plans) {
    if (plan.convert && !converters.has(plan.info.dtype)) {
      converters.set(plan.info.dtype, await Converter.create(device, plan.info.dtype, computeDtype));
    }
  }

  const loaded = new Map<string, GpuTensor>();
  let deviceBytes = 0;
  const ring = new StagingRing(device, slots, slotBytes, label);
  // The convert kernel reads a piece from a storage buffer (a mappable buffer cannot be
  // one). One scratch buffer serves every slot: the queue runs each piece's copy and
  // dispatch in order, so a later piece's copy never overtakes an earlier dispatch.
  const scratch = converters.size
    ? device.createBuffer({ label: `${label}.scratch`, size: slotBytes, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST })
    : null;
  const params = device.createBuffer({ label: `${label}.convert.params`, size: 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });

  try {
    progress.phase = 'upload';
    for (const plan of plans) {
      throwIfAborted(options.signal, where, progress);
      progress.tensor = plan.info.name;
      report();
      const chunks = await allocate(device, plan, label, progress, deviceBytes);
      const tensor: GpuTensor = {
        name: plan.info.name,
        shape: plan.info.shape,
        storageDtype: plan.info.dtype,
        dtype: plan.dtype,
        chunks,
        rowsPerChunk: plan.rowsPerChunk,
        byteLength: chunks.reduce((sum, c) => sum + c.byteLength, 0),
      };
      loaded.set(tensor.name, tensor);
      deviceBytes += chunks.reduce((sum, c) => sum + c.buffer.size, 0);

      const converter = converters.get(plan.info.dtype);
      for (const piece of plan.pieces) {
        const slot = await ring.acquire();
        throwIfAborted(options.signal, where, progress);
        const dst = chunks[piece.chunk].buffer;
        const copyBytes = alignUp(piece.sourceLength, 4);
        ring.use(slot, async (mapped) => {
          // Straight into the mapped slot: a file source reads there, no buffer in between.
          const view = new Uint8Array(mapped, 0, copyBytes);
          const got = await checkpoint.readRange(plan.info.name, piece.sourceOffset, piece.sourceLength, view);
          // A custom source may ignore `into` and return its own bytes: copy them then.
          if (got.buffer !== view.buffer || got.byteOffset !== view.byteOffset) view.set(got);
          view.fill(0, piece.sourceLength); // deterministic padding bytes
          slot.buffer.unmap();
          const encoder = device.createCommandEncoder({ label: `${label}.upload` });
          if (converter && scratch) {
            encoder.copyBufferToBuffer(slot.buffer, 0, scratch, 0, copyBytes);
            converter.encode(encoder, scratch, dst, piece.chunkElement, piece.elements, params);
          } else {
            // Same dtype: element offsets are byte offsets (sub-byte tensors are planned in bytes).
            const dstByte = piece.chunkElement * (dtypeBytes(plan.dtype) ?? 1);
            encoder.copyBufferToBuffer(slot.buffer, 0, dst, dstByte, copyBytes);
          }
          device.queue.submit([encoder.finish()]);
          progress.bytesDone += piece.sourceLength;
          report();
        });
      }
      progress.tensorsDone++;
    }
    await ring.drain();
    await device.queue.onSubmittedWorkDone();
    progress.phase = 'done';
    progress.tensor = null;
    report(); // inside the try: a callback that throws here must not leak the tensors
  } catch (e) {
    // Pieces still in flight may yet submit copies into the tensors: let them settle first.
    await ring.destroy();
    for (const tensor of loaded.values()) destroyTensor(tensor);
    throw e;
  } finally {
    await ring.destroy();
    scratch?.destroy();
    params.destroy();
  }
  return new GpuTensors(computeDtype, progress.bytesTotal, deviceBytes, loaded);
}

/**
 * Creates a tensor's chunk buffers inside error scopes: running out of GPU memory (or a
 * size the device refuses) becomes OUT_OF_MEMORY naming the tensor and the totals so far.
 */
async function allocate(
  device: GPUDevice,
  plan: TensorPlan,
  label: string,
  progress: LoadProgress,
  deviceBytes: number,
): Promise<GpuTensorChunk[]> {
  device.pushErrorScope('out-of-memory');
  device.pushErrorScope('validation');
  const chunks = plan.chunks.map((chunk, i) => ({
    buffer: device.createBuffer({
      label: `${label}.${plan.info.name}${plan.chunks.length > 1 ? `#${i}` : ''}`,
      size: chunk.bufferSize,
      // COPY_SRC: tests and `bench` read weights back; it costs nothing to allow.
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC,
    }),
    firstRow: chunk.firstRow,
    rows: chunk.rows,
    byteLength: chunk.byteLength,
  }));
  const validation = await device.popErrorScope();
  const outOfMemory = await device.popErrorScope();
  const error = outOfMemory ?? validation;
  if (error) {
    for (const chunk of chunks) chunk.buffer.destroy();
    const wanted = plan.chunks.reduce((sum, c) => sum + c.bufferSize, 0);
    throw new SluiceError(
      'OUT_OF_MEMORY',
      `out of GPU memory allocating tensor ${JSON.stringify(plan.info.name)} (${formatBytes(wanted)}) ` +
        `after ${progress.tensorsDone} of ${progress.tensorsTotal} tensors, ${formatBytes(deviceBytes)} on the device: ` +
        `${error.message.replace(/\s*\n\s*/g, ' ').trim()}`,
    );
  }
  return chunks;
}

function throwIfAborted(signal: AbortSignal | undefined, where: string, progress: LoadProgress): void {
  if (signal?.aborted) {
    throw new SluiceError(
      'ABORTED',
      `loading ${where} aborted after ${progress.tensorsDone} of ${progress.tensorsTotal} tensors; every buffer it made was freed`,
      { cause: signal.reason },
    );
  }
}

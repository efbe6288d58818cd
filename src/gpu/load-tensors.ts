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
//
// Tensors chosen by `quantize.select` take another path at the end of the piece (see
// quantize-on-load.ts): whole-row pieces, converted into a reused row scratch and quantized
// from there into a QuantizedTensor, so they never exist dense on the device. The packed
// linears of a pre-quantized checkpoint (`prequantized`, see load-prequantized.ts) stream in
// as stored and are repacked on the GPU into QuantizedTensors, one linear at a time.

import type { Checkpoint, TensorInfo } from '../checkpoint/types.js';
import { SluiceError } from '../errors.js';
import { dtypeBytes } from '../formats/dtypes.js';
import { type ComputeDtype, Converter } from '../ops/convert.js';
import { Quantize } from '../ops/quantize.js';
import { allocate, allocateChecked, tensorOf } from './allocate-tensor.js';
import { alignUp, destroyTensor, type GpuTensor, type GpuTensorChunk } from './gpu-tensor.js';
import {
  checkGroupSize, encodeQuantizedPiece, planQuantized, type QuantizedPlan, type QuantizeOnLoad, quantizedBufferBytes, type RowPiece,
} from './quantize-on-load.js';
import { type PackedIo, type PackedLinear, PackedLoader, type PrequantizedLoad } from './load-prequantized.js';
import { createQuantizedTensor, DEFAULT_GROUP_SIZE, deviceScaleDtype, destroyQuantized, type QuantizedTensor } from './quantized-tensor.js';
import { quietWait } from './quiet-wait.js';
import { StagingRing } from './staging-ring.js';
import { type PiecePlan, planTensor, type TensorPlan } from './upload-plan.js';

export type { QuantizeOnLoad } from './quantize-on-load.js';
export type { PackedLinear, PrequantizedLoad } from './load-prequantized.js';

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
  /**
   * Quantize the selected 2-D float tensors on the GPU as they stream in (q8 or q4, groups of
   * `groupSize`, default 32): they land in GpuTensors.quantized, never dense on the device.
   * One that cannot be (not 2-D, K not a multiple of the group size, …) stays dense, with a
   * line in GpuTensors.notes.
   */
  quantize?: QuantizeOnLoad;
  /**
   * A pre-quantized checkpoint's packed linears (their tensors need not pass `filter`):
   * streamed as stored and repacked on the GPU into GpuTensors.quantized, under the names of
   * their outputs; act-order ones add their input permutation to GpuTensors.inputPerms.
   * Cannot be combined with `quantize`.
   */
  prequantized?: PrequantizedLoad;
}

export const DEFAULT_STAGING_BYTES = 32 * 1024 * 1024;
export const DEFAULT_STAGING_SLOTS = 4;

export interface QuantizedTensors {
  /** The tensors quantized on load, by name (they are not in the dense map). */
  quantized?: Iterable<[string, QuantizedTensor]>;
  /** Act-order linears' input permutations by weight name (a shared buffer for identical ones). */
  inputPerms?: Iterable<[string, GPUBuffer]>;
  /** One line per selected tensor left dense, saying why. */
  notes?: readonly string[];
  /** Device bytes of the dense tensors' buffers, and of the quantized ones' (padding included). */
  denseBytes?: number;
  quantizedBytes?: number;
  /** Buffers the load held while streaming and freed at the end (staging slots, scratches). */
  scratchBytes?: number;
}

/**
 * The loaded tensors by name (dense: the compute dtype, or as stored), the quantized ones
 * in `quantized`, plus totals; destroy() frees every buffer of both.
 */
export class GpuTensors extends Map<string, GpuTensor> {
  readonly quantized: Map<string, QuantizedTensor>;
  /**
   * (K,) u32 per act-order weight: its input columns were permuted when repacked, so its input
   * must be gathered first (y[j] = x[perm[j]], src/ops/permute.ts). Weights with one
   * permutation share one buffer.
   */
  readonly inputPerms: Map<string, GPUBuffer>;
  readonly notes: readonly string[];
  /** deviceBytes = denseBytes + quantizedBytes. */
  readonly denseBytes: number;
  readonly quantizedBytes: number;
  /** Freed when the load ended: peak device bytes during the load ≈ deviceBytes + scratchBytes. */
  readonly scratchBytes: number;

  constructor(
    readonly computeDtype: ComputeDtype,
    /** Checkpoint bytes read. */
    readonly sourceBytes: number,
    /** Bytes of buffers allocated on the device and kept (padding included). */
    readonly deviceBytes: number,
    entries: Iterable<[string, GpuTensor]>,
    more: QuantizedTensors = {},
  ) {
    super(entries);
    this.quantized = new Map(more.quantized ?? []);
    this.inputPerms = new Map(more.inputPerms ?? []);
    this.notes = more.notes ?? [];
    this.quantizedBytes = more.quantizedBytes ?? 0;
    this.denseBytes = more.denseBytes ?? deviceBytes - this.quantizedBytes;
    this.scratchBytes = more.scratchBytes ?? 0;
  }

  destroy(): void {
    for (const tensor of this.values()) destroyTensor(tensor);
    for (const tensor of this.quantized.values()) destroyQuantized(tensor);
    for (const perm of new Set(this.inputPerms.values())) perm.destroy();
    this.clear();
    this.quantized.clear();
    this.inputPerms.clear();
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
  const q = options.quantize;
  if (q) checkGroupSize(q.groupSize ?? DEFAULT_GROUP_SIZE);
  const notes: string[] = [];
  // Each tensor: dense (its chunks and pieces), or quantized (whole-row pieces).
  const plans: (TensorPlan | QuantizedPlan)[] = infos.map((info) => {
    if (q?.select(info)) {
      const plan = planQuantized(info, computeDtype, q, { pieceBytes: slotBytes, maxChunkBytes, scaleDtype: deviceScaleDtype(device) });
      if (!('dense' in plan)) return plan;
      notes.push(plan.dense);
    }
    return planTensor(info, computeDtype, { maxChunkBytes, pieceBytes: slotBytes });
  });
  const isQuantized = (plan: TensorPlan | QuantizedPlan): plan is QuantizedPlan => 'layout' in plan;
  const rowScratchBytes = Math.max(0, ...plans.map((p) => (isQuantized(p) ? p.scratchBytes : 0)));
  const where = checkpoint.files[0] ?? 'checkpoint';
  // A pre-quantized checkpoint's packed linears, each streamed where its qweight lies in the file.
  const pre = options.prequantized?.linears.length ? options.prequantized.linears : null;
  if (pre && q) throw new SluiceError('USAGE', `${where}: the weights are pre-quantized; they cannot be quantized on load too`);
  const packedInfos = (pre ?? []).flatMap((l) => [l.qweight, l.scales, ...(l.zeros ? [l.zeros] : [])]).map((name) => checkpoint.info(name));
  // The repack reads each packed tensor from one buffer: one over a binding is refused now, not mid-load.
  const huge = packedInfos.find((t) => t.byteLength > maxChunkBytes);
  if (huge) throw new SluiceError('TENSOR_TOO_LARGE', `${where}: packed tensor ${JSON.stringify(huge.name)} is ${huge.byteLength} bytes; the GPU repack reads it from one buffer, and this device binds at most ${maxChunkBytes}`);
  const order = new Map(checkpoint.tensors().map((t, i) => [t.name, i]));
  const units: Array<{ plan: TensorPlan | QuantizedPlan } | { linear: PackedLinear }> = [...plans.map((plan) => ({ plan })), ...(pre ?? []).map((linear) => ({ linear }))];
  const at = (u: (typeof units)[number]) => order.get('plan' in u ? u.plan.info.name : u.linear.qweight) ?? 0;
  units.sort((a, b) => at(a) - at(b));

  const progress: LoadProgress = {
    phase: 'compile',
    bytesDone: 0,
    bytesTotal: [...infos, ...packedInfos].reduce((sum, t) => sum + t.byteLength, 0),
    tensor: null,
    tensorsDone: 0,
    tensorsTotal: infos.length + packedInfos.length,
  };
  const report = () => options.onProgress?.({ ...progress });
  report();
  // Reads and checks g_idx / weight_shape (before any other buffer), builds the repack pipeline.
  const packed = pre ? await PackedLoader.create(checkpoint, device, { linears: pre }, deviceScaleDtype(device), where, label) : null;

  // One converter per (storage dtype → compute dtype) pair present.
  const converters = new Map<string, Converter>();
  for (const plan of plans) {
    if (plan.convert && !converters.has(plan.info.dtype)) {
      converters.set(plan.info.dtype, await Converter.create(device, plan.info.dtype, computeDtype));
    }
  }
  const quantizer = q && rowScratchBytes > 0 ? await Quantize.create(device, q.kind, computeDtype) : null;

  const loaded = new Map<string, GpuTensor>();
  const quantized = new Map<string, QuantizedTensor>();
  let deviceBytes = 0;
  let quantizedBytes = 0;
  const ring = new StagingRing(device, slots, slotBytes, label);
  // The convert kernel reads a piece from a storage buffer (a mappable buffer cannot be
  // one). One scratch buffer serves every slot: the queue runs each piece's copy and
  // dispatch in order, so a later piece's copy never overtakes an earlier dispatch.
  const scratch = converters.size
    ? device.createBuffer({ label: `${label}.scratch`, size: slotBytes, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST })
    : null;
  const params = device.createBuffer({ label: `${label}.convert.params`, size: 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
  // (rows, K) compute dtype: a quantized tensor's piece, converted, before quantize reads it.
  const rowScratch = quantizer
    ? device.createBuffer({ label: `${label}.quantize.scratch`, size: rowScratchBytes, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST })
    : null;
  const scratchBytes = () => slots * slotBytes + (scratch?.size ?? 0) + (rowScratch?.size ?? 0) + (packed?.peakSourceBytes ?? 0);
  // The packed path's upload (as stored: no conversion) and allocation.
  const io: PackedIo = {
    uploadAsStored: async (name, own) => {
      const info = checkpoint.info(name);
      // bufferDtype(x, x) = x: a compute dtype equal to the storage dtype keeps the tensor as stored.
      const plan = planTensor(info, info.dtype as ComputeDtype, { maxChunkBytes, pieceBytes: slotBytes });
      progress.tensor = name;
      report();
      const chunks = await allocate(device, plan, label, progress, deviceBytes + packed!.keptBytes);
      const tensor = tensorOf(plan, chunks);
      own(tensor);
      const submitted: Promise<void>[] = [];
      for (const piece of plan.pieces) submitted.push((await stream(piece, (encoder, slot) => encodeDensePiece(encoder, slot, piece, plan, chunks, undefined))).submitted);
      await Promise.all(submitted);
      progress.tensorsDone++;
      return tensor;
    },
    allocate: (name, layout) =>
      allocateChecked(device, name, progress, deviceBytes + packed!.keptBytes, () => {
        const t = createQuantizedTensor(device, `${label}.${name}`, layout, maxChunkBytes);
        return { value: t, bytes: quantizedBufferBytes(t), free: () => destroyQuantized(t) };
      }),
  };

  try {
    progress.phase = 'upload';
    for (const unit of units) {
      throwIfAborted(options.signal, where, progress);
      if ('linear' in unit) {
        await packed!.load(unit.linear, io);
        continue;
      }
      const plan = unit.plan;
      progress.tensor = plan.info.name;
      report();
      if (isQuantized(plan)) {
        const dst = await allocateChecked(device, plan.info.name, progress, deviceBytes, () => {
          const t = createQuantizedTensor(device, `${label}.${plan.info.name}`, plan.layout, maxChunkBytes);
          return { value: { ...t, name: plan.info.name }, bytes: quantizedBufferBytes(t), free: () => destroyQuantized(t) };
        });
        quantized.set(plan.info.name, dst);
        const bytes = quantizedBufferBytes(dst);
        deviceBytes += bytes;
        quantizedBytes += bytes;
        const bufs = { convertScratch: scratch, rowScratch: rowScratch!, convertParams: params };
        const converter = converters.get(plan.info.dtype);
        for (const piece of plan.pieces) {
          await stream(piece, (encoder, slot) => encodeQuantizedPiece(encoder, `${label}.${plan.info.name}`, slot, piece, dst, bufs, quantizer!, converter));
        }
        progress.tensorsDone++;
        continue;
      }
      const chunks = await allocate(device, plan, label, progress, deviceBytes + (packed?.keptBytes ?? 0));
      const tensor = tensorOf(plan, chunks);
      loaded.set(tensor.name, tensor);
      deviceBytes += chunks.reduce((sum, c) => sum + c.buffer.size, 0);
      const converter = converters.get(plan.info.dtype);
      for (const piece of plan.pieces) await stream(piece, (encoder, slot) => encodeDensePiece(encoder, slot, piece, plan, chunks, converter));
      progress.tensorsDone++;
    }
    await ring.drain();
    await quietWait(device, () => device.queue.onSubmittedWorkDone());
    await packed?.check();
    progress.phase = 'done';
    progress.tensor = null;
    report(); // inside the try: a callback that throws here must not leak the tensors
  } catch (e) {
    // Pieces still in flight may yet submit copies into the tensors: let them settle first.
    await ring.destroy();
    for (const tensor of loaded.values()) destroyTensor(tensor);
    for (const tensor of quantized.values()) destroyQuantized(tensor);
    packed?.destroy();
    throw e;
  } finally {
    await ring.destroy();
    scratch?.destroy();
    rowScratch?.destroy();
    params.destroy();
  }
  if (packed) {
    notes.push(packed.note(pre!));
    deviceBytes += packed.keptBytes;
    quantizedBytes += packed.keptBytes;
  }
  return new GpuTensors(computeDtype, progress.bytesTotal, deviceBytes, loaded, {
    quantized: [...quantized, ...(packed?.quantized ?? [])],
    inputPerms: packed?.inputPerms,
    notes,
    quantizedBytes,
    denseBytes: deviceBytes - quantizedBytes,
    scratchBytes: scratchBytes(),
  });

  /** One dense piece: copied out of its slot into the tensor's chunk, converted on the way when `converter`. */
  function encodeDensePiece(encoder: GPUCommandEncoder, slot: GPUBuffer, piece: PiecePlan, plan: TensorPlan, chunks: GpuTensorChunk[], converter: Converter | undefined): null {
    const dst = chunks[piece.chunk].buffer;
    const copyBytes = alignUp(piece.sourceLength, 4);
    if (converter && scratch) {
      encoder.copyBufferToBuffer(slot, 0, scratch, 0, copyBytes);
      converter.encode(encoder, scratch, dst, piece.chunkElement, piece.elements, params);
    } else {
      // Same dtype: element offsets are byte offsets (sub-byte tensors are planned in bytes).
      const dstByte = piece.chunkElement * (dtypeBytes(plan.dtype) ?? 1);
      encoder.copyBufferToBuffer(slot, 0, dst, dstByte, copyBytes);
    }
    return null;
  }

  /**
   * Streams one piece: waits for a free slot, then (without waiting) reads the piece into it
   * and submits what `encode` records (copy out, convert, quantize); `encode` returns what
   * to free once submitted. Returns, wrapped (an async function would wait for it), the
   * promise of that submit; a failure also surfaces through the ring.
   */
  async function stream(
    piece: PiecePlan | RowPiece,
    encode: (encoder: GPUCommandEncoder, slot: GPUBuffer) => (() => void) | null,
  ): Promise<{ submitted: Promise<void> }> {
    const name = progress.tensor!;
    const slot = await ring.acquire();
    throwIfAborted(options.signal, where, progress);
    const copyBytes = alignUp(piece.sourceLength, 4);
    let submitted = Promise.resolve();
    // `use` calls its fill at once, so `submitted` is set when it returns.
    ring.use(slot, (mapped) => (submitted = fill(mapped)));
    submitted.catch(() => {});
    return { submitted };

    async function fill(mapped: ArrayBuffer): Promise<void> {
      // Straight into the mapped slot: a file source reads there, no buffer in between.
      const view = new Uint8Array(mapped, 0, copyBytes);
      const got = await checkpoint.readRange(name, piece.sourceOffset, piece.sourceLength, view);
      // A custom source may ignore `into` and return its own bytes: copy them then.
      if (got.buffer !== view.buffer || got.byteOffset !== view.byteOffset) view.set(got);
      view.fill(0, piece.sourceLength); // deterministic padding bytes
      slot.buffer.unmap();
      const encoder = device.createCommandEncoder({ label: `${label}.upload` });
      const free = encode(encoder, slot.buffer);
      device.queue.submit([encoder.finish()]);
      free?.();
      progress.bytesDone += piece.sourceLength;
      report();
    }
  }
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

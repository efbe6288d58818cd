// One measurement of `sluice bench load`, alone in a fresh process so that each starts
// from the same state: no GPU memory already touched by an earlier run (on a software
// adapter, first-touch page faults are most of an upload's cost), and a peak RSS
// (getrusage's maxRSS) that belongs to this measurement only.
//
// Run by load-bench.ts as `node load-worker.js '<Measurement JSON>'`; prints one JSON
// line, a WorkerResult, on stdout.

import { openCheckpoint } from '../../checkpoint/open-path.js';
import type { Checkpoint } from '../../checkpoint/types.js';
import { alignUp } from '../../gpu/gpu-tensor.js';
import { loadTensors, resolveComputeDtype, type DtypeChoice } from '../../gpu/load-tensors.js';
import { acquireNodeDevice } from '../../gpu/node-gpu.js';
import type { QuantKind } from '../../gpu/quantized-tensor.js';
import { StagingRing } from '../../gpu/staging-ring.js';
import { quietWait } from '../../gpu/quiet-wait.js';
import { processIo } from '../io.js';
import { loadProgressBar } from '../progress.js';

export interface Measurement {
  /** read: the checkpoint's tensor bytes from the source; upload: that many bytes to fresh
   *  GPU buffers from host memory; load: loadTensors. */
  kind: 'read' | 'upload' | 'load';
  path: string;
  dtype: DtypeChoice;
  stagingBytes: number;
  stagingSlots: number;
  /** For load: quantize the matrices on the GPU as they stream in (quantizeSelect picks them). */
  quantize?: QuantKind;
  /** Draw a progress bar on stderr (a terminal). */
  progress?: boolean;
}

export interface WorkerResult {
  seconds: number;
  bytes: number;
  /** Peak RSS during the measurement minus RSS just before it. */
  rssGrowthBytes: number;
  /** Bytes of GPU buffers holding tensors at the end (0 for 'read'). */
  deviceBytes: number;
  /** For load: deviceBytes split as GpuTensors splits it, the scratch the load freed, and how many tensors were quantized. */
  device?: { dense: number; quantized: number; scratch: number; quantizedTensors: number };
  adapter?: string;
  softwareAdapter?: boolean;
  computeDtype?: string;
}

const maxRss = () => process.resourceUsage().maxRSS * 1024;

async function measure(m: Measurement): Promise<WorkerResult> {
  const checkpoint = await openCheckpoint(m.path);
  try {
    if (m.kind === 'read') return await timeRead(checkpoint, m);
    const gpu = await acquireNodeDevice({ label: 'bench' });
    try {
      const context = { adapter: gpu.adapterInfo.description || gpu.adapterInfo.device, softwareAdapter: gpu.adapterInfo.isSoftware };
      const result = m.kind === 'upload' ? await timeUpload(checkpoint, gpu.device, m) : await timeLoad(checkpoint, gpu.device, m);
      const { errors } = gpu.takeErrors();
      if (errors.length) throw new Error(`GPU errors during ${m.kind}: ${errors.map((e) => e.message).join('; ')}`);
      return { ...result, ...context, computeDtype: resolveComputeDtype(gpu.device, m.dtype) };
    } finally {
      gpu.destroy();
    }
  } finally {
    await checkpoint.close();
  }
}

/** Every tensor's bytes in staging-slot-sized reads, as many in flight as the loader has slots. */
async function timeRead(checkpoint: Checkpoint, m: Measurement): Promise<WorkerResult> {
  const piece = Math.floor(m.stagingBytes / m.stagingSlots);
  const ranges: [string, number, number][] = [];
  for (const t of checkpoint.tensors()) {
    for (let at = 0; at < t.byteLength; at += piece) ranges.push([t.name, at, Math.min(piece, t.byteLength - at)]);
  }
  const before = maxRss();
  const start = performance.now();
  let bytes = 0;
  let next = 0;
  const reader = async () => {
    while (next < ranges.length) {
      const [name, at, length] = ranges[next++];
      bytes += (await checkpoint.readRange(name, at, length)).length;
    }
  };
  await Promise.all(Array.from({ length: m.stagingSlots }, reader));
  const seconds = (performance.now() - start) / 1000;
  return { seconds, bytes, rssGrowthBytes: maxRss() - before, deviceBytes: 0 };
}

/**
 * The same bytes, same buffer sizes and same staging ring as the loader, from a host
 * buffer: what moving the bytes costs without reading or converting them.
 */
async function timeUpload(checkpoint: Checkpoint, device: GPUDevice, m: Measurement): Promise<WorkerResult> {
  const slotBytes = Math.floor(m.stagingBytes / m.stagingSlots / 16) * 16;
  const host = new Uint8Array(slotBytes).map((_, i) => i * 31);
  const before = maxRss();
  const start = performance.now();
  const ring = new StagingRing(device, m.stagingSlots, slotBytes, 'bench.upload');
  const buffers: GPUBuffer[] = [];
  let bytes = 0;
  for (const t of checkpoint.tensors()) {
    const size = Math.max(alignUp(t.byteLength, 16), 16);
    // Chunked like the loader would, so no buffer exceeds a binding.
    const maxChunk = Math.floor(device.limits.maxStorageBufferBindingSize / 16) * 16;
    for (let chunkStart = 0; chunkStart < size; chunkStart += maxChunk) {
      const chunkSize = Math.min(maxChunk, size - chunkStart);
      const buffer = device.createBuffer({ label: `bench.upload.${t.name}`, size: chunkSize, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
      buffers.push(buffer);
      for (let at = 0; at < chunkSize; at += slotBytes) {
        const length = Math.min(slotBytes, chunkSize - at);
        const slot = await ring.acquire();
        ring.use(slot, async (mapped) => {
          new Uint8Array(mapped, 0, length).set(host.subarray(0, length));
          slot.buffer.unmap();
          const encoder = device.createCommandEncoder();
          encoder.copyBufferToBuffer(slot.buffer, 0, buffer, at, length);
          device.queue.submit([encoder.finish()]);
        });
        bytes += length;
      }
    }
  }
  await ring.drain();
  await quietWait(device, () => device.queue.onSubmittedWorkDone()); // as the loader waits
  const seconds = (performance.now() - start) / 1000;
  const rssGrowthBytes = maxRss() - before;
  await ring.destroy();
  const deviceBytes = buffers.reduce((sum, b) => sum + b.size, 0);
  for (const b of buffers) b.destroy();
  return { seconds, bytes, rssGrowthBytes, deviceBytes };
}

/**
 * The tensors `bench load --quantize` quantizes, without a config.json to name them: every
 * 2-D tensor, which for a Llama-shaped checkpoint is loadModel's choice (the projections,
 * an untied LM head and the embedding table; model/llama.ts). The loader itself leaves
 * dense, with a note, what it cannot quantize (a non-float dtype, K not a multiple of 32).
 */
function quantizeSelect(t: { shape: readonly number[] }): boolean {
  return t.shape.length === 2;
}

async function timeLoad(checkpoint: Checkpoint, device: GPUDevice, m: Measurement): Promise<WorkerResult> {
  const before = maxRss();
  const start = performance.now();
  const loaded = await loadTensors(checkpoint, device, {
    dtype: m.dtype,
    stagingBytes: m.stagingBytes,
    stagingSlots: m.stagingSlots,
    quantize: m.quantize ? { kind: m.quantize, select: quantizeSelect } : undefined,
    label: 'bench',
    // stderr is a pipe to the orchestrator, which shows it on its terminal.
    onProgress: m.progress ? loadProgressBar({ ...processIo, isTty: true }, true) : undefined,
  });
  const seconds = (performance.now() - start) / 1000;
  const result = {
    seconds,
    bytes: loaded.sourceBytes,
    rssGrowthBytes: maxRss() - before,
    deviceBytes: loaded.deviceBytes,
    device: { dense: loaded.denseBytes, quantized: loaded.quantizedBytes, scratch: loaded.scratchBytes, quantizedTensors: loaded.quantized.size },
  };
  loaded.destroy();
  return result;
}

const spec = process.argv[2];
if (spec) {
  measure(JSON.parse(spec) as Measurement).then(
    (result) => process.stdout.write(`${JSON.stringify(result)}\n`),
    (e: unknown) => {
      process.stderr.write(`sluice bench worker: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exitCode = 1;
    },
  );
}

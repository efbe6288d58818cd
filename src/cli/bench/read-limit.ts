// The read limit memory-bound kernels are measured against (bench kernels, bench
// generate): the faster of two read-only streaming reductions over one binding's worth of
// memory (at most `maxBytes`) — grid-strided (coalesced: what a real GPU reads fastest)
// and one contiguous segment per invocation (what a CPU "GPU" like lavapipe reads
// fastest) — plus, for `bench kernels`, a copy for reference.
// With `passes` > 1 each probe is timed that many times and the fastest pass kept: other
// work on the machine (or a clock ramping up) can only slow a pass down, never speed it
// up, so the fastest pass is the nearest to what the memory system does. On this
// project's shared 2-core machine one ~0.1 s pass read anywhere from 1.7 to 7.7 GB/s.

import { repeatsFor, timeOps, type Timing } from '../../gpu/profiler.js';
import { Bandwidth, BANDWIDTH_GROUPS, BANDWIDTH_WORKGROUP, type BandwidthKind } from '../../ops/bandwidth.js';

export interface ReadLimit {
  bytes: number;
  /** max(strided, segmented), GB/s. */
  readGbps: number;
  stridedGbps: number;
  segmentedGbps: number;
  method: Timing['method'];
  /** Timed passes of each probe, the fastest kept. */
  passes: number;
}

export interface ReadLimitOptions {
  /** Timed passes of each probe, the fastest kept (default 1). */
  passes?: number;
}

/** The read limit and, for reference, a copy (`bench kernels`). */
export async function measureReadLimit(device: GPUDevice, maxBytes: number, options: ReadLimitOptions = {}): Promise<ReadLimit & { copyGbps: number }> {
  return probe(device, maxBytes, options, true, async (gbps, limit) => ({ ...(await limit()), copyGbps: await gbps('copy') }));
}

/** The read limit alone: no copy, so no second buffer as large as the first (`bench generate`). */
export function measureReadOnlyLimit(device: GPUDevice, maxBytes: number, options: ReadLimitOptions = {}): Promise<ReadLimit> {
  return probe(device, maxBytes, options, false, (_, limit) => limit());
}

type Gbps = (kind: BandwidthKind) => Promise<number>;

async function probe<T>(device: GPUDevice, maxBytes: number, options: ReadLimitOptions, copy: boolean, run: (gbps: Gbps, limit: () => Promise<ReadLimit>) => Promise<T>): Promise<T> {
  const passes = options.passes ?? 1;
  if (!Number.isSafeInteger(passes) || passes < 1) throw new RangeError(`measureReadLimit: passes must be a whole number ≥ 1, not ${passes}`);
  // 256 MiB outruns any GPU cache (an H200 has 50 MB of L2), but one binding may be
  // smaller (128 MiB on lavapipe and in browsers): the probe reads what one binding holds.
  const bytes = Math.floor(Math.min(maxBytes, device.limits.maxStorageBufferBindingSize) / 16) * 16;
  const src = device.createBuffer({ label: 'bench.probe.src', size: bytes, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
  // A copy writes all of src to dst; the reads one partial sum per invocation.
  const dstBytes = copy ? bytes : BANDWIDTH_GROUPS * BANDWIDTH_WORKGROUP * 4;
  const dst = device.createBuffer({ label: 'bench.probe.dst', size: dstBytes, usage: GPUBufferUsage.STORAGE });
  device.queue.writeBuffer(src, 0, new Float32Array(1 << 16).fill(0.5)); // defined values; the rest stays zero
  let method: Timing['method'] = 'wall';
  const gbps: Gbps = async (kind) => {
    const moved = kind === 'copy' ? 2 * bytes : bytes; // a copy reads and writes
    const op = (await Bandwidth.create(device, kind)).prepare(`bench.${kind}`, bytes, src, dst);
    let seconds = Infinity;
    for (let pass = 0; pass < passes; pass++) {
      // The first pass warms up (pipeline, first touch of the buffers); later ones need not.
      const t = await timeOps(device, [op], { repeat: repeatsFor(moved / 3e9), warmup: pass === 0 ? 1 : 0 }); // at a guessed 3 GB/s
      seconds = Math.min(seconds, t.seconds);
      method = t.method;
    }
    op.destroy();
    return moved / seconds / 1e9;
  };
  const limit = async (): Promise<ReadLimit> => {
    const stridedGbps = await gbps('read');
    const segmentedGbps = await gbps('segmented');
    return { bytes, readGbps: Math.max(stridedGbps, segmentedGbps), stridedGbps, segmentedGbps, method, passes };
  };
  try {
    return await run(gbps, limit);
  } finally {
    src.destroy();
    dst.destroy();
  }
}

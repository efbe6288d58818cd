// The read limit memory-bound kernels are measured against (bench kernels, bench
// generate): the faster of two read-only streaming reductions over one binding's worth of
// memory (at most `maxBytes`) — grid-strided (coalesced: what a real GPU reads fastest)
// and one contiguous segment per invocation (what a CPU "GPU" like lavapipe reads
// fastest) — plus, for `bench kernels`, a copy for reference.
// With `passes` > 1 the faster of the two reads is timed that many times in all and its
// fastest pass kept: other work on the machine (or a clock ramping up) can only slow a
// pass down, never speed it up, so the fastest pass is the nearest to what the memory
// system does. On this project's shared 2-core machine one ~0.1 s pass read anywhere from
// 1.7 to 7.7 GB/s. Only the faster kind gets the extra passes: the other does not count,
// and which one wins is the adapter's nature (1.5–2× apart either way), not noise.

import { repeatsFor, timeOps, type Timing } from '../../gpu/profiler.js';
import { Bandwidth, BANDWIDTH_GROUPS, BANDWIDTH_WORKGROUP, type BandwidthKind } from '../../ops/bandwidth.js';
import type { PreparedOp } from '../../ops/op.js';

export interface ReadLimit {
  bytes: number;
  /** max(strided, segmented), GB/s. */
  readGbps: number;
  stridedGbps: number;
  segmentedGbps: number;
  method: Timing['method'];
  /** Timed passes of the faster read, the fastest kept. */
  passes: number;
}

export interface ReadLimitOptions {
  /** Timed passes of the faster read, the fastest kept (default 1). */
  passes?: number;
}

/** The read limit and, for reference, a copy (`bench kernels`). */
export function measureReadLimit(device: GPUDevice, maxBytes: number, options: ReadLimitOptions = {}): Promise<ReadLimit & { copyGbps: number }> {
  return withProbe(device, maxBytes, options, true, async (gbps, readLimit) => ({ ...(await readLimit()), copyGbps: await gbps('copy') }));
}

/** The read limit alone: no copy, so no second buffer as large as the first (`bench generate`). */
export function measureReadOnlyLimit(device: GPUDevice, maxBytes: number, options: ReadLimitOptions = {}): Promise<ReadLimit> {
  return withProbe(device, maxBytes, options, false, (_, readLimit) => readLimit());
}

/** GB/s of one timed pass of `kind` (bytes moved: read, or read + written by a copy). */
type Gbps = (kind: BandwidthKind) => Promise<number>;

async function withProbe<T>(device: GPUDevice, maxBytes: number, options: ReadLimitOptions, copy: boolean, run: (gbps: Gbps, readLimit: () => Promise<ReadLimit>) => Promise<T>): Promise<T> {
  const passes = options.passes ?? 1;
  if (!Number.isSafeInteger(passes) || passes < 1) throw new RangeError(`measureReadLimit: passes must be a whole number ≥ 1, not ${passes}`);
  // 256 MiB outruns any GPU cache (an H200 has 50 MB of L2), but one binding may be
  // smaller (128 MiB on lavapipe and in browsers): the probe reads what one binding holds.
  const bytes = Math.floor(Math.min(maxBytes, device.limits.maxStorageBufferBindingSize) / 16) * 16;
  const src = device.createBuffer({ label: 'bench.probe.src', size: bytes, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
  // A copy writes all of src to dst; a read writes one partial sum per invocation.
  const dstBytes = copy ? bytes : BANDWIDTH_GROUPS * BANDWIDTH_WORKGROUP * 4;
  const dst = device.createBuffer({ label: 'bench.probe.dst', size: dstBytes, usage: GPUBufferUsage.STORAGE });
  device.queue.writeBuffer(src, 0, new Float32Array(1 << 16).fill(0.5)); // defined values; the rest stays zero
  const ops = new Map<BandwidthKind, PreparedOp>();
  let method: Timing['method'] = 'wall';
  const gbps: Gbps = async (kind) => {
    let op = ops.get(kind);
    // The first pass of each kind warms up (pipeline, first touch of the buffers); later ones need not.
    const warmup = op ? 0 : 1;
    if (!op) ops.set(kind, (op = (await Bandwidth.create(device, kind)).prepare(`bench.${kind}`, bytes, src, dst)));
    const moved = kind === 'copy' ? 2 * bytes : bytes;
    const t = await timeOps(device, [op], { repeat: repeatsFor(moved / 3e9), warmup }); // at a guessed 3 GB/s
    method = t.method;
    return moved / t.seconds / 1e9;
  };
  const readLimit = async (): Promise<ReadLimit> => {
    let stridedGbps = await gbps('read');
    let segmentedGbps = await gbps('segmented');
    for (let pass = 1; pass < passes; pass++) {
      if (stridedGbps >= segmentedGbps) stridedGbps = Math.max(stridedGbps, await gbps('read'));
      else segmentedGbps = Math.max(segmentedGbps, await gbps('segmented'));
    }
    return { bytes, readGbps: Math.max(stridedGbps, segmentedGbps), stridedGbps, segmentedGbps, method, passes };
  };
  try {
    return await run(gbps, readLimit);
  } finally {
    for (const op of ops.values()) op.destroy();
    src.destroy();
    dst.destroy();
  }
}

// Timing GPU work for benchmarks: timestamp queries around one compute pass where the
// device has 'timestamp-query' (GPU time only, no submit overhead), else the wall clock
// around submit → onSubmittedWorkDone over many repetitions in that one pass.
//
// Note: Dawn may quantise timestamps (to 100 µs in browsers); repeating the work until a
// run is well over that keeps the error small.

import { encodeOp, type PreparedOp } from '../ops/op.js';
import { quietWait } from './quiet-wait.js';

export interface Timing {
  /** Seconds per repetition of the ops. */
  seconds: number;
  method: 'timestamp' | 'wall';
}

export interface TimeOptions {
  /** Repetitions of the ops inside the measured pass (default 10). */
  repeat?: number;
  /** Untimed passes first: pipeline warm-up, first-touch of buffers (default 1). */
  warmup?: number;
  /** Use the wall clock even where timestamps exist. */
  wall?: boolean;
}

/** Repetitions so one measured pass lasts ~0.2 s when one run takes `expectedSeconds` (2 to 50). */
export function repeatsFor(expectedSeconds: number): number {
  return Math.max(2, Math.min(50, Math.ceil(0.2 / expectedSeconds)));
}

export async function timeOps(device: GPUDevice, ops: readonly PreparedOp[], options: TimeOptions = {}): Promise<Timing> {
  const repeat = options.repeat ?? 10;
  for (let i = 0; i < (options.warmup ?? 1); i++) await submitPass(device, ops, 1);
  if (device.features.has('timestamp-query') && !options.wall) {
    return { seconds: (await timestampPass(device, ops, repeat)) / repeat, method: 'timestamp' };
  }
  const start = performance.now();
  await submitPass(device, ops, repeat);
  return { seconds: (performance.now() - start) / 1000 / repeat, method: 'wall' };
}

async function submitPass(device: GPUDevice, ops: readonly PreparedOp[], repeat: number, timestampWrites?: GPUComputePassTimestampWrites, after?: (e: GPUCommandEncoder) => void): Promise<void> {
  const encoder = device.createCommandEncoder({ label: 'profile' });
  const pass = encoder.beginComputePass({ label: 'profile', timestampWrites });
  for (let r = 0; r < repeat; r++) for (const op of ops) encodeOp(pass, op);
  pass.end();
  after?.(encoder);
  device.queue.submit([encoder.finish()]);
  await quietWait(device, () => device.queue.onSubmittedWorkDone());
}

/** Seconds between the pass's beginning and end timestamps. */
async function timestampPass(device: GPUDevice, ops: readonly PreparedOp[], repeat: number): Promise<number> {
  const querySet = device.createQuerySet({ label: 'profile.timestamps', type: 'timestamp', count: 2 });
  const resolved = device.createBuffer({ label: 'profile.resolved', size: 16, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
  const readback = device.createBuffer({ label: 'profile.readback', size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  try {
    await submitPass(device, ops, repeat, { querySet, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 }, (encoder) => {
      encoder.resolveQuerySet(querySet, 0, 2, resolved, 0);
      encoder.copyBufferToBuffer(resolved, 0, readback, 0, 16);
    });
    await quietWait(device, () => readback.mapAsync(GPUMapMode.READ));
    const [begin, end] = new BigUint64Array(readback.getMappedRange());
    return Number(end - begin) / 1e9;
  } finally {
    querySet.destroy();
    resolved.destroy();
    readback.destroy();
  }
}

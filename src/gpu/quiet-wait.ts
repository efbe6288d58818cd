// Waiting for a software GPU without taking a CPU core from it.
//
// Dawn's Node binding resolves mapAsync and onSubmittedWorkDone by polling: while any such
// promise is pending, it re-queues a poll with the global setImmediate (its AsyncRunner;
// crbug.com/dawn/1127 is its own TODO to poll less often), so the main thread runs a whole
// core for as long as the GPU works. On a software GPU (lavapipe) that core is one of the
// cores the GPU's worker threads run on, and each dispatch waits for its slowest worker: on
// the 2-core machine a SmolLM2-135M decode spent 1.75 s of main-thread CPU per 2 s, decoded
// at 8–15 tok/s from one run to the next, and the read-limit probe read 8 GB/s, not 16.
//
// So on a software adapter (node-gpu.ts marks its devices), a wait runs inside quietWait:
// for its duration, Dawn's polls (native callbacks given to the global setImmediate) go
// through setTimeout instead once the wait has lasted SPIN_MS, one poll a millisecond, and
// the main thread sleeps between them. A short wait (a test's small op) still spins and
// ends at once. Dawn's poll is told apart as a native function of no parameters (a promise's
// resolver, native too, takes one); every other setImmediate call passes through unchanged,
// and only Dawn, which never clears its polls, gets a timer's handle back. The swap is
// undone when the last open wait ends. A wait with more work queued behind it (a decode
// step read while the next one runs: GpuSampler's pass ahead) may poll less often: its
// lateness costs nothing while the GPU has that work, and each wake-up of the main thread
// takes a core from lavapipe's workers for a moment (a SmolLM2-shaped decode ran 5–7%
// faster polling every 8 ms than every 1 ms, with a pass queued; 4% slower without). Such
// a wait does not spin first either: it lasts about a step, never a small op's moment, and
// the spin's 2 ms were a core taken from lavapipe every token (measured: the main thread's
// CPU per SmolLM2 token 4.4 → 3.1 ms, the token 51 → 48 ms, medians of 10 interleaved).
// A real GPU keeps Dawn's polling: a millisecond per poll would be a large share of its steps.

/** Ms between Dawn's polls inside a quiet wait, once it lasts (Node's shortest timer). */
export const POLL_MS = 1;
/** The longest poll interval a wait with work queued behind it may ask for. */
export const QUEUED_POLL_MS = 8;
/** Ms a quiet wait polls as Dawn does before it starts to sleep between polls. */
const SPIN_MS = 2;

const quiet = new WeakSet<GPUDevice>();
let open = 0;
let openedAt = 0; // when the outermost open wait began
let pollMs = POLL_MS; // the shortest interval asked for since the outermost open wait began
let passThrough: typeof setImmediate | undefined;

/** Says that waits on `device` should not spin: a software adapter's device (node-gpu.ts). */
export function markQuietDevice(device: GPUDevice): void {
  quiet.add(device);
}

/** Whether waits on `device` poll once a millisecond instead of spinning. */
export function isQuietDevice(device: GPUDevice): boolean {
  return quiet.has(device);
}

/** Dawn's poll: a native function (no JS source) of no parameters. */
function dawnPoll(f: unknown): boolean {
  return typeof f === 'function' && f.length === 0 && Function.prototype.toString.call(f).endsWith('{ [native code] }');
}

function throttledSetImmediate(callback: (...args: unknown[]) => void, ...args: unknown[]): unknown {
  if (performance.now() - openedAt >= SPIN_MS && dawnPoll(callback)) return setTimeout(callback, pollMs, ...args);
  return passThrough!(callback, ...args);
}

/**
 * Runs `wait` (which starts the GPU wait: a mapAsync, an onSubmittedWorkDone) and awaits it,
 * polling once a millisecond where `device` is quiet; on other devices, just awaits it.
 */
export async function quietWait<T>(device: GPUDevice, wait: () => Promise<T>): Promise<T> {
  if (!quiet.has(device)) return wait();
  enterQuiet();
  try {
    return await wait();
  } finally {
    leaveQuiet();
  }
}

/**
 * quietWait without a closure, for a wait made every token: enterQuiet(); try { await … }
 * finally { leaveQuiet(); }. `poll`: ms between polls once the wait lasts (POLL_MS;
 * up to QUEUED_POLL_MS for a wait with GPU work queued behind it, which sleeps between
 * polls from the first: no spin).
 */
export function enterQuiet(poll = POLL_MS): void {
  const ms = Math.min(Math.max(poll, POLL_MS), QUEUED_POLL_MS);
  if (open++ > 0) {
    pollMs = Math.min(pollMs, ms);
    return;
  }
  pollMs = ms;
  // A wait with work queued behind it (ms > POLL_MS) sleeps from its first poll.
  openedAt = ms > POLL_MS ? -Infinity : performance.now();
  passThrough = globalThis.setImmediate;
  globalThis.setImmediate = throttledSetImmediate as unknown as typeof setImmediate;
}

export function leaveQuiet(): void {
  if (open === 0 || --open > 0) return;
  globalThis.setImmediate = passThrough!;
  passThrough = undefined;
}

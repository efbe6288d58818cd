// quietWait: on a quiet (software) device, Dawn's polls during a long wait go through a
// timer, everything else passes through, the global is restored however the wait ends;
// and on lavapipe a long GPU wait no longer keeps the main thread busy.

import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { mainThreadCpuSeconds } from '../../src/cli/bench/main-thread-cpu.js';
import { enterQuiet, isQuietDevice, leaveQuiet, markQuietDevice, POLL_MS, QUEUED_POLL_MS, quietWait } from '../../src/gpu/quiet-wait.js';
import { BANDWIDTH_GROUPS, BANDWIDTH_WORKGROUP, Bandwidth } from '../../src/ops/bandwidth.js';
import { runOps } from '../../src/ops/op.js';
import { useGpuTestDevice } from '../support/gpu-helpers.js';
import { outputBuffer } from '../support/op-helpers.js';

const nativeCallback = Date.now; // native, no parameters: what Dawn's poll looks like from JS
const scheduledBy = (callback: () => void) => {
  const handle = setImmediate(callback) as unknown as { constructor: { name: string } };
  const kind = handle.constructor.name;
  if (kind === 'Immediate') clearImmediate(handle as unknown as NodeJS.Immediate);
  else clearTimeout(handle as unknown as NodeJS.Timeout);
  return kind;
};

describe('quietWait', () => {
  it('leaves setImmediate alone on a device that is not quiet', async () => {
    const device = {} as GPUDevice;
    const original = globalThis.setImmediate;
    expect(isQuietDevice(device)).toBe(false);
    const seen = await quietWait(device, async () => globalThis.setImmediate);
    expect(seen).toBe(original);
  });

  it('on a quiet device: native polls go through a timer once the wait lasts, other callbacks never', async () => {
    const device = {} as GPUDevice;
    markQuietDevice(device);
    const original = globalThis.setImmediate;
    const kinds = await quietWait(device, async () => {
      await sleep(5); // past the first 2 ms, in which it polls as Dawn does
      let resolver: unknown;
      new Promise((resolve) => (resolver = resolve)); // native, one parameter: passes through
      return { native: scheduledBy(nativeCallback), js: scheduledBy(() => {}), resolver: scheduledBy(resolver as () => void) };
    });
    expect(kinds).toEqual({ native: 'Timeout', js: 'Immediate', resolver: 'Immediate' });
    expect(globalThis.setImmediate).toBe(original);
  });

  it('a wait with work queued behind it polls less often, never past QUEUED_POLL_MS; the open waits\' shortest interval wins', async () => {
    // The timer's interval, read off Node's Timeout (its _idleTimeout field).
    const interval = () => {
      const handle = setImmediate(nativeCallback) as unknown as { _idleTimeout?: number };
      const ms = handle._idleTimeout;
      clearTimeout(handle as unknown as NodeJS.Timeout);
      return ms;
    };
    enterQuiet(5);
    try {
      await sleep(5);
      expect(interval()).toBe(5);
      enterQuiet(100); // clamped to QUEUED_POLL_MS, and the open 5 ms stays the shortest
      expect(interval()).toBe(Math.min(5, QUEUED_POLL_MS));
      leaveQuiet();
      enterQuiet(); // an ordinary wait joins: every POLL_MS now
      expect(interval()).toBe(POLL_MS);
      leaveQuiet();
    } finally {
      leaveQuiet();
    }
    enterQuiet(100);
    try {
      await sleep(5);
      expect(interval()).toBe(QUEUED_POLL_MS);
    } finally {
      leaveQuiet();
    }
  });

  it('a wait with work queued behind it sleeps from its first poll; an ordinary one spins its first 2 ms', async () => {
    enterQuiet(QUEUED_POLL_MS);
    try {
      expect(scheduledBy(nativeCallback)).toBe('Timeout');
    } finally {
      leaveQuiet();
    }
    enterQuiet();
    try {
      expect(scheduledBy(nativeCallback)).toBe('Immediate');
    } finally {
      leaveQuiet();
    }
  });

  it('restores setImmediate when the wait rejects, and only when the outermost wait ends', async () => {
    const device = {} as GPUDevice;
    markQuietDevice(device);
    const original = globalThis.setImmediate;
    await expect(quietWait(device, async () => Promise.reject(new Error('lost')))).rejects.toThrow('lost');
    expect(globalThis.setImmediate).toBe(original);
    enterQuiet();
    await quietWait(device, async () => {});
    expect(globalThis.setImmediate).not.toBe(original); // the outer wait is still open
    leaveQuiet();
    expect(globalThis.setImmediate).toBe(original);
    leaveQuiet(); // unbalanced: ignored
    expect(globalThis.setImmediate).toBe(original);
  });
});

describe('on lavapipe', () => {
  const gpu = useGpuTestDevice('test.quiet-wait');

  it.runIf(process.platform === 'linux')('a long GPU wait leaves the main thread mostly idle', async () => {
    if (!gpu.context.adapterInfo.isSoftware) return; // a real GPU keeps Dawn's polling
    expect(isQuietDevice(gpu.device)).toBe(true);
    const bytes = 32 * 2 ** 20;
    const src = gpu.device.createBuffer({ size: bytes, usage: GPUBufferUsage.STORAGE });
    const sums = outputBuffer(gpu.device, BANDWIDTH_GROUPS * BANDWIDTH_WORKGROUP, 4);
    const read = (await Bandwidth.create(gpu.device, 'segmented')).prepare('test.quiet', bytes, src, sums);
    try {
      await runOps(gpu.device, [read]); // warm: pipeline and first touch
      const before = mainThreadCpuSeconds()!;
      const began = performance.now();
      await runOps(gpu.device, Array(48).fill(read)); // 1.5 GiB read: ~100–400 ms of GPU work here
      const wallMs = performance.now() - began;
      const cpuMs = (mainThreadCpuSeconds()! - before) * 1000;
      expect(wallMs).toBeGreaterThan(50); // long enough to tell polling from sleeping
      // Spinning would make this ~1; sleeping between 1 ms polls leaves it near 0.
      expect(cpuMs / wallMs).toBeLessThan(0.5);
    } finally {
      read.destroy();
      src.destroy();
      sums.destroy();
    }
  });
});

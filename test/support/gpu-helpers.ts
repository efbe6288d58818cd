// Helpers of the GPU tests: what a loaded tensor must hold, a byte comparison that names the
// first bad element in hex, and a spy around a real GPUDevice (a Proxy) that records the
// buffers made through it and whether each was destroyed, and can fake what a real device
// cannot be made to do on demand (run out of memory, lack shader-f16, tiny limits).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, expect } from 'vitest';
import type { Dtype } from '../../src/formats/dtypes.js';
import type { GpuContext } from '../../src/gpu/device.js';
import { acquireNodeDevice } from '../../src/gpu/node-gpu.js';
import { dtypeBytes } from '../../src/formats/dtypes.js';
import type { ByteSource } from '../../src/io/byte-source.js';
import { convertArray, type DstDtype, type SrcDtype } from './dtype-reference.js';
import { mulberry32 } from './safetensors-bytes.js';

/** The bytes a tensor of `storage` dtype must hold on the GPU as `dtype`: converted floats, else unchanged. */
export function expectedBytes(raw: Uint8Array, storage: Dtype, dtype: Dtype): Uint8Array {
  if (storage === dtype) return raw;
  return convertArray(raw, storage as SrcDtype, dtype as DstDtype);
}

const hexOf = (bytes: Uint8Array, at: number, size: number): string => {
  let v = 0n;
  for (let i = size - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[at + i] ?? 0);
  return `0x${v.toString(16).padStart(size * 2, '0')}`;
};

/**
 * null when equal; else a line naming the first differing element (little-endian, in hex),
 * with the input element that produced it when `input` is given.
 */
export function firstMismatch(
  got: Uint8Array,
  want: Uint8Array,
  outSize: number,
  input?: { bytes: Uint8Array; size: number },
): string | null {
  if (got.byteLength !== want.byteLength) return `length ${got.byteLength}, expected ${want.byteLength}`;
  if (Buffer.from(got.buffer, got.byteOffset, got.byteLength).equals(want)) return null;
  let bad = 0;
  let first = -1;
  for (let i = 0; i < got.byteLength; i += outSize) {
    for (let j = 0; j < outSize; j++) {
      if (got[i + j] !== want[i + j]) {
        if (first < 0) first = i / outSize;
        bad++;
        break;
      }
    }
  }
  const inHex = input ? `input ${hexOf(input.bytes, first * input.size, input.size)} → ` : '';
  return `${bad} of ${got.byteLength / outSize} elements differ; first: element ${first}: ${inHex}got ${hexOf(got, first * outSize, outSize)}, expected ${hexOf(want, first * outSize, outSize)}`;
}

/** firstMismatch for a tensor's buffer dtype (sub-byte dtypes compared byte by byte). */
export function tensorMismatch(got: Uint8Array, want: Uint8Array, dtype: Dtype, storage?: Dtype, raw?: Uint8Array): string | null {
  const input = storage && raw ? { bytes: raw, size: dtypeBytes(storage) ?? 1 } : undefined;
  return firstMismatch(got, want, dtypeBytes(dtype) ?? 1, input);
}

export interface SpyOptions {
  /** Replaces device.features. */
  features?: ReadonlySet<string>;
  /** Overrides some of device.limits. */
  limits?: Record<string, number>;
  /** Called after each real popErrorScope with its result; what it returns is returned instead. */
  popErrorScope?: (real: GPUError | null, call: number) => GPUError | null | { message: string };
}

export interface DeviceSpy {
  /** Use this in place of the real device. */
  readonly device: GPUDevice;
  /** Every buffer created through the spy, in order. */
  readonly created: GPUBuffer[];
  readonly destroyed: Set<GPUBuffer>;
  /** Labels of the buffers created and not destroyed. */
  live(): string[];
}

/** A Proxy over `real`: methods bound to the real device, createBuffer recorded. */
export function spyDevice(real: GPUDevice, options: SpyOptions = {}): DeviceSpy {
  const created: GPUBuffer[] = [];
  const destroyed = new Set<GPUBuffer>();
  let pops = 0;
  const limits = options.limits
    ? new Proxy(real.limits, {
        get: (t, p) => (typeof p === 'string' && p in options.limits! ? options.limits![p] : Reflect.get(t, p, t)),
      })
    : real.limits;
  const overrides: Record<string | symbol, unknown> = {
    limits,
    createBuffer(descriptor: GPUBufferDescriptor): GPUBuffer {
      const buffer = real.createBuffer(descriptor);
      created.push(buffer);
      const destroy = buffer.destroy;
      buffer.destroy = function (this: GPUBuffer) {
        destroyed.add(buffer);
        return destroy.call(this);
      };
      return buffer;
    },
  };
  if (options.features) overrides.features = options.features;
  const onPop = options.popErrorScope;
  if (onPop) {
    overrides.popErrorScope = async () => onPop(await real.popErrorScope(), pops++);
  }
  const device = new Proxy(real, {
    get(target, prop) {
      if (Object.hasOwn(overrides, prop)) return overrides[prop];
      // Receiver = the real device: Dawn's native getters check their `this`.
      const value = Reflect.get(target, prop, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  return {
    device,
    created,
    destroyed,
    live: () => created.filter((b) => !destroyed.has(b)).map((b) => b.label),
  };
}

/**
 * A ByteSource whose reads finish after a seeded random delay (0 – maxDelayMs), so that
 * reads issued in order complete out of order; records the order reads were issued and
 * the order they finished.
 */
export class ShuffledSource implements ByteSource {
  readonly issued: number[] = [];
  readonly finished: number[] = [];
  private readonly rng: () => number;

  constructor(
    private readonly inner: ByteSource,
    seed: number,
    private readonly maxDelayMs = 4,
  ) {
    this.rng = mulberry32(seed);
  }

  get name(): string {
    return this.inner.name;
  }
  get size(): number {
    return this.inner.size;
  }

  async read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    this.issued.push(offset);
    const delay = Math.floor(this.rng() * (this.maxDelayMs + 1));
    await new Promise((resolve) => setTimeout(resolve, delay));
    const out = await this.inner.read(offset, length, into);
    this.finished.push(offset);
    return out;
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

/**
 * One device (and a temp dir) per test file, made in beforeAll and destroyed in afterAll;
 * after every test the queue is drained and no uncaptured GPU error may remain, so a Dawn
 * validation error cannot pass silently. Read the fields inside tests and hooks.
 */
export function useGpuTestDevice(label: string): { readonly context: GpuContext; readonly device: GPUDevice; readonly dir: string } {
  const state = {} as { context: GpuContext; device: GPUDevice; dir: string };
  beforeAll(async () => {
    state.context = await acquireNodeDevice({ label });
    state.device = state.context.device;
    state.dir = await mkdtemp(join(tmpdir(), `sluice-${label}-`));
  });
  afterAll(async () => {
    state.context?.destroy();
    if (state.dir) await rm(state.dir, { recursive: true, force: true });
  });
  afterEach(async () => {
    await state.device.queue.onSubmittedWorkDone();
    expect(state.context.takeErrors().errors).toEqual([]);
  });
  return state;
}

/**
 * `device` with its adapter reporting subgroups up to `width` wide (subgroupMaxSize, what
 * GemvCoalesced sizes its row groups by): a wave64 GPU's layout, run on this adapter.
 */
export function withSubgroupWidth(device: GPUDevice, width: number): GPUDevice {
  const adapterInfo = { subgroupMinSize: device.adapterInfo.subgroupMinSize, subgroupMaxSize: width };
  return new Proxy(device, {
    get(target, prop) {
      if (prop === 'adapterInfo') return adapterInfo;
      const value = Reflect.get(target, prop, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

/** `device` reporting maxStorageBuffersPerShaderStage = `limit` (WebGPU's default is 8; a browser on many GPUs gives no more). */
export function withStorageLimit(device: GPUDevice, limit: number): GPUDevice {
  const limits = new Proxy(device.limits, { get: (target, prop) => (prop === 'maxStorageBuffersPerShaderStage' ? limit : Reflect.get(target, prop, target)) });
  return new Proxy(device, {
    get(target, prop) {
      if (prop === 'limits') return limits;
      const value = Reflect.get(target, prop, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

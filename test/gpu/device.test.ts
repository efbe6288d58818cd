// Device acquisition on the real (software) adapter, plus the paths a real adapter cannot
// reach on demand (no adapter, an unexpected loss) through fake GPU objects.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { isSluiceError, SluiceError } from '../../src/errors.js';
import { describeAdapter } from '../../src/gpu/adapter-info.js';
import { acquireDevice, type GpuContext, RAISED_LIMITS, USED_FEATURES } from '../../src/gpu/device.js';
import { acquireNodeDevice, nodeGpu } from '../../src/gpu/node-gpu.js';

// Not a multiple of WORKGROUP, so the bounds check in the shader is exercised.
const N = 1000;
const WORKGROUP = 64;
const AFFINE_WGSL = /* wgsl */ `
override WORKGROUP: u32;
@group(0) @binding(0) var<storage, read> x: array<f32>;       // (N,) f32
@group(0) @binding(1) var<storage, read_write> y: array<f32>; // (N,) f32
@compute @workgroup_size(WORKGROUP)
fn main(@builtin(global_invocation_id) id: vec3u) {
  if (id.x < arrayLength(&y)) { y[id.x] = x[id.x] * 2.0 + 1.0; }
}`;

/** y = 2x + 1 on the GPU, read back. */
async function runAffine(device: GPUDevice, x: Float32Array<ArrayBuffer>): Promise<Float32Array> {
  const usage = GPUBufferUsage;
  const bytes = x.byteLength;
  const xBuf = device.createBuffer({ label: 'test.affine.x', size: bytes, usage: usage.STORAGE | usage.COPY_DST });
  const yBuf = device.createBuffer({ label: 'test.affine.y', size: bytes, usage: usage.STORAGE | usage.COPY_SRC });
  const read = device.createBuffer({ label: 'test.affine.read', size: bytes, usage: usage.MAP_READ | usage.COPY_DST });
  device.queue.writeBuffer(xBuf, 0, x);
  const module = device.createShaderModule({ label: 'test.affine', code: AFFINE_WGSL });
  const pipeline = device.createComputePipeline({
    label: 'test.affine',
    layout: 'auto',
    compute: { module, entryPoint: 'main', constants: { WORKGROUP } },
  });
  const bindGroup = device.createBindGroup({
    label: 'test.affine',
    layout: pipeline.getBindGroupLayout(0),
    entries: [
      { binding: 0, resource: { buffer: xBuf } },
      { binding: 1, resource: { buffer: yBuf } },
    ],
  });
  const encoder = device.createCommandEncoder({ label: 'test.affine' });
  const pass = encoder.beginComputePass({ label: 'test.affine' });
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bindGroup);
  pass.dispatchWorkgroups(Math.ceil(x.length / WORKGROUP));
  pass.end();
  encoder.copyBufferToBuffer(yBuf, 0, read, 0, bytes);
  device.queue.submit([encoder.finish()]);
  await read.mapAsync(GPUMapMode.READ);
  const y = new Float32Array(read.getMappedRange().slice(0));
  read.unmap();
  for (const buffer of [xBuf, yBuf, read]) buffer.destroy();
  return y;
}

describe('acquireNodeDevice on the software adapter', () => {
  let context: GpuContext;
  beforeAll(async () => {
    context = await acquireNodeDevice({ label: 'test.device' });
  });
  afterAll(() => context?.destroy());

  it('raises every compute limit to the adapter maximum', () => {
    const adapterLimits = context.adapterInfo.limits;
    const { limits } = context.device;
    expect(limits.maxStorageBufferBindingSize).toBe(adapterLimits.maxStorageBufferBindingSize);
    expect(limits.maxBufferSize).toBe(adapterLimits.maxBufferSize);
    // Above WebGPU's defaults (256 MiB, 16 KiB, 256) on lavapipe, so raising is visible.
    expect(limits.maxBufferSize).toBeGreaterThan(256 * 2 ** 20);
    expect(limits.maxComputeWorkgroupStorageSize).toBeGreaterThan(16384);
    expect(limits.maxComputeInvocationsPerWorkgroup).toBeGreaterThan(256);
    for (const name of RAISED_LIMITS) {
      if (name in adapterLimits) expect([name, context.limits[name]]).toEqual([name, adapterLimits[name]]);
    }
  });

  it('has the features sluice uses (lavapipe offers all three)', () => {
    for (const name of USED_FEATURES) {
      expect(context.features.has(name)).toBe(true);
      expect(context.device.features.has(name)).toBe(true);
    }
  });

  it('describes the adapter as software, with plain-data features and limits', async () => {
    const info = context.adapterInfo;
    expect(info.isSoftware).toBe(true);
    expect(info.description).toMatch(/llvmpipe|lavapipe/);
    expect(info.features).toEqual([...info.features].sort());
    expect(Object.keys(info.limits).length).toBeGreaterThan(20);
    // What JSON.stringify of Dawn's own objects cannot do.
    expect(JSON.parse(JSON.stringify(info))).toEqual(info);
    const adapter = await (await nodeGpu()).requestAdapter();
    expect(describeAdapter(adapter!)).toEqual(info);
  });

  it('runs a compute shader over a length that is not a multiple of the workgroup', async () => {
    const x = Float32Array.from({ length: N }, (_, i) => i - 500.5);
    const y = await runAffine(context.device, x);
    expect(y).toEqual(x.map((v) => v * 2 + 1)); // exact: 2v + 1 is exact in f32 here
    expect(context.takeErrors()).toEqual({ errors: [], dropped: 0 });
  });

  it('keeps uncaptured errors for the caller, or hands them to onUncapturedError', async () => {
    const onUncapturedError = vi.fn();
    const other = await acquireNodeDevice({ label: 'test.errors', onUncapturedError });
    try {
      other.device.createBuffer({ label: 'test.errors.bad', size: 4, usage: 0 }); // usage 0 is invalid
      await vi.waitFor(() => expect(onUncapturedError).toHaveBeenCalledTimes(1));
      expect(onUncapturedError.mock.calls[0][0]).toBeInstanceOf(GPUValidationError);
    } finally {
      other.destroy();
    }
    context.device.createBuffer({ label: 'test.errors.bad', size: 4, usage: 0 });
    let kept: GPUError[] = [];
    await vi.waitFor(() => {
      kept = kept.concat(context.takeErrors().errors);
      expect(kept).toHaveLength(1);
    });
    expect(kept[0].message).toContain('test.errors.bad');
  });

  it('does not report a loss caused by destroy() as an error', async () => {
    const onLost = vi.fn();
    const mine = await acquireNodeDevice({ label: 'test.destroy', onLost });
    mine.destroy();
    mine.destroy(); // idempotent
    expect(await mine.lost).toBeNull();
    const theirs = await acquireNodeDevice({ label: 'test.device-destroy', onLost });
    theirs.device.destroy(); // by the owner, around the context: also on purpose
    expect(await theirs.lost).toBeNull();
    expect(onLost).not.toHaveBeenCalled();
  });
});

describe('acquireDevice without a usable adapter', () => {
  it('throws NO_ADAPTER, saying how to get one, when there is none', async () => {
    const gpu = { requestAdapter: async () => null } as unknown as GPU;
    const error = await acquireDevice(gpu).catch((e: unknown) => e);
    expect(isSluiceError(error, 'NO_ADAPTER')).toBe(true);
    expect((error as Error).message).toContain('npm run setup');
    const noWebGpu = await acquireDevice(undefined).catch((e: unknown) => e);
    expect(isSluiceError(noWebGpu, 'NO_ADAPTER')).toBe(true);
  });

  it('throws NO_ADAPTER when requestAdapter itself throws', async () => {
    const gpu = { requestAdapter: async () => Promise.reject(new Error('no backend')) } as unknown as GPU;
    await expect(acquireDevice(gpu)).rejects.toThrow(/no WebGPU adapter.*no backend/);
  });
});

describe('acquireDevice when the device is lost unexpectedly', () => {
  // A fake adapter whose device reports a loss on demand: a real one cannot be made to.
  function fakeGpu() {
    let lose!: (info: { reason: string; message: string }) => void;
    const lost = new Promise((resolve) => (lose = resolve));
    const device = {
      features: new Set(['shader-f16']),
      limits: { maxBufferSize: 1024 },
      lost,
      addEventListener: () => {},
      destroy: () => lose({ reason: 'destroyed', message: '' }),
    };
    const adapter = {
      info: { vendor: 'fake', architecture: '', device: '', description: 'fake GPU', isFallbackAdapter: false },
      features: new Set(['shader-f16', 'texture-compression-bc']),
      limits: { maxBufferSize: 1024, maxTextureDimension1D: 8 },
      requestDevice: vi.fn(async () => device),
    };
    const gpu = { requestAdapter: async () => adapter } as unknown as GPU;
    return { gpu, adapter, lose };
  }

  it('resolves lost with DEVICE_LOST and calls onLost once', async () => {
    const { gpu, adapter, lose } = fakeGpu();
    const onLost = vi.fn();
    const context = await acquireDevice(gpu, { label: 'test.fake', onLost });
    // Only wanted features the adapter has, only limits it reports.
    expect(adapter.requestDevice).toHaveBeenCalledWith(
      expect.objectContaining({ requiredFeatures: ['shader-f16'], requiredLimits: { maxBufferSize: 1024 } }),
    );
    expect(context.adapterInfo.isSoftware).toBe(false);
    lose({ reason: 'unknown', message: 'GPU hung\n - While doing work' });
    const error = await context.lost;
    expect(error).toBeInstanceOf(SluiceError);
    expect(error?.code).toBe('DEVICE_LOST');
    expect(error?.message).toBe("GPU device 'test.fake' on 'fake fake GPU' was lost (unknown): GPU hung - While doing work");
    expect(onLost).toHaveBeenCalledExactlyOnceWith(error);
  });

  it("requests every adapter feature with features: 'all'", async () => {
    const { gpu, adapter } = fakeGpu();
    await acquireDevice(gpu, { features: 'all' });
    const [descriptor] = adapter.requestDevice.mock.calls[0] as unknown as [GPUDeviceDescriptor];
    expect(descriptor.requiredFeatures).toEqual(['shader-f16', 'texture-compression-bc']);
  });
});

// Adapter and device acquisition, the same in Node (Dawn) and the browser (navigator.gpu):
// the caller hands in the GPU object, so this file imports nothing from Node.
//
// WebGPU's default limits are sized for the weakest phone (128 MiB bindings, 16 KiB of
// workgroup memory); a device only gets more if it asks. Model weights need the most the
// adapter can give, so we ask for the adapter's maximum of every limit a compute
// workload touches.

import { SluiceError } from '../errors.js';
import { type AdapterReport, adapterName, describeAdapter, readLimits } from './adapter-info.js';

/** The optional features sluice's kernels use, requested whenever the adapter has them. */
export const USED_FEATURES: readonly GPUFeatureName[] = ['shader-f16', 'subgroups', 'timestamp-query'];

/** Limits raised to the adapter's best value (maxima, and the smallest offset alignments). */
export const RAISED_LIMITS: readonly string[] = [
  'maxBufferSize',
  'maxStorageBufferBindingSize',
  'maxUniformBufferBindingSize',
  'maxStorageBuffersPerShaderStage',
  'maxUniformBuffersPerShaderStage',
  'maxDynamicStorageBuffersPerPipelineLayout',
  'maxDynamicUniformBuffersPerPipelineLayout',
  'maxBindGroups',
  'maxBindingsPerBindGroup',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxComputeWorkgroupSizeZ',
  'maxComputeWorkgroupsPerDimension',
  'maxImmediateSize',
  'minStorageBufferOffsetAlignment',
  'minUniformBufferOffsetAlignment',
];

// The first errors are usually the cause and the rest its echoes, so we keep the first
// few and count the others, rather than letting a per-token error grow memory forever.
const MAX_KEPT_ERRORS = 64;

export interface AcquireOptions {
  /** Features to request when the adapter has them: USED_FEATURES unless given; 'all' = every one. */
  features?: 'all' | readonly GPUFeatureName[];
  /** The device's label, prefixed to its queue's; Dawn's messages name it. Default 'sluice'. */
  label?: string;
  /** Default 'high-performance': a laptop's discrete GPU rather than its integrated one. */
  powerPreference?: GPUPowerPreference;
  /** Called once if the device is lost other than by destroy(). */
  onLost?: (error: SluiceError) => void;
  /** Called for each uncaptured GPU error; without it they are kept for takeErrors(). */
  onUncapturedError?: (error: GPUError) => void;
}

export interface GpuContext {
  readonly device: GPUDevice;
  /** The adapter the device came from: identity, software or not, its features and limits. */
  readonly adapterInfo: AdapterReport;
  /** Features the device has (what kernels may use), not merely what the adapter offers. */
  readonly features: ReadonlySet<string>;
  /** The device's limits, after raising. */
  readonly limits: Readonly<Record<string, number>>;
  /**
   * Settles when the device is lost: with a DEVICE_LOST error, or with null when it was
   * destroyed on purpose (destroy(), or device.destroy() by its owner). Never rejects.
   */
  readonly lost: Promise<SluiceError | null>;
  /** Uncaptured errors kept so far (when no onUncapturedError was given), oldest first; clears them. */
  takeErrors(): { errors: GPUError[]; dropped: number };
  /** Destroys the device; its loss is then not an error. Idempotent. */
  destroy(): void;
}

/**
 * Requests an adapter from `gpu` (navigator.gpu, or Dawn's in Node) and a device with the
 * adapter's maximum compute limits and the wanted features it supports.
 * Throws SluiceError NO_ADAPTER when there is no GPU object or no adapter.
 */
export async function acquireDevice(gpu: GPU | undefined, options: AcquireOptions = {}): Promise<GpuContext> {
  const label = options.label ?? 'sluice';
  if (!gpu) throw noAdapter('this environment has no WebGPU (navigator.gpu is undefined)');

  let adapter: GPUAdapter | null;
  try {
    adapter = await gpu.requestAdapter({ powerPreference: options.powerPreference ?? 'high-performance' });
  } catch (e) {
    throw noAdapter(`requestAdapter failed: ${(e as Error).message}`, e);
  }
  if (!adapter) throw noAdapter('requestAdapter found none');

  const adapterInfo = describeAdapter(adapter);
  const requiredFeatures = wantedFeatures(adapter, options.features);
  const requiredLimits = raisedLimits(adapterInfo.limits);

  let device: GPUDevice;
  try {
    device = await adapter.requestDevice({
      label,
      requiredFeatures,
      requiredLimits,
      defaultQueue: { label: `${label}.queue` },
    });
  } catch (e) {
    // The adapter exists but refused these limits or features: for the user it is the
    // same problem as no adapter (this one cannot run sluice), with the reason attached.
    throw new SluiceError(
      'NO_ADAPTER',
      `the WebGPU adapter '${adapterName(adapterInfo)}' refused a device: ${(e as Error).message}`,
      { cause: e },
    );
  }

  let destroying = false;
  const kept: GPUError[] = [];
  let dropped = 0;

  // addEventListener, not onuncapturederror, so a caller's own handler does not unhook ours.
  device.addEventListener('uncapturederror', (event) => {
    const { error } = event as GPUUncapturedErrorEvent;
    // Cancelling is what keeps it quiet: dawn.node otherwise prints the error to stdout
    // (which would corrupt `--json` output), browsers to the console.
    event.preventDefault();
    if (options.onUncapturedError) options.onUncapturedError(error);
    else if (kept.length < MAX_KEPT_ERRORS) kept.push(error);
    else dropped++;
  });

  const lost = device.lost.then((info) => {
    // 'destroyed' means someone called device.destroy(): whoever owns it meant to.
    if (destroying || info.reason === 'destroyed') return null;
    const message = info.message.replace(/\s*\n\s*/g, ' ').trim();
    const error = new SluiceError(
      'DEVICE_LOST',
      `GPU device '${label}' on '${adapterName(adapterInfo)}' was lost (${info.reason})${message ? `: ${message}` : ''}`,
    );
    options.onLost?.(error);
    return error;
  });

  return {
    device,
    adapterInfo,
    features: new Set([...device.features].map(String)),
    limits: readLimits(device.limits),
    lost,
    takeErrors() {
      const result = { errors: kept.splice(0), dropped };
      dropped = 0;
      return result;
    },
    destroy() {
      if (destroying) return;
      destroying = true;
      device.destroy();
    },
  };
}

/** The features to request: the wanted ones (USED_FEATURES by default) the adapter has. */
function wantedFeatures(adapter: GPUAdapter, wanted: AcquireOptions['features']): GPUFeatureName[] {
  const offered = [...adapter.features] as GPUFeatureName[];
  if (wanted === 'all') return offered;
  return (wanted ?? USED_FEATURES).filter((name) => adapter.features.has(name));
}

/** The adapter's values of RAISED_LIMITS, skipping any it does not report (older browsers). */
function raisedLimits(adapterLimits: Record<string, number>): Record<string, number> {
  const required: Record<string, number> = {};
  for (const name of RAISED_LIMITS) {
    const value = adapterLimits[name];
    if (value !== undefined) required[name] = value;
  }
  return required;
}

function noAdapter(why: string, cause?: unknown): SluiceError {
  const inNode = typeof process !== 'undefined' && typeof process.versions?.node === 'string';
  const fix = inNode
    ? "in Node, Dawn needs a Vulkan driver: on Debian/Ubuntu run 'npm run setup' " +
      "(it installs Mesa's software driver lavapipe, from bookworm-backports on Debian 12); " +
      "elsewhere install a Vulkan driver (Mesa >= 24 lavapipe on a machine without a GPU); " +
      "diagnose with 'node scripts/probe-adapter.mjs'"
    : 'use a browser with WebGPU (Chrome or Edge 113+, Safari 26+, Firefox 141+ on Windows) ' +
      'over https or localhost, or enable it (chrome://flags/#enable-unsafe-webgpu, ' +
      'Firefox dom.webgpu.enabled)';
  return new SluiceError('NO_ADAPTER', `no WebGPU adapter (${why}): ${fix}`, { cause });
}

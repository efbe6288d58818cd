// What we know about a WebGPU adapter, as plain data: printable by `sluice gpu`, comparable
// in tests, serialisable with JSON.stringify (the GPU objects themselves are not: Dawn's
// GPUSupportedLimits and GPUAdapterInfo expose their fields as prototype getters, so
// JSON.stringify sees `{}`, while for...in walks the getters).

export interface AdapterReport {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** A CPU renderer (lavapipe/llvmpipe, SwiftShader, WARP…): correct, but slow. */
  isSoftware: boolean;
  /** Feature names, sorted. */
  features: string[];
  /** Every numeric limit the adapter reports, by name, in the adapter's order. */
  limits: Record<string, number>;
}

// Matched against vendor, architecture, device and description, because implementations
// disagree on which field names the renderer: Dawn on lavapipe says vendor 'mesa',
// architecture 'software', description 'llvmpipe: Mesa …'; Chrome's SwiftShader says
// vendor 'google', architecture 'swiftshader'.
const SOFTWARE_RENDERER = /llvmpipe|lavapipe|swiftshader|software|microsoft basic render|\bwarp\b/i;

/** Whether an adapter's identity names a CPU renderer (any of its fields may be missing). */
export function isSoftwareRenderer(info: Partial<Pick<GPUAdapterInfo, 'vendor' | 'architecture' | 'device' | 'description'>>): boolean {
  return SOFTWARE_RENDERER.test([info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' '));
}

/** Reads every numeric field of a GPUSupportedLimits (or any object with getter fields). */
export function readLimits(limits: GPUSupportedLimits | object): Record<string, number> {
  const out: Record<string, number> = {};
  // for...in, not Object.keys: the fields are inherited getters, not own properties.
  for (const key in limits) {
    const value = (limits as Record<string, unknown>)[key];
    if (typeof value === 'number') out[key] = value;
  }
  return out;
}

/** A plain-data report of `adapter`: identity, whether it is software, features, limits. */
export function describeAdapter(adapter: GPUAdapter): AdapterReport {
  // `adapter.info` is recent (2024); older browsers had requestAdapterInfo() instead and
  // put isFallbackAdapter on the adapter itself. Read both, trust neither to exist.
  const info = (adapter.info ?? {}) as Partial<GPUAdapterInfo>;
  const legacy = adapter as unknown as { isFallbackAdapter?: boolean };
  const vendor = info.vendor ?? '';
  const architecture = info.architecture ?? '';
  const device = info.device ?? '';
  const description = info.description ?? '';
  const isFallback = info.isFallbackAdapter ?? legacy.isFallbackAdapter ?? false;
  return {
    vendor,
    architecture,
    device,
    description,
    isSoftware: isFallback || isSoftwareRenderer(info),
    features: [...adapter.features].map(String).sort(),
    limits: readLimits(adapter.limits),
  };
}

/** One line naming the adapter, e.g. `mesa software llvmpipe: Mesa 25.0.7 (LLVM 15.0.6)`. */
export function adapterName(report: AdapterReport): string {
  const name = [report.vendor, report.architecture, report.description || report.device]
    .filter((part) => part.length > 0)
    .join(' ');
  return name || 'unnamed adapter';
}

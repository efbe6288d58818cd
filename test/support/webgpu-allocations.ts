// For counting JS allocations (allocations.ts) around WebGPU calls: V8 charges what the
// native binding allocates (a command encoder, a pass encoder, a mapped range) to the JS
// frame that called it. Wrapping each method of the objects' prototypes in a JS function
// of this file charges those to the API instead, so the caller's own allocations (a
// descriptor literal, an array) stay visible on their own.

/**
 * Wraps every method of the prototypes of `objects` in a function of this file; returns
 * what puts them back.
 */
export function chargeToWebGpu(objects: readonly object[]): () => void {
  const undo: (() => void)[] = [];
  for (const proto of new Set(objects.map((o) => Object.getPrototypeOf(o) as Record<string, unknown>))) {
    for (const name of Object.getOwnPropertyNames(proto)) {
      const d = Object.getOwnPropertyDescriptor(proto, name)!;
      if (name === 'constructor' || typeof d.value !== 'function') continue;
      const real = d.value as (...a: unknown[]) => unknown;
      proto[name] = function webgpu(this: unknown, ...args: unknown[]) {
        return real.apply(this, args);
      };
      undo.push(() => void (proto[name] = real));
    }
  }
  return () => {
    for (const u of undo.splice(0)) u();
  };
}

/** The WebGPU objects a pass touches, one of each prototype (made and thrown away here). */
export function webGpuObjects(device: GPUDevice, buffer: GPUBuffer): object[] {
  const encoder = device.createCommandEncoder();
  const pass = encoder.beginComputePass();
  pass.end();
  encoder.finish();
  return [device, device.queue, encoder, pass, buffer];
}

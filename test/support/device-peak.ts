// The peak of live GPU buffer bytes over some work: a Proxy around a device (a spyDevice's, so
// its leak checks still hold) that adds each buffer's size when created and takes it off when
// destroyed. The loaders' bounds (quantize on load, pre-quantized repack) are checked with it.
import type { DeviceSpy } from './gpu-helpers.js';

export function trackPeak(spy: DeviceSpy) {
  const state = { live: 0, peak: 0 };
  const createBuffer = spy.device.createBuffer.bind(spy.device);
  const device = new Proxy(spy.device, {
    get: (target, prop) => {
      if (prop !== 'createBuffer') return Reflect.get(target, prop);
      return (d: GPUBufferDescriptor) => {
        const b = createBuffer(d);
        state.live += b.size;
        state.peak = Math.max(state.peak, state.live);
        const destroy = b.destroy;
        b.destroy = function (this: GPUBuffer) {
          state.live -= b.size;
          b.destroy = destroy;
          return destroy.call(this);
        };
        return b;
      };
    },
  });
  return { device, state };
}

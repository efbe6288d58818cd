// A device whose queue records every writeBuffer (buffer label, offset, bytes), so a test can
// count the uploads a call makes (issue 21: at most one per decoded token). Everything else
// goes to the real device, through spyDevice (test/support/gpu-helpers.ts) for its receivers.

import { spyDevice, type SpyOptions } from './gpu-helpers.js';

export interface RecordedWrite {
  readonly label: string;
  readonly offset: number;
  readonly bytes: number;
}

export interface WriteCounter {
  readonly device: GPUDevice;
  /** Every writeBuffer so far, in order. */
  readonly writes: RecordedWrite[];
}

/** `real`, with queue.writeBuffer recorded before it runs. */
export function countingDevice(real: GPUDevice, options: SpyOptions = {}): WriteCounter {
  const spy = spyDevice(real, options);
  const writes: RecordedWrite[] = [];
  const queue = new Proxy(real.queue, {
    get(target, prop) {
      if (prop === 'writeBuffer') {
        return (...args: Parameters<GPUQueue['writeBuffer']>) => {
          const [buffer, offset, data, dataOffset = 0, size] = args;
          // writeBuffer's size counts elements of a typed array, bytes of an ArrayBuffer
          const element = ArrayBuffer.isView(data) && 'BYTES_PER_ELEMENT' in data ? (data.BYTES_PER_ELEMENT as number) : 1;
          const whole = ArrayBuffer.isView(data) ? data.byteLength / element : data.byteLength;
          writes.push({ label: buffer.label, offset, bytes: (size ?? whole - dataOffset) * element });
          return target.writeBuffer(...args);
        };
      }
      const value = Reflect.get(target, prop, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  const device = new Proxy(spy.device, { get: (target, prop) => (prop === 'queue' ? queue : Reflect.get(target, prop)) });
  return { device, writes };
}

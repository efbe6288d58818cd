// The Node side of device acquisition: Dawn's GPU object from the `webgpu` package.
//
// Dawn is loaded on first use (a dynamic import), not when this module is imported, so
// commands that never touch the GPU (`sluice inspect`) neither pay for the native addon
// nor fail where it cannot load.
//
// Process exit: dawn.node 0.6 keeps the event loop alive only while a GPU promise is
// awaited, so a process that forgets destroy() still exits by itself, even with the GPU
// object held here for good (Dawn's README warns older versions did not, crbug.com/387965810).
// test/gpu/node-gpu.test.ts checks this in a child process. A 'beforeExit' hook that
// destroys devices would not help if it ever regressed: Node only emits 'beforeExit' once
// the loop is empty, which is exactly what a handle kept alive by Dawn prevents.

import { SluiceError } from '../errors.js';
import { type AcquireOptions, acquireDevice, type GpuContext } from './device.js';
import { nodeShaderLoader } from './node-shaders.js';
import { setShaderLoader } from './shader-library.js';
import { markQuietDevice } from './quiet-wait.js';

// Any Node program that gets a device from here gets its shaders from the package on disk.
setShaderLoader(nodeShaderLoader);

let gpu: Promise<GPU> | undefined;

/**
 * Dawn's GPU object, created once per process. Installs WebGPU's globals (GPUBufferUsage,
 * GPUMapMode, …) on globalThis only where they are missing, so a host that already has
 * them (Deno, a test shim) keeps its own.
 */
export function nodeGpu(): Promise<GPU> {
  gpu ??= import('webgpu').then(
    ({ create, globals }) => {
      if (!('GPUBufferUsage' in globalThis) || !('GPUMapMode' in globalThis)) {
        Object.assign(globalThis, globals);
      }
      return create([]);
    },
    (e: unknown) => {
      gpu = undefined; // let a later call try again rather than cache the failure
      throw new SluiceError(
        'NO_ADAPTER',
        `cannot load Dawn (npm package 'webgpu') on ${process.platform}-${process.arch}: ` +
          `${(e as Error).message}; run 'npm run setup'`,
        { cause: e },
      );
    },
  );
  return gpu;
}

/**
 * acquireDevice on Dawn's GPU (see device.ts for the options and what comes back). On a
 * software adapter its waits poll once a millisecond instead of spinning a core the
 * adapter's threads need (quiet-wait.ts).
 */
export async function acquireNodeDevice(options: AcquireOptions = {}): Promise<GpuContext> {
  const context = await acquireDevice(await nodeGpu(), options);
  if (context.adapterInfo.isSoftware) markQuietDevice(context.device);
  return context;
}

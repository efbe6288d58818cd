// Which designs of the hot kernels (gemv, matmul, attention) a model runs, chosen at load by
// the adapter. Both families compute the same thing and are tested against the same
// references on lavapipe in CI; they differ in how they use the hardware:
//   software  tuned for CPU renderers (lavapipe/llvmpipe, SwiftShader): every load is a
//             per-lane loop there and barriers are coroutine switches, so these kernels
//             minimise load instructions, share x by subgroup shuffles and never stage K/V
//             in workgroup memory (src/ops/gemv.ts, matmul.ts, attention.ts)
//   gpu       the designs that win on real GPUs: coalesced gemv rows with subgroup
//             reductions, matmul tiles of x and W in workgroup memory with register
//             blocking, flash attention with K/V tiles in workgroup memory
//             (src/ops/gemv-coalesced.ts, matmul-tiled.ts, attention-tiled.ts)
// Quantized weights use the same qgemv/qmatmul in both (no second design yet), and a device
// with less than 32 KiB of workgroup memory keeps the software attention in the gpu family.

import { isSoftwareRenderer } from '../gpu/adapter-info.js';

export type KernelFamily = 'software' | 'gpu';
/** What a caller asks for: a family, or 'auto' (by the adapter). */
export type KernelChoice = KernelFamily | 'auto';

export const KERNEL_CHOICES: readonly KernelChoice[] = ['auto', 'software', 'gpu'];

/**
 * The family `choice` names, or for 'auto' the adapter's: software on a CPU renderer, gpu
 * otherwise, including a device that does not say what it runs on (a browser before
 * GPUDevice.adapterInfo): real GPUs are what such devices usually are.
 */
export function kernelFamily(device: GPUDevice, choice: KernelChoice = 'auto'): KernelFamily {
  if (choice !== 'auto') return choice;
  const info = (device as { adapterInfo?: Partial<GPUAdapterInfo> }).adapterInfo;
  return info && (info.isFallbackAdapter || isSoftwareRenderer(info)) ? 'software' : 'gpu';
}

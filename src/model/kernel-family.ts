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
import { Attention, type AttentionOptions } from '../ops/attention.js';
import { ATTENTION_TILED_WORKGROUP_BYTES, AttentionTiled } from '../ops/attention-tiled.js';
import { Gemv, type GemvOptions } from '../ops/gemv.js';
import { GemvCoalesced } from '../ops/gemv-coalesced.js';
import { Matmul, type MatmulOptions } from '../ops/matmul.js';
import { MatmulTiled } from '../ops/matmul-tiled.js';
import type { ComputeDtype } from '../ops/op.js';

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

/**
 * The classes of a kernel family's dense linears and attention: the same APIs, so the
 * passes never ask which design they run.
 */
export function familyKernels(family: KernelFamily) {
  return family === 'gpu'
    ? {
        gemv: (device: GPUDevice, dtype: ComputeDtype, options?: GemvOptions) => GemvCoalesced.create(device, dtype, options),
        matmul: (device: GPUDevice, dtype: ComputeDtype, options?: MatmulOptions) => MatmulTiled.create(device, dtype, options),
        // K/V tiles need 32 KiB of workgroup memory (desktop GPUs have it; WebGPU's default is 16)
        attention: (device: GPUDevice, dtype: ComputeDtype, options?: AttentionOptions): Promise<Attention | AttentionTiled> =>
          device.limits.maxComputeWorkgroupStorageSize >= ATTENTION_TILED_WORKGROUP_BYTES ? AttentionTiled.create(device, dtype, options) : Attention.create(device, dtype, options),
      }
    : {
        gemv: (device: GPUDevice, dtype: ComputeDtype, options?: GemvOptions): Promise<Gemv | GemvCoalesced> => Gemv.create(device, dtype, options),
        matmul: (device: GPUDevice, dtype: ComputeDtype, options?: MatmulOptions): Promise<Matmul | MatmulTiled> => Matmul.create(device, dtype, options),
        attention: (device: GPUDevice, dtype: ComputeDtype, options?: AttentionOptions): Promise<Attention | AttentionTiled> => Attention.create(device, dtype, options),
      };
}

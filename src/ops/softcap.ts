// Launcher of shaders/softcap.wgsl: x ← tanh(x / cap) · cap in place over n f32 values,
// Gemma 2's final_logit_softcapping on the logits. Memory-bound: one read and one write of
// 4 bytes per value (a 256,000-token vocabulary: 2 MB per row).

import { workgroups1d } from '../gpu/dispatch.js';
import { ParamsLayout } from '../gpu/params.js';
import { pipelineCache, type PipelineSpec } from '../gpu/pipeline-cache.js';
import { bindBuffers, type PreparedOp } from './op.js';

/** Invocations per workgroup, one value each. */
export const SOFTCAP_WORKGROUP = 256;

const PARAMS = new ParamsLayout([
  ['count', 'u32'], // n
  ['cap', 'f32'], // final_logit_softcapping
] as const);

const KEY = `softcap_f32_wg${SOFTCAP_WORKGROUP}`;
const SPEC: PipelineSpec = { shader: 'softcap', constants: { WORKGROUP_SIZE: SOFTCAP_WORKGROUP } };

/** Every variant of the shader (one: f32 in place), for the test that compiles them all. */
export function softcapVariants(): { key: string; spec: PipelineSpec }[] {
  return [{ key: KEY, spec: SPEC }];
}

export class Softcap {
  private constructor(
    private readonly device: GPUDevice,
    private readonly pipeline: GPUComputePipeline,
  ) {}

  static async create(device: GPUDevice): Promise<Softcap> {
    return new Softcap(device, await pipelineCache(device).get(KEY, SPEC));
  }

  /** buffer: (n,) f32, capped in place: x ← tanh(x / cap) · cap. cap > 0. */
  prepare(label: string, n: number, buffer: GPUBuffer, cap: number): PreparedOp {
    if (!Number.isInteger(n) || n < 1 || n > 2 ** 32 - 1) throw new Error(`${label}: softcap n must be an integer in 1..2^32 − 1, got ${n}`);
    if (!Number.isFinite(cap) || cap <= 0) throw new Error(`${label}: softcap cap must be a positive number, got ${cap}`);
    if (buffer.size < n * 4) throw new Error(`${label}: softcap buffer holds ${buffer.size} bytes, ${n} f32 need ${n * 4}`);
    const params = PARAMS.createBuffer(this.device, label, { count: n, cap });
    const bindGroup = bindBuffers(this.device, this.pipeline, label, [params, buffer]);
    const workgroups = workgroups1d(n, SOFTCAP_WORKGROUP, this.device.limits.maxComputeWorkgroupsPerDimension);
    return { label, dispatches: [{ label, pipeline: this.pipeline, bindGroup, workgroups }], destroy: () => params.destroy() };
  }
}

// Launcher of shaders/bandwidth.wgsl: the read limit (and a copy) that memory-bound
// kernels are measured against in `sluice bench kernels`.

import { ParamsLayout } from '../gpu/params.js';
import { pipelineCache, type PipelineSpec } from '../gpu/pipeline-cache.js';
import { bindBuffers, type PreparedOp } from './op.js';

export const BANDWIDTH_WORKGROUP = 256;
/** Workgroups per dispatch: enough to fill any GPU, few enough to stay in one dimension. */
export const BANDWIDTH_GROUPS = 1024;
const PARAMS = new ParamsLayout([['count', 'u32'], ['threads', 'u32']] as const);

/** read: grid-strided reduction; segmented: one contiguous segment per invocation; copy. */
export type BandwidthKind = 'read' | 'segmented' | 'copy';

export function bandwidthVariants(): { key: string; spec: PipelineSpec }[] {
  return (['read', 'segmented', 'copy'] as const).map(variant);
}

function variant(kind: BandwidthKind): { key: string; spec: PipelineSpec } {
  return {
    key: `bandwidth_${kind}_wg${BANDWIDTH_WORKGROUP}`,
    spec: { shader: 'bandwidth', flags: kind === 'copy' ? ['COPY'] : kind === 'segmented' ? ['SEGMENTED'] : [], constants: { WORKGROUP_SIZE: BANDWIDTH_WORKGROUP } },
  };
}

export class Bandwidth {
  private constructor(
    private readonly device: GPUDevice,
    private readonly pipeline: GPUComputePipeline,
    readonly kind: BandwidthKind,
  ) {}

  static async create(device: GPUDevice, kind: BandwidthKind): Promise<Bandwidth> {
    const { key, spec } = variant(kind);
    return new Bandwidth(device, await pipelineCache(device).get(key, spec), kind);
  }

  /**
   * Reads `bytes` (a multiple of 16) of `src`; 'copy' writes them to `dst`, the reads write
   * one f32 per invocation to `dst` (at least BANDWIDTH_GROUPS × WORKGROUP × 4 bytes).
   */
  prepare(label: string, bytes: number, src: GPUBuffer, dst: GPUBuffer): PreparedOp {
    const threads = BANDWIDTH_GROUPS * BANDWIDTH_WORKGROUP;
    const params = PARAMS.createBuffer(this.device, label, { count: bytes / 16, threads });
    const bindGroup = bindBuffers(this.device, this.pipeline, label, [params, src, dst]);
    return {
      label,
      dispatches: [{ label, pipeline: this.pipeline, bindGroup, workgroups: [BANDWIDTH_GROUPS] }],
      destroy: () => params.destroy(),
    };
  }
}

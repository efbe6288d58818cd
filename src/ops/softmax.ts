// Launcher of shaders/softmax.wgsl: row softmax of (rows, cols) logits in f32, max-subtracted.
// Input in F32 or the compute dtype (F16 variant), output always F32. Nothing here changes
// per token: rows and cols are fixed at prepare() time (prepare again for another shape).

import { workgroups1d } from '../gpu/dispatch.js';
import { ParamsLayout } from '../gpu/params.js';
import { pipelineCache, type PipelineSpec } from '../gpu/pipeline-cache.js';
import { bindBuffers, type ComputeDtype, dtypeFlags, type PreparedOp } from './op.js';

/** Threads per workgroup (one workgroup per row); a power of two for the tree reduction. */
export const SOFTMAX_WORKGROUP = 256;

const PARAMS = new ParamsLayout([
  ['rows', 'u32'], // rows of x and out
  ['cols', 'u32'], // elements per row
] as const);

/** Every variant of the shader (input dtype F32 or F16), for the test that compiles them all. */
export function softmaxVariants(dtypes: readonly ComputeDtype[], features: ReadonlySet<string>): { key: string; spec: PipelineSpec }[] {
  return dtypes.filter((d) => d === 'F32' || features.has('shader-f16')).map(variant);
}

function variant(dtype: ComputeDtype): { key: string; spec: PipelineSpec } {
  return {
    key: `softmax_${dtype.toLowerCase()}_wg${SOFTMAX_WORKGROUP}`,
    spec: { shader: 'softmax', flags: dtypeFlags(dtype), constants: { WORKGROUP_SIZE: SOFTMAX_WORKGROUP } },
  };
}

export class Softmax {
  private constructor(
    private readonly device: GPUDevice,
    private readonly pipeline: GPUComputePipeline,
    /** The input dtype; the output is F32. */
    readonly dtype: ComputeDtype,
  ) {}

  /** `dtype` is the input's dtype (F16 needs 'shader-f16'). */
  static async create(device: GPUDevice, dtype: ComputeDtype): Promise<Softmax> {
    const { key, spec } = variant(dtype);
    return new Softmax(device, await pipelineCache(device).get(key, spec), dtype);
  }

  /**
   * out = softmax(x) over the last dimension. x: (rows, cols) in this launcher's dtype;
   * out: (rows, cols) f32, a different buffer. A row that is all -inf comes out all 0.
   */
  prepare(label: string, rows: number, cols: number, x: GPUBuffer, out: GPUBuffer): PreparedOp {
    if (!(rows >= 1 && cols >= 1)) throw new Error(`${label}: softmax needs rows ≥ 1 and cols ≥ 1, got (${rows}, ${cols})`);
    const inBytes = rows * cols * (this.dtype === 'F16' ? 2 : 4);
    if (x.size < inBytes || out.size < rows * cols * 4) {
      throw new Error(`${label}: softmax (${rows}, ${cols}) needs x ≥ ${inBytes} B and out ≥ ${rows * cols * 4} B, got ${x.size} and ${out.size}`);
    }
    const params = PARAMS.createBuffer(this.device, label, { rows, cols });
    const bindGroup = bindBuffers(this.device, this.pipeline, label, [params, x, out]);
    // One workgroup per row; rows past 65535 spill into y (the shader bounds-checks).
    const workgroups = workgroups1d(rows, 1, this.device.limits.maxComputeWorkgroupsPerDimension);
    return { label, dispatches: [{ label, pipeline: this.pipeline, bindGroup, workgroups }], destroy: () => params.destroy() };
  }
}

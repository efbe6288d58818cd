// Launcher of shaders/scale_columns.wgsl: W[n, k] ← round_T(W[n, k] · g[k]) in place, for
// a dense (N, K) Linear weight (HF layout, any number of row-chunks) and a (K,) vector g,
// both in the compute dtype. At load it folds an RMSNorm's weight g into the columns of
// the Linear after it, so the decode gemv can normalise its own input (rsqrt(mean(x²) +
// eps) on the row) and skip the norm's multiply: linear(rms_norm(x) · g) = rms(x) · (W · g).
// Runs once per weight, not per token: a 4096 × 4096 f16 weight is 32 MiB read and written.
// Exact: one rounding of the exact product, as torch's `w * g` in T. A product past f16's
// largest value (65504) is whatever the platform converts it to (WGSL leaves it open);
// real norm and linear weights are orders of magnitude below it.

import type { GpuTensor } from '../gpu/gpu-tensor.js';
import { workgroups1d } from '../gpu/dispatch.js';
import { ParamsLayout } from '../gpu/params.js';
import { pipelineCache, type PipelineSpec } from '../gpu/pipeline-cache.js';
import { bindBuffers, checkWeight, type ComputeDtype, dtypeFlags, type PreparedDispatch, type PreparedOp } from './op.js';

/** Invocations per workgroup, one element each (memory-bound: one read and one write per element). */
export const SCALE_COLUMNS_WORKGROUP = 256;

const PARAMS = new ParamsLayout([
  ['count', 'u32'], // rows · K of the chunk
  ['cols', 'u32'], // K
] as const);

/** Every variant of the shader: one per compute dtype, F16 only where the device has shader-f16. */
export function scaleColumnsVariants(dtypes: readonly ComputeDtype[], features: ReadonlySet<string>): { key: string; spec: PipelineSpec }[] {
  return dtypes.filter((d) => d === 'F32' || features.has('shader-f16')).map(variant);
}

function variant(dtype: ComputeDtype): { key: string; spec: PipelineSpec } {
  return {
    key: `scale_columns_${dtype.toLowerCase()}_wg${SCALE_COLUMNS_WORKGROUP}`,
    spec: { shader: 'scale_columns', flags: dtypeFlags(dtype), constants: { WORKGROUP_SIZE: SCALE_COLUMNS_WORKGROUP } },
  };
}

export class ScaleColumns {
  private constructor(
    private readonly device: GPUDevice,
    private readonly pipeline: GPUComputePipeline,
    readonly dtype: ComputeDtype,
  ) {}

  static async create(device: GPUDevice, dtype: ComputeDtype): Promise<ScaleColumns> {
    if (dtype === 'F16' && !device.features.has('shader-f16')) throw new Error(`scale_columns: F16 compute needs the device feature 'shader-f16'`);
    const { key, spec } = variant(dtype);
    return new ScaleColumns(device, await pipelineCache(device).get(key, spec), dtype);
  }

  /**
   * weight: (N, K) in the compute dtype, any number of row-chunks, scaled in place (its
   * buffers need STORAGE usage, as the loader's have); g: (K,) in the compute dtype, one
   * buffer. One dispatch per chunk.
   */
  prepare(label: string, weight: GpuTensor, g: GpuTensor): PreparedOp {
    if (weight.shape.length !== 2) throw new Error(`${label}: scale_columns weight ${weight.name} must be 2-D (N, K), got [${weight.shape.join(', ')}]`);
    const [n, k] = weight.shape;
    checkWeight(label, weight, this.dtype, [n, k]);
    checkWeight(label, g, this.dtype, [k]);
    if (g.chunks.length !== 1) throw new Error(`${label}: scale_columns g ${g.name} is stored in ${g.chunks.length} chunks, needs one buffer`);
    const gBuffer = g.chunks[0].buffer;
    for (const chunk of weight.chunks) {
      if (chunk.rows * k > 2 ** 32 - 1) throw new Error(`${label}: scale_columns chunk of ${chunk.rows} rows × ${k} has more elements than u32 indexes`);
    }
    const paramsBuffers: GPUBuffer[] = [];
    const dispatches = weight.chunks.map((chunk, i): PreparedDispatch => {
      const chunkLabel = weight.chunks.length === 1 ? label : `${label}.chunk${i}`;
      const count = chunk.rows * k;
      const params = PARAMS.createBuffer(this.device, chunkLabel, { count, cols: k });
      paramsBuffers.push(params);
      const bindGroup = bindBuffers(this.device, this.pipeline, chunkLabel, [params, chunk.buffer, gBuffer]);
      const workgroups = workgroups1d(count, SCALE_COLUMNS_WORKGROUP, this.device.limits.maxComputeWorkgroupsPerDimension);
      return { label: chunkLabel, pipeline: this.pipeline, bindGroup, workgroups };
    });
    return { label, dispatches, destroy: () => paramsBuffers.forEach((b) => b.destroy()) };
  }
}

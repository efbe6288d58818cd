// Launcher of shaders/argmax.wgsl: the index of the largest logit of each row (greedy
// decoding), as u32. Ties → lowest index; NaN never wins; a row of only NaN gives NO_TOKEN.
// Nothing here changes per token: the model reads back the 4-byte id it wrote.

import { workgroups1d } from '../gpu/dispatch.js';
import { ParamsLayout } from '../gpu/params.js';
import { pipelineCache, type PipelineSpec } from '../gpu/pipeline-cache.js';
import { bindBuffers, type ComputeDtype, type PreparedOp } from './op.js';

/** Threads per workgroup (one workgroup per row); a power of two for the tree reduction. */
export const ARGMAX_WORKGROUP = 256;

/** What a row with no winner (every element NaN) yields: never a valid token id. */
export const NO_TOKEN = 0xffffffff;

const PARAMS = new ParamsLayout([
  ['rows', 'u32'], // rows of x and out
  ['cols', 'u32'], // elements per row (the vocabulary)
] as const);

const VARIANT = {
  key: `argmax_f32_wg${ARGMAX_WORKGROUP}`,
  spec: { shader: 'argmax', constants: { WORKGROUP_SIZE: ARGMAX_WORKGROUP } } satisfies PipelineSpec,
};

/**
 * Every variant of the shader: one, as logits are F32 whatever the compute dtype (the
 * arguments are there for the shared signature of `<op>Variants`).
 */
export function argmaxVariants(_dtypes: readonly ComputeDtype[], _features: ReadonlySet<string>): { key: string; spec: PipelineSpec }[] {
  return [VARIANT];
}

export class Argmax {
  private constructor(
    private readonly device: GPUDevice,
    private readonly pipeline: GPUComputePipeline,
  ) {}

  /** Logits are F32 in every compute dtype, so there is no dtype to choose. */
  static async create(device: GPUDevice): Promise<Argmax> {
    return new Argmax(device, await pipelineCache(device).get(VARIANT.key, VARIANT.spec));
  }

  /** out[r] = argmax_j x[r, j]. x: (rows, cols) f32; out: (rows,) u32 (16 bytes for one row). */
  prepare(label: string, rows: number, cols: number, x: GPUBuffer, out: GPUBuffer): PreparedOp {
    if (!(rows >= 1 && cols >= 1)) throw new Error(`${label}: argmax needs rows ≥ 1 and cols ≥ 1, got (${rows}, ${cols})`);
    if (x.size < rows * cols * 4 || out.size < rows * 4) {
      throw new Error(`${label}: argmax (${rows}, ${cols}) needs x ≥ ${rows * cols * 4} B and out ≥ ${rows * 4} B, got ${x.size} and ${out.size}`);
    }
    const params = PARAMS.createBuffer(this.device, label, { rows, cols });
    const bindGroup = bindBuffers(this.device, this.pipeline, label, [params, x, out]);
    const workgroups = workgroups1d(rows, 1, this.device.limits.maxComputeWorkgroupsPerDimension);
    return { label, dispatches: [{ label, pipeline: this.pipeline, bindGroup, workgroups }], destroy: () => params.destroy() };
  }
}

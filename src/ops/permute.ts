// Launcher of shaders/permute.wgsl: y[r, j] = x[r, perm[j]], a column gather of activation
// rows. A GPTQ act-order Linear is repacked with its input columns permuted so that each
// group is contiguous (src/ops/repack.ts actOrderPerm); the model gathers that Linear's
// input the same way before the gemv/matmul: W[:, perm]·x[perm] = W·x.
//
// Napkin math: one read and one write of rows·K activations, ~28 KB per decode token for a
// Llama-3-8B down_proj (K = 14336, f16) — noise next to the 29 MB of its q4 weights.

import { workgroups1d } from '../gpu/dispatch.js';
import { ParamsLayout } from '../gpu/params.js';
import { pipelineCache, type PipelineSpec } from '../gpu/pipeline-cache.js';
import { bindBuffers, type ComputeDtype, computeBytes, dtypeFlags, type PreparedOp } from './op.js';

export const PERMUTE_WORKGROUP = 256;
const PARAMS = new ParamsLayout([
  ['rows', 'u32'],
  ['k', 'u32'],
] as const);

/** Every variant of the shader, for the test that compiles them all. */
export function permuteVariants(dtypes: readonly ComputeDtype[]): { key: string; spec: PipelineSpec }[] {
  return dtypes.map(variant);
}

function variant(dtype: ComputeDtype): { key: string; spec: PipelineSpec } {
  return {
    key: `permute_${dtype.toLowerCase()}_wg${PERMUTE_WORKGROUP}`,
    spec: { shader: 'permute', flags: dtypeFlags(dtype), constants: { WORKGROUP_SIZE: PERMUTE_WORKGROUP } },
  };
}

export class Permute {
  private constructor(
    private readonly device: GPUDevice,
    private readonly pipeline: GPUComputePipeline,
    readonly dtype: ComputeDtype,
  ) {}

  static async create(device: GPUDevice, dtype: ComputeDtype): Promise<Permute> {
    const { key, spec } = variant(dtype);
    return new Permute(device, await pipelineCache(device).get(key, spec), dtype);
  }

  /**
   * y[r, j] = x[r, perm[j]] for r < rows, j < k. x and y (rows, k) in the compute dtype, two
   * different buffers (a gather in place would race); perm (k,) u32, each < k.
   */
  prepare(label: string, rows: number, k: number, perm: GPUBuffer, x: GPUBuffer, y: GPUBuffer): PreparedOp {
    if (!Number.isInteger(rows) || !Number.isInteger(k) || rows < 1 || k < 1) throw new Error(`${label}: permute needs rows ≥ 1 and k ≥ 1, got ${rows} × ${k}`);
    if (x === y) throw new Error(`${label}: permute cannot run in place (x and y are one buffer)`);
    const bytes = rows * k * computeBytes(this.dtype);
    for (const [name, buffer, need] of [['perm', perm, 4 * k], ['x', x, bytes], ['y', y, bytes]] as const) {
      if (buffer.size < need) throw new Error(`${label}: permute ${name} holds ${buffer.size} bytes, needs ${need}`);
    }
    const params = PARAMS.createBuffer(this.device, label, { rows, k });
    const bindGroup = bindBuffers(this.device, this.pipeline, label, [params, perm, x, y]);
    const workgroups = workgroups1d(rows * k, PERMUTE_WORKGROUP, this.device.limits.maxComputeWorkgroupsPerDimension);
    return { label, dispatches: [{ label, pipeline: this.pipeline, bindGroup, workgroups }], destroy: () => params.destroy() };
  }
}

/** The reference: y[r, j] = x[r, perm[j]]. */
export function permuteReference<T extends Float32Array | Uint16Array>(x: T, rows: number, k: number, perm: Uint32Array): T {
  const y = x.slice(0, rows * k) as T;
  for (let r = 0; r < rows; r++) for (let j = 0; j < k; j++) y[r * k + j] = x[r * k + perm[j]];
  return y;
}

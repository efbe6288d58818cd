// Launcher of shaders/add.wgsl: out = a + b, or a += b in place (the residual stream).
// The reference op for the launcher pattern: create() compiles once; prepare() binds
// buffers once; encodeOp()/runOps() (op.ts) encode.

import { workgroups1d } from '../gpu/dispatch.js';
import { ParamsLayout } from '../gpu/params.js';
import { pipelineCache, type PipelineSpec } from '../gpu/pipeline-cache.js';
import { bindBuffers, type ComputeDtype, dtypeFlags, type PreparedOp } from './op.js';

export const ADD_WORKGROUP = 256;
const PARAMS = new ParamsLayout([['count', 'u32']] as const);

/** Every variant of the shader, for the test that compiles them all. */
export function addVariants(dtypes: readonly ComputeDtype[]): { key: string; spec: PipelineSpec }[] {
  return dtypes.flatMap((dtype) => [false, true].map((inPlace) => variant(dtype, inPlace)));
}

function variant(dtype: ComputeDtype, inPlace: boolean): { key: string; spec: PipelineSpec } {
  return {
    key: `add_${dtype.toLowerCase()}${inPlace ? '_inplace' : ''}_wg${ADD_WORKGROUP}`,
    spec: {
      shader: 'add',
      flags: [...dtypeFlags(dtype), ...(inPlace ? ['IN_PLACE'] : [])],
      constants: { WORKGROUP_SIZE: ADD_WORKGROUP },
    },
  };
}

export class Add {
  private constructor(
    private readonly device: GPUDevice,
    private readonly pipeline: GPUComputePipeline,
    readonly inPlace: boolean,
  ) {}

  static async create(device: GPUDevice, dtype: ComputeDtype, options: { inPlace?: boolean } = {}): Promise<Add> {
    const { key, spec } = variant(dtype, options.inPlace ?? false);
    return new Add(device, await pipelineCache(device).get(key, spec), options.inPlace ?? false);
  }

  /** `count` elements: out = a + b (out omitted in place: a += b). Buffers in the compute dtype. */
  prepare(label: string, count: number, a: GPUBuffer, b: GPUBuffer, out?: GPUBuffer): PreparedOp {
    if (this.inPlace === (out !== undefined)) throw new Error(`${label}: add ${this.inPlace ? 'in place takes no out buffer' : 'needs an out buffer'}`);
    const params = PARAMS.createBuffer(this.device, label, { count });
    const buffers = out ? [a, b, out] : [a, b];
    const bindGroup = bindBuffers(this.device, this.pipeline, label, [params, ...buffers]);
    const workgroups = workgroups1d(count, ADD_WORKGROUP, this.device.limits.maxComputeWorkgroupsPerDimension);
    return { label, dispatches: [{ label, pipeline: this.pipeline, bindGroup, workgroups }], destroy: () => params.destroy() };
  }
}

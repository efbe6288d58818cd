// Launcher of shaders/swiglu.wgsl: out = act(gate) * up over (rows, intermediate), act
// silu (SwiGLU, Llama) or gelu_tanh (GeGLU, Gemma's gelu_pytorch_tanh), from two buffers
// (gate, up) or, FUSED, from one (rows, 2·intermediate) buffer holding [gate | up] per
// row. Nothing changes per token: decode prepares rows = 1 once.

import { workgroups1d } from '../gpu/dispatch.js';
import { ParamsLayout } from '../gpu/params.js';
import { pipelineCache, type PipelineSpec } from '../gpu/pipeline-cache.js';
import { bindBuffers, type ComputeDtype, computeBytes, dtypeFlags, type PreparedOp } from './op.js';

/** Invocations per workgroup, one element each (memory-bound: 3 accesses per element). */
export const SWIGLU_WORKGROUP = 256;

const PARAMS = new ParamsLayout([
  ['rows', 'u32'], // T
  ['cols', 'u32'], // intermediate_size
] as const);

export interface SwigluOptions {
  /** One input (rows, 2·cols) = [gate | up] per row, instead of two. */
  fused?: boolean;
  /**
   * The gate's activation: 'silu' (default; hidden_act "silu") or 'gelu_tanh' (hidden_act
   * "gelu_pytorch_tanh", torch's gelu(approximate='tanh'), Gemma's MLP).
   */
  act?: SwigluAct;
}

export type SwigluAct = 'silu' | 'gelu_tanh';
/** Every activation: swiglu's, and the GLU epilogues' of the linear kernels (gemv, gemv_coalesced, qgemv). */
export const SWIGLU_ACTS: readonly SwigluAct[] = ['silu', 'gelu_tanh'];

/** Every variant of the shader, for the test that compiles them all (no feature beyond shader-f16 used). */
export function swigluVariants(dtypes: readonly ComputeDtype[], _features: ReadonlySet<string> = new Set()): { key: string; spec: PipelineSpec }[] {
  return dtypes.flatMap((dtype) => SWIGLU_ACTS.flatMap((act) => [false, true].map((fused) => variant(dtype, fused, act))));
}

function variant(dtype: ComputeDtype, fused: boolean, act: SwigluAct): { key: string; spec: PipelineSpec } {
  const gelu = act === 'gelu_tanh';
  return {
    key: `swiglu_${dtype.toLowerCase()}${fused ? '_fused' : ''}${gelu ? '_gelu_tanh' : ''}_wg${SWIGLU_WORKGROUP}`,
    spec: {
      shader: 'swiglu',
      flags: [...dtypeFlags(dtype), ...(fused ? ['FUSED'] : []), ...(gelu ? ['GELU_TANH'] : [])],
      constants: { WORKGROUP_SIZE: SWIGLU_WORKGROUP },
    },
  };
}

export class Swiglu {
  private constructor(
    private readonly device: GPUDevice,
    private readonly pipeline: GPUComputePipeline,
    readonly dtype: ComputeDtype,
    readonly fused: boolean,
    readonly act: SwigluAct,
  ) {}

  static async create(device: GPUDevice, dtype: ComputeDtype, options: SwigluOptions = {}): Promise<Swiglu> {
    const fused = options.fused ?? false;
    const act = options.act ?? 'silu';
    if (!SWIGLU_ACTS.includes(act)) throw new Error(`swiglu: act must be one of ${SWIGLU_ACTS.join(', ')}, got ${String(act)}`);
    const { key, spec } = variant(dtype, fused, act);
    return new Swiglu(device, await pipelineCache(device).get(key, spec), dtype, fused, act);
  }

  /**
   * out: (rows, cols) = act(gate) * up. Two inputs: `inputs` = [gate, up], each
   * (rows, cols); fused: [gateUp], (rows, 2·cols). All in the compute dtype; out distinct
   * from the inputs.
   */
  prepare(label: string, rows: number, cols: number, inputs: readonly [GPUBuffer, GPUBuffer] | readonly [GPUBuffer], out: GPUBuffer): PreparedOp {
    if (!Number.isInteger(rows) || rows < 1 || !Number.isInteger(cols) || cols < 1) {
      throw new Error(`${label}: swiglu needs rows ≥ 1 and cols ≥ 1, got rows ${rows}, cols ${cols}`);
    }
    if (rows * cols * (this.fused ? 2 : 1) > 2 ** 32 - 1) throw new Error(`${label}: swiglu (${rows}, ${cols}) has more elements than u32 indexes`);
    if (inputs.length !== (this.fused ? 1 : 2)) {
      throw new Error(`${label}: swiglu ${this.fused ? 'fused takes one input [gate | up]' : 'takes two inputs, gate and up'}, got ${inputs.length}`);
    }
    const bytes = rows * cols * computeBytes(this.dtype);
    const named: [string, GPUBuffer, number][] = this.fused
      ? [['gate_up', inputs[0], 2 * bytes]]
      : [['gate', inputs[0], bytes], ['up', inputs[1]!, bytes]];
    named.push(['out', out, bytes]);
    for (const [name, buffer, need] of named) {
      if (buffer.size < need) throw new Error(`${label}: swiglu ${name} holds ${buffer.size} bytes, needs ${need}`);
    }
    if (inputs.includes(out)) throw new Error(`${label}: swiglu out must not be an input buffer`);
    const params = PARAMS.createBuffer(this.device, label, { rows, cols });
    const bindGroup = bindBuffers(this.device, this.pipeline, label, [params, ...inputs, out]);
    const workgroups = workgroups1d(rows * cols, SWIGLU_WORKGROUP, this.device.limits.maxComputeWorkgroupsPerDimension);
    return { label, dispatches: [{ label, pipeline: this.pipeline, bindGroup, workgroups }], destroy: () => params.destroy() };
  }
}

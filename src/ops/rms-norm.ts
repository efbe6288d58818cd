// Launcher of shaders/rms_norm.wgsl: y = x / sqrt(mean(x²) + eps) * weight over the rows
// of a (rows, hidden) activation, as HF's LlamaRMSNorm (the sum in f32, the normalised
// value cast to the compute dtype before the weight multiplies it); or, onePlusWeight,
// y = x / sqrt(mean(x²) + eps) * (1 + weight) all in f32 and rounded once, as GemmaRMSNorm.
//
// Per token nothing changes: a decode step prepares rows = 1 once and encodes it every
// token; a prefill prepares its own op for its row count (at most once per prompt).

import { workgroups1d } from '../gpu/dispatch.js';
import { type GpuTensor, singleBuffer } from '../gpu/gpu-tensor.js';
import { ParamsLayout } from '../gpu/params.js';
import { pipelineCache, type PipelineSpec } from '../gpu/pipeline-cache.js';
import { bindBuffers, checkWeight, type ComputeDtype, computeBytes, dtypeFlags, type PreparedOp } from './op.js';

/**
 * Invocations per row (a power of two: the tree reduction halves it). Napkin math for
 * hidden = 4096: 16 elements per invocation, 8 barrier steps of reduction; on lavapipe a
 * row costs about what one dispatch does (~50 µs), so more threads would buy nothing.
 */
export const RMS_NORM_WORKGROUP = 256;

const PARAMS = new ParamsLayout([
  ['rows', 'u32'], // T
  ['hidden', 'u32'], // elements per row
  ['eps', 'f32'], // rms_norm_eps
] as const);

export interface RmsNormOptions {
  /** config.json's rms_norm_eps (stored as f32, as torch's python float meets an f32 tensor). */
  eps: number;
  /**
   * Gemma's norm: multiply by (1 + weight), in f32, instead of by weight (transformers'
   * GemmaRMSNorm / Gemma3RMSNorm: `output * (1.0 + self.weight.float())`). Default false.
   */
  onePlusWeight?: boolean;
}

/** Every variant of the shader, for the test that compiles them all (no feature beyond shader-f16 used). */
export function rmsNormVariants(dtypes: readonly ComputeDtype[], _features: ReadonlySet<string> = new Set()): { key: string; spec: PipelineSpec }[] {
  return dtypes.flatMap((dtype) => [false, true].map((onePlus) => variant(dtype, onePlus)));
}

function variant(dtype: ComputeDtype, onePlus: boolean): { key: string; spec: PipelineSpec } {
  return {
    key: `rms_norm_${dtype.toLowerCase()}${onePlus ? '_one_plus_w' : ''}_wg${RMS_NORM_WORKGROUP}`,
    spec: {
      shader: 'rms_norm',
      flags: [...dtypeFlags(dtype), ...(onePlus ? ['ONE_PLUS_WEIGHT'] : [])],
      constants: { WORKGROUP_SIZE: RMS_NORM_WORKGROUP },
    },
  };
}

export class RmsNorm {
  private constructor(
    private readonly device: GPUDevice,
    private readonly pipeline: GPUComputePipeline,
    readonly dtype: ComputeDtype,
    readonly eps: number,
    readonly onePlusWeight: boolean,
  ) {}

  static async create(device: GPUDevice, dtype: ComputeDtype, options: RmsNormOptions): Promise<RmsNorm> {
    if (!(options.eps >= 0) || !Number.isFinite(options.eps)) throw new Error(`rms_norm: eps must be a finite number ≥ 0, got ${options.eps}`);
    const onePlus = options.onePlusWeight ?? false;
    const { key, spec } = variant(dtype, onePlus);
    return new RmsNorm(device, await pipelineCache(device).get(key, spec), dtype, options.eps, onePlus);
  }

  /**
   * out = rms_norm(x) * weight (onePlusWeight: * (1 + weight)) for `rows` rows of `hidden` elements.
   * x, out: (rows, hidden) in the compute dtype, distinct buffers (WebGPU forbids a buffer
   * bound both read and read-write). weight: (hidden,) in the compute dtype, one chunk.
   */
  prepare(label: string, rows: number, hidden: number, x: GPUBuffer, weight: GpuTensor, out: GPUBuffer): PreparedOp {
    if (!Number.isInteger(rows) || rows < 1 || !Number.isInteger(hidden) || hidden < 1) {
      throw new Error(`${label}: rms_norm needs rows ≥ 1 and hidden ≥ 1, got rows ${rows}, hidden ${hidden}`);
    }
    checkWeight(label, weight, this.dtype, [hidden]);
    const bytes = rows * hidden * computeBytes(this.dtype);
    for (const [name, buffer] of [['x', x], ['out', out]] as const) {
      if (buffer.size < bytes) throw new Error(`${label}: rms_norm ${name} holds ${buffer.size} bytes, (${rows}, ${hidden}) ${this.dtype} needs ${bytes}`);
    }
    if (x === out) throw new Error(`${label}: rms_norm cannot run in place (x and out are one buffer)`);
    const params = PARAMS.createBuffer(this.device, label, { rows, hidden, eps: this.eps });
    const bindGroup = bindBuffers(this.device, this.pipeline, label, [params, x, singleBuffer(weight), out]);
    // One workgroup per row (rows past the per-dimension limit spill into y).
    const workgroups = workgroups1d(rows, 1, this.device.limits.maxComputeWorkgroupsPerDimension);
    return { label, dispatches: [{ label, pipeline: this.pipeline, bindGroup, workgroups }], destroy: () => params.destroy() };
  }
}

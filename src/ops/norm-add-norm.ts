// Launcher of shaders/norm_add_norm.wgsl: Gemma 2/3's sandwich-norm residual in one
// dispatch per row block instead of three (issue 21: ≤ 10 dispatches a layer):
//   x = x + post_norm(y)                    (RmsNorm y → tmp, then Add in place)
//   out = next_norm(x)   when `next` given  (RmsNorm x → out)
// bit for bit what those three ops give (same workgroup, reduction tree and rounding
// points; the test compares bytes). transformers' Gemma2DecoderLayer.forward /
// Gemma3DecoderLayer.forward: post_attention_layernorm → residual add →
// pre_feedforward_layernorm, and post_feedforward_layernorm → add → the next layer's
// input_layernorm (the final norm after the last layer).

import { SluiceError } from '../errors.js';
import { workgroups1d } from '../gpu/dispatch.js';
import { type GpuTensor, singleBuffer } from '../gpu/gpu-tensor.js';
import { ParamsLayout } from '../gpu/params.js';
import { pipelineCache, type PipelineSpec } from '../gpu/pipeline-cache.js';
import { bindBuffers, checkWeight, type ComputeDtype, computeBytes, dtypeFlags, type PreparedOp } from './op.js';
import { RMS_NORM_WORKGROUP } from './rms-norm.js';

/** RmsNorm's workgroup: the reduction tree's shape decides the sum's bits, so it must match. */
export const NORM_ADD_NORM_WORKGROUP = RMS_NORM_WORKGROUP;

const PARAMS = new ParamsLayout([
  ['rows', 'u32'], // T
  ['hidden', 'u32'], // elements per row
  ['eps', 'f32'], // rms_norm_eps, both norms
  ['zero', 'u32'], // always 0, opaque to the compiler: keeps F32's post-norm product out of an FMA (the shader's pinned())
] as const);

export interface NormAddNormOptions {
  /** config.json's rms_norm_eps, for both norms. */
  eps: number;
  /** Gemma's (1 + weight) in f32 for both norms (RmsNormOptions.onePlusWeight). */
  onePlusWeight: boolean;
}

/** The next norm of the new x: its weight (hidden,) and its output buffer (rows, hidden). */
export interface NextNorm {
  weight: GpuTensor;
  out: GPUBuffer;
}

/** Every variant of the shader, for the test that compiles them all (no feature beyond shader-f16 used). */
export function normAddNormVariants(dtypes: readonly ComputeDtype[], _features: ReadonlySet<string> = new Set()): { key: string; spec: PipelineSpec }[] {
  return dtypes.flatMap((dtype) => [false, true].flatMap((onePlus) => [true, false].map((next) => variant(dtype, onePlus, next))));
}

function variant(dtype: ComputeDtype, onePlus: boolean, next: boolean): { key: string; spec: PipelineSpec } {
  return {
    key: `norm_add${next ? '_norm' : ''}_${dtype.toLowerCase()}${onePlus ? '_one_plus_w' : ''}_wg${NORM_ADD_NORM_WORKGROUP}`,
    spec: {
      shader: 'norm_add_norm',
      flags: [...dtypeFlags(dtype), ...(onePlus ? ['ONE_PLUS_WEIGHT'] : []), ...(next ? ['NEXT'] : [])],
      constants: { WORKGROUP_SIZE: NORM_ADD_NORM_WORKGROUP },
    },
  };
}

function fail(label: string, why: string): never {
  throw new SluiceError('SHAPE_MISMATCH', `${label}: norm_add_norm ${why}`);
}

export class NormAddNorm {
  private constructor(
    private readonly device: GPUDevice,
    /** Without and with the next norm: prepare() picks by `next`. */
    private readonly pipelines: { add: GPUComputePipeline; next: GPUComputePipeline },
    readonly dtype: ComputeDtype,
    readonly eps: number,
    readonly onePlusWeight: boolean,
  ) {}

  static async create(device: GPUDevice, dtype: ComputeDtype, options: NormAddNormOptions): Promise<NormAddNorm> {
    if (!(options.eps >= 0) || !Number.isFinite(options.eps)) throw new Error(`norm_add_norm: eps must be a finite number ≥ 0, got ${options.eps}`);
    const onePlus = options.onePlusWeight;
    const build = (next: boolean) => {
      const { key, spec } = variant(dtype, onePlus, next);
      return pipelineCache(device).get(key, spec);
    };
    const [add, next] = await Promise.all([build(false), build(true)]);
    return new NormAddNorm(device, { add, next }, dtype, options.eps, onePlus);
  }

  /**
   * x += post_norm(y) · w1 over `rows` rows of `hidden` elements; with `next`, also
   * next.out = next_norm(x) · next.weight of the new x. y, x, next.out: (rows, hidden) in
   * the compute dtype; x distinct from y and next.out (it is written while they are bound).
   * w1, next.weight: (hidden,) in the compute dtype, one chunk.
   */
  prepare(label: string, rows: number, hidden: number, y: GPUBuffer, w1: GpuTensor, x: GPUBuffer, next: NextNorm | null): PreparedOp {
    if (!Number.isInteger(rows) || rows < 1 || !Number.isInteger(hidden) || hidden < 1) {
      fail(label, `needs rows ≥ 1 and hidden ≥ 1, got rows ${rows}, hidden ${hidden}`);
    }
    checkWeight(label, w1, this.dtype, [hidden]);
    if (next) checkWeight(label, next.weight, this.dtype, [hidden]);
    const bytes = rows * hidden * computeBytes(this.dtype);
    const buffers: [string, GPUBuffer][] = [['y', y], ['x', x], ...(next ? [['out', next.out] as [string, GPUBuffer]] : [])];
    for (const [name, buffer] of buffers) {
      if (buffer.size < bytes) fail(label, `${name} holds ${buffer.size} bytes, (${rows}, ${hidden}) ${this.dtype} needs ${bytes}`);
    }
    // WebGPU refuses a buffer bound writable next to another binding of itself.
    if (x === y) fail(label, 'cannot add in place of its input (x and y are one buffer)');
    if (next && next.out === x) fail(label, 'cannot write the next norm over the residual stream (out and x are one buffer)');
    if (next && next.out === y) fail(label, 'cannot write the next norm over its input (out and y are one buffer)');
    const params = PARAMS.createBuffer(this.device, label, { rows, hidden, eps: this.eps, zero: 0 });
    const pipeline = next ? this.pipelines.next : this.pipelines.add;
    const bound = [params, y, singleBuffer(w1), x, ...(next ? [singleBuffer(next.weight), next.out] : [])];
    const bindGroup = bindBuffers(this.device, pipeline, label, bound);
    // One workgroup per row (rows past the per-dimension limit spill into y).
    const workgroups = workgroups1d(rows, 1, this.device.limits.maxComputeWorkgroupsPerDimension);
    return { label, dispatches: [{ label, pipeline, bindGroup, workgroups }], destroy: () => params.destroy() };
  }
}

// Launcher of shaders/qgemv.wgsl: y = W·x (+ b) for one token, W a quantized Linear weight
// (src/gpu/quantized-tensor.ts), possibly row-chunked (a quantized LM head). One dispatch per
// chunk. Same prepare() as Gemv, with a QuantizedTensor for the weight; the dense Gemv is
// untouched. The pipeline comes from a table keyed [weight kind][compute dtype], as ggml's
// mul_mat_pipeline[src0][src1]; the model's LinearWeight seam picks Gemv or QGemv the same way.
//
// Napkin math (Llama-3.2-1B, 1.24 G weights, G = 32, f16 scales): q4 with zeros reads
// 0.5 + 3/32 ≈ 0.59 bytes/weight → 0.74 GB per token, q8 1 + 2/32 ≈ 1.06 → 1.3 GB, against
// 2.5 GB in f16: ~3.4× and ~1.9× less to stream, if the kernel keeps the same GB/s.

import { workgroups1d } from '../gpu/dispatch.js';
import { type GpuTensor, singleBuffer } from '../gpu/gpu-tensor.js';
import { ParamsLayout } from '../gpu/params.js';
import { pipelineCache, type PipelineSpec } from '../gpu/pipeline-cache.js';
import type { QuantKind, QuantizedTensor } from '../gpu/quantized-tensor.js';
import { GEMV_ROWS_PER_THREAD, GEMV_ROWS_PER_WORKGROUP, GEMV_THREADS_PER_ROW, GEMV_WORKGROUP, type GemvOptions } from './gemv.js';
import { bindBuffers, checkWeight, type ComputeDtype, computeBytes, dtypeFlags, type PreparedDispatch, type PreparedOp } from './op.js';

const PARAMS = new ParamsLayout([
  ['rows', 'u32'], // rows of this chunk
  ['cols', 'u32'], // K
  ['rowOffset', 'u32'], // the chunk's first row in y and bias
  ['groupSize', 'u32'],
  ['scalesF16', 'u32'], // 1: f16 scale pairs
  ['hasZeros', 'u32'], // 1: zero points bound
] as const);

interface VariantChoice {
  kind: QuantKind;
  dtype: ComputeDtype;
  subgroups: boolean;
  bias: boolean;
  outF32: boolean;
}

/** Shader flags of a weight kind: Q4, or none for q8. */
export function kindFlags(kind: QuantKind): string[] {
  return kind === 'q4' ? ['Q4'] : [];
}

/**
 * The pipeline table: [weight kind][compute dtype] → the variant's key and spec, for the
 * remaining options (reduction, bias, f32 output).
 */
const QGEMV_PIPELINES: Record<QuantKind, Record<ComputeDtype, (v: Omit<VariantChoice, 'kind' | 'dtype'>) => { key: string; spec: PipelineSpec }>> = {
  q8: { F32: (v) => variant({ ...v, kind: 'q8', dtype: 'F32' }), F16: (v) => variant({ ...v, kind: 'q8', dtype: 'F16' }) },
  q4: { F32: (v) => variant({ ...v, kind: 'q4', dtype: 'F32' }), F16: (v) => variant({ ...v, kind: 'q4', dtype: 'F16' }) },
};

/** Every variant: both kinds, the dtypes given, subgroup ones only where the device has them. */
export function qgemvVariants(dtypes: readonly ComputeDtype[], features: ReadonlySet<string>): { key: string; spec: PipelineSpec }[] {
  const subgroups = features.has('subgroups') ? [false, true] : [false];
  return (['q8', 'q4'] as const).flatMap((kind) =>
    dtypes.flatMap((dtype) =>
      subgroups.flatMap((sg) =>
        [false, true].flatMap((bias) => (dtype === 'F16' ? [false, true] : [false]).map((outF32) => QGEMV_PIPELINES[kind][dtype]({ subgroups: sg, bias, outF32 }))),
      ),
    ),
  );
}

function variant(v: VariantChoice): { key: string; spec: PipelineSpec } {
  const flags = [...kindFlags(v.kind), ...dtypeFlags(v.dtype), ...(v.subgroups ? ['SUBGROUPS'] : []), ...(v.bias ? ['BIAS'] : []), ...(v.outF32 ? ['OUT_F32'] : [])];
  const name = ['qgemv', v.kind, v.dtype.toLowerCase(), v.subgroups ? 'sg' : 'wgred', ...(v.bias ? ['bias'] : []), ...(v.outF32 ? ['outf32'] : [])];
  return {
    key: `${name.join('_')}_t${GEMV_THREADS_PER_ROW}r${GEMV_ROWS_PER_THREAD}_wg${GEMV_WORKGROUP}`,
    spec: { shader: 'qgemv', flags, constants: { THREADS_PER_ROW: GEMV_THREADS_PER_ROW, ROWS_PER_THREAD: GEMV_ROWS_PER_THREAD, WORKGROUP_SIZE: GEMV_WORKGROUP } },
  };
}

/** Throws unless `weight` is a valid quantized (N, K) for an op made for `kind`. */
export function checkQuantizedWeight(label: string, op: string, weight: QuantizedTensor, kind: QuantKind): [number, number] {
  const [n, k] = weight.shape;
  if (weight.kind !== kind) throw new Error(`${label}: ${op} was created for ${kind} weights, ${weight.name} is ${weight.kind}`);
  if (n < 1 || k < 1 || k % weight.groupSize !== 0) throw new Error(`${label}: ${op}: ${weight.name} [${n}, ${k}] with group size ${weight.groupSize} is not a valid quantized weight`);
  return [n, k];
}

/** The 16-byte buffer bound as `zeros` when a weight has none (the shader reads Params.hasZeros). */
export function placeholderZeros(device: GPUDevice, label: string): GPUBuffer {
  return device.createBuffer({ label: `${label}.noZeros`, size: 16, usage: GPUBufferUsage.STORAGE });
}

export class QGemv {
  private constructor(
    private readonly device: GPUDevice,
    private readonly pipeline: GPUComputePipeline,
    readonly kind: QuantKind,
    readonly dtype: ComputeDtype,
    readonly bias: boolean,
    readonly outF32: boolean,
    readonly subgroups: boolean,
  ) {}

  static async create(device: GPUDevice, kind: QuantKind, dtype: ComputeDtype, options: GemvOptions = {}): Promise<QGemv> {
    if (dtype === 'F16' && !device.features.has('shader-f16')) throw new Error(`qgemv: F16 compute needs the device feature 'shader-f16'`);
    const subgroups = options.subgroups ?? device.features.has('subgroups');
    if (subgroups && !device.features.has('subgroups')) throw new Error(`qgemv: the device has no 'subgroups' feature`);
    const bias = options.bias ?? false;
    const outF32 = dtype === 'F16' && (options.outF32 ?? false);
    const { key, spec } = QGEMV_PIPELINES[kind][dtype]({ subgroups, bias, outF32 });
    return new QGemv(device, await pipelineCache(device).get(key, spec), kind, dtype, bias, options.outF32 ?? false, subgroups);
  }

  /**
   * y = W·x (+ bias). weight: quantized (N, K), any chunks. x: (K,) in the compute dtype.
   * y: (N,) in the compute dtype, or f32 with outF32; distinct from x. bias: (N,) in the
   * compute dtype, one chunk, given exactly when created with bias.
   */
  prepare(label: string, weight: QuantizedTensor, x: GPUBuffer, y: GPUBuffer, bias?: GpuTensor): PreparedOp {
    const [n, k] = checkQuantizedWeight(label, 'qgemv', weight, this.kind);
    if (this.bias !== (bias !== undefined)) throw new Error(`${label}: qgemv was created ${this.bias ? 'with' : 'without'} bias, prepare got ${bias ? 'one' : 'none'}`);
    if (bias) checkWeight(label, bias, this.dtype, [n]);
    const xBytes = k * computeBytes(this.dtype);
    const yBytes = n * (this.outF32 ? 4 : computeBytes(this.dtype));
    if (x.size < xBytes) throw new Error(`${label}: qgemv x holds ${x.size} bytes, (${k},) ${this.dtype} needs ${xBytes}`);
    if (y.size < yBytes) throw new Error(`${label}: qgemv y holds ${y.size} bytes, (${n},) needs ${yBytes}`);
    if (x === y) throw new Error(`${label}: qgemv cannot run in place (x and y are one buffer)`);

    const biasBuffer = bias ? [singleBuffer(bias)] : [];
    const noZeros = placeholderZeros(this.device, label);
    const buffers: GPUBuffer[] = [noZeros];
    const dispatches: PreparedDispatch[] = weight.chunks.map((chunk, i) => {
      const name = weight.chunks.length > 1 ? `${label}.chunk${i}` : label;
      const params = PARAMS.createBuffer(this.device, name, {
        rows: chunk.rows,
        cols: k,
        rowOffset: chunk.firstRow,
        groupSize: weight.groupSize,
        scalesF16: weight.scaleDtype === 'F16' ? 1 : 0,
        hasZeros: chunk.zeros ? 1 : 0,
      });
      buffers.push(params);
      const bindGroup = bindBuffers(this.device, this.pipeline, name, [params, chunk.data, chunk.scales, chunk.zeros ?? noZeros, x, y, ...biasBuffer]);
      const workgroups = workgroups1d(chunk.rows, GEMV_ROWS_PER_WORKGROUP, this.device.limits.maxComputeWorkgroupsPerDimension);
      return { label: name, pipeline: this.pipeline, bindGroup, workgroups };
    });
    return { label, dispatches, destroy: () => buffers.forEach((b) => b.destroy()) };
  }
}

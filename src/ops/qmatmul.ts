// Launcher of shaders/qmatmul.wgsl: y = x·Wᵀ (+ b), or y += x·Wᵀ (+ b), for a prompt of M
// tokens, W a quantized Linear weight (src/gpu/quantized-tensor.ts), possibly row-chunked. Same
// prepare() as Matmul with a QuantizedTensor; the dense Matmul is untouched. Pipelines from a
// table keyed [weight kind][compute dtype] (ggml's mul_mat_pipeline[src0][src1]); tiles are
// Matmul's.
//
// Napkin math: prefill is compute-bound (matmul.ts: ~1 TFLOP for 512 tokens of a 1B model);
// dequantizing costs a shift, a convert and a multiply-add per weight per TILE_M rows of x,
// i.e. ~1/32 of the FMAs with the subgroup tile, so q4/q8 prefill should run near f16's.

import { type GpuTensor, singleBuffer } from '../gpu/gpu-tensor.js';
import { ParamsLayout } from '../gpu/params.js';
import { pipelineCache, type PipelineSpec } from '../gpu/pipeline-cache.js';
import type { QuantKind, QuantizedTensor } from '../gpu/quantized-tensor.js';
import { MATMUL_COLUMNS_PER_WORKGROUP, MATMUL_MAX_TILE_M, MATMUL_TILE_K, MATMUL_TILE_M_SUBGROUPS, MATMUL_TILE_M_WORKGROUP, MATMUL_WORKGROUP, type MatmulOptions } from './matmul.js';
import { bindBuffers, checkWeight, type ComputeDtype, computeBytes, dtypeFlags, type PreparedDispatch, type PreparedOp } from './op.js';
import { checkQuantizedWeight, kindFlags, placeholderZeros } from './qgemv.js';

const PARAMS = new ParamsLayout([
  ['M', 'u32'],
  ['K', 'u32'],
  ['N', 'u32'],
  ['rows', 'u32'],
  ['colOffset', 'u32'],
  ['groupSize', 'u32'],
  ['scalesF16', 'u32'],
  ['hasZeros', 'u32'],
] as const);

type Kernel = 'subgroups' | 'workgroup';

interface VariantChoice {
  kind: QuantKind;
  dtype: ComputeDtype;
  kernel: Kernel;
  tileM: number;
  bias: boolean;
  outF32: boolean;
  /** y += x·Wᵀ (+ b) (MatmulOptions.residual): never with outF32. */
  residual: boolean;
}

const QMATMUL_PIPELINES: Record<QuantKind, Record<ComputeDtype, (v: Omit<VariantChoice, 'kind' | 'dtype'>) => { key: string; spec: PipelineSpec }>> = {
  q8: { F32: (v) => variant({ ...v, kind: 'q8', dtype: 'F32' }), F16: (v) => variant({ ...v, kind: 'q8', dtype: 'F16' }) },
  q4: { F32: (v) => variant({ ...v, kind: 'q4', dtype: 'F32' }), F16: (v) => variant({ ...v, kind: 'q4', dtype: 'F16' }) },
};

const tileRows = (kernel: Kernel) => (kernel === 'subgroups' ? MATMUL_TILE_M_SUBGROUPS : MATMUL_TILE_M_WORKGROUP);

/**
 * Every variant at the default tiles: both kinds, the dtypes given, subgroups where the
 * device has them; RESIDUAL writes the compute dtype (the residual stream), never with OUT_F32.
 */
export function qmatmulVariants(dtypes: readonly ComputeDtype[], features: ReadonlySet<string>): { key: string; spec: PipelineSpec }[] {
  const kernels: Kernel[] = [...(features.has('subgroups') ? ['subgroups' as const] : []), 'workgroup'];
  return (['q8', 'q4'] as const).flatMap((kind) =>
    dtypes.flatMap((dtype) =>
      kernels.flatMap((kernel) =>
        [false, true].flatMap((bias) => [
          ...(dtype === 'F16' ? [false, true] : [false]).map((outF32) => QMATMUL_PIPELINES[kind][dtype]({ kernel, tileM: tileRows(kernel), bias, outF32, residual: false })),
          QMATMUL_PIPELINES[kind][dtype]({ kernel, tileM: tileRows(kernel), bias, outF32: false, residual: true }),
        ]),
      ),
    ),
  );
}

function variant(v: VariantChoice): { key: string; spec: PipelineSpec } {
  const flags = [
    ...kindFlags(v.kind),
    ...dtypeFlags(v.dtype),
    ...(v.kernel === 'subgroups' ? ['SUBGROUPS'] : []),
    ...(v.bias ? ['BIAS'] : []),
    ...(v.outF32 ? ['OUT_F32'] : []),
    ...(v.residual ? ['RESIDUAL'] : []),
  ];
  const tile = v.kernel === 'subgroups' ? `sg_m${v.tileM}` : `wgmem_m${v.tileM}k${MATMUL_TILE_K}`;
  return {
    key: ['qmatmul', v.kind, v.dtype.toLowerCase(), tile, ...(v.bias ? ['bias'] : []), ...(v.outF32 ? ['outf32'] : []), ...(v.residual ? ['residual'] : []), `wg${MATMUL_WORKGROUP}`].join('_'),
    spec: { shader: 'qmatmul', flags, constants: { WORKGROUP_SIZE: MATMUL_WORKGROUP, TILE_M: v.tileM, TILE_K: MATMUL_TILE_K } },
  };
}

function subgroupsFit(device: GPUDevice): boolean {
  const widest = device.adapterInfo?.subgroupMaxSize;
  return device.features.has('subgroups') && widest !== undefined && widest <= MATMUL_WORKGROUP;
}

export class QMatmul {
  private constructor(
    private readonly device: GPUDevice,
    private readonly pipeline: GPUComputePipeline,
    readonly kind: QuantKind,
    readonly dtype: ComputeDtype,
    readonly kernel: Kernel,
    readonly bias: boolean,
    /** y is f32 (always so for F32 compute). */
    readonly outF32: boolean,
    readonly tileM: number,
    /** y += x·Wᵀ (+ b) (MatmulOptions.residual). */
    readonly residual: boolean,
  ) {}

  static async create(device: GPUDevice, kind: QuantKind, dtype: ComputeDtype, options: Omit<MatmulOptions, 'naive'> = {}): Promise<QMatmul> {
    if (dtype === 'F16' && !device.features.has('shader-f16')) throw new Error(`qmatmul: F16 compute needs the device feature 'shader-f16'`);
    if (options.subgroups && !subgroupsFit(device)) throw new Error(`qmatmul: subgroups need the device feature 'subgroups' and subgroups at most ${MATMUL_WORKGROUP} wide`);
    const kernel: Kernel = (options.subgroups ?? subgroupsFit(device)) ? 'subgroups' : 'workgroup';
    const tileM = options.tileM ?? tileRows(kernel);
    if (!Number.isInteger(tileM) || tileM < 1 || tileM > MATMUL_MAX_TILE_M) throw new Error(`qmatmul: tileM must be an integer in 1..${MATMUL_MAX_TILE_M}, got ${tileM}`);
    const residual = options.residual ?? false;
    if (residual && options.outF32) throw new Error('qmatmul: residual writes the compute dtype (the residual stream), not outF32');
    const bias = options.bias ?? false;
    const outF32 = dtype === 'F16' && (options.outF32 ?? false);
    const { key, spec } = QMATMUL_PIPELINES[kind][dtype]({ kernel, tileM, bias, outF32, residual });
    return new QMatmul(device, await pipelineCache(device).get(key, spec), kind, dtype, kernel, bias, dtype === 'F32' || outF32, tileM, residual);
  }

  /** As Matmul.prepare, with a quantized (N, K) weight (any chunks); created with residual, y += x·Wᵀ (+ bias). */
  prepare(label: string, m: number, weight: QuantizedTensor, x: GPUBuffer, y: GPUBuffer, bias?: GpuTensor): PreparedOp {
    const [n, k] = checkQuantizedWeight(label, 'qmatmul', weight, this.kind);
    if (!Number.isInteger(m) || m < 1) throw new Error(`${label}: qmatmul needs M ≥ 1 rows, got ${m}`);
    if (this.bias !== (bias !== undefined)) throw new Error(`${label}: qmatmul was created ${this.bias ? 'with' : 'without'} bias, prepare got ${bias ? 'one' : 'none'}`);
    if (bias) checkWeight(label, bias, this.dtype, [n]);
    if (m * Math.max(n, k) > 2 ** 32 - 1) throw new Error(`${label}: qmatmul (${m}, ${k}) × (${n}, ${k}) has more elements than u32 indexes`);
    const xBytes = m * k * computeBytes(this.dtype);
    const yBytes = m * n * (this.outF32 ? 4 : computeBytes(this.dtype));
    if (x.size < xBytes) throw new Error(`${label}: qmatmul x holds ${x.size} bytes, (${m}, ${k}) ${this.dtype} needs ${xBytes}`);
    if (y.size < yBytes) throw new Error(`${label}: qmatmul y holds ${y.size} bytes, (${m}, ${n}) needs ${yBytes}`);
    if (x === y) throw new Error(`${label}: qmatmul cannot run in place (x and y are one buffer)`);

    const biasBuffer = bias ? [singleBuffer(bias)] : [];
    const noZeros = placeholderZeros(this.device, label);
    const owned: GPUBuffer[] = [noZeros];
    const max = this.device.limits.maxComputeWorkgroupsPerDimension;
    const dispatches: PreparedDispatch[] = weight.chunks.map((chunk, i) => {
      const name = weight.chunks.length > 1 ? `${label}.chunk${i}` : label;
      const workgroups: [number, number] = [Math.ceil(m / this.tileM), Math.ceil(chunk.rows / MATMUL_COLUMNS_PER_WORKGROUP)];
      if (workgroups[0] > max || workgroups[1] > max) throw new Error(`${name}: qmatmul of ${m} rows × ${chunk.rows} columns needs ${workgroups.join(' × ')} workgroups, more than ${max} per dimension`);
      const params = PARAMS.createBuffer(this.device, name, {
        M: m,
        K: k,
        N: n,
        rows: chunk.rows,
        colOffset: chunk.firstRow,
        groupSize: weight.groupSize,
        scalesF16: weight.scaleDtype === 'F16' ? 1 : 0,
        hasZeros: chunk.zeros ? 1 : 0,
      });
      owned.push(params);
      const bindGroup = bindBuffers(this.device, this.pipeline, name, [params, x, chunk.data, chunk.scales, chunk.zeros ?? noZeros, y, ...biasBuffer]);
      return { label: name, pipeline: this.pipeline, bindGroup, workgroups };
    });
    return { label, dispatches, destroy: () => owned.forEach((b) => b.destroy()) };
  }
}

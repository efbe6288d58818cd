// Launcher of shaders/matmul.wgsl (and of its naive baseline, shaders/matmul_naive.wgsl):
// y = x·Wᵀ (+ b), or y += x·Wᵀ (+ b), for a prompt of M tokens (prefill), W a Linear weight in HF layout (N, K),
// possibly row-chunked (the LM head). One dispatch per chunk, each writing its columns of y.
//
// M is fixed at prepare time (in each chunk's Params and in the workgroup count). A prefill
// of another length prepares again: it is cheap (a 32-byte uniform and a bind group per
// chunk), and nothing is compiled.
//
// Napkin math (Llama-3.2-1B, a 512-token prompt): ~1 G weights in the layers × 512 tokens ×
// 2 flops = 1 TFLOP per prefill; lavapipe on 2 cores does 30-40 GFLOP/s with the subgroup
// kernel (~30 s), ~10 with workgroup memory, 2.3 with the naive one (~7 min).

import { type GpuTensor, singleBuffer } from '../gpu/gpu-tensor.js';
import { ParamsLayout } from '../gpu/params.js';
import { pipelineCache, type PipelineSpec } from '../gpu/pipeline-cache.js';
import { checkLinearOperands, prepareChunks } from './linear-prepare.js';
import { type ComputeDtype, dtypeFlags, type PreparedOp } from './op.js';

/** Threads per workgroup of the tiled kernel. Measured on lavapipe: 32, 64 and 128 tie. */
export const MATMUL_WORKGROUP = 64;
/** Columns of y per thread: the shader's vec4 accumulators (the vector width, not a tunable). */
export const MATMUL_COLUMNS_PER_THREAD = 4;
/** Columns of y per workgroup (256): N = 2048 takes 8 workgroups across. */
export const MATMUL_COLUMNS_PER_WORKGROUP = MATMUL_WORKGROUP * MATMUL_COLUMNS_PER_THREAD;
/**
 * Rows of y per workgroup, all held by every thread (TILE_M vec4 accumulators, at most the
 * shader's MAX_TILE_M = 32). Each 4×4 block of W a thread loads serves this many rows. On
 * lavapipe, subgroup kernel: 32 is ~10% faster than 16; 24 is 3× slower (not a power of
 * two: its loops are not unrolled). Workgroup-memory kernel: 16 and 32 tie (its x reads are
 * the cost), and 16 halves its code, which llvmpipe compiles at first dispatch (~0.5 s).
 */
export const MATMUL_TILE_M_SUBGROUPS = 32;
export const MATMUL_TILE_M_WORKGROUP = 16;
/** vec4s of k per workgroup-memory stage: 16 rows × 16 × 16 B = 4 KiB of workgroup memory; 8 and 16 tie, 32 is slower. */
export const MATMUL_TILE_K = 16;
/** The shader's register tile capacity (MAX_TILE_M in matmul.wgsl). */
export const MATMUL_MAX_TILE_M = 32;
/** Workgroup of the naive kernel: (columns, rows), one output each. */
export const MATMUL_NAIVE_WORKGROUP = [8, 8] as const;

/** Params of one chunk's dispatch; matmul_tiled.wgsl reads the same layout (MatmulTiled). */
export const MATMUL_PARAMS = new ParamsLayout([
  ['M', 'u32'], // rows of x and y
  ['K', 'u32'], // columns of x and W
  ['N', 'u32'], // columns of y (all chunks): its row stride
  ['rows', 'u32'], // rows of this chunk of W: the columns of y it computes
  ['colOffset', 'u32'], // the chunk's first row: its first column of y and of bias
] as const);

/** Which kernel a Matmul runs. */
export type MatmulKernel = 'subgroups' | 'workgroup' | 'naive';

export interface MatmulOptions {
  /**
   * Rows of y per workgroup of the tiled kernels (default 32 with subgroups, 16 without;
   * at most 32). Every thread computes all of them, so a prompt of 8 tokens on the default
   * tile does 4× the FMAs it needs: short prefills use a tile of 8.
   */
  tileM?: number;
  /** y = x·Wᵀ + b: prepare then takes the bias, (N,) in the compute dtype. */
  bias?: boolean;
  /** y in f32 whatever the compute dtype (logits). */
  outF32?: boolean;
  /**
   * y = y + x·Wᵀ (+ b): y is read and written, the residual stream itself (o_proj,
   * down_proj). x·Wᵀ (+ b) is rounded to the compute dtype, then added in it: the same bits
   * as the unfused matmul then Add, in F32 and F16. Tiled kernels only, not with outF32.
   */
  residual?: boolean;
  /**
   * Share x through subgroup shuffles: default where the device has 'subgroups' and its
   * subgroups are at most MATMUL_WORKGROUP wide. false forces the workgroup-memory kernel.
   */
  subgroups?: boolean;
  /** The naive baseline (one thread per output), for `sluice bench kernels` and tests. */
  naive?: boolean;
}

interface VariantChoice {
  dtype: ComputeDtype;
  kernel: MatmulKernel;
  /** Rows per workgroup of a tiled kernel (tileRows by default). */
  tileM?: number;
  bias: boolean;
  outF32: boolean;
  residual: boolean;
}

/** Every variant: both dtypes given, subgroup ones only where the device has 'subgroups'. */
export function matmulVariants(dtypes: readonly ComputeDtype[], features: ReadonlySet<string>): { key: string; spec: PipelineSpec }[] {
  const kernels: MatmulKernel[] = [...(features.has('subgroups') ? ['subgroups' as const] : []), 'workgroup', 'naive'];
  return dtypes.flatMap((dtype) =>
    kernels.flatMap((kernel) =>
      [false, true].flatMap((bias) =>
        // f32 compute already writes f32: OUT_F32 is an F16 variant only.
        // RESIDUAL: the tiled kernels only (the naive one is a baseline), never with OUT_F32.
        [
          ...(dtype === 'F16' ? [false, true] : [false]).map((outF32) => variant({ dtype, kernel, bias, outF32, residual: false })),
          ...(kernel === 'naive' ? [] : [variant({ dtype, kernel, bias, outF32: false, residual: true })]),
        ],
      ),
    ),
  );
}

function variant(v: VariantChoice): { key: string; spec: PipelineSpec } {
  const flags = [
    ...dtypeFlags(v.dtype),
    ...(v.kernel === 'subgroups' ? ['SUBGROUPS'] : []),
    ...(v.bias ? ['BIAS'] : []),
    ...(v.outF32 ? ['OUT_F32'] : []),
    ...(v.residual ? ['RESIDUAL'] : []),
  ];
  const options = [...(v.bias ? ['bias'] : []), ...(v.outF32 ? ['outf32'] : []), ...(v.residual ? ['residual'] : [])];
  if (v.kernel === 'naive') {
    const [wx, wy] = MATMUL_NAIVE_WORKGROUP;
    return {
      key: ['matmul_naive', v.dtype.toLowerCase(), ...options, `wg${wx}x${wy}`].join('_'),
      spec: { shader: 'matmul_naive', flags, constants: { WORKGROUP_X: wx, WORKGROUP_Y: wy } },
    };
  }
  const tileM = v.tileM ?? tileRows(v.kernel);
  const tile = v.kernel === 'subgroups' ? `sg_m${tileM}` : `wgmem_m${tileM}k${MATMUL_TILE_K}`;
  return {
    key: ['matmul', v.dtype.toLowerCase(), tile, ...options, `wg${MATMUL_WORKGROUP}`].join('_'),
    spec: {
      shader: 'matmul',
      flags,
      constants: { WORKGROUP_SIZE: MATMUL_WORKGROUP, TILE_M: tileM, TILE_K: MATMUL_TILE_K },
    },
  };
}

/** Rows of y per workgroup of a tiled kernel. */
function tileRows(kernel: MatmulKernel): number {
  return kernel === 'subgroups' ? MATMUL_TILE_M_SUBGROUPS : MATMUL_TILE_M_WORKGROUP;
}

/**
 * Whether the subgroup kernel can run: it needs every lane of a subgroup inside one
 * workgroup (subgroups at most MATMUL_WORKGROUP wide). An implementation that does not say
 * how wide its subgroups are gets the workgroup-memory kernel.
 */
function subgroupsFit(device: GPUDevice): boolean {
  const widest = device.adapterInfo?.subgroupMaxSize;
  return device.features.has('subgroups') && widest !== undefined && widest <= MATMUL_WORKGROUP;
}

export class Matmul {
  private constructor(
    private readonly device: GPUDevice,
    private readonly pipeline: GPUComputePipeline,
    readonly dtype: ComputeDtype,
    readonly kernel: MatmulKernel,
    readonly bias: boolean,
    /** y is f32 (always so for F32 compute). */
    readonly outF32: boolean,
    /** Rows of y per workgroup (tiled kernels). */
    readonly tileM: number,
    /** y += x·Wᵀ (+ b) (MatmulOptions.residual). */
    readonly residual: boolean,
  ) {}

  static async create(device: GPUDevice, dtype: ComputeDtype, options: MatmulOptions = {}): Promise<Matmul> {
    if (dtype === 'F16' && !device.features.has('shader-f16')) throw new Error(`matmul: F16 compute needs the device feature 'shader-f16'`);
    if (options.naive && options.subgroups) throw new Error('matmul: the naive kernel uses no subgroups');
    const residual = options.residual ?? false;
    if (residual && options.naive) throw new Error('matmul: the naive kernel has no residual variant');
    if (residual && options.outF32) throw new Error('matmul: residual writes the compute dtype (the residual stream), not outF32');
    if (options.subgroups && !subgroupsFit(device)) {
      throw new Error(`matmul: subgroups need the device feature 'subgroups' and subgroups at most ${MATMUL_WORKGROUP} wide`);
    }
    const kernel: MatmulKernel = options.naive ? 'naive' : (options.subgroups ?? subgroupsFit(device)) ? 'subgroups' : 'workgroup';
    const tileM = options.tileM ?? tileRows(kernel);
    if (!Number.isInteger(tileM) || tileM < 1 || tileM > MATMUL_MAX_TILE_M) throw new Error(`matmul: tileM must be an integer in 1..${MATMUL_MAX_TILE_M}, got ${tileM}`);
    const choice: VariantChoice = { dtype, kernel, tileM, bias: options.bias ?? false, outF32: dtype === 'F16' && (options.outF32 ?? false), residual };
    const { key, spec } = variant(choice);
    const pipeline = await pipelineCache(device).get(key, spec);
    return new Matmul(device, pipeline, dtype, kernel, choice.bias, dtype === 'F32' || choice.outF32, tileM, residual);
  }

  /**
   * y = x·Wᵀ (+ bias) for `m` rows. weight: (N, K) in the compute dtype, any number of
   * row-chunks. x: (m, K) in the compute dtype. y: (m, N) in the compute dtype, or f32 with
   * outF32; distinct from x. bias: (N,) in the compute dtype, one chunk, given exactly when
   * created with bias. Created with residual: y is read too, y += x·Wᵀ (+ bias).
   */
  prepare(label: string, m: number, weight: GpuTensor, x: GPUBuffer, y: GPUBuffer, bias?: GpuTensor): PreparedOp {
    const [n, k] = checkLinearOperands(label, this, m, weight, x, y, bias);
    const biasBuffer = bias ? [singleBuffer(bias)] : [];
    return prepareChunks(this.device, this.pipeline, label, weight, (chunk, name) => ({
      workgroups: this.workgroups(name, m, chunk.rows), // before the Params buffer: a refusal leaves none behind
      params: MATMUL_PARAMS.createBuffer(this.device, name, { M: m, K: k, N: n, rows: chunk.rows, colOffset: chunk.firstRow }),
      buffers: [x, chunk.buffer, y, ...biasBuffer],
    }));
  }

  /**
   * Workgroups for m rows × `columns` columns. Tiled: (row tiles, column tiles), so
   * consecutive workgroups share one block of W's rows, which stays in cache. Naive:
   * (columns, rows) / its workgroup.
   */
  private workgroups(label: string, m: number, columns: number): [number, number] {
    const [wx, wy] = MATMUL_NAIVE_WORKGROUP;
    const groups: [number, number] =
      this.kernel === 'naive'
        ? [Math.ceil(columns / wx), Math.ceil(m / wy)]
        : [Math.ceil(m / this.tileM), Math.ceil(columns / MATMUL_COLUMNS_PER_WORKGROUP)];
    const max = this.device.limits.maxComputeWorkgroupsPerDimension;
    if (groups[0] > max || groups[1] > max) {
      // Past ~1 M rows or 16 M columns with the default limit of 65535: no model gets here.
      throw new Error(`${label}: matmul of ${m} rows × ${columns} columns needs ${groups.join(' × ')} workgroups, more than ${max} per dimension`);
    }
    return groups;
  }
}

/** The naive baseline with Matmul's API: Matmul.create(…, { naive: true }) under its own name. */
export const NaiveMatmul = {
  create: (device: GPUDevice, dtype: ComputeDtype, options: Omit<MatmulOptions, 'naive' | 'subgroups'> = {}): Promise<Matmul> =>
    Matmul.create(device, dtype, { ...options, naive: true }),
};

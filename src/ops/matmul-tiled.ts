// Launcher of shaders/matmul_tiled.wgsl: the hardware-GPU ("gpu" family) prefill matmul,
// y = x·Wᵀ (+ b) or y += x·Wᵀ (+ b), W a Linear weight in HF layout (N, K), possibly
// row-chunked. The same create/prepare as Matmul (src/ops/matmul.ts), so the model takes
// either: the software family (Matmul, tuned for lavapipe) or this one, picked by adapter.
//
// Design (the shader's header has the detail): x and W tiles both staged in workgroup
// memory, 64 columns × TILE_M rows of y per workgroup, 16 k per stage, 4×4 outputs per
// invocation in registers, f32 accumulation, every edge bounds-checked. Matmul stages only
// x (lavapipe pays per workgroup-memory load); a GPU pays DRAM/L2 traffic, which staging W
// divides by TILE_M. Measured on lavapipe (2 loaded cores, f16, M = 128, W 2048×2048,
// interleaved, medians of 5): 0.7-0.8 GFLOP/s, 8.7-9.2× the subgroup Matmul's time and
// 2.2-2.3× its workgroup-memory kernel's. Untimed on a GPU so far.
//
// tileM: rows of y per workgroup, rounded up to a multiple of 4 (each invocation holds 4
// rows), 4 to 64, default 64; the workgroup is 16 × tileM/4 invocations. A short prefill on
// tileM 8 computes 8 rows per tile, not 64, in 32-invocation workgroups: few for a big GPU
// (M = 8, N = 2048 is 32 workgroups), where a batched gemv would serve better.

import { type GpuTensor, singleBuffer } from '../gpu/gpu-tensor.js';
import { pipelineCache, type PipelineSpec } from '../gpu/pipeline-cache.js';
import { MATMUL_PARAMS, type MatmulOptions } from './matmul.js';
import { checkLinearOperands, checkLinearOptions, prepareChunks } from './linear-prepare.js';
import { type ComputeDtype, dtypeFlags, type PreparedOp } from './op.js';

/** Columns of y per workgroup (the shader's TILE_N). */
export const MATMUL_TILED_TILE_N = 64;
/** k per workgroup-memory stage (the shader's TILE_K): 2 × 64 × 16 f32 (+ padding) = 10 KiB at tileM 64. */
export const MATMUL_TILED_TILE_K = 16;
/** Rows and columns of y per invocation (the shader's 4×4 register tile). */
export const MATMUL_TILED_BLOCK = 4;
/** Default rows of y per workgroup: 64 × 64 tiles, 256 invocations. */
export const MATMUL_TILED_TILE_M = 64;
/** Largest tileM: 256 invocations, the most every WebGPU device allows. */
export const MATMUL_TILED_MAX_TILE_M = 64;

interface VariantChoice {
  dtype: ComputeDtype;
  tileM: number;
  bias: boolean;
  outF32: boolean;
  residual: boolean;
}

/** Every variant at the default tile: both dtypes given (the kernel uses no optional feature but shader-f16). */
export function matmulTiledVariants(dtypes: readonly ComputeDtype[], _features: ReadonlySet<string>): { key: string; spec: PipelineSpec }[] {
  const tileM = MATMUL_TILED_TILE_M;
  return dtypes.flatMap((dtype) =>
    [false, true].flatMap((bias) =>
      // OUT_F32 is an F16 variant only (f32 compute writes f32); RESIDUAL never with OUT_F32.
      [
        ...(dtype === 'F16' ? [false, true] : [false]).map((outF32) => variant({ dtype, tileM, bias, outF32, residual: false })),
        variant({ dtype, tileM, bias, outF32: false, residual: true }),
      ],
    ),
  );
}

function variant(v: VariantChoice): { key: string; spec: PipelineSpec } {
  const flags = [...dtypeFlags(v.dtype), ...(v.bias ? ['BIAS'] : []), ...(v.outF32 ? ['OUT_F32'] : []), ...(v.residual ? ['RESIDUAL'] : [])];
  const options = [...(v.bias ? ['bias'] : []), ...(v.outF32 ? ['outf32'] : []), ...(v.residual ? ['residual'] : [])];
  const workgroup = workgroupSize(v.tileM);
  return {
    key: ['matmul_tiled', v.dtype.toLowerCase(), `m${v.tileM}n${MATMUL_TILED_TILE_N}k${MATMUL_TILED_TILE_K}`, ...options, `wg${workgroup}`].join('_'),
    spec: { shader: 'matmul_tiled', flags, constants: { WORKGROUP_SIZE: workgroup, TILE_M: v.tileM } },
  };
}

/** Invocations of a workgroup: one per 4×4 block of its tile. */
function workgroupSize(tileM: number): number {
  return (MATMUL_TILED_TILE_N / MATMUL_TILED_BLOCK) * (tileM / MATMUL_TILED_BLOCK);
}

export class MatmulTiled {
  /** Which kernel (Matmul's field; always the tiled one here). */
  readonly kernel = 'tiled' as const;

  private constructor(
    private readonly device: GPUDevice,
    private readonly pipeline: GPUComputePipeline,
    readonly dtype: ComputeDtype,
    readonly bias: boolean,
    /** y is f32 (always so for F32 compute). */
    readonly outF32: boolean,
    /** Rows of y per workgroup: MatmulOptions.tileM rounded up to a multiple of 4. */
    readonly tileM: number,
    /** y += x·Wᵀ (+ b) (MatmulOptions.residual). */
    readonly residual: boolean,
  ) {}

  /** options.subgroups is accepted and has no effect: the tiles are shared through workgroup memory. */
  static async create(device: GPUDevice, dtype: ComputeDtype, options: MatmulOptions = {}): Promise<MatmulTiled> {
    checkLinearOptions('matmul_tiled', device, dtype, options);
    if (options.naive) throw new Error('matmul_tiled: the naive kernel is Matmul.create(…, { naive: true })');
    const residual = options.residual ?? false;
    const asked = options.tileM ?? MATMUL_TILED_TILE_M;
    if (!Number.isInteger(asked) || asked < 1 || asked > MATMUL_TILED_MAX_TILE_M) {
      throw new Error(`matmul_tiled: tileM must be an integer in 1..${MATMUL_TILED_MAX_TILE_M}, got ${asked}`);
    }
    const tileM = Math.ceil(asked / MATMUL_TILED_BLOCK) * MATMUL_TILED_BLOCK;
    const choice: VariantChoice = { dtype, tileM, bias: options.bias ?? false, outF32: dtype === 'F16' && (options.outF32 ?? false), residual };
    const { key, spec } = variant(choice);
    const pipeline = await pipelineCache(device).get(key, spec);
    return new MatmulTiled(device, pipeline, dtype, choice.bias, dtype === 'F32' || choice.outF32, tileM, residual);
  }

  /**
   * y = x·Wᵀ (+ bias) for `m` rows, as Matmul.prepare. weight: (N, K) in the compute dtype,
   * any number of row-chunks. x: (m, K) in the compute dtype. y: (m, N) in the compute
   * dtype, or f32 with outF32; distinct from x. bias: (N,) in the compute dtype, one chunk,
   * given exactly when created with bias. Created with residual: y += x·Wᵀ (+ bias).
   */
  prepare(label: string, m: number, weight: GpuTensor, x: GPUBuffer, y: GPUBuffer, bias?: GpuTensor): PreparedOp {
    const [n, k] = checkLinearOperands(label, this, m, weight, x, y, bias);
    const biasBuffer = bias ? [singleBuffer(bias)] : [];
    const max = this.device.limits.maxComputeWorkgroupsPerDimension;
    return prepareChunks(this.device, this.pipeline, label, weight, (chunk, name) => {
      // (row tiles, column tiles): neighbouring workgroups share a tile of W while it is in L2.
      const workgroups: [number, number] = [Math.ceil(m / this.tileM), Math.ceil(chunk.rows / MATMUL_TILED_TILE_N)];
      if (workgroups[0] > max || workgroups[1] > max) {
        throw new Error(`${name}: matmul of ${m} rows × ${chunk.rows} columns needs ${workgroups.join(' × ')} workgroups, more than ${max} per dimension`);
      }
      // Matmul's Params layout: matmul_tiled.wgsl declares the same struct.
      const params = MATMUL_PARAMS.createBuffer(this.device, name, { M: m, K: k, N: n, rows: chunk.rows, colOffset: chunk.firstRow });
      return { params, buffers: [x, chunk.buffer, y, ...biasBuffer], workgroups };
    });
  }
}

// Launcher of shaders/gemv_coalesced.wgsl: the hardware-GPU ("gpu" family) decode gemv,
// y = W·x (+ b) or y += W·x (+ b). The same API as Gemv (src/ops/gemv.ts), so the model takes
// either: the software family (Gemv, tuned for lavapipe) or this one, picked by adapter.
// With `glu`, W is an MLP's [gate; up] (2I, K) in one chunk and y (I,) = act(gate·x) ·
// (up·x): the decode's gate_up_proj and its activation in one dispatch, not two. With
// `rmsNorm`, x is the un-normalised residual stream and the kernel applies the RMSNorm's
// scale itself (the norm's weight folded into W at load): y = s·(W·x) (+ b), so the norm
// before q/k/v and before gate/up needs no dispatch of its own. With `ropeStore`, W is a
// layer's joined [q; k; v] and prepareRopeStore's epilogue is qkv_rope_store (without
// qk-norm): q rotated into qOut, k rotated and v stored into the KV cache, as Gemv's.
//
// Design, for a GPU with DRAM behind 32-128-byte lines (the shader's header has the detail):
// a row group of GEMV_COALESCED_THREADS_PER_ROW lanes reads one row in consecutive 16-byte
// vectors (coalesced), x is staged once per workgroup in workgroup memory when it fits,
// and the row sums go through subgroupAdd (or a workgroup-memory tree). Gemv's 4 lanes per
// row are best on lavapipe and poor on a GPU; this one is the reverse. Measured on lavapipe
// (2 loaded cores, f16, interleaved with Gemv, medians of 5): 2048×2048 3.0-3.2× Gemv's
// time, 8192×2048 2.2-4.3× (subgroupAdd; the workgroup-memory tree within ±15% of it).
// Untimed on a GPU so far.
//
// Row groups are at least as wide as the device's widest subgroup (32 by default, 64 on a
// wave64 AMD part), so a subgroupAdd never mixes two rows; the rows per workgroup follow.

import { workgroups1d } from '../gpu/dispatch.js';
import { type GpuTensor, singleBuffer } from '../gpu/gpu-tensor.js';
import { ParamsLayout } from '../gpu/params.js';
import { pipelineCache, type PipelineSpec } from '../gpu/pipeline-cache.js';
import type { GemvOptions } from './gemv.js';
import { checkLinearOperands, checkLinearOptions, prepareChunks } from './linear-prepare.js';
import { type ComputeDtype, dtypeFlags, type PreparedOp } from './op.js';
import { type GemvRopeStoreTargets, ROPE_STORE_FIELDS, ropeStoreOperands } from './rope-store-epilogue.js';
import { SWIGLU_ACTS, type SwigluAct } from './swiglu.js';

/** Invocations per workgroup: 8 warps of 32, enough to keep loads in flight, few enough to keep several workgroups per SM. */
export const GEMV_COALESCED_WORKGROUP = 256;
/** Lanes per row where subgroups are at most this wide (NVIDIA, Apple, RDNA wave32, Intel): one warp per row. */
export const GEMV_COALESCED_THREADS_PER_ROW = 32;
/** Rows each lane accumulates: two independent 16-byte loads in flight per iteration, one x vector for both. */
export const GEMV_COALESCED_ROWS_PER_THREAD = 2;
/** Bytes of x staged in workgroup memory (K ≤ 4096 in f16, ≤ 2048 in f32); a longer x is read through L1. */
export const GEMV_COALESCED_X_CACHE_BYTES = 8192;
/** The shader's X_CACHE: 16-byte vectors of x in workgroup memory. */
const X_CACHE = GEMV_COALESCED_X_CACHE_BYTES / 16;

const PARAMS = new ParamsLayout([
  ['rows', 'u32'], // rows of this chunk; GLU: I, the gate rows (W has 2I)
  ['cols', 'u32'], // K
  ['rowOffset', 'u32'], // the chunk's first row in y and bias
  ['eps', 'f32'], // rmsNorm's eps (0 without)
] as const);

/** ROPE_STORE's Params: PARAMS, then qkv_rope_store's shape (the shader's struct under ROPE_STORE). */
const ROPE_STORE_PARAMS = new ParamsLayout([...PARAMS.fields, ...ROPE_STORE_FIELDS] as const);

interface VariantChoice {
  dtype: ComputeDtype;
  subgroups: boolean;
  bias: boolean;
  outF32: boolean;
  residual: boolean;
  /** Lanes per row (a power of two ≥ the widest subgroup). */
  threadsPerRow: number;
  glu: SwigluAct | null;
  /** RMS_NORM: y = s·(W·x) (+ b), s from x's own mean square. */
  rmsNorm: boolean;
  /** ROPE_STORE, and whether SCALED; null without. */
  ropeStore: { scaled: boolean } | null;
}

/**
 * Every variant at the default row group (32 lanes): both dtypes given, subgroup ones only
 * where the device has 'subgroups', the GLU ones (both acts) with neither bias, outF32 nor
 * residual, the RMS_NORM ones over plain, bias and both GLU acts (neither outF32 nor
 * residual), and the ROPE_STORE ones over rmsNorm × bias × scaled. A device with wider
 * subgroups builds a 64- or 128-lane one from the same source, by its override.
 */
export function gemvCoalescedVariants(dtypes: readonly ComputeDtype[], features: ReadonlySet<string>): { key: string; spec: PipelineSpec }[] {
  const subgroups = features.has('subgroups') ? [false, true] : [false];
  const threadsPerRow = GEMV_COALESCED_THREADS_PER_ROW;
  const plain = { outF32: false, residual: false, threadsPerRow, rmsNorm: false, ropeStore: null };
  return dtypes.flatMap((dtype) =>
    subgroups.flatMap((sg) => [
      ...[false, true].flatMap((bias) =>
        // OUT_F32 is an F16 variant only (f32 compute writes f32); RESIDUAL never with OUT_F32.
        [
          ...(dtype === 'F16' ? [false, true] : [false]).map((outF32) => variant({ ...plain, dtype, subgroups: sg, bias, outF32, glu: null })),
          variant({ ...plain, dtype, subgroups: sg, bias, residual: true, glu: null }),
        ],
      ),
      ...SWIGLU_ACTS.map((glu) => variant({ ...plain, dtype, subgroups: sg, bias: false, glu })),
      // RMS_NORM: plain, bias (q/k/v with a bias) and GLU (gate_up_proj).
      ...[false, true].map((bias) => variant({ ...plain, dtype, subgroups: sg, bias, glu: null, rmsNorm: true })),
      ...SWIGLU_ACTS.map((glu) => variant({ ...plain, dtype, subgroups: sg, bias: false, glu, rmsNorm: true })),
      // ROPE_STORE: q/k/v (with or without bias and a folded norm) + rope (scaled or not) + KV store
      ...[false, true].flatMap((rmsNorm) =>
        [false, true].flatMap((bias) => [false, true].map((scaled) => variant({ ...plain, dtype, subgroups: sg, bias, glu: null, rmsNorm, ropeStore: { scaled } }))),
      ),
    ]),
  );
}

function variant(v: VariantChoice): { key: string; spec: PipelineSpec } {
  const flags = [
    ...dtypeFlags(v.dtype),
    ...(v.subgroups ? ['SUBGROUPS'] : []),
    ...(v.bias ? ['BIAS'] : []),
    ...(v.outF32 ? ['OUT_F32'] : []),
    ...(v.residual ? ['RESIDUAL'] : []),
    ...(v.glu ? ['GLU', ...(v.glu === 'gelu_tanh' ? ['GELU_TANH'] : [])] : []),
    ...(v.rmsNorm ? ['RMS_NORM'] : []),
    ...(v.ropeStore ? ['ROPE_STORE', ...(v.ropeStore.scaled ? ['SCALED'] : [])] : []),
  ];
  const options = [
    ...(v.bias ? ['bias'] : []),
    ...(v.outF32 ? ['outf32'] : []),
    ...(v.residual ? ['residual'] : []),
    ...(v.glu ? [`glu_${v.glu}`] : []),
    ...(v.rmsNorm ? ['rms'] : []), // then ropestore, as gemv's keys
    ...(v.ropeStore ? [v.ropeStore.scaled ? 'ropestore_scaled' : 'ropestore'] : []),
  ];
  const shape = `t${v.threadsPerRow}r${GEMV_COALESCED_ROWS_PER_THREAD}x${X_CACHE}_wg${GEMV_COALESCED_WORKGROUP}`;
  return {
    key: ['gemv_coalesced', v.dtype.toLowerCase(), v.subgroups ? 'sg' : 'wgred', ...options, shape].join('_'),
    spec: {
      shader: 'gemv_coalesced',
      flags,
      constants: {
        WORKGROUP_SIZE: GEMV_COALESCED_WORKGROUP,
        THREADS_PER_ROW: v.threadsPerRow,
        ROWS_PER_THREAD: GEMV_COALESCED_ROWS_PER_THREAD,
        X_CACHE,
      },
    },
  };
}

/**
 * Lanes per row for the subgroup reduction: 32, or the widest subgroup when wider (a power
 * of two in WebGPU), so subgroups never straddle two rows. undefined: subgroups unusable
 * (no feature, width unknown, or wider than a workgroup).
 */
function subgroupThreadsPerRow(device: GPUDevice): number | undefined {
  const widest = device.adapterInfo?.subgroupMaxSize;
  if (!device.features.has('subgroups') || widest === undefined || widest > GEMV_COALESCED_WORKGROUP) return undefined;
  return Math.max(GEMV_COALESCED_THREADS_PER_ROW, widest);
}

export class GemvCoalesced {
  private constructor(
    private readonly device: GPUDevice,
    private readonly pipeline: GPUComputePipeline,
    readonly dtype: ComputeDtype,
    readonly bias: boolean,
    readonly outF32: boolean,
    /** Which reduction the pipeline uses. */
    readonly subgroups: boolean,
    /** y += W·x (+ b) (GemvOptions.residual). */
    readonly residual: boolean,
    /** Rows of W per workgroup (256 / lanes per row × 2); GLU: pairs, half of that. */
    private readonly rowsPerWorkgroup: number,
    /** The epilogue's activation over [gate; up] (GemvOptions.glu), or null. */
    readonly glu: SwigluAct | null,
    /** The RMSNorm scale applied to x's products (GemvOptions.rmsNorm), or null. */
    readonly rmsNorm: { readonly eps: number } | null,
    /** qkv_rope_store in the epilogue (GemvOptions.ropeStore), or null. */
    readonly ropeStore: { readonly scaled: boolean } | null,
  ) {}

  static async create(device: GPUDevice, dtype: ComputeDtype, options: GemvOptions = {}): Promise<GemvCoalesced> {
    checkLinearOptions('gemv_coalesced', device, dtype, options);
    const glu = options.glu ?? null;
    // A GemvOptions field this kernel has no variant for must not be dropped silently.
    const tokens = (options as { tokens?: number }).tokens ?? 1;
    if (options.ropeStore && tokens !== 1) throw new Error(`gemv_coalesced: the ROPE_STORE epilogue is for one token, not ${tokens}`);
    if (tokens !== 1) throw new Error(`gemv_coalesced: one row of x only (tokens ${tokens}): use Gemv for a batched decode`);
    const sgThreads = subgroupThreadsPerRow(device);
    const subgroups = options.subgroups ?? sgThreads !== undefined;
    if (subgroups && sgThreads === undefined) {
      throw new Error(`gemv_coalesced: subgroups need the device feature 'subgroups' and a known subgroup width of at most ${GEMV_COALESCED_WORKGROUP}`);
    }
    const residual = options.residual ?? false;
    const rmsNorm = options.rmsNorm ? { eps: options.rmsNorm.eps } : null; // checkLinearOptions: not with residual or outF32
    const ropeStore = options.ropeStore ? { scaled: options.ropeStore.scaled } : null; // nor this, nor with glu
    const threadsPerRow = subgroups ? sgThreads! : GEMV_COALESCED_THREADS_PER_ROW;
    const choice: VariantChoice = {
      dtype,
      subgroups,
      bias: options.bias ?? false,
      outF32: dtype === 'F16' && (options.outF32 ?? false),
      residual,
      threadsPerRow,
      glu,
      rmsNorm: rmsNorm !== null,
      ropeStore,
    };
    const { key, spec } = variant(choice);
    const pipeline = await pipelineCache(device).get(key, spec);
    const rowsPerWorkgroup = (GEMV_COALESCED_WORKGROUP / threadsPerRow) * GEMV_COALESCED_ROWS_PER_THREAD;
    return new GemvCoalesced(device, pipeline, dtype, choice.bias, options.outF32 ?? false, subgroups, residual, rowsPerWorkgroup, glu, rmsNorm, ropeStore);
  }

  /**
   * y = W·x (+ bias), as Gemv.prepare. weight: (N, K) in the compute dtype, any number of
   * row-chunks. x: (K,) in the compute dtype. y: (N,) in the compute dtype, or f32 with
   * outF32; distinct from x. bias: (N,) in the compute dtype, one chunk, given exactly when
   * created with bias. Created with residual: y is read too, y += W·x (+ bias). Created
   * with glu: weight is [gate; up] (2I, K) in one chunk and y (I,) = act(gate·x) · (up·x).
   * Created with rmsNorm: x is un-normalised and every product is scaled by 1/rms(x) first.
   */
  prepare(label: string, weight: GpuTensor, x: GPUBuffer, y: GPUBuffer, bias?: GpuTensor): PreparedOp {
    if (this.ropeStore) throw new Error(`${label}: a ropeStore gemv runs through prepareRopeStore`);
    const [n, k] = checkLinearOperands(label, this, undefined, weight, x, y, bias);
    const biasBuffer = bias ? [singleBuffer(bias)] : [];
    const maxGroups = this.device.limits.maxComputeWorkgroupsPerDimension;
    // GLU: a row group's ROWS_PER_THREAD rows are ROWS_PER_THREAD / 2 (gate, up) pairs, so a
    // workgroup makes half as many outputs; the shader's rows count the I pairs.
    const [rows, perWorkgroup] = this.glu ? [n / 2, this.rowsPerWorkgroup / 2] : [undefined, this.rowsPerWorkgroup];
    return prepareChunks(this.device, this.pipeline, label, weight, (chunk, name) => ({
      params: PARAMS.createBuffer(this.device, name, { rows: rows ?? chunk.rows, cols: k, rowOffset: chunk.firstRow, eps: this.rmsNorm?.eps ?? 0 }),
      buffers: [chunk.buffer, x, y, ...biasBuffer],
      workgroups: workgroups1d(rows ?? chunk.rows, perWorkgroup, maxGroups),
    }));
  }

  /**
   * A ROPE_STORE gemv's pass, as Gemv.prepareRopeStore: q/k/v = W·x (+ bias), W the joined
   * [q; k; v] ((nH + 2·nKV)·headDim, K) in one chunk, bias likewise; then, as QkvRopeStore
   * without qk-norm, q rotated into qOut, k rotated into kCache and v into vCache at the
   * step's row 0 slot and position. The projection itself is written nowhere.
   */
  prepareRopeStore(label: string, weight: GpuTensor, x: GPUBuffer, targets: GemvRopeStoreTargets, bias?: GpuTensor): PreparedOp {
    if (!this.ropeStore) throw new Error(`${label}: prepareRopeStore needs a gemv created with ropeStore`);
    const { n, k, values, bindings } = ropeStoreOperands(label, { ...this, tokens: 1, scaled: this.ropeStore.scaled }, weight, x, targets, bias);
    // Two rows a unit: a workgroup's row groups take rowsPerWorkgroup / 2 units.
    return prepareChunks(this.device, this.pipeline, label, weight, (chunk, name) => ({
      params: ROPE_STORE_PARAMS.createBuffer(this.device, name, { rows: n, cols: k, rowOffset: 0, eps: this.rmsNorm?.eps ?? 0, ...values }),
      buffers: [chunk.buffer, ...bindings],
      workgroups: workgroups1d(n / 2, this.rowsPerWorkgroup / 2, this.device.limits.maxComputeWorkgroupsPerDimension),
    }));
  }
}

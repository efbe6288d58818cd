// Launcher of shaders/gemv.wgsl: y = W·x (+ b), or y += W·x (+ b), for one token (decode), W a Linear weight
// in HF layout (N, K), possibly row-chunked (the LM head: vocab 128256 × 2048 is 525 MB in
// f16, four 128 MiB bindings). One dispatch per chunk, each writing its rows of y.
// With `glu`, W is an MLP's [gate; up] in one chunk and y = act(gate·x) · (up·x): the
// decode's gate_up_proj and its activation in one dispatch, not two.
//
// Nothing changes per token: the caller writes the new x into the same buffer and encodes
// the same PreparedOp again (shapes are fixed at prepare time, in the Params buffers).
//
// Napkin math (Llama-3.2-1B, f16): 2.5 GB of weights read per token (0.5 GB of it the LM
// head); at the ~7 GB/s this kernel streams f16 on lavapipe (the best read-only kernel
// found there: ~10 GB/s) that is ~0.35 s per token, so this kernel is the decode speed.
// Measured (2-core lavapipe, weights rotated past the 32 MiB L3): 2048×2048 f16 1.2 ms,
// 8192×2048 f16 4.6 ms, the LM head 128256×2048 f16 → f32 89 ms.

import { workgroups1d } from '../gpu/dispatch.js';
import { type GpuTensor, singleBuffer } from '../gpu/gpu-tensor.js';
import { ParamsLayout } from '../gpu/params.js';
import { pipelineCache, type PipelineSpec } from '../gpu/pipeline-cache.js';
import { canShareX } from './qgemv.js';
import { checkLinearOperands, checkLinearOptions, prepareChunks } from './linear-prepare.js';
import { type ComputeDtype, dtypeFlags, type PreparedOp } from './op.js';
import { type GemvRopeStoreTargets, ROPE_STORE_FIELDS, ropeStoreOperands } from './rope-store-epilogue.js';
import { SWIGLU_ACTS, type SwigluAct } from './swiglu.js';

/**
 * Threads splitting one row's K (a power of two ≤ 4, WebGPU's smallest subgroup, so a
 * row's reduction never leaves its subgroup). On lavapipe, 8192×2048: 4 and 8 tie within
 * noise, 1 (a row per thread) is ~20% slower, 64 with a workgroup reduction ~4× slower
 * (its barriers are coroutine switches there). A hardware GPU would want more threads per
 * row (coalescing); this is tuned for the software adapter the tests and CI run on.
 */
export const GEMV_THREADS_PER_ROW = 4;
/**
 * Rows each thread accumulates at once: one load of x serves this many rows of W. On
 * lavapipe every 32-bit load at a per-thread address costs ~12 instructions, so x adds
 * 1/ROWS_PER_THREAD to W's loads: 1 row ran at ~0.6× of the read limit, 4 at 0.7-0.9×;
 * 6 or 8 spill registers and lose again. At most the shader's MAX_ROWS_PER_THREAD (4).
 */
export const GEMV_ROWS_PER_THREAD = 4;
/**
 * Threads per workgroup: 8 row groups of GEMV_THREADS_PER_ROW. lavapipe hands whole
 * workgroups to its threads, so a small projection in few workgroups leaves a thread idle
 * at the end (SmolLM2's 576-row o_proj: 9 workgroups of 64 threads on 2 cores); 32 doubles
 * the count. Measured (fastest of 8, interleaved, f16): 960×576 164 → 130 µs, 576×576
 * 108 → 97, 2048×2048 814 → 751, 16384×2048 5964 → 5669; 3072×2048 and 2048×8192 within
 * 3% either way.
 */
export const GEMV_WORKGROUP = 32;
/** Rows of y per workgroup (32): 2048 rows → 64 workgroups, the LM head's 128256 → 4008. */
export const GEMV_ROWS_PER_WORKGROUP = (GEMV_WORKGROUP / GEMV_THREADS_PER_ROW) * GEMV_ROWS_PER_THREAD;

const PARAMS = new ParamsLayout([
  ['rows', 'u32'], // rows of this chunk
  ['cols', 'u32'], // K
  ['rowOffset', 'u32'], // the chunk's first row in y and bias
  ['yStride', 'u32'], // N: elements between the rows of y (tokens > 1)
  ['eps', 'f32'], // rmsNorm's eps (0 without)
] as const);

/** ROPE_STORE's Params: PARAMS, then qkv_rope_store's shape (shaders/common/rope_store_params.wgsl). */
const ROPE_STORE_PARAMS = new ParamsLayout([...PARAMS.fields, ...ROPE_STORE_FIELDS] as const);

/** Most rows of x one gemv takes (GemvOptions.tokens): the shader's MAX_TOKENS. */
export const GEMV_MAX_TOKENS = 8;

export interface GemvOptions {
  /** y = W·x + b: prepare then takes the bias, (N,) in the compute dtype. */
  bias?: boolean;
  /** y in f32 whatever the compute dtype (the LM head's logits). */
  outF32?: boolean;
  /**
   * y = y + W·x (+ b): y is read and written, the residual stream itself (o_proj, down_proj),
   * so the add needs no dispatch of its own. W·x (+ b) is rounded to the compute dtype and
   * then added in it, as the unfused projection then Add do: the same bits in F32 and F16
   * (two roundings in F16, as before; one rounding would differ from the PyTorch reference,
   * which rounds the projection's output too). Not with outF32.
   */
  residual?: boolean;
  /**
   * Reduce rows with subgroup operations: default where the device has 'subgroups'.
   * false forces the workgroup-memory reduction (tests run both on one adapter).
   */
  subgroups?: boolean;
  /**
   * Rows of x, 1 to GEMV_MAX_TOKENS (default 1): y (tokens, N) = x (tokens, K) · Wᵀ, each
   * weight read once for all of them (the BATCH variant). A batched decode pass, one row
   * per sequence: on lavapipe 4 rows take ~1.3-1.6× one row's time, where the small-tile
   * matmul took 7-15× (step 14's profile). Needs the subgroup reduction (gemvBatchable).
   */
  tokens?: number;
  /**
   * The MLP's activation in the epilogue: W is [gate; up] (2I, K) in one chunk and y (I,) =
   * act(gate·x) · (up·x), bit for bit the plain gemv then Swiglu (fused) over its output
   * (each row summed alike; shaders/common/glu.wgsl's roundings); with tokens, y (tokens, I).
   * No bias, outF32 or residual.
   */
  glu?: SwigluAct;
  /**
   * RMSNorm in the kernel: x is an un-normalised row (the residual stream) and y = s·(W·x)
   * (+ b), s = 1/sqrt(mean(x²) + eps) over x's K elements, as shaders/rms_norm.wgsl's scale;
   * the norm's weight is folded into W's columns at load (ScaleColumns), so the norm needs
   * no dispatch of its own. With glu, both halves are scaled before the activation; with
   * tokens, each row of x by its own scale, bit for bit as one row alone. Not with residual
   * or outF32.
   */
  rmsNorm?: { eps: number };
  /**
   * qkv_rope_store (without qk-norm) in the epilogue: W is a layer's joined [q; k; v] in
   * one chunk, and prepareRopeStore's q rows are rotated into qOut, its k rows rotated and
   * its v rows stored into the KV cache at each row's step slot and position, bit for bit
   * the plain gemv (y = [q | k | v]) then QkvRopeStore. `scaled`: the rope's attention
   * factor is not 1 (QkvRopeStore's). With tokens, row t at step row t's slot and position
   * (rows past the step's count write nothing). No glu, residual or outF32. prepare()
   * refuses such a gemv: prepareRopeStore takes what the epilogue needs.
   */
  ropeStore?: { scaled: boolean };
}

interface VariantChoice {
  dtype: ComputeDtype;
  subgroups: boolean;
  bias: boolean;
  outF32: boolean;
  residual: boolean;
  tokens: number;
  /** BATCH: x shared by pairs of lanes (subgroups of ≥ 8 invocations). */
  shareX: boolean;
  glu: SwigluAct | null;
  rmsNorm: boolean;
  /** ROPE_STORE, and whether SCALED; null without. */
  ropeStore: { scaled: boolean } | null;
}

/** Every variant: both dtypes given, subgroup ones only where the device has 'subgroups'. */
export function gemvVariants(dtypes: readonly ComputeDtype[], features: ReadonlySet<string>): { key: string; spec: PipelineSpec }[] {
  const subgroups = features.has('subgroups') ? [false, true] : [false];
  return dtypes.flatMap((dtype) =>
    subgroups.flatMap((sg) => [
      ...[false, true].flatMap((bias) =>
        // f32 compute already writes f32: OUT_F32 is an F16 variant only.
        // RESIDUAL writes the compute dtype (the residual stream): never with OUT_F32.
        [
          ...(dtype === 'F16' ? [false, true] : [false]).map((outF32) => variant({ dtype, subgroups: sg, bias, outF32, residual: false, tokens: 1, shareX: false, glu: null, rmsNorm: false, ropeStore: null })),
          variant({ dtype, subgroups: sg, bias, outF32: false, residual: true, tokens: 1, shareX: false, glu: null, rmsNorm: false, ropeStore: null }),
        ],
      ),
      // GLU: no bias, outF32 or residual
      ...SWIGLU_ACTS.map((glu) => variant({ dtype, subgroups: sg, bias: false, outF32: false, residual: false, tokens: 1, shareX: false, glu, rmsNorm: false, ropeStore: null })),
      // RMS_NORM: the projections after a norm (q/k/v, with or without bias; gate/up with the GLU)
      ...[false, true].map((bias) => variant({ dtype, subgroups: sg, bias, outF32: false, residual: false, tokens: 1, shareX: false, glu: null, rmsNorm: true, ropeStore: null })),
      ...SWIGLU_ACTS.map((glu) => variant({ dtype, subgroups: sg, bias: false, outF32: false, residual: false, tokens: 1, shareX: false, glu, rmsNorm: true, ropeStore: null })),
      // ROPE_STORE: q/k/v (with or without bias and a folded norm) + rope (scaled or not) + KV store
      ...[false, true].flatMap((rmsNorm) =>
        [false, true].flatMap((bias) => [false, true].map((scaled) => variant({ dtype, subgroups: sg, bias, outF32: false, residual: false, tokens: 1, shareX: false, glu: null, rmsNorm, ropeStore: { scaled } }))),
      ),
    ]),
  );
}

/** Whether a batched pass of `tokens` rows can use the gemv (else the small matmul). */
export function gemvBatchable(device: GPUDevice, tokens: number): boolean {
  return device.features.has('subgroups') && tokens >= 2 && tokens <= GEMV_MAX_TOKENS;
}

/**
 * The BATCH variants a batched decode pass of `tokens` rows uses (the projections, the
 * residual ones, the f32 LM head, the RMS_NORM ones of folded norms, with ROPE_STORE or
 * SwiGLU's GLU), for the test that
 * compiles variants: one per row count in use, so not every count up to GEMV_MAX_TOKENS.
 */
export function gemvBatchVariants(dtypes: readonly ComputeDtype[], features: ReadonlySet<string>, tokens = 4): { key: string; spec: PipelineSpec }[] {
  if (!features.has('subgroups')) return [];
  // subgroupMinSize is not in `features`: both x-sharing choices.
  return dtypes.flatMap((dtype) =>
    [false, true].flatMap((shareX) =>
      [false, true].flatMap((bias) => [
        variant({ dtype, subgroups: true, bias, outF32: false, residual: false, tokens, shareX, glu: null, rmsNorm: false, ropeStore: null }),
        variant({ dtype, subgroups: true, bias, outF32: false, residual: true, tokens, shareX, glu: null, rmsNorm: false, ropeStore: null }),
        ...(dtype === 'F16' ? [variant({ dtype, subgroups: true, bias, outF32: true, residual: false, tokens, shareX, glu: null, rmsNorm: false, ropeStore: null })] : []),
        variant({ dtype, subgroups: true, bias, outF32: false, residual: false, tokens, shareX, glu: null, rmsNorm: true, ropeStore: null }),
        // a folded norm's q/k/v projection with the rope and KV store, its MLP's gate/up with the activation
        ...[false, true].map((scaled) => variant({ dtype, subgroups: true, bias, outF32: false, residual: false, tokens, shareX, glu: null, rmsNorm: true, ropeStore: { scaled } })),
        ...(bias ? [] : [variant({ dtype, subgroups: true, bias, outF32: false, residual: false, tokens, shareX, glu: 'silu', rmsNorm: true, ropeStore: null })]),
      ]),
    ),
  );
}

function variant(v: VariantChoice): { key: string; spec: PipelineSpec } {
  const flags = [
    ...dtypeFlags(v.dtype),
    ...(v.subgroups ? ['SUBGROUPS'] : []),
    ...(v.bias ? ['BIAS'] : []),
    ...(v.outF32 ? ['OUT_F32'] : []),
    ...(v.residual ? ['RESIDUAL'] : []),
    ...(v.tokens > 1 ? ['BATCH'] : []),
    ...(v.shareX ? ['SHARE_X'] : []),
    ...(v.glu ? ['GLU', ...(v.glu === 'gelu_tanh' ? ['GELU_TANH'] : [])] : []),
    ...(v.rmsNorm ? ['RMS_NORM'] : []),
    ...(v.ropeStore ? ['ROPE_STORE', ...(v.ropeStore.scaled ? ['SCALED'] : [])] : []),
  ];
  const name = ['gemv', v.dtype.toLowerCase(), v.subgroups ? 'sg' : 'wgred', ...(v.bias ? ['bias'] : []), ...(v.outF32 ? ['outf32'] : []), ...(v.residual ? ['residual'] : []), ...(v.tokens > 1 ? [`b${v.tokens}`] : []), ...(v.shareX ? ['sx'] : []), ...(v.glu ? [`glu_${v.glu}`] : []), ...(v.rmsNorm ? ['rms'] : []), ...(v.ropeStore ? [v.ropeStore.scaled ? 'ropestore_scaled' : 'ropestore'] : [])];
  return {
    key: `${name.join('_')}_t${GEMV_THREADS_PER_ROW}r${GEMV_ROWS_PER_THREAD}_wg${GEMV_WORKGROUP}`,
    spec: {
      shader: 'gemv',
      flags,
      constants: { THREADS_PER_ROW: GEMV_THREADS_PER_ROW, ROWS_PER_THREAD: GEMV_ROWS_PER_THREAD, WORKGROUP_SIZE: GEMV_WORKGROUP, ...(v.tokens > 1 ? { TOKENS: v.tokens } : {}) },
    },
  };
}

export class Gemv {
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
    /** Rows of x and y (GemvOptions.tokens). */
    readonly tokens: number,
    /** The epilogue's activation over [gate; up] (GemvOptions.glu), or null. */
    readonly glu: SwigluAct | null,
    /** The RMSNorm the kernel applies to x (GemvOptions.rmsNorm), or null. */
    readonly rmsNorm: { readonly eps: number } | null,
    /** qkv_rope_store in the epilogue (GemvOptions.ropeStore), or null. */
    readonly ropeStore: { readonly scaled: boolean } | null,
  ) {}

  static async create(device: GPUDevice, dtype: ComputeDtype, options: GemvOptions = {}): Promise<Gemv> {
    checkLinearOptions('gemv', device, dtype, options);
    const subgroups = options.subgroups ?? device.features.has('subgroups');
    if (subgroups && !device.features.has('subgroups')) throw new Error(`gemv: the device has no 'subgroups' feature`);
    const residual = options.residual ?? false;
    const tokens = options.tokens ?? 1;
    if (!(Number.isInteger(tokens) && tokens >= 1 && tokens <= GEMV_MAX_TOKENS)) throw new Error(`gemv: tokens must be a whole number in [1, ${GEMV_MAX_TOKENS}], not ${tokens}`);
    // Without subgroups the reduction of T·4 accumulators goes through workgroup memory: on
    // lavapipe some of those variants took 20-30 s to compile, so a device without
    // subgroups batches its decode with the matmul instead (gemvBatchable).
    const rmsNorm = options.rmsNorm ? { eps: options.rmsNorm.eps } : null;
    const ropeStore = options.ropeStore ? { scaled: options.ropeStore.scaled } : null;
    if (tokens > 1 && !subgroups) throw new Error(`gemv: tokens > 1 needs the subgroup reduction (the device's 'subgroups' feature)`);
    // Sharing x needs subgroups of at least 8 (lane ^ 4); the reduction alone needs 4.
    const shareX = tokens > 1 && subgroups && canShareX(device);
    const choice: VariantChoice = { dtype, subgroups, bias: options.bias ?? false, outF32: dtype === 'F16' && (options.outF32 ?? false), residual, tokens, shareX, glu: options.glu ?? null, rmsNorm: rmsNorm !== null, ropeStore };
    const { key, spec } = variant(choice);
    return new Gemv(device, await pipelineCache(device).get(key, spec), dtype, choice.bias, options.outF32 ?? false, subgroups, residual, tokens, choice.glu, rmsNorm, ropeStore);
  }

  /**
   * y = W·x (+ bias). weight: (N, K) in the compute dtype, any number of row-chunks.
   * x: (K,) in the compute dtype. y: (N,) in the compute dtype, or f32 with outF32; distinct
   * from x. Created with tokens T > 1: x (T, K) and y (T, N), row t of y from row t of x. bias: (N,) in the compute dtype, one chunk, given exactly when created with bias.
   * Created with residual: y is read too, y += W·x (+ bias). Created with glu: weight is
   * [gate; up] (2I, K) in one chunk and y (I,) = act(gate·x) · (up·x). Created with
   * rmsNorm: x is normalised in the kernel (W's columns carry the norm's weight).
   */
  prepare(label: string, weight: GpuTensor, x: GPUBuffer, y: GPUBuffer, bias?: GpuTensor): PreparedOp {
    if (this.ropeStore) throw new Error(`${label}: a ropeStore gemv runs through prepareRopeStore`);
    const [n, k] = checkLinearOperands(label, this, undefined, weight, x, y, bias, this.tokens);
    const biasBuffer = bias ? [singleBuffer(bias)] : [];
    const maxGroups = this.device.limits.maxComputeWorkgroupsPerDimension;
    // GLU: a thread computes GEMV_ROWS_PER_THREAD / 2 outputs (a gate and an up row each).
    const [rows, rowsPerWorkgroup] = this.glu ? [n / 2, GEMV_ROWS_PER_WORKGROUP / 2] : [undefined, GEMV_ROWS_PER_WORKGROUP];
    return prepareChunks(this.device, this.pipeline, label, weight, (chunk, name) => ({
      params: PARAMS.createBuffer(this.device, name, { rows: rows ?? chunk.rows, cols: k, rowOffset: chunk.firstRow, yStride: rows ?? n, eps: this.rmsNorm?.eps ?? 0 }),
      buffers: [chunk.buffer, x, y, ...biasBuffer],
      workgroups: workgroups1d(rows ?? chunk.rows, rowsPerWorkgroup, maxGroups),
    }));
  }

  /**
   * A ROPE_STORE gemv's pass: q/k/v = W·x (+ bias), W the joined [q; k; v] ((nH + 2·nKV)·headDim,
   * K) in one chunk, bias likewise; then, as QkvRopeStore without qk-norm, q rotated into
   * qOut, k rotated into kCache and v into vCache at each step row's slot and position
   * (shape.rows: the gemv's tokens). The projection itself is written nowhere.
   */
  prepareRopeStore(label: string, weight: GpuTensor, x: GPUBuffer, targets: GemvRopeStoreTargets, bias?: GpuTensor): PreparedOp {
    if (!this.ropeStore) throw new Error(`${label}: prepareRopeStore needs a gemv created with ropeStore`);
    const { n, k, values, bindings } = ropeStoreOperands(label, { ...this, scaled: this.ropeStore.scaled }, weight, x, targets, bias);
    // Two rows a unit, GEMV_ROWS_PER_THREAD / 2 units a thread.
    return prepareChunks(this.device, this.pipeline, label, weight, (chunk, name) => ({
      params: ROPE_STORE_PARAMS.createBuffer(this.device, name, { rows: n, cols: k, rowOffset: 0, yStride: values.n_heads * values.head_dim, eps: this.rmsNorm?.eps ?? 0, ...values }),
      buffers: [chunk.buffer, ...bindings],
      workgroups: workgroups1d(n / 2, GEMV_ROWS_PER_WORKGROUP / 2, this.device.limits.maxComputeWorkgroupsPerDimension),
    }));
  }
}

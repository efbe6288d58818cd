// Launcher of shaders/qgemv.wgsl: y = W·x (+ b), or y += W·x (+ b), for one token, W a
// quantized Linear weight (src/gpu/quantized-tensor.ts), possibly row-chunked (a quantized LM
// head). One dispatch per chunk. Same prepare() as Gemv, with a QuantizedTensor for the weight;
// the dense Gemv is untouched. The pipeline comes from a table keyed [weight kind][compute
// dtype], as ggml's mul_mat_pipeline[src0][src1]; the model's LinearWeight seam picks Gemv or
// QGemv the same way.
//
// Napkin math (Llama-3.2-1B, 1.24 G weights, G = 32, f16 scales): q4 with zeros reads
// 0.5 + 3/32 ≈ 0.59 bytes/weight → 0.74 GB per token, q8 1 + 2/32 ≈ 1.06 → 1.3 GB, against
// 2.5 GB in f16: ~3.4× and ~1.9× less to stream. On lavapipe the gemvs are instruction-bound
// (see the shader), so the gain is smaller: q4 ~1.9×, q8 ~1.1-1.6× the f16 gemv's speed.
//
// Two pipelines per op: the block path (G a power of two ≥ 32 and K a multiple of 128: every
// Llama-family projection at G = 32/64/128) and the per-word path (any valid layout), picked
// per weight in prepare(). llvmpipe compiles a pipeline at its first dispatch, so the one a
// model never uses costs nothing.
//
// GLU (QGemvOptions.glu): gate_up_proj and the MLP's act(gate) * up in one dispatch. The weight
// (2I, K) is the joined [gate; up], one chunk; y (I,) = glu(gate_i·x, up_i·x), bit for bit the
// unfused qgemv into (2I,) then Swiglu fused, with a dispatch and the (2I,) intermediate saved.
//
// ROPE_STORE (GemvOptions.ropeStore): the decode's q/k/v projection and qkv_rope_store (no
// qk-norm) in one dispatch, as the dense gemvs' (src/ops/rope-store-epilogue.ts holds the
// shared launcher side): W the joined [q; k; v], prepareRopeStore rotates q into qOut and k, v
// into the KV cache, bit for bit this qgemv into [q | k | v] then QkvRopeStore.
//
// RMS_NORM (QGemvOptions.rmsNorm): the decode's RMSNorm in the projection after it (q/k/v,
// gate/up), a dispatch of one workgroup saved per norm. x is the un-normalised residual stream
// and prepare() takes the norm's weight g, which the kernel multiplies into x (a quantized W
// cannot carry it in its columns, as the dense gemv's does): y = r·(W·(x·g)) (+ b), r =
// 1/sqrt(mean(x²) + eps). Napkin math: per chunk of x, one more load and multiply per element
// of g and a square, shared by all ROWS_PER_THREAD rows, against ~4 ops per weight per row.
// Measured on lavapipe (2 shared cores, runs ±15%), q4 G = 32 F32, fastest of 15: at 3072×2048
// fused 630-1040 µs against rms_norm + qgemv 655-990 (break-even), at 16384×2048 ~8-10% slower
// than the two (4130-6900 against 3750-6300). The loads of g are that cost (~10% of q4's
// qgemv: with g a constant the fused ran as fast as the plain qgemv); a per-invocation load
// is dear on llvmpipe (see the shader). The gain is the dispatch (one workgroup) saved.

import { workgroups1d } from '../gpu/dispatch.js';
import { type GpuTensor, singleBuffer } from '../gpu/gpu-tensor.js';
import { ParamsLayout } from '../gpu/params.js';
import { pipelineCache, type PipelineSpec } from '../gpu/pipeline-cache.js';
import type { QuantKind, QuantizedTensor } from '../gpu/quantized-tensor.js';
import type { GemvOptions } from './gemv.js';
import { checkEpilogueOptions } from './linear-prepare.js';
import { checkRopeStoreShape, type GemvRopeStoreTargets, ROPE_STORE_FIELDS, ropeStoreEpilogue } from './rope-store-epilogue.js';
import { SWIGLU_ACTS, type SwigluAct } from './swiglu.js';
import { bindBuffers, checkWeight, type ComputeDtype, computeBytes, dtypeFlags, type PreparedDispatch, type PreparedOp } from './op.js';

/**
 * Rows each invocation computes whole (≤ the shader's MAX_ROWS): one chunk of x serves this
 * many rows. 2, 4 and 8 tie within noise on lavapipe at 8192×2048 q4; 8 compiles slower.
 */
export const QGEMV_ROWS_PER_THREAD = 4;
/** Invocations per workgroup (128 rows each: a 512-row K/V projection still makes 4 workgroups for 2 cores). */
export const QGEMV_WORKGROUP = 32;
export const QGEMV_ROWS_PER_WORKGROUP = QGEMV_WORKGROUP * QGEMV_ROWS_PER_THREAD;
/** GLU: each invocation computes half its rows as gate rows, half as their up rows (so ROWS_PER_THREAD is even). */
export const QGEMV_GLU_PAIRS_PER_WORKGROUP = QGEMV_ROWS_PER_WORKGROUP / 2;
/** ROPE_STORE: the binding of common/rope_store.wgsl's first buffer, after y, bias and norm (the shader's ROPE_STORE_FIRST_BINDING). */
const ROPE_STORE_FIRST_BINDING = 8;
/** Elements per block of the fast path (the shader's BLOCK). */
const BLOCK = 128;

const PARAMS = new ParamsLayout([
  ['rows', 'u32'], // rows of this chunk; GLU: I, the rows of y (the weight's 2I rows are one chunk)
  ['cols', 'u32'], // K
  ['rowOffset', 'u32'], // the chunk's first row in y and bias
  ['groupSize', 'u32'],
  ['scalesF16', 'u32'], // 1: f16 scale pairs
  ['hasZeros', 'u32'], // 1: zero points bound
  ['eps', 'f32'], // rmsNorm's eps (0 without)
] as const);

/** ROPE_STORE's Params: PARAMS, then qkv_rope_store's shape (shaders/common/rope_store_params.wgsl). */
const ROPE_STORE_PARAMS = new ParamsLayout([...PARAMS.fields, ...ROPE_STORE_FIELDS] as const);

type Path = 'block' | 'word';

interface VariantChoice {
  kind: QuantKind;
  dtype: ComputeDtype;
  /** x shared by subgroupBroadcast (subgroups of at least 8 invocations). */
  subgroups: boolean;
  bias: boolean;
  outF32: boolean;
  /** y += W·x (+ b) (GemvOptions.residual): never with outF32. */
  residual: boolean;
  path: Path;
  /** y = act(gate) * up over the weight's [gate; up] rows (QGemvOptions.glu): never with bias, outF32, residual. */
  glu?: SwigluAct;
  /** RMS_NORM: x is un-normalised and prepare() takes the norm's weight (QGemvOptions.rmsNorm). */
  rmsNorm?: boolean;
  /** ROPE_STORE, and whether SCALED (GemvOptions.ropeStore): never with glu, outF32, residual. */
  ropeStore?: { scaled: boolean };
}

export interface QGemvOptions extends GemvOptions {
  /**
   * The weight is the joined (2I, K) [gate; up] of an MLP and y (I,) = act(gate·x) * (up·x),
   * 'silu' (SwiGLU) or 'gelu_tanh' (GeGLU), rounded as Swiglu rounds them. Not with bias,
   * outF32 or residual.
   */
  glu?: SwigluAct;
  /**
   * RMSNorm in the kernel: x is an un-normalised row (the residual stream), prepare() takes
   * the norm's weight g (K,), and y = s·Σ_k W[n,k]·(x[k]·g[k]) (+ b), s = 1/sqrt(mean(x²) + eps)
   * as shaders/rms_norm.wgsl's scale (x·g in f32, not rounded to the compute dtype as the
   * unfused norm rounds its output). With glu: glu(s·gate, s·up). Not with residual or outF32.
   * Unlike the dense Gemv's, g is not folded into W (per-group scales cannot take it).
   */
  rmsNorm?: { eps: number };
  // ropeStore (GemvOptions'): prepareRopeStore's q/k/v projection, rotated and stored. It binds
  // up to 11 storage buffers, past WebGPU's default 8 a stage: see qgemvRopeStoreFits.
}

/**
 * Storage buffers a ROPE_STORE qgemv binds: data, scales, zeros, x, qOut, [bias], [norm],
 * step, inv_freq, kCache, vCache.
 */
function ropeStoreStorageBuffers(options: { bias: boolean; rmsNorm: boolean }): number {
  return 9 + (options.bias ? 1 : 0) + (options.rmsNorm ? 1 : 0);
}

/** Whether `device` binds as many storage buffers a stage as a ROPE_STORE qgemv with these options needs (lavapipe: 16; WebGPU's default: 8). */
export function qgemvRopeStoreFits(device: GPUDevice, options: { bias: boolean; rmsNorm: boolean }): boolean {
  return device.limits.maxStorageBuffersPerShaderStage >= ropeStoreStorageBuffers(options);
}

/** Shader flags of a weight kind: Q4, or none for q8. */
export function kindFlags(kind: QuantKind): string[] {
  return kind === 'q4' ? ['Q4'] : [];
}

/**
 * The pipeline table: [weight kind][compute dtype] → the variant's key and spec, for the
 * remaining options (x sharing, bias, f32 output, path).
 */
const QGEMV_PIPELINES: Record<QuantKind, Record<ComputeDtype, (v: Omit<VariantChoice, 'kind' | 'dtype'>) => { key: string; spec: PipelineSpec }>> = {
  q8: { F32: (v) => variant({ ...v, kind: 'q8', dtype: 'F32' }), F16: (v) => variant({ ...v, kind: 'q8', dtype: 'F16' }) },
  q4: { F32: (v) => variant({ ...v, kind: 'q4', dtype: 'F32' }), F16: (v) => variant({ ...v, kind: 'q4', dtype: 'F16' }) },
};

/**
 * Every variant: both kinds and paths, the dtypes given, subgroup ones only where the device
 * has them; RESIDUAL writes the compute dtype (the residual stream), so never with OUT_F32;
 * GLU with each act, with none of bias, OUT_F32, RESIDUAL; RMS_NORM over plain, bias and
 * both GLU acts (the projections after a norm), never with OUT_F32 or RESIDUAL; ROPE_STORE
 * (scaled or not) for the decode's q/k/v projection only, as the model builds it: after the
 * layer's norm in the kernel (RMS_NORM) where norms fuse, else plain, with or without bias;
 * both paths (K picks one per weight: SmolLM2's 576 the per-word one, Qwen2.5's 896 the block).
 */
export function qgemvVariants(dtypes: readonly ComputeDtype[], features: ReadonlySet<string>): { key: string; spec: PipelineSpec }[] {
  const subgroups = features.has('subgroups') ? [false, true] : [false];
  return (['q8', 'q4'] as const).flatMap((kind) =>
    dtypes.flatMap((dtype) =>
      subgroups.flatMap((sg) =>
        (['block', 'word'] as const).flatMap((path) => [
          ...[false, true].flatMap((bias) => [
            ...(dtype === 'F16' ? [false, true] : [false]).map((outF32) => QGEMV_PIPELINES[kind][dtype]({ subgroups: sg, bias, outF32, residual: false, path })),
            QGEMV_PIPELINES[kind][dtype]({ subgroups: sg, bias, outF32: false, residual: true, path }),
          ]),
          ...SWIGLU_ACTS.map((glu) => QGEMV_PIPELINES[kind][dtype]({ subgroups: sg, bias: false, outF32: false, residual: false, path, glu })),
          ...[false, true].map((bias) => QGEMV_PIPELINES[kind][dtype]({ subgroups: sg, bias, outF32: false, residual: false, path, rmsNorm: true })),
          ...SWIGLU_ACTS.map((glu) => QGEMV_PIPELINES[kind][dtype]({ subgroups: sg, bias: false, outF32: false, residual: false, path, glu, rmsNorm: true })),
          ...[false, true].flatMap((rmsNorm) =>
            [false, true].flatMap((bias) => [false, true].map((scaled) => QGEMV_PIPELINES[kind][dtype]({ subgroups: sg, bias, outF32: false, residual: false, path, rmsNorm, ropeStore: { scaled } }))),
          ),
        ]),
      ),
    ),
  );
}

function variant(v: VariantChoice): { key: string; spec: PipelineSpec } {
  const flags = [
    ...kindFlags(v.kind),
    ...dtypeFlags(v.dtype),
    ...(v.subgroups ? ['SUBGROUPS'] : []),
    ...(v.bias ? ['BIAS'] : []),
    ...(v.outF32 ? ['OUT_F32'] : []),
    ...(v.residual ? ['RESIDUAL'] : []),
    ...(v.path === 'word' ? ['GENERIC'] : []),
    ...(v.glu ? ['GLU'] : []),
    ...(v.glu === 'gelu_tanh' ? ['GELU_TANH'] : []),
    ...(v.rmsNorm ? ['RMS_NORM'] : []),
    ...(v.ropeStore ? ['ROPE_STORE', ...(v.ropeStore.scaled ? ['SCALED'] : [])] : []),
  ];
  const options = [
    ...(v.subgroups ? ['sg'] : []), ...(v.bias ? ['bias'] : []), ...(v.outF32 ? ['outf32'] : []), ...(v.residual ? ['residual'] : []),
    ...(v.glu ? [`glu_${v.glu}`] : []), ...(v.rmsNorm ? ['rms'] : []), // rms, then ropestore, as gemv's keys
    ...(v.ropeStore ? [v.ropeStore.scaled ? 'ropestore_scaled' : 'ropestore'] : []),
  ];
  const name = ['qgemv', v.kind, v.dtype.toLowerCase(), v.path, ...options];
  return {
    key: `${name.join('_')}_r${QGEMV_ROWS_PER_THREAD}_wg${QGEMV_WORKGROUP}`,
    spec: { shader: 'qgemv', flags, constants: { ROWS_PER_THREAD: QGEMV_ROWS_PER_THREAD, WORKGROUP_SIZE: QGEMV_WORKGROUP } },
  };
}

/** The block path's condition: G a power of two ≥ 32, K a multiple of 128. */
export function qgemvPath(weight: Pick<QuantizedTensor, 'shape' | 'groupSize'>): Path {
  const g = weight.groupSize;
  return g >= 32 && (g & (g - 1)) === 0 && weight.shape[1] % BLOCK === 0 ? 'block' : 'word';
}

/** Whether x can be shared by subgroupBroadcast: subgroups known to hold at least 8 invocations. */
export function canShareX(device: GPUDevice): boolean {
  const info = (device as { adapterInfo?: { subgroupMinSize?: number } }).adapterInfo;
  return device.features.has('subgroups') && (info?.subgroupMinSize ?? 0) >= 8;
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
    private readonly pipelines: Readonly<Record<Path, GPUComputePipeline>>,
    readonly kind: QuantKind,
    readonly dtype: ComputeDtype,
    readonly bias: boolean,
    readonly outF32: boolean,
    /** Whether x is shared by subgroup operations. */
    readonly subgroups: boolean,
    /** y += W·x (+ b) (GemvOptions.residual). */
    readonly residual: boolean,
    /** y = act(gate) * up over the weight's [gate; up] rows (QGemvOptions.glu). */
    readonly glu: SwigluAct | undefined,
    /** The RMSNorm the kernel applies to x (QGemvOptions.rmsNorm), or null. */
    readonly rmsNorm: { readonly eps: number } | null,
    /** qkv_rope_store in the epilogue (GemvOptions.ropeStore), or null. */
    readonly ropeStore: { readonly scaled: boolean } | null,
  ) {}

  /**
   * options.subgroups: share x by subgroupBroadcast; default where the device has 'subgroups'
   * with subgroups of at least 8 invocations (adapterInfo.subgroupMinSize); true requires it.
   * options.residual: y += W·x (+ b), as Gemv's (not with outF32). options.tokens: 1 only.
   * options.glu: the weight is [gate; up] and y = act(gate) * up (not with bias, outF32, residual).
   * options.rmsNorm: x is normalised in the kernel, prepare() takes the norm's weight (not with
   * residual or outF32). options.ropeStore: the q/k/v projection rotated and stored
   * (prepareRopeStore; not with glu, residual or outF32), where the device binds enough
   * storage buffers (qgemvRopeStoreFits).
   */
  static async create(device: GPUDevice, kind: QuantKind, dtype: ComputeDtype, options: QGemvOptions = {}): Promise<QGemv> {
    if (dtype === 'F16' && !device.features.has('shader-f16')) throw new Error(`qgemv: F16 compute needs the device feature 'shader-f16'`);
    const subgroups = options.subgroups ?? canShareX(device);
    if (subgroups && !canShareX(device)) throw new Error(`qgemv: sharing x needs the 'subgroups' feature with subgroups of at least 8 invocations`);
    const residual = options.residual ?? false;
    if (residual && options.outF32) throw new Error('qgemv: residual writes the compute dtype (the residual stream), not outF32');
    if ((options.tokens ?? 1) !== 1) throw new Error(`qgemv: one row of x only, not tokens = ${options.tokens}`);
    const bias = options.bias ?? false;
    const glu = options.glu;
    checkEpilogueOptions('qgemv', options); // the act, rmsNorm's combinations and eps
    // The epilogue writes act(gate) * up in the compute dtype: no bias (the joined projections
    // of Llama-family MLPs have none), no f32 logits, no residual stream to add to.
    const refused = glu ? (['bias', 'outF32', 'residual'] as const).filter((o) => options[o]) : [];
    if (refused.length) throw new Error(`qgemv: glu cannot be combined with ${refused.join(', ')}`);
    const rmsNorm = options.rmsNorm ? { eps: options.rmsNorm.eps } : null;
    const ropeStore = options.ropeStore ? { scaled: options.ropeStore.scaled } : null;
    if (ropeStore && !qgemvRopeStoreFits(device, { bias, rmsNorm: rmsNorm !== null })) {
      const count = ropeStoreStorageBuffers({ bias, rmsNorm: rmsNorm !== null });
      throw new Error(`qgemv: ropeStore binds ${count} storage buffers, the device's maxStorageBuffersPerShaderStage is ${device.limits.maxStorageBuffersPerShaderStage}`);
    }
    const outF32 = dtype === 'F16' && (options.outF32 ?? false);
    const cache = pipelineCache(device);
    const get = (path: Path) => {
      const { key, spec } = QGEMV_PIPELINES[kind][dtype]({ subgroups, bias, outF32, residual, path, glu, rmsNorm: rmsNorm !== null, ...(ropeStore ? { ropeStore } : {}) });
      return cache.get(key, spec);
    };
    const [block, word] = await Promise.all([get('block'), get('word')]);
    return new QGemv(device, { block, word }, kind, dtype, bias, options.outF32 ?? false, subgroups, residual, glu, rmsNorm, ropeStore);
  }

  /**
   * y = W·x (+ bias). weight: quantized (N, K), any chunks. x: (K,) in the compute dtype.
   * y: (N,) in the compute dtype, or f32 with outF32; distinct from x. bias: (N,) in the
   * compute dtype, one chunk, given exactly when created with bias. Created with residual:
   * y is read too, y += W·x (+ bias). Created with glu: weight (2I, K) = [gate; up] in one
   * chunk, y (I,) in the compute dtype = act(gate·x) * (up·x). norm: the RMSNorm's weight
   * (K,) in the compute dtype, one chunk, given exactly when created with rmsNorm (x is then
   * the un-normalised row).
   */
  prepare(label: string, weight: QuantizedTensor, x: GPUBuffer, y: GPUBuffer, bias?: GpuTensor, norm?: GpuTensor): PreparedOp {
    if (this.ropeStore) throw new Error(`${label}: a ropeStore qgemv runs through prepareRopeStore`);
    const [n, k] = this.checkOperands(label, weight, x, y, bias, norm);
    const outRows = this.glu ? n / 2 : n;

    const pipeline = this.pipelines[qgemvPath(weight)];
    const biasBuffer = bias ? [singleBuffer(bias)] : [];
    const normBuffer = norm ? [singleBuffer(norm)] : []; // bound after the bias (the shader's RMS_NORM binding)
    const noZeros = placeholderZeros(this.device, label);
    const buffers: GPUBuffer[] = [noZeros];
    const dispatches: PreparedDispatch[] = weight.chunks.map((chunk, i) => {
      const name = weight.chunks.length > 1 ? `${label}.chunk${i}` : label;
      const params = PARAMS.createBuffer(this.device, name, {
        rows: this.glu ? outRows : chunk.rows,
        cols: k,
        rowOffset: chunk.firstRow,
        groupSize: weight.groupSize,
        scalesF16: weight.scaleDtype === 'F16' ? 1 : 0,
        hasZeros: chunk.zeros ? 1 : 0,
        eps: this.rmsNorm?.eps ?? 0,
      });
      buffers.push(params);
      const bindGroup = bindBuffers(this.device, pipeline, name, [params, chunk.data, chunk.scales, chunk.zeros ?? noZeros, x, y, ...biasBuffer, ...normBuffer]);
      const workgroups = this.glu
        ? workgroups1d(outRows, QGEMV_GLU_PAIRS_PER_WORKGROUP, this.device.limits.maxComputeWorkgroupsPerDimension)
        : workgroups1d(chunk.rows, QGEMV_ROWS_PER_WORKGROUP, this.device.limits.maxComputeWorkgroupsPerDimension);
      return { label: name, pipeline, bindGroup, workgroups };
    });
    return { label, dispatches, destroy: () => buffers.forEach((b) => b.destroy()) };
  }

  /**
   * A ROPE_STORE qgemv's pass: q/k/v = W·x (+ bias), W quantized, the joined [q; k; v]
   * ((nH + 2·nKV)·headDim, K) in one chunk, bias likewise, norm as prepare()'s; then, as
   * QkvRopeStore without qk-norm, q rotated into qOut, k rotated into kCache and v into vCache
   * at the step's slot and position (one row: shape.rows 1). The projection itself is written
   * nowhere.
   */
  prepareRopeStore(label: string, weight: QuantizedTensor, x: GPUBuffer, targets: GemvRopeStoreTargets, bias?: GpuTensor, norm?: GpuTensor): PreparedOp {
    if (!this.ropeStore) throw new Error(`${label}: prepareRopeStore needs a qgemv created with ropeStore`);
    checkRopeStoreShape(label, 'qgemv', 1, targets.shape);
    const { nHeads, headDim } = targets.shape;
    const [n, k] = this.checkOperands(label, weight, x, targets.qOut, bias, norm, nHeads * headDim); // y: the q rows, rotated
    const { values, bindings } = ropeStoreEpilogue(label, 'qgemv', { dtype: this.dtype, scaled: this.ropeStore.scaled }, weight, n, x, targets);
    const pipeline = this.pipelines[qgemvPath(weight)];
    const [chunk] = weight.chunks;
    const noZeros = placeholderZeros(this.device, label);
    const params = ROPE_STORE_PARAMS.createBuffer(this.device, label, {
      rows: n,
      cols: k,
      rowOffset: 0,
      groupSize: weight.groupSize,
      scalesF16: weight.scaleDtype === 'F16' ? 1 : 0,
      hasZeros: chunk.zeros ? 1 : 0,
      eps: this.rmsNorm?.eps ?? 0,
      ...values,
    });
    // The bias and norm in order after y, as prepare() binds them; the epilogue's from 8 (the
    // shader's ROPE_STORE_FIRST_BINDING), the numbers between unused (null).
    const own: (GPUBuffer | null)[] = [params, chunk.data, chunk.scales, chunk.zeros ?? noZeros, x, targets.qOut, ...(bias ? [singleBuffer(bias)] : []), ...(norm ? [singleBuffer(norm)] : [])];
    const bindGroup = bindBuffers(this.device, pipeline, label, [...own, ...new Array<null>(ROPE_STORE_FIRST_BINDING - own.length).fill(null), ...bindings]);
    // Two rows a unit, QGEMV_ROWS_PER_THREAD / 2 units an invocation (as GLU's pairs).
    const workgroups = workgroups1d(n / 2, QGEMV_GLU_PAIRS_PER_WORKGROUP, this.device.limits.maxComputeWorkgroupsPerDimension);
    return { label, dispatches: [{ label, pipeline, bindGroup, workgroups }], destroy: () => [noZeros, params].forEach((b) => b.destroy()) };
  }

  /**
   * Throws unless the weight (of this kind), bias and norm weight (as created), x (K,) and y
   * (outRows,: the GLU's I, or N) can run. Returns [N, K].
   */
  private checkOperands(label: string, weight: QuantizedTensor, x: GPUBuffer, y: GPUBuffer, bias: GpuTensor | undefined, norm: GpuTensor | undefined, yRows?: number): [number, number] {
    const [n, k] = checkQuantizedWeight(label, 'qgemv', weight, this.kind);
    if (this.bias !== (bias !== undefined)) throw new Error(`${label}: qgemv was created ${this.bias ? 'with' : 'without'} bias, prepare got ${bias ? 'one' : 'none'}`);
    if (bias) checkWeight(label, bias, this.dtype, [n]);
    if ((this.rmsNorm !== null) !== (norm !== undefined)) throw new Error(`${label}: qgemv was created ${this.rmsNorm ? 'with' : 'without'} rmsNorm, prepare got ${norm ? 'a' : 'no'} norm weight`);
    if (norm) {
      checkWeight(label, norm, this.dtype, [k]);
      if (norm.chunks.length !== 1) throw new Error(`${label}: qgemv's norm weight ${norm.name} is in ${norm.chunks.length} chunks, not one`);
    }
    if (this.glu) {
      // Each invocation reads gate row i and up row I + i from the same buffers.
      if (weight.chunks.length !== 1) throw new Error(`${label}: a GLU gemv needs the gate and up rows in one chunk, not ${weight.chunks.length}`);
      if (n % 2 !== 0) throw new Error(`${label}: a GLU gemv needs [gate; up], an even number of rows, not ${n}`);
    }
    const outRows = yRows ?? (this.glu ? n / 2 : n);
    const xBytes = k * computeBytes(this.dtype);
    const yBytes = outRows * (this.outF32 ? 4 : computeBytes(this.dtype));
    if (x.size < xBytes) throw new Error(`${label}: qgemv x holds ${x.size} bytes, (${k},) ${this.dtype} needs ${xBytes}`);
    if (y.size < yBytes) throw new Error(`${label}: qgemv y holds ${y.size} bytes, (${outRows},) needs ${yBytes}`);
    if (x === y) throw new Error(`${label}: qgemv cannot run in place (x and y are one buffer)`);
    return [n, k];
  }
}

// Every pipeline a model's passes use, compiled in parallel at load (while the weights
// stream in), chosen by the model's Features: which variants exist is data, not code paths.
// The ropes (one table per distinct rope: Gemma 3's local and global, none for NoPE) are
// built here too, and follow the sequence length where transformers' tables do.

import { Add } from '../ops/add.js';
import { Embedding } from '../ops/embedding.js';
import { QEmbedding } from '../ops/qembedding.js';
import { Gemv, gemvBatchable, type GemvOptions } from '../ops/gemv.js';
import { GemvCoalesced } from '../ops/gemv-coalesced.js';
import { familyKernels, type KernelFamily } from './kernel-family.js';
import { NormAddNorm } from '../ops/norm-add-norm.js';
import { Permute } from '../ops/permute.js';
import { QkvRopeStore } from '../ops/qkv-rope-store.js';
import { QGemv, qgemvRopeStoreFits } from '../ops/qgemv.js';
import { QMatmul } from '../ops/qmatmul.js';
import type { QuantKind } from '../gpu/quantized-tensor.js';
import type { ComputeDtype } from '../ops/op.js';
import { RmsNorm } from '../ops/rms-norm.js';
import { Rope } from '../ops/rope.js';
import { ScaleColumns } from '../ops/scale-columns.js';
import { Softcap } from '../ops/softcap.js';
import { Swiglu, type SwigluAct } from '../ops/swiglu.js';
import type { ModelConfig } from './config.js';
import type { ModelProgress } from './progress.js';
import { type RopeScaling, ropeTables, ropeTableSeqLen } from './rope-scaling.js';

export type Kernels = Awaited<ReturnType<typeof compileKernels>>;

/** The row count of the smallest prefill pass (llama.ts PREFILL_ROWS[0]), with its own matmul tile. */
export const SMALL_PREFILL_ROWS = 8;

/** The matmul tile of an M-row pass: SMALL_PREFILL_ROWS rows when they hold it, else the kernel's default. */
export function rowsTile(rows: number): number | undefined {
  return rows <= SMALL_PREFILL_ROWS ? SMALL_PREFILL_ROWS : undefined;
}

/** What the weights ask of the kernels beyond the family's features. */
export interface KernelNeeds {
  /** The kind of the quantized weights (quantized on load, or a pre-quantized checkpoint's), or null. */
  quantized: QuantKind | null;
  /** Some linear adds a bias (the family's, or one a pre-quantized linear carries). */
  bias: boolean;
  /** Some act-order linear needs its input permuted (GPTQ desc_act). */
  permute: boolean;
  /** Rows of the widest batched decode pass (the KV slots), 1 when there is none. */
  decodeRows: number;
  /** The designs of the dense linears and attention (kernel-family.ts). */
  family: KernelFamily;
}

/** Whether a linear op is a gemv (prepare without a row count) rather than a matmul. */
export function isGemv(op: object): op is Gemv | GemvCoalesced {
  return op instanceof Gemv || op instanceof GemvCoalesced;
}

/**
 * Compiles every kernel `config` and `needs` ask for and reports each one built. The result
 * owns the ropes' inv_freq buffers: destroy() frees them.
 */
export async function compileKernels(device: GPUDevice, dtype: ComputeDtype, config: ModelConfig, needs: KernelNeeds, onProgress?: (p: ModelProgress) => void) {
  const f = config.features;
  const bias = needs.bias;
  // Quantized weights: the same ops by [weight kind][compute dtype] (qgemv/qmatmul dequantize in registers).
  const q = (make: (kind: QuantKind) => Promise<unknown>) => (needs.quantized ? make(needs.quantized) : null);
  const ropes = [...new Set(f.layers.map((l) => l.rope).filter((r): r is RopeScaling => r !== null))];
  // Every RMSNorm of the model (layer norms, q/k norms, Gemma's sandwich norms) alike.
  const normOptions = { eps: config.rmsNormEps, onePlusWeight: f.norm === 'one-plus-w' };
  const qkNorm = f.qkNorm ? normOptions : null;
  const { gemv, matmul, attention } = familyKernels(needs.family);
  // each layer's rope: scaled cos and sin (an attention factor ≠ 1) or not (NoPE: not)
  const layerScaled = f.layers.map((l) => l.rope !== null && scaledRope(l.rope));
  // Layer norms folded into the dense linears after them (LlamaModel.foldNorms): where the
  // norm's weight multiplies (not Gemma's 1 + w, whose sandwich norms run fused with the
  // residual add anyway) and the weights are dense.
  const foldNorms = canFoldNorms(config, needs);
  const quantizedNorms = canFuseQuantizedNorms(config, needs);
  const rmsNorm = { eps: config.rmsNormEps };
  const pending = {
    embedding: Embedding.create(device, dtype),
    qEmbedding: q((kind) => QEmbedding.create(device, kind, dtype)) as Promise<QEmbedding> | null,
    norm: RmsNorm.create(device, dtype, normOptions),
    matmul: matmul(device, dtype),
    matmulBias: bias ? matmul(device, dtype, { bias: true }) : null,
    // Prefills of ≤ SMALL_PREFILL_ROWS rows: a tile of that many rows, not 32 (4× the FMAs).
    matmulSmall: matmul(device, dtype, { tileM: SMALL_PREFILL_ROWS }),
    matmulSmallBias: bias ? matmul(device, dtype, { bias: true, tileM: SMALL_PREFILL_ROWS }) : null,
    gemv: gemv(device, dtype),
    gemvBias: bias ? gemv(device, dtype, { bias: true }) : null,
    // o_proj and down_proj add into the residual stream in their epilogue (no Add dispatch)
    // in the families without post-norms (Gemma normalises the projection first: normAddNorm);
    // dense ones here, quantized ones below (quantizedResidualLinears).
    ...residualLinears(gemv, matmul, device, dtype, !f.sandwichNorms && needs.quantized === null, bias),
    lmHead: gemv(device, dtype, { outF32: true }),
    // the decode's gate_up_proj with the MLP's activation in its epilogue: one dispatch, not two
    gemvGlu: gemv(device, dtype, { glu: f.act }),
    qGemvGlu: q((kind) => QGemv.create(device, kind, dtype, { glu: f.act })) as Promise<QGemv> | null,
    // the decode's q/k/v and gate/up projections with the norm before them inside (folded norms)
    gemvRms: foldNorms ? gemv(device, dtype, { rmsNorm }) : null,
    gemvRmsBias: foldNorms && bias ? gemv(device, dtype, { rmsNorm, bias: true }) : null,
    gemvRmsGlu: foldNorms ? gemv(device, dtype, { rmsNorm, glu: f.act }) : null,
    // W ← W·diag(norm weight), once at load
    scaleColumns: foldNorms ? ScaleColumns.create(device, dtype) : null,
    // quantized weights: the decode's qgemvs apply the norm (and its weight) to x themselves
    qGemvRms: quantizedNorms ? q((kind) => QGemv.create(device, kind, dtype, { rmsNorm })) as Promise<QGemv> | null : null,
    qGemvRmsBias: quantizedNorms && bias ? q((kind) => QGemv.create(device, kind, dtype, { rmsNorm, bias: true })) as Promise<QGemv> | null : null,
    qGemvRmsGlu: quantizedNorms ? q((kind) => QGemv.create(device, kind, dtype, { rmsNorm, glu: f.act })) as Promise<QGemv> | null : null,
    qGemv: q((kind) => QGemv.create(device, kind, dtype)) as Promise<QGemv> | null,
    qGemvBias: bias ? (q((kind) => QGemv.create(device, kind, dtype, { bias: true })) as Promise<QGemv> | null) : null,
    qMatmul: q((kind) => QMatmul.create(device, kind, dtype)) as Promise<QMatmul> | null,
    qMatmulBias: bias ? (q((kind) => QMatmul.create(device, kind, dtype, { bias: true })) as Promise<QMatmul> | null) : null,
    qMatmulSmall: q((kind) => QMatmul.create(device, kind, dtype, { tileM: SMALL_PREFILL_ROWS })) as Promise<QMatmul> | null,
    qMatmulSmallBias: bias ? (q((kind) => QMatmul.create(device, kind, dtype, { bias: true, tileM: SMALL_PREFILL_ROWS })) as Promise<QMatmul> | null) : null,
    qLmHead: q((kind) => QGemv.create(device, kind, dtype, { outF32: true })) as Promise<QGemv> | null,
    ...quantizedResidualLinears(device, dtype, !f.sandwichNorms ? needs.quantized : null, bias),
    // The batched decode passes (one row per sequence), by row count (decodeRowCounts).
    decodeBatch: Promise.all(
      decodeRowCounts(needs.decodeRows).map(async (rows) => [rows, await batchedDecodeKernels(device, dtype, rows, needs, bias, !f.sandwichNorms && needs.quantized === null, foldNorms ? rmsNorm : null, matmul, {
        act: f.act,
        ropeStore: canFuseRopeStore(config),
        layerScaled,
      })] as const),
    ).then((entries) => new Map(entries)),
    // x[:, perm]: an act-order linear's input, in the column order its weight was repacked to
    permute: needs.permute ? Permute.create(device, dtype) : null,
    ropes: Promise.all(ropes.map((rope) => RopeTable.create(device, dtype, rope))),
    // q_norm/k_norm + rope + the K/V store in one dispatch, per distinct attention factor
    qkvRopeStore: QkvRopeStore.create(device, dtype, { qkNorm }),
    qkvRopeStoreScaled: ropes.some(scaledRope) ? QkvRopeStore.create(device, dtype, { qkNorm, scaled: true }) : null,
    // ... and, without qk-norm, all of that in the decode's q/k/v projection itself (dense weights, either family's gemv)
    ropeStore: ropeStoreGemvs((options) => gemv(device, dtype, options), canFuseRopeStore(config), foldNorms ? rmsNorm : null, bias, layerScaled),
    // the quantized twins, where the device binds the storage buffers they take (up to 11)
    qRopeStore: needs.quantized && canFuseQuantizedRopeStore(device, config, needs)
      ? ropeStoreGemvs((options) => QGemv.create(device, needs.quantized!, dtype, options), true, quantizedNorms ? rmsNorm : null, bias, layerScaled)
      : null,
    attention: attention(device, dtype, { softcap: f.attnSoftcap !== null, window: f.layers.some((l) => l.window !== null) }),
    // fused gate_up_proj (Phi-3): one input, each row [gate | up]
    mlpAct: Swiglu.create(device, dtype, { act: f.act, fused: f.fused }),
    // separate gate_proj/up_proj joined at load into one [gate; up] (LlamaModel.joinGateUp), dense or quantized
    mlpActJoined: !f.fused ? Swiglu.create(device, dtype, { act: f.act, fused: true }) : null,
    add: Add.create(device, dtype, { inPlace: true }),
    // Gemma's sandwich norms: x += post_norm(proj), then the next pre-norm of x, in one dispatch
    normAddNorm: f.sandwichNorms ? NormAddNorm.create(device, dtype, normOptions) : null,
    softcap: f.finalSoftcap !== null ? Softcap.create(device) : null,
  };
  const entries = Object.entries(pending);
  const kernelsTotal = entries.filter(([, p]) => p !== null).length;
  let kernelsDone = 0;
  const report = () => onProgress?.({ phase: 'kernels', kernelsDone, kernelsTotal });
  report();
  let values: unknown[];
  try {
    // Fails at the first failure, so the caller can stop the upload at once.
    values = await Promise.all(entries.map(([, p]) => p?.then((x) => (kernelsDone++, report(), x)) ?? null));
  } catch (e) {
    void pending.ropes.then((r) => r.forEach((t) => t.destroy()), () => {});
    throw e;
  }
  const ops = Object.fromEntries(entries.map(([name], i) => [name, values[i]])) as { [K in keyof typeof pending]: Awaited<(typeof pending)[K]> };
  const ropeOf = new Map(ropes.map((rope, i) => [rope, ops.ropes[i]]));
  return { ...ops, ropeOf, destroy: () => ops.ropes.forEach((t) => t.destroy()) };
}

/**
 * Whether the model's layer norms fold into the linears after them: a norm that multiplies
 * by its weight (y = w·norm(x): Llama, Mistral, Qwen, Phi-3, SmolLM3; not Gemma's 1 + w with
 * sandwich norms) before dense linears (none quantized on load or in the checkpoint).
 */
export function canFoldNorms(config: ModelConfig, needs: KernelNeeds): boolean {
  return config.features.norm === 'w' && !config.features.sandwichNorms && needs.quantized === null;
}

/**
 * Whether a one-row decode runs qkv_rope_store in the epilogue of its dense q/k/v projection
 * (the ROPE_STORE gemv, either family's): no per-head q/k norm (a head's norm would need the
 * sums of rows other workgroups hold). Quantized models too: a checkpoint (or quantize on
 * load) may leave q/k/v dense.
 */
export function canFuseRopeStore(config: ModelConfig): boolean {
  return !config.features.qkNorm;
}

/**
 * The same for quantized q/k/v (the ROPE_STORE qgemv), where the device binds its storage
 * buffers: up to 11, past WebGPU's default 8 (lavapipe and desktop Dawn give more; a
 * browser may not), else qkv_rope_store keeps its dispatch.
 */
export function canFuseQuantizedRopeStore(device: GPUDevice, config: ModelConfig, needs: KernelNeeds): boolean {
  return !config.features.qkNorm && needs.quantized !== null && qgemvRopeStoreFits(device, { bias: needs.bias, rmsNorm: canFuseQuantizedNorms(config, needs) });
}

/** A pass's ROPE_STORE gemvs by [scaled rope][bias], null where no layer uses one. */
export interface RopeStoreGemvs<G> {
  plain: G | null;
  bias: G | null;
  scaled: G | null;
  scaledBias: G | null;
}

/**
 * The ROPE_STORE gemvs a model's layers use, by [scaled rope][bias]: with the layer norm in
 * the kernel where the norms fold (rmsNorm), else over the normed row; null where not wanted.
 */
async function ropeStoreGemvs<G>(gemv: (options: GemvOptions) => Promise<G>, wanted: boolean, rmsNorm: { eps: number } | null, bias: boolean, layerScaled: readonly boolean[]): Promise<RopeStoreGemvs<G>> {
  const make = (scaled: boolean, withBias: boolean) =>
    wanted && layerScaled.includes(scaled) && (bias || !withBias) ? gemv({ ropeStore: { scaled }, bias: withBias, ...(rmsNorm ? { rmsNorm } : {}) }) : null;
  const [plain, withBias, scaled, scaledBias] = await Promise.all([make(false, false), make(false, true), make(true, false), make(true, true)]);
  return { plain, bias: withBias, scaled, scaledBias };
}

/**
 * Whether the quantized decode gemvs apply the layer norms before them (the norms of
 * canFoldNorms), in the gpu family only: there a dispatch saved is worth microseconds and
 * the norm's weight, loaded with x, next to nothing; on lavapipe those loads cost about
 * what the norm's dispatch does (qgemv.ts: even at 3072×2048 q4, ~10% slower at 16384×2048).
 */
export function canFuseQuantizedNorms(config: ModelConfig, needs: KernelNeeds): boolean {
  return config.features.norm === 'w' && !config.features.sandwichNorms && needs.quantized !== null && needs.family === 'gpu';
}

/**
 * Row counts of the batched decode passes of a model with `slots` KV slots: the powers of
 * two below it, and itself (4 slots: 2 and 4). A step runs the smallest that holds its
 * sequences, so 2 of 8 slots busy cost a 2-row pass, not an 8-row one (on lavapipe the
 * batched gemv's time grows with its rows: ~1.2× one row's at 2, ~1.8× at 4, ~3× at 8).
 */
export function decodeRowCounts(slots: number): number[] {
  const counts: number[] = [];
  for (let n = 2; n < slots; n *= 2) counts.push(n);
  if (slots > 1) counts.push(slots);
  return counts;
}

/** The linear kernels of a batched decode pass: the gemvs over its rows, or null (the pass takes the matmuls). */
export interface BatchedDecodeKernels {
  /** Dense linears as gemvs over the pass's rows (GemvOptions.tokens); the residual ones only where residual linears exist. */
  gemv: {
    plain: Gemv;
    bias: Gemv | null;
    residual: Gemv | null;
    residualBias: Gemv | null;
    rms: Gemv | null;
    rmsBias: Gemv | null;
    /** The folded pre-MLP norm, gate/up and the activation (GLU). */
    rmsGlu: Gemv | null;
    /** The folded input norm, q/k/v, the rope and the KV store (ROPE_STORE), by [scaled][bias]. */
    ropeStore: RopeStoreGemvs<Gemv>;
  } | null;
  /** The LM head over the rows, f32 logits: a gemv over them, or a matmul. */
  lmHead: Gemv | GemvCoalesced | Awaited<ReturnType<ReturnType<typeof familyKernels>['matmul']>>;
  qLmHead: QMatmul | null;
}

/**
 * A batched decode pass's kernels for `rows` rows. The software family's gemv reads each
 * weight once for all rows (1.2-2× one row's time on lavapipe up to 4 rows, where the
 * small-tile matmul took 3-15×); past GEMV_MAX_TOKENS rows, without subgroups, and in the
 * gpu family (whose tiled matmul suits real GPUs), the matmuls.
 */
async function batchedDecodeKernels(
  device: GPUDevice,
  dtype: ComputeDtype,
  rows: number,
  needs: KernelNeeds,
  bias: boolean,
  residual: boolean,
  rmsNorm: { eps: number } | null,
  matmul: ReturnType<typeof familyKernels>['matmul'],
  fused: { act: SwigluAct; ropeStore: boolean; layerScaled: readonly boolean[] },
): Promise<BatchedDecodeKernels> {
  const useGemv = needs.family === 'software' && gemvBatchable(device, rows);
  const make = (options: GemvOptions) => Gemv.create(device, dtype, { ...options, tokens: rows });
  // rms: the projections after a folded norm, each row normalised in the gemv as one row
  // alone is (so a batched sequence decodes exactly as alone); rmsGlu and ropeStore: the
  // MLP's activation and the attention glue in those projections' epilogues, as in one row.
  const [plain, withBias, res, resBias, rms, rmsBias, lmHead, qLmHead] = await Promise.all([
    useGemv ? make({}) : null,
    useGemv && bias ? make({ bias: true }) : null,
    useGemv && residual ? make({ residual: true }) : null,
    useGemv && residual && bias ? make({ residual: true, bias: true }) : null,
    useGemv && rmsNorm ? make({ rmsNorm }) : null,
    useGemv && rmsNorm && bias ? make({ rmsNorm, bias: true }) : null,
    useGemv ? make({ outF32: true }) : matmul(device, dtype, { outF32: true, tileM: rowsTile(rows) }),
    needs.quantized ? QMatmul.create(device, needs.quantized, dtype, { outF32: true, tileM: rowsTile(rows) }) : null,
  ]);
  const [rmsGlu, ropeStore] = await Promise.all([
    useGemv && rmsNorm ? make({ rmsNorm, glu: fused.act }) : null,
    ropeStoreGemvs(make, useGemv && rmsNorm !== null && fused.ropeStore, rmsNorm, bias, fused.layerScaled),
  ]);
  return { gemv: plain && { plain, bias: withBias, residual: res, residualBias: resBias, rms, rmsBias, rmsGlu, ropeStore }, lmHead: lmHead!, qLmHead };
}

/** The residual variants of the quantized linears of `kind` (y += W·x (+ b)), null where there is no kind. */
function quantizedResidualLinears(device: GPUDevice, dtype: ComputeDtype, kind: QuantKind | null, bias: boolean) {
  const make = <T>(withBias: boolean, create: (kind: QuantKind) => Promise<T>) => (kind !== null && (bias || !withBias) ? create(kind) : null);
  const small = { residual: true, tileM: SMALL_PREFILL_ROWS };
  return {
    qGemvResidual: make(false, (k) => QGemv.create(device, k, dtype, { residual: true })),
    qGemvResidualBias: make(true, (k) => QGemv.create(device, k, dtype, { residual: true, bias: true })),
    qMatmulResidual: make(false, (k) => QMatmul.create(device, k, dtype, { residual: true })),
    qMatmulResidualBias: make(true, (k) => QMatmul.create(device, k, dtype, { residual: true, bias: true })),
    qMatmulSmallResidual: make(false, (k) => QMatmul.create(device, k, dtype, small)),
    qMatmulSmallResidualBias: make(true, (k) => QMatmul.create(device, k, dtype, { ...small, bias: true })),
  };
}

/** Whether a rope's cos and sin carry an attention factor (Rope's and QkvRopeStore's SCALED variants). */
function scaledRope(rope: RopeScaling): boolean {
  return Math.fround(ropeTables(rope).attentionFactor) !== 1;
}

/** The residual variants of the dense linears (y += W·x (+ b)), null where not `wanted`. */
function residualLinears(gemv: ReturnType<typeof familyKernels>['gemv'], matmul: ReturnType<typeof familyKernels>['matmul'], device: GPUDevice, dtype: ComputeDtype, wanted: boolean, bias: boolean) {
  const make = <T>(withBias: boolean, create: () => Promise<T>) => (wanted && (bias || !withBias) ? create() : null);
  const small = { residual: true, tileM: SMALL_PREFILL_ROWS };
  return {
    gemvResidual: make(false, () => gemv(device, dtype, { residual: true })),
    gemvResidualBias: make(true, () => gemv(device, dtype, { residual: true, bias: true })),
    matmulResidual: make(false, () => matmul(device, dtype, { residual: true })),
    matmulResidualBias: make(true, () => matmul(device, dtype, { residual: true, bias: true })),
    matmulSmallResidual: make(false, () => matmul(device, dtype, small)),
    matmulSmallResidualBias: make(true, () => matmul(device, dtype, { ...small, bias: true })),
  };
}

/**
 * One rope's kernel and table. Dynamic (NTK) and longrope tables depend on the sequence
 * length; as transformers (rope-scaling.ts), the table of a forward call is the one for
 * its highest position + 1, and keys already in the cache are not re-rotated.
 */
export class RopeTable {
  private seqLen: number | undefined;
  private key: string;

  private constructor(
    readonly op: Rope,
    readonly rope: RopeScaling,
  ) {
    this.key = this.keyFor(undefined);
  }

  static async create(device: GPUDevice, dtype: ComputeDtype, rope: RopeScaling): Promise<RopeTable> {
    const { invFreq, attentionFactor } = ropeTables(rope);
    return new RopeTable(await Rope.create(device, dtype, { invFreq, attentionFactor }), rope);
  }

  /**
   * Before a forward call of positions [start, seqLen): switches the table if it changes.
   * Returns true when the keys already cached must be rotated again: Phi-3's generate drops
   * its cache when longrope switches tables (Phi3ForCausalLM.prepare_inputs_for_generation),
   * so its next call prefills the whole sequence with the new table. A call from position
   * 0 starts a new sequence: a dynamic table starts over too (within one sequence this is
   * transformers' stateful update; across sequences it does not leak one's length into
   * the next).
   */
  update(start: number, seqLen: number): boolean {
    if (this.rope.type === 'dynamic') this.seqLen = ropeTableSeqLen(this.rope, start === 0 ? undefined : this.seqLen, seqLen);
    else if (this.rope.type === 'longrope') this.seqLen = seqLen;
    else return false;
    const key = this.keyFor(this.seqLen);
    if (key === this.key) return false;
    this.key = key;
    this.op.setInvFreq(ropeTables(this.rope, this.seqLen).invFreq);
    return this.rope.type === 'longrope' && start > 0;
  }

  /** Whether update(start, seqLen) would ask for the cached keys to be rotated again (it changes nothing). */
  wouldRerotate(start: number, seqLen: number): boolean {
    return this.rope.type === 'longrope' && start > 0 && this.keyFor(seqLen) !== this.key;
  }

  /** What decides the table: the dynamic length, or longrope's short/long choice. */
  private keyFor(seqLen: number | undefined): string {
    if (this.rope.type === 'longrope') return seqLen !== undefined && seqLen > this.rope.originalMaxPositionEmbeddings ? 'long' : 'short';
    return String(seqLen);
  }

  destroy(): void {
    this.op.destroy();
  }
}

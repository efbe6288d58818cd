// Launcher of shaders/attention.wgsl: causal GQA attention of T query rows, row r at its
// step slot s_r and position p_r, over the keys 0 ..= p_r of cache slot s_r (see
// kv-store.ts for how they get there). The caches are (slots, nKvHeads, maxSeq, headDim).
//
//   prepare()        prefill: one flash-attention dispatch, sized for the step's maxRows;
//                    a block of query rows shares its K/V reads (rows of one slot, e.g.
//                    a prompt chunk). Rows of other slots in the same pass work too (a
//                    block straddling slots reads each slot's keys in turn).
//   prepareDecode()  few rows, each its own sequence (one per active slot): flash-
//                    decoding, the keys cut in splits of DECODE_SPLIT_KEYS (pass 1, SPLIT
//                    variant) merged by `combine` (pass 2); one plain dispatch when the
//                    cache is no longer than one split. A block per token (its heads of
//                    one kv head, padded), so each row's work is bounded by its own
//                    position, not the pass's largest.
//
// Per-call values — the row count T and each row's slot and position — come from the pass's Step
// (src/gpu/step.ts), written once per call and shared by every layer; the Params hold only
// what prepare() fixes. Bind groups and dispatch sizes never change: the dispatch covers
// maxRows queries and every split up to `maxSeq`; workgroups past this call's rows or
// their keys exit at once (~µs each). Positions need not be consecutive: a block bounds its
// keys by the smallest and largest position of its rows.
//
// Options in the shape (fixed per prepared op): `scale` (default headDim^-0.5), `softcap`
// (Gemma 2's attn_logit_softcapping) and `window` (sliding window), each off by default;
// softcap and window pick shader variants (SOFTCAP, WINDOW), so the default path does no
// extra work. Attention.create(…, { softcap, window }) compiles those variants ahead;
// otherwise prepare() builds a missing one on first use (synchronously, once).
//
// Supported: headDim a multiple of 4 up to 4 · ATTENTION_WORKGROUP (256); nHeads a multiple
// of nKvHeads. Anything else is refused with SHAPE_MISMATCH.

import { ParamsLayout } from '../gpu/params.js';
import type { PipelineSpec } from '../gpu/pipeline-cache.js';
import type { Step } from '../gpu/step.js';
import {
  ATTENTION_FEATURE_SETS,
  type AttentionKernel,
  compileAttentionVariants,
  createDecodeScratch,
  decodeSplits,
  pipelineOnce,
  prepareAttention,
} from './attention-common.js';
import { type ComputeDtype, dtypeFlags, type PreparedOp } from './op.js';

/**
 * Threads per workgroup; a tile is 4 keys per thread. P·V puts one thread on each vec4 of
 * headDim (for 4 rows), so headDim ≤ 4 · this.
 */
export const ATTENTION_WORKGROUP = 64;
/** Query rows per workgroup at most: 8 (headDim ≤ 128), 4 (256). */
export const ATTENTION_MAX_ROWS = 8;
/** Rows each P·V thread accumulates in registers: fixed in the shader (o0 … o3). */
export const ROWS_PER_THREAD = 4;
// Workgroup memory: 4 KiB queries (4 · 64 vec4) + 8 KiB scores (8 rows × 256 keys) + 0.6 KiB
// softmax state < 16 KiB, WebGPU's default limit, so every adapter runs it.

/**
 * Keys per split of flash-decoding: one tile (4 keys per thread). Decode at context 2048
 * with 8 kv heads → 8 splits × 8 heads = 64 workgroups: enough to fill a GPU, and few
 * partials (splits · nHeads · headDim f32) to merge.
 */
export const DECODE_SPLIT_KEYS = 256;

const PARAMS = new ParamsLayout([
  ['n_heads', 'u32'],
  ['group', 'u32'], // nHeads / nKvHeads
  ['head_vecs', 'u32'], // headDim / 4
  ['max_seq', 'u32'],
  ['n_kv_heads', 'u32'],
  ['block_rows', 'u32'], // query rows (token, head) per workgroup (attentionRows)
  ['token_rows', 'u32'], // block rows per token: group (packed) or group padded to whole blocks
  ['split_keys', 'u32'], // keys per split; maxSeq when unsplit
  ['scale', 'f32'], // 1 / sqrt(headDim), or shape.scale
  ['softcap', 'f32'], // SOFTCAP variant: the cap (0 otherwise, unused)
  ['window', 'u32'], // WINDOW variant: the window (0 otherwise, unused)
] as const);

/** The shape an op is prepared for. */
export interface AttentionShape {
  readonly nHeads: number;
  readonly nKvHeads: number;
  readonly headDim: number;
  /** Positions the cache holds per head. */
  readonly maxSeq: number;
  /** Sequences the cache holds, each its own (nKvHeads, maxSeq, headDim) (default 1). */
  readonly slots?: number;
  /** Scores are (q · k) · scale. Default headDim^-0.5 (Gemma: query_pre_attn_scalar^-0.5). */
  readonly scale?: number;
  /**
   * Gemma 2's attn_logit_softcapping: scores = tanh(scores / softcap) · softcap, after the
   * scale and before the mask and softmax (transformers' eager_attention_forward). null or
   * undefined: none.
   */
  readonly softcap?: number | null;
  /**
   * Sliding window: the query at position p sees keys at positions k with
   * p − window < k ≤ p (transformers' masking_utils.sliding_window_overlay:
   * `kv_idx > q_idx - sliding_window`, and'ed with the causal mask). null or undefined:
   * none; a window ≥ maxSeq masks nothing and runs the plain variant.
   */
  readonly window?: number | null;
}

/** The caller's buffers, all in the compute dtype, and the pass's step. */
export interface AttentionBuffers {
  /** Rows, slots and positions of each call; q and out hold its maxRows rows. */
  readonly step: Step;
  readonly q: GPUBuffer; // (maxRows, nHeads, headDim)
  readonly kCache: GPUBuffer; // (slots, nKvHeads, maxSeq, headDim)
  readonly vCache: GPUBuffer; // (slots, nKvHeads, maxSeq, headDim)
  readonly out: GPUBuffer; // (maxRows, nHeads, headDim)
}

/** A prepared attention: query row r (< step.rows) at step.row[r].position over keys 0 ..= that position of slot step.row[r].slot. */
export type AttentionOp = PreparedOp;

/** f32 scratch of flash-decoding's partials; one can serve every layer (they run in order). */
export interface DecodeScratch {
  readonly o: GPUBuffer; // (splits, rows, nHeads, headDim) f32
  readonly ml: GPUBuffer; // (splits, rows, nHeads) vec2 f32
  destroy(): void;
}

/**
 * Query rows per workgroup for `rowCount` rows (tokens · group) of a head size: as many as
 * the P·V threads cover (4 rows per thread, one thread per vec4 of headDim), in multiples
 * of 4, no more than needed.
 */
export function attentionRows(headDim: number, rowCount: number): number {
  const fit = Math.min(ATTENTION_MAX_ROWS, ROWS_PER_THREAD * Math.floor(ATTENTION_WORKGROUP / (headDim / 4)));
  return Math.min(fit - (fit % ROWS_PER_THREAD), Math.ceil(rowCount / ROWS_PER_THREAD) * ROWS_PER_THREAD);
}

/** plain: prefill or unsplit decode; runs: plain whose blocks may straddle slots (RUNS); split, combine: flash-decoding's passes. */
type Kind = 'plain' | 'runs' | 'split' | 'combine';

/** The score options that pick a variant (combine depends on the window only). */
export interface AttentionFeatures {
  softcap?: boolean;
  window?: boolean;
}

/** What Attention.create compiles ahead: the score options, and `slots` for prefill over a cache of several slots (the RUNS variants). */
export interface AttentionOptions extends AttentionFeatures {
  slots?: boolean;
}

/** Every variant of the shader, for the test that compiles them all. */
export function attentionVariants(dtypes: readonly ComputeDtype[], features: ReadonlySet<string>): { key: string; spec: PipelineSpec }[] {
  const usable = dtypes.filter((d) => d === 'F32' || features.has('shader-f16'));
  return usable.flatMap((dtype) => [
    ...ATTENTION_FEATURE_SETS.flatMap((f) => (['plain', 'runs', 'split'] as const).map((kind) => variant(dtype, kind, f))),
    ...[false, true].map((window) => variant(dtype, 'combine', { window })),
  ]);
}

function variant(dtype: ComputeDtype, kind: Kind, features: AttentionFeatures = {}): { key: string; spec: PipelineSpec } {
  const name = kind === 'plain' ? 'attention' : `attention_${kind}`;
  // combine never scores: the softcap does not change it.
  const softcap = (features.softcap ?? false) && kind !== 'combine';
  const window = features.window ?? false;
  return {
    key: `${name}_${dtype.toLowerCase()}${softcap ? '_softcap' : ''}${window ? '_window' : ''}_wg${ATTENTION_WORKGROUP}`,
    spec: {
      shader: 'attention',
      flags: [
        ...dtypeFlags(dtype),
        ...(kind === 'split' || kind === 'combine' ? ['SPLIT'] : []),
        ...(kind === 'runs' ? ['RUNS'] : []),
        ...(softcap ? ['SOFTCAP'] : []),
        ...(window ? ['WINDOW'] : []),
      ],
      constants: {
        WORKGROUP_SIZE: ATTENTION_WORKGROUP,
        MAX_ROWS: ATTENTION_MAX_ROWS,
      },
      entryPoint: kind === 'combine' ? 'combine' : 'main',
    },
  };
}

export class Attention {
  private constructor(
    private readonly device: GPUDevice,
    readonly dtype: ComputeDtype,
    /** Pipelines by variant key. */
    private readonly pipelines: Map<string, GPUComputePipeline>,
  ) {}

  /**
   * Compiles the plain, split and combine pipelines of `dtype` (F16 needs shader-f16), and
   * ahead of use those of the score options the model will ask for: `softcap: true`
   * compiles the SOFTCAP variants, `window: true` the WINDOW ones (and both, both);
   * `slots: true` the RUNS variants that prepare() uses over a cache of several slots. A
   * variant not compiled here is built by the first prepare() that needs it.
   */
  static async create(device: GPUDevice, dtype: ComputeDtype, options: AttentionOptions = {}): Promise<Attention> {
    if (dtype === 'F16' && !device.features.has('shader-f16')) throw new Error('attention: F16 needs the shader-f16 feature');
    const kinds: Kind[] = ['plain', 'split', 'combine', ...(options.slots ? (['runs'] as const) : [])];
    return new Attention(device, dtype, await compileAttentionVariants(device, options, kinds, (kind, f) => variant(dtype, kind, f)));
  }

  /** The pipeline of a variant; built synchronously (once) if create did not compile it. */
  private pipeline(kind: Kind, features: Required<AttentionFeatures>): GPUComputePipeline {
    return pipelineOnce(this.device, this.pipelines, variant(this.dtype, kind, features));
  }

  /**
   * Prefill: up to the step's maxRows queries per call, at the step's slots and positions.
   * Made for rows of one slot at nearby positions (a prompt chunk), whose blocks share
   * their K/V reads; rows of other slots may follow in the same pass (their blocks read
   * each slot's keys in turn), best kept adjacent per slot.
   */
  prepare(label: string, shape: AttentionShape, buffers: AttentionBuffers): AttentionOp {
    return this.build(label, shape, buffers, false);
  }

  /**
   * Decode: the step's rows, each a sequence of its own (e.g. one per active slot), each
   * over keys 0 ..= its position of its slot. A block per row, so a row's work is bounded
   * by its own position. Splits cover the whole cache, so the dispatch never changes;
   * splits past a block's keys exit at once. `scratch` (decodeScratch, for at least the
   * step's maxRows) may be shared by all layers; without it the op makes its own.
   */
  prepareDecode(label: string, shape: AttentionShape, buffers: AttentionBuffers, scratch?: DecodeScratch): AttentionOp {
    return this.build(label, shape, buffers, true, scratch);
  }

  /** Partials of prepareDecode for `shape` and `rows` query rows: splits · rows · nHeads · (headDim + 2) f32. */
  decodeScratch(label: string, shape: AttentionShape, rows = 1): DecodeScratch {
    return createDecodeScratch(this.device, label, shape, rows, decodeSplits(shape, DECODE_SPLIT_KEYS));
  }

  private build(label: string, shape: AttentionShape, buffers: AttentionBuffers, decode: boolean, scratch?: DecodeScratch): AttentionOp {
    return prepareAttention(this.device, this.kernel, this.dtype, label, shape, buffers, decode, scratch);
  }

  /** This family's kernel for prepareAttention. */
  private readonly kernel: AttentionKernel = {
    maxHeadDim: 4 * ATTENTION_WORKGROUP,
    splitKeys: DECODE_SPLIT_KEYS,
    workgroupSize: ATTENTION_WORKGROUP,
    blockRows: attentionRows,
    params: (label, fixed) => PARAMS.createBuffer(this.device, label, fixed),
    // Unsplit prefill over several slots: a packed block may straddle slots (RUNS); a block
    // per token, or one slot, never does.
    pipeline: (kind, features, decode, shape) => this.pipeline(kind === 'plain' && !decode && (shape.slots ?? 1) > 1 ? 'runs' : kind, features),
  };
}

// Launcher of shaders/attention_tiled.wgsl: the real-GPU ("gpu" family) causal GQA attention,
// a drop-in for Attention (attention.ts, the software-GPU family tuned for lavapipe): the
// same create / prepare / prepareDecode / decodeScratch, the same shapes, buffers, step
// semantics, options and errors, chosen at load by adapter. The shader header explains the
// design (K/V tiles staged in workgroup memory and shared by a block of query rows, a team
// of 4 lanes per dot reduced by subgroup shuffles, online softmax in registers).
//
//   prepare()        prefill: blocks of up to 32 (token, head) rows of one kv head (16 at
//                    headDim 128), sized for the step's maxRows; rows of several slots work
//                    (a block takes its tokens in runs of one slot; no separate variant).
//   prepareDecode()  a block per row (its group of heads, padded), flash-decoding over splits
//                    of TILED_DECODE_SPLIT_KEYS keys merged by `combine`; one plain dispatch
//                    when the cache is no longer than one split.
//
// Tile sizes are Params (runtime), so one pipeline per variant serves every head size; the
// shader's workgroup arrays are sized for the largest: ATTENTION_TILED_WORKGROUP_BYTES,
// which create() checks against the device's maxComputeWorkgroupStorageSize.
//
// Supported: headDim a multiple of 4 up to 256; nHeads a multiple of nKvHeads. Anything
// else is refused with SHAPE_MISMATCH (the same messages as Attention).

import { ParamsLayout } from '../gpu/params.js';
import type { PipelineSpec } from '../gpu/pipeline-cache.js';
import type { AttentionBuffers, AttentionFeatures, AttentionOp, AttentionOptions, AttentionShape, DecodeScratch } from './attention.js';
import {
  ATTENTION_FEATURE_SETS,
  type AttentionKernel,
  compileAttentionVariants,
  createDecodeScratch,
  decodeSplits,
  pipelineOnce,
  prepareAttention,
} from './attention-common.js';
import { type ComputeDtype, dtypeFlags } from './op.js';

/** Invocations per workgroup: 32 teams of 4 lanes; P·V puts one on each (4 rows, vec4 of headDim). */
export const ATTENTION_TILED_WORKGROUP = 128;
/** Query rows per block at most (a softmax team each); fewer where (rows / 4) · headDim / 4 > the workgroup. */
export const ATTENTION_TILED_MAX_ROWS = 32;
/** Keys per K/V tile at most (fewer for large heads, see tiledTileKeys). */
export const ATTENTION_TILED_MAX_TILE_KEYS = 32;
/** vec4s of one staged K or V tile, padding included: 27 keys at headDim 64, 15 at 128, 8 at 256; ≥ 4 · workgroup (the key lanes fold their partial O through it). */
const TILE_VECS = 544;
/** vec4s of the query tile: rows · headDim / 4 ≤ 4 · workgroup. */
const Q_VECS = 4 * ATTENTION_TILED_WORKGROUP;
const MAX_HEAD_DIM = 256;

/**
 * Keys per split of flash-decoding. Decode at context 2048 with 8 kv heads → 16 splits × 8
 * = 128 workgroups, about one per SM/CU of a large GPU; partials stay small (16 · nHeads ·
 * headDim f32 per row).
 */
export const TILED_DECODE_SPLIT_KEYS = 128;

/** Row stride of the probabilities: ≡ 4 (mod 32), so the teams of a warp read different banks. */
const PROBS_STRIDE = ATTENTION_TILED_MAX_TILE_KEYS + 4;

/** Workgroup memory of the kernel (with or without the SUBGROUPS variant's savings). */
export function attentionTiledWorkgroupBytes(subgroups: boolean): number {
  const vec4s = Q_VECS + 2 * TILE_VECS + (subgroups ? 0 : ATTENTION_TILED_WORKGROUP);
  // probs (rows × stride) + 4 per-row arrays, 4 bytes each.
  return 16 * vec4s + 4 * (ATTENTION_TILED_MAX_ROWS * PROBS_STRIDE + 4 * ATTENTION_TILED_MAX_ROWS);
}
/** What create() asks of the device: 32 KiB, desktop GPUs' limit (and lavapipe's); WebGPU's default is 16 KiB. */
export const ATTENTION_TILED_WORKGROUP_BYTES = 32768;

/** Query rows per block for `rowCount` rows (tokens · group) of a head size: a multiple of 4, P·V lanes for all. */
export function tiledRows(headDim: number, rowCount: number): number {
  const fit = Math.min(ATTENTION_TILED_MAX_ROWS, 4 * Math.floor(ATTENTION_TILED_WORKGROUP / (headDim / 4)));
  return Math.min(fit, Math.ceil(rowCount / 4) * 4);
}

/**
 * vec4s per key row of a staged tile: headDim / 4 padded to 4 (mod 8). A score's team reads
 * 4 neighbouring vec4s of its key (16 banks of 4 bytes); the next team's key then starts 16
 * banks on, so the 8 lanes of one 128-bit access phase cover the 32 banks once.
 */
export function tiledTileStride(headDim: number): number {
  const hv = headDim / 4;
  return hv + ((((4 - hv) % 8) + 8) % 8 || 8);
}

/** Keys per staged tile for a head size: as many padded key rows as TILE_VECS holds, ≤ the maximum. */
export function tiledTileKeys(headDim: number): number {
  return Math.min(ATTENTION_TILED_MAX_TILE_KEYS, Math.floor(TILE_VECS / tiledTileStride(headDim)));
}

const PARAMS = new ParamsLayout([
  ['n_heads', 'u32'],
  ['group', 'u32'],
  ['head_vecs', 'u32'],
  ['max_seq', 'u32'],
  ['n_kv_heads', 'u32'],
  ['block_rows', 'u32'],
  ['token_rows', 'u32'],
  ['split_keys', 'u32'],
  ['tile_keys', 'u32'],
  ['tile_stride', 'u32'],
  ['scale', 'f32'],
  ['softcap', 'f32'],
  ['window', 'u32'],
] as const);

/** plain: prefill or unsplit decode; split, combine: flash-decoding's passes. */
type Kind = 'plain' | 'split' | 'combine';

/** Every variant of the shader (subgroup ones where the features have 'subgroups'), for the test that compiles them all. */
export function attentionTiledVariants(dtypes: readonly ComputeDtype[], features: ReadonlySet<string>): { key: string; spec: PipelineSpec }[] {
  const usable = dtypes.filter((d) => d === 'F32' || features.has('shader-f16'));
  const subgroups = features.has('subgroups') ? [false, true] : [false];
  return usable.flatMap((dtype) => [
    ...subgroups.flatMap((sg) => ATTENTION_FEATURE_SETS.flatMap((f) => (['plain', 'split'] as const).map((kind) => variant(dtype, kind, sg, f)))),
    ...[false, true].map((window) => variant(dtype, 'combine', false, { window })),
  ]);
}

function variant(dtype: ComputeDtype, kind: Kind, subgroups: boolean, features: AttentionFeatures): { key: string; spec: PipelineSpec } {
  // combine neither scores nor reduces across lanes: softcap and subgroups do not change it.
  const softcap = (features.softcap ?? false) && kind !== 'combine';
  const sg = subgroups && kind !== 'combine';
  const window = features.window ?? false;
  const name = kind === 'plain' ? 'attention_tiled' : `attention_tiled_${kind}`;
  return {
    key: `${name}_${dtype.toLowerCase()}${sg ? '_sg' : ''}${softcap ? '_softcap' : ''}${window ? '_window' : ''}_wg${ATTENTION_TILED_WORKGROUP}`,
    spec: {
      shader: 'attention_tiled',
      flags: [
        ...dtypeFlags(dtype),
        ...(kind === 'plain' ? [] : ['SPLIT']),
        ...(sg ? ['SUBGROUPS'] : []),
        ...(softcap ? ['SOFTCAP'] : []),
        ...(window ? ['WINDOW'] : []),
      ],
      constants: {
        WORKGROUP_SIZE: ATTENTION_TILED_WORKGROUP,
        MAX_ROWS: ATTENTION_TILED_MAX_ROWS,
        PROBS_STRIDE,
        TILE_VECS,
        Q_VECS,
      },
      entryPoint: kind === 'combine' ? 'combine' : 'main',
    },
  };
}

export class AttentionTiled {
  private constructor(
    private readonly device: GPUDevice,
    readonly dtype: ComputeDtype,
    /** Team reductions by subgroup shuffles (the device has 'subgroups'), else workgroup memory. */
    readonly subgroups: boolean,
    /** Pipelines by variant key. */
    private readonly pipelines: Map<string, GPUComputePipeline>,
  ) {}

  /**
   * Compiles the plain, split and combine pipelines of `dtype` (F16 needs shader-f16) and,
   * ahead of use, those of the score options the model will ask for (`softcap`, `window`);
   * any other is built by the first prepare() that needs it. `slots` is accepted as for
   * Attention and needs nothing here: every block takes its tokens in runs of one slot.
   * Throws when the device allows less workgroup memory than ATTENTION_TILED_WORKGROUP_BYTES.
   */
  static async create(device: GPUDevice, dtype: ComputeDtype, options: AttentionOptions = {}): Promise<AttentionTiled> {
    if (dtype === 'F16' && !device.features.has('shader-f16')) throw new Error('attention_tiled: F16 needs the shader-f16 feature');
    const allowed = device.limits.maxComputeWorkgroupStorageSize;
    if (allowed < ATTENTION_TILED_WORKGROUP_BYTES) {
      throw new Error(`attention_tiled: needs ${ATTENTION_TILED_WORKGROUP_BYTES} bytes of workgroup memory, the device allows ${allowed}; use Attention`);
    }
    const subgroups = device.features.has('subgroups');
    const built = await compileAttentionVariants(device, options, ['plain', 'split', 'combine'] as const, (kind, f) => variant(dtype, kind, subgroups, f));
    return new AttentionTiled(device, dtype, subgroups, built);
  }

  /** The pipeline of a variant; built synchronously (once) if create did not compile it. */
  private pipeline(kind: Kind, features: Required<AttentionFeatures>): GPUComputePipeline {
    return pipelineOnce(this.device, this.pipelines, variant(this.dtype, kind, this.subgroups, features));
  }

  /** Prefill: up to the step's maxRows queries per call, at the step's slots and positions (rows of one slot best adjacent). */
  prepare(label: string, shape: AttentionShape, buffers: AttentionBuffers): AttentionOp {
    return this.build(label, shape, buffers, false);
  }

  /**
   * Decode: the step's rows, each a sequence of its own, each over keys 0 ..= its position
   * of its slot; a block per row. `scratch` (decodeScratch, for at least the step's
   * maxRows) may be shared by all layers; without it the op makes its own.
   */
  prepareDecode(label: string, shape: AttentionShape, buffers: AttentionBuffers, scratch?: DecodeScratch): AttentionOp {
    return this.build(label, shape, buffers, true, scratch);
  }

  /** Partials of prepareDecode for `shape` and `rows` query rows: splits · rows · nHeads · (headDim + 2) f32. */
  decodeScratch(label: string, shape: AttentionShape, rows = 1): DecodeScratch {
    return createDecodeScratch(this.device, label, shape, rows, decodeSplits(shape, TILED_DECODE_SPLIT_KEYS));
  }

  private build(label: string, shape: AttentionShape, buffers: AttentionBuffers, decode: boolean, scratch?: DecodeScratch): AttentionOp {
    return prepareAttention(this.device, this.kernel, this.dtype, label, shape, buffers, decode, scratch);
  }

  /** This family's kernel for prepareAttention: its tile sizes ride in its own Params fields. */
  private readonly kernel: AttentionKernel = {
    maxHeadDim: MAX_HEAD_DIM,
    splitKeys: TILED_DECODE_SPLIT_KEYS,
    workgroupSize: ATTENTION_TILED_WORKGROUP,
    blockRows: tiledRows,
    params: (label, fixed) =>
      PARAMS.createBuffer(this.device, label, { ...fixed, tile_keys: tiledTileKeys(fixed.head_vecs * 4), tile_stride: tiledTileStride(fixed.head_vecs * 4) }),
    pipeline: (kind, features) => this.pipeline(kind, features),
  };
}

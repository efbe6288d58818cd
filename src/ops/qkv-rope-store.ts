// Launcher of shaders/qkv_rope_store.wgsl: the attention block's glue in one dispatch,
// bit-exact with the ops it replaces. For the rows q_proj, k_proj and v_proj wrote (three
// buffers, or views into one joined (T, qDim + 2·kvDim) buffer, [q | k | v] per row):
//   q = rope(q_norm?(q))            → qOut (T, nHeads, headDim)
//   k = rope(k_norm?(k))            → kCache[slot, head, position, :]
//   v                               → vCache[slot, head, position, :]
// where the unfused pass runs rms_norm (q, rows × nHeads rows of headDim) + rms_norm (k)
// + rope + kv_store: 2 to 4 dispatches, and q and k through memory twice more.
//
// The rope is a Rope's (src/ops/rope.ts): its inv_freq buffer is bound, not copied, so
// Rope.setInvFreq (dynamic / longrope tables) reaches this op too; null is a NoPE layer.
// Per call the row count and each row's slot and position come from the pass's Step
// (src/gpu/step.ts); the Params never change after prepare().

import { SluiceError } from '../errors.js';
import { type GpuTensor, singleBuffer } from '../gpu/gpu-tensor.js';
import { workgroups1d } from '../gpu/dispatch.js';
import { ParamsLayout } from '../gpu/params.js';
import { pipelineCache, type PipelineSpec } from '../gpu/pipeline-cache.js';
import { type Step, stepProblem } from '../gpu/step.js';
import { bindBuffers, checkWeight, type ComputeDtype, computeBytes, dtypeFlags, type PreparedOp } from './op.js';
import { RMS_NORM_WORKGROUP } from './rms-norm.js';
import type { Rope } from './rope.js';

/**
 * Invocations per workgroup, each writing two elements of a head (a rotation pair, as
 * rope.wgsl). With qk-norm a workgroup holds whole heads, 512 / nextPow2(headDim) of them
 * (4 at headDim 128), and a head's tree of squares takes 3 barriers (rms_norm.wgsl: 9).
 */
export const QKV_ROPE_STORE_WORKGROUP = 256;
/** Elements of the norm-weight uniform per weight (the shader's NORM_MAX_HEAD_DIM): k_norm's start there. */
const NORM_WEIGHT_SLOT = 256;
/**
 * The largest head the qk-norm variants take (attention's limit too): one slot of the
 * weight uniform; a head's rms_norm then runs in one workgroup of RMS_NORM_WORKGROUP ≥
 * headDim invocations, one square each, the order the shader reproduces; and half of it
 * fits this op's workgroup.
 */
export const QK_NORM_MAX_HEAD_DIM = Math.min(NORM_WEIGHT_SLOT, RMS_NORM_WORKGROUP, 2 * QKV_ROPE_STORE_WORKGROUP);

const PARAMS = new ParamsLayout([
  ['n_heads', 'u32'],
  ['n_kv_heads', 'u32'],
  ['head_dim', 'u32'],
  ['rot_half', 'u32'], // 0: NoPE
  ['attention_factor', 'f32'],
  ['eps', 'f32'],
  ['norm_width', 'u32'], // the next power of two ≥ headDim
  ['max_seq', 'u32'],
  ['slots', 'u32'],
  ['q_offset', 'u32'],
  ['q_stride', 'u32'],
  ['k_offset', 'u32'],
  ['k_stride', 'u32'],
  ['v_offset', 'u32'],
  ['v_stride', 'u32'],
] as const);

export interface QkvRopeStoreOptions {
  /** Per-head RMSNorm of q and k before the rope (Qwen3, Gemma 3), as RmsNorm's options; null/absent: none. */
  qkNorm?: { eps: number; onePlusWeight: boolean } | null;
  /** The ropes this op runs have an attention factor ≠ 1 (Rope's SCALED variant). Default false. */
  scaled?: boolean;
}

export interface QkvRopeStoreShape {
  readonly nHeads: number;
  readonly nKvHeads: number;
  readonly headDim: number;
  /** Positions the cache holds per head. */
  readonly maxSeq: number;
  /** Sequences the cache holds. */
  readonly slots: number;
  /** Rows q, k, v and qOut hold (≥ the step's maxRows). */
  readonly rows: number;
}

/** Rows of a (rows, width) matrix inside a buffer: row t starts at element offset + t·stride. */
export interface RowView {
  readonly buffer: GPUBuffer;
  /** Elements (of the compute dtype) before row 0. */
  readonly offset: number;
  /** Elements from one row to the next (≥ the row's width). */
  readonly stride: number;
}

/** The caller's buffers, all in the compute dtype, and the pass's step. */
export interface QkvRopeStoreBuffers {
  readonly step: Step;
  readonly q: RowView; // (rows, nHeads, headDim), read only
  readonly k: RowView; // (rows, nKvHeads, headDim), read only
  readonly v: RowView; // (rows, nKvHeads, headDim), read only
  readonly qOut: GPUBuffer; // (rows, nHeads, headDim)
  readonly kCache: GPUBuffer; // (slots, nKvHeads, maxSeq, headDim)
  readonly vCache: GPUBuffer; // (slots, nKvHeads, maxSeq, headDim)
  /** (headDim,) each, one chunk: given exactly when the op was created with qkNorm. */
  readonly qNorm?: GpuTensor;
  readonly kNorm?: GpuTensor;
  /** The layer's rope (its table and attention factor), or null for a NoPE layer. */
  readonly rope: Rope | null;
}

type NormKind = 'none' | 'norm' | 'one_plus_w';

/** Every variant of the shader, for the test that compiles them all (no feature beyond shader-f16 used). */
export function qkvRopeStoreVariants(dtypes: readonly ComputeDtype[], _features: ReadonlySet<string> = new Set()): { key: string; spec: PipelineSpec }[] {
  const norms: NormKind[] = ['none', 'norm', 'one_plus_w'];
  return dtypes.flatMap((dtype) => norms.flatMap((norm) => [false, true].map((scaled) => variant(dtype, norm, scaled))));
}

function variant(dtype: ComputeDtype, norm: NormKind, scaled: boolean): { key: string; spec: PipelineSpec } {
  const flags = [...dtypeFlags(dtype), ...(norm === 'none' ? [] : ['NORM']), ...(norm === 'one_plus_w' ? ['ONE_PLUS_WEIGHT'] : []), ...(scaled ? ['SCALED'] : [])];
  return {
    key: `qkv_rope_store_${dtype.toLowerCase()}${norm === 'none' ? '' : `_${norm}`}${scaled ? '_scaled' : ''}_wg${QKV_ROPE_STORE_WORKGROUP}`,
    spec: { shader: 'qkv_rope_store', flags, constants: { WORKGROUP_SIZE: QKV_ROPE_STORE_WORKGROUP } },
  };
}

function fail(label: string, why: string): never {
  throw new SluiceError('SHAPE_MISMATCH', `${label}: qkv_rope_store ${why}`);
}

/**
 * Throws unless qOut (rows, nHeads, headDim) and the caches (slots, nKvHeads, maxSeq,
 * headDim) are large enough, u32-indexable, distinct, and none of them is an input
 * (qkv_rope_store's and the ROPE_STORE gemv's outputs).
 */
export function checkRopeStoreOutputs(
  label: string,
  dtype: ComputeDtype,
  shape: QkvRopeStoreShape,
  buffers: { readonly qOut: GPUBuffer; readonly kCache: GPUBuffer; readonly vCache: GPUBuffer },
  inputs: readonly GPUBuffer[],
): void {
  const { nHeads, nKvHeads, headDim, maxSeq, slots, rows } = shape;
  const outputs = { qOut: [buffers.qOut, rows * nHeads], kCache: [buffers.kCache, slots * nKvHeads * maxSeq], vCache: [buffers.vCache, slots * nKvHeads * maxSeq] } as const;
  for (const [name, [buffer, headRows]] of Object.entries(outputs)) {
    const need = headRows * headDim * computeBytes(dtype);
    if (buffer.size < need) fail(label, `${name} holds ${buffer.size} bytes, needs ${need}`);
    if (headRows * headDim > 2 ** 32 - 1) fail(label, `${name} has more elements than u32 indexes`);
    if (inputs.includes(buffer)) fail(label, `${name} is also an input (WebGPU forbids a buffer bound both read and read-write)`);
  }
  if (new Set([buffers.qOut, buffers.kCache, buffers.vCache]).size !== 3) fail(label, 'qOut, kCache and vCache must be distinct buffers');
}

/** The rope's half rotary dim, once the rope fits heads of headDim, the step, and an op compiled with or without SCALED. */
export function checkRopeFits(label: string, rope: Rope, headDim: number, step: Step, scaled: boolean): number {
  if (rope.rotaryDim > headDim) fail(label, `rope's rotary dim ${rope.rotaryDim} exceeds headDim ${headDim}`);
  // Rope compiles SCALED exactly when the factor is not 1 in f32; so must this op, or it
  // would drop the factor (or multiply by 1, rounding differently from nothing).
  const ropeScaled = Math.fround(rope.attentionFactor) !== 1;
  if (ropeScaled !== scaled) fail(label, `rope's attention factor is ${rope.attentionFactor}: create the op with scaled: ${ropeScaled}`);
  // f32(position) must be exact: positions below 2^24, as Rope.
  if (step.positions > 2 ** 24) fail(label, `step ${step.label} allows positions up to ${step.positions}, rope takes [0, 2^24)`);
  return rope.rotaryDim / 2;
}

export class QkvRopeStore {
  private constructor(
    private readonly device: GPUDevice,
    private readonly pipeline: GPUComputePipeline,
    readonly dtype: ComputeDtype,
    readonly qkNorm: { readonly eps: number; readonly onePlusWeight: boolean } | null,
    readonly scaled: boolean,
  ) {}

  static async create(device: GPUDevice, dtype: ComputeDtype, options: QkvRopeStoreOptions = {}): Promise<QkvRopeStore> {
    const qkNorm = options.qkNorm ?? null;
    if (qkNorm && !(qkNorm.eps >= 0 && Number.isFinite(qkNorm.eps))) throw new Error(`qkv_rope_store: eps must be a finite number ≥ 0, got ${qkNorm.eps}`);
    const scaled = options.scaled ?? false;
    const norm: NormKind = qkNorm === null ? 'none' : qkNorm.onePlusWeight ? 'one_plus_w' : 'norm';
    const { key, spec } = variant(dtype, norm, scaled);
    return new QkvRopeStore(device, await pipelineCache(device).get(key, spec), dtype, qkNorm && { ...qkNorm }, scaled);
  }

  /**
   * One dispatch for the step's rows (it covers maxRows rows; rows past the call's exit):
   * row r's q heads normed and rotated into qOut row r, its k heads normed, rotated and
   * stored, and its v heads stored, at cache slot step.row[r].slot, position
   * step.row[r].position. Nothing else in the caches is written. The norm weights are
   * copied here, once, into a uniform the op owns (they never change after load).
   */
  prepare(label: string, shape: QkvRopeStoreShape, buffers: QkvRopeStoreBuffers): PreparedOp {
    const { nHeads, nKvHeads, headDim, maxSeq, slots, rows } = shape;
    const { step, rope } = buffers;
    for (const [name, v] of Object.entries({ nHeads, nKvHeads, headDim, maxSeq, slots, rows })) {
      if (!Number.isInteger(v) || v < 1) fail(label, `${name} = ${v} is not a positive integer`);
    }
    // An invocation writes two elements of a head (a rotation pair, or two past the rotary dim).
    if (headDim % 2 !== 0) fail(label, `needs an even headDim, got ${headDim}`);
    if (this.qkNorm && headDim > QK_NORM_MAX_HEAD_DIM) fail(label, `with qkNorm takes heads up to ${QK_NORM_MAX_HEAD_DIM}, got headDim ${headDim}`);
    const problem = stepProblem(step, rows, maxSeq, slots);
    if (problem) fail(label, problem);
    const bytes = computeBytes(this.dtype);
    const views = { q: [buffers.q, nHeads * headDim], k: [buffers.k, nKvHeads * headDim], v: [buffers.v, nKvHeads * headDim] } as const;
    for (const [name, [view, width]] of Object.entries(views)) {
      if (!Number.isInteger(view.offset) || view.offset < 0) fail(label, `${name} offset ${view.offset} is not an integer ≥ 0`);
      if (!Number.isInteger(view.stride) || view.stride < width) fail(label, `${name} stride ${view.stride} is not an integer ≥ its row width ${width}`);
      const end = view.offset + (rows - 1) * view.stride + width;
      if (view.buffer.size < end * bytes) fail(label, `${name} holds ${view.buffer.size} bytes, ${rows} rows of ${width} at offset ${view.offset}, stride ${view.stride} ${this.dtype} need ${end * bytes}`);
      if (end > 2 ** 32 - 1) fail(label, `${name} spans more elements than u32 indexes`);
    }
    checkRopeStoreOutputs(label, this.dtype, shape, buffers, [buffers.q.buffer, buffers.k.buffer, buffers.v.buffer]);
    const rotHalf = rope ? checkRopeFits(label, rope, headDim, step, this.scaled) : 0;
    const heads = nHeads + nKvHeads;
    if (rows * heads * headDim > 2 ** 32 - 1) fail(label, `(${rows}, ${heads}, ${headDim}) has more elements than u32 indexes`);
    // qk-norm: rms_norm's leaves that are not all 0, the next power of two ≥ headDim
    const normWidth = 2 ** Math.ceil(Math.log2(headDim));
    const normWeights = this.normWeights(label, headDim, buffers);
    const values = {
      n_heads: nHeads,
      n_kv_heads: nKvHeads,
      head_dim: headDim,
      rot_half: rotHalf,
      attention_factor: rope?.attentionFactor ?? 1,
      eps: this.qkNorm?.eps ?? 0,
      norm_width: normWidth,
      max_seq: maxSeq,
      slots,
      q_offset: buffers.q.offset,
      q_stride: buffers.q.stride,
      k_offset: buffers.k.offset,
      k_stride: buffers.k.stride,
      v_offset: buffers.v.offset,
      v_stride: buffers.v.stride,
    };
    const params = PARAMS.createBuffer(this.device, label, values);
    // The rope's own table buffer, so its setInvFreq reaches this op (Rope keeps the field
    // private; TypeScript lets an index reach it). A NoPE layer reads no inv_freq
    // (rot_half = 0), but the binding needs a buffer: the step's.
    const invFreq = rope ? rope.invFreqBuffer : step.buffer;
    const entries = [params, step.buffer, buffers.q.buffer, buffers.k.buffer, buffers.v.buffer, buffers.qOut, buffers.kCache, buffers.vCache, invFreq];
    const bindGroup = bindBuffers(this.device, this.pipeline, label, normWeights ? [...entries, normWeights] : entries);
    // One invocation per unit (two elements); with qk-norm, whole heads per workgroup, each
    // in a segment of normWidth / 2 invocations.
    const maxGroups = this.device.limits.maxComputeWorkgroupsPerDimension;
    const workgroups = this.qkNorm
      ? workgroups1d(step.maxRows * heads, QKV_ROPE_STORE_WORKGROUP / (normWidth / 2), maxGroups)
      : workgroups1d((step.maxRows * heads * headDim) / 2, QKV_ROPE_STORE_WORKGROUP, maxGroups);
    return {
      label,
      dispatches: [{ label, pipeline: this.pipeline, bindGroup, workgroups }],
      destroy: () => {
        params.destroy();
        normWeights?.destroy();
      },
    };
  }

  /**
   * The uniform of q_norm's and k_norm's weights (the shader's layout: q's at element 0,
   * k's at NORM_WEIGHT_SLOT), copied on the queue, so after every earlier upload; or null
   * without qkNorm.
   */
  private normWeights(label: string, headDim: number, buffers: QkvRopeStoreBuffers): GPUBuffer | null {
    const { qNorm, kNorm } = buffers;
    if (!this.qkNorm) {
      if (qNorm || kNorm) fail(label, 'was created without qkNorm but is given norm weights');
      return null;
    }
    if (!qNorm || !kNorm) fail(label, 'was created with qkNorm and needs qNorm and kNorm');
    checkWeight(label, qNorm, this.dtype, [headDim]);
    checkWeight(label, kNorm, this.dtype, [headDim]);
    const bytes = computeBytes(this.dtype);
    const weights = this.device.createBuffer({ label: `${label}.norm_weight`, size: 2 * NORM_WEIGHT_SLOT * bytes, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    // headDim is even: whole 4-byte words, as copies move
    const encoder = this.device.createCommandEncoder({ label: `${label}.norm_weight` });
    encoder.copyBufferToBuffer(singleBuffer(qNorm), 0, weights, 0, headDim * bytes);
    encoder.copyBufferToBuffer(singleBuffer(kNorm), 0, weights, NORM_WEIGHT_SLOT * bytes, headDim * bytes);
    this.device.queue.submit([encoder.finish()]);
    return weights;
  }
}

// Launcher of shaders/rope.wgsl: rotary position embedding (HF Llama, rotate-half) applied
// in place to Q and K. A Rope takes a precomputed inv_freq table and the attention factor
// that scales cos and sin; model/rope-scaling.ts computes both from config.json (ropeTables,
// every rope type), and Rope.setInvFreq swaps the table when it changes with the sequence
// length. prepare()'s headDim may exceed the table's rotary dim (partial rotary: the rest
// passes through).
//
// Per call: the row count and each row's position come from the pass's Step
// (src/gpu/step.ts, binding 1), written once per call for every layer. Everything else is
// built once in prepare(): the Params never change.

import { workgroups1d } from '../gpu/dispatch.js';
import { ParamsLayout } from '../gpu/params.js';
import { pipelineCache, type PipelineSpec } from '../gpu/pipeline-cache.js';
import type { Step } from '../gpu/step.js';
import { bindBuffers, type ComputeDtype, computeBytes, dtypeFlags, type PreparedOp } from './op.js';

/** Invocations per workgroup; one invocation rotates one pair (i, i + rotaryDim/2). */
export const ROPE_WORKGROUP = 256;

const PARAMS = new ParamsLayout([
  ['n_heads', 'u32'], // Q heads per row
  ['n_kv_heads', 'u32'], // K heads per row
  ['head_dim', 'u32'], // elements per head (row stride of a head)
  ['rot_half', 'u32'], // rotaryDim / 2 = inv_freq's length
  ['attention_factor', 'f32'], // SCALED variant: cos, sin × this
] as const);

/** Every variant of the shader, for the test that compiles them all (no feature beyond shader-f16 used). */
export function ropeVariants(dtypes: readonly ComputeDtype[], _features: ReadonlySet<string> = new Set()): { key: string; spec: PipelineSpec }[] {
  return dtypes.flatMap((dtype) => [false, true].map((scaled) => variant(dtype, scaled)));
}

function variant(dtype: ComputeDtype, scaled: boolean): { key: string; spec: PipelineSpec } {
  return {
    key: `rope_${dtype.toLowerCase()}${scaled ? '_scaled' : ''}_wg${ROPE_WORKGROUP}`,
    spec: { shader: 'rope', flags: [...dtypeFlags(dtype), ...(scaled ? ['SCALED'] : [])], constants: { WORKGROUP_SIZE: ROPE_WORKGROUP } },
  };
}

/** A Rope's table: rope-scaling.ts's ropeTables(rope) gives both fields. */
export interface RopeOptions {
  /** inv_freq, rotaryDim / 2 f32 entries (rotaryDim = 2 · invFreq.length ≤ the head size). */
  invFreq: Float32Array;
  /**
   * cos and sin are multiplied by this (transformers: `cos = emb.cos() * attention_scaling`,
   * in f32). Default 1, which compiles the variant without the multiply.
   */
  attentionFactor?: number;
  label?: string;
}

export interface RopeShape {
  nHeads: number;
  nKvHeads: number;
  /**
   * Elements per head, the row stride of a head in q and k (default: the rotary dim,
   * 2 · invFreq.length). Larger: partial rotary, only the first rotaryDim elements of each
   * head rotate (pairs (i, i + rotaryDim/2)), the rest pass through unchanged.
   */
  headDim?: number;
}

/** The caller's buffers, in the compute dtype, and the pass's step. */
export interface RopeBuffers {
  /** Rows and positions of each call (below 2^24); q and k hold its maxRows rows. */
  step: Step;
  q: GPUBuffer; // (maxRows, nHeads, headDim) rotated in place
  k: GPUBuffer; // (maxRows, nKvHeads, headDim) rotated in place, distinct from q
}

/** A prepared rope: row r (< step.rows) of q and k rotated to step.row[r].position. */
export type PreparedRope = PreparedOp;

export class Rope {
  private constructor(
    private readonly device: GPUDevice,
    private readonly pipeline: GPUComputePipeline,
    readonly dtype: ComputeDtype,
    /** The rotary dim, 2 · invFreq.length: prepare()'s default head size. */
    readonly headDim: number,
    /** The table the shader reads, as uploaded. */
    readonly invFreq: Float32Array,
    /** The inv_freq table on the GPU: fused ops (qkv_rope_store) bind it too, so setInvFreq reaches them. */
    readonly invFreqBuffer: GPUBuffer,
    /** cos and sin are multiplied by this (1: the variant without the multiply). */
    readonly attentionFactor: number,
  ) {}

  /** The rotated elements per head: 2 · invFreq.length (= headDim). */
  get rotaryDim(): number {
    return this.headDim;
  }

  /** Compiles the variant and uploads inv_freq once (rotaryDim / 2 f32: 256 bytes for 128). */
  static async create(device: GPUDevice, dtype: ComputeDtype, options: RopeOptions): Promise<Rope> {
    const { invFreq: table } = options;
    if (!(table instanceof Float32Array) || table.length < 1) throw new Error('rope: invFreq must be a Float32Array of rotaryDim / 2 ≥ 1 entries');
    const bad = table.findIndex((x) => !Number.isFinite(x));
    if (bad >= 0) throw new Error(`rope: invFreq[${bad}] = ${table[bad]} is not finite`);
    const attentionFactor = options.attentionFactor ?? 1;
    if (!Number.isFinite(attentionFactor) || attentionFactor <= 0) throw new Error(`rope: attentionFactor must be a positive number, got ${attentionFactor}`);
    const invFreq = table.slice();
    const { key, spec } = variant(dtype, Math.fround(attentionFactor) !== 1);
    const pipeline = await pipelineCache(device).get(key, spec);
    const buffer = device.createBuffer({
      label: `${options.label ?? 'rope'}.inv_freq`,
      size: Math.ceil(invFreq.byteLength / 16) * 16,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
      mappedAtCreation: true,
    });
    new Float32Array(buffer.getMappedRange()).set(invFreq);
    buffer.unmap();
    return new Rope(device, pipeline, dtype, 2 * invFreq.length, invFreq, buffer, attentionFactor);
  }

  /**
   * Rotates q: (rows, nHeads, headDim) and k: (rows, nKvHeads, headDim), both in the
   * compute dtype and distinct buffers, in place, row r at its step position, for the
   * step's rows of each call (the dispatch covers its maxRows). headDim (shape.headDim,
   * default the rotary dim) ≥ rotaryDim: elements past rotaryDim of each head are left as
   * they are.
   */
  prepare(label: string, shape: RopeShape, buffers: RopeBuffers): PreparedRope {
    const { nHeads, nKvHeads } = shape;
    const { step, q, k } = buffers;
    const tokens = step.maxRows;
    const headDim = shape.headDim ?? this.headDim;
    for (const [name, v] of [['nHeads', nHeads], ['nKvHeads', nKvHeads]] as const) {
      if (!Number.isInteger(v) || v < 1) throw new Error(`${label}: rope ${name} must be an integer ≥ 1, got ${v}`);
    }
    if (!Number.isInteger(headDim) || headDim < this.headDim) throw new Error(`${label}: rope headDim must be an integer ≥ the rotary dim ${this.headDim}, got ${headDim}`);
    const rowBytes = headDim * computeBytes(this.dtype);
    for (const [name, buffer, heads] of [['q', q, nHeads], ['k', k, nKvHeads]] as const) {
      const bytes = tokens * heads * rowBytes;
      if (buffer.size < bytes) throw new Error(`${label}: rope ${name} holds ${buffer.size} bytes, (${tokens}, ${heads}, ${headDim}) ${this.dtype} needs ${bytes}`);
    }
    if (q === k) throw new Error(`${label}: rope q and k must be distinct buffers`);
    const threads = tokens * (nHeads + nKvHeads) * (this.headDim / 2);
    if (threads > 2 ** 32 - 1 || tokens * Math.max(nHeads, nKvHeads) * headDim > 2 ** 32 - 1) {
      throw new Error(`${label}: rope (${tokens}, ${nHeads} + ${nKvHeads}, ${headDim}) has more elements than u32 indexes`);
    }
    // f32(position) must be exact: positions below 2^24.
    if (step.positions > 2 ** 24) throw new Error(`${label}: rope step ${step.label} allows positions up to ${step.positions}, rope takes [0, 2^24)`);
    const values = {
      n_heads: nHeads,
      n_kv_heads: nKvHeads,
      head_dim: headDim,
      rot_half: this.headDim / 2,
      attention_factor: this.attentionFactor,
    };
    const params = PARAMS.createBuffer(this.device, label, values);
    const bindGroup = bindBuffers(this.device, this.pipeline, label, [params, step.buffer, q, k, this.invFreqBuffer]);
    const workgroups = workgroups1d(threads, ROPE_WORKGROUP, this.device.limits.maxComputeWorkgroupsPerDimension);
    return {
      label,
      dispatches: [{ label, pipeline: this.pipeline, bindGroup, workgroups }],
      destroy: () => params.destroy(),
    };
  }

  /**
   * Replaces the table (same length) from the next submit on: dynamic and longrope ropes
   * switch tables with the sequence length (model/kernels.ts RopeTable).
   */
  setInvFreq(invFreq: Float32Array): void {
    if (invFreq.length !== this.invFreq.length) throw new Error(`rope: a new inv_freq must have ${this.invFreq.length} entries, got ${invFreq.length}`);
    this.invFreq.set(invFreq);
    this.device.queue.writeBuffer(this.invFreqBuffer, 0, this.invFreq.buffer, this.invFreq.byteOffset, this.invFreq.byteLength);
  }

  /** Frees the inv_freq buffer (prepared ops must be destroyed by their owner). */
  destroy(): void {
    this.invFreqBuffer.destroy();
  }
}

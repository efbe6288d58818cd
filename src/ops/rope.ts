// Launcher of shaders/rope.wgsl: rotary position embedding (HF Llama, rotate-half) applied
// in place to Q and K, plus ropeInvFreq, the inv_freq table of a config's rope scaling.
// A Rope is made from a config (this file computes inv_freq) or from a precomputed table
// with an attention factor (yarn, longrope: the model layer computes them); prepare()'s
// headDim may exceed the table's rotary dim (partial rotary: the rest passes through).
//
// Per token: the position of the first row is the Params field `start`, which the caller
// rewrites with PreparedRope.setPositions(start) before submitting (a queue.writeBuffer of
// 32 bytes, ordered with the submit). Everything else is built once in prepare().

import { workgroups1d } from '../gpu/dispatch.js';
import { ParamsLayout } from '../gpu/params.js';
import { pipelineCache, type PipelineSpec } from '../gpu/pipeline-cache.js';
import { bindBuffers, type ComputeDtype, computeBytes, dtypeFlags, type PreparedOp } from './op.js';

/** Invocations per workgroup; one invocation rotates one pair (i, i + rotaryDim/2). */
export const ROPE_WORKGROUP = 256;

const PARAMS = new ParamsLayout([
  ['tokens', 'u32'], // T
  ['n_heads', 'u32'], // Q heads per row
  ['n_kv_heads', 'u32'], // K heads per row
  ['head_dim', 'u32'], // elements per head (row stride of a head)
  ['start', 'u32'], // position of row 0 (rewritten per token)
  ['rot_half', 'u32'], // rotaryDim / 2 = inv_freq's length
  ['attention_factor', 'f32'], // SCALED variant: cos, sin × this
] as const);

/** The rope part of a model config, with config.json's names in camelCase. */
export interface RopeConfig {
  /** head_dim, or hidden_size / num_attention_heads. */
  headDim: number;
  /** rope_theta (HF's default: 10000). */
  ropeTheta: number;
  /** config.json's `rope_scaling` as it is (snake_case keys), or null/undefined for none. */
  ropeScaling?: Readonly<Record<string, unknown>> | null;
}

/** The rope types ropeInvFreq implements; anything else is refused by name. */
export const SUPPORTED_ROPE_TYPES = ['default', 'linear', 'llama3'] as const;

/** A rope_scaling type this runtime does not implement (the model maps it to UNSUPPORTED_ARCH). */
export class UnsupportedRopeError extends Error {
  override readonly name = 'UnsupportedRopeError';
  constructor(readonly ropeType: string) {
    super(`rope_scaling type "${ropeType}" is not supported (supported: ${SUPPORTED_ROPE_TYPES.join(', ')})`);
  }
}

const f = Math.fround;

/**
 * inv_freq[i], i < headDim/2, as HF's rope init functions compute it in float32 (every
 * step rounded to f32 as torch's f32 tensor ops do; a python float meeting an f32 tensor
 * is used as f32; `scalar / tensor` is reciprocal-then-multiply, as torch's __rtruediv__):
 * - default: 1 / theta^(2i / headDim)
 * - linear:  default / factor
 * - llama3:  `_compute_llama3_parameters`: wavelengths longer than original / low_freq_factor
 *   divided by factor, shorter than original / high_freq_factor kept, smoothly
 *   interpolated between. (Their attention_factor is 1, so cos/sin are not scaled.)
 */
export function ropeInvFreq(config: RopeConfig): Float32Array {
  const { headDim, ropeTheta } = config;
  if (!Number.isInteger(headDim) || headDim < 2 || headDim % 2 !== 0) throw new Error(`rope: head_dim must be even and ≥ 2, got ${headDim}`);
  if (!(ropeTheta > 0) || !Number.isFinite(ropeTheta)) throw new Error(`rope: rope_theta must be a positive number, got ${ropeTheta}`);
  const scaling = config.ropeScaling ?? {};
  // HF reads `rope_type`, falling back to the legacy `type`.
  const type = String(scaling.rope_type ?? scaling.type ?? 'default');
  const inv = new Float32Array(headDim / 2);
  // torch.arange(0, dim, 2).float() / dim, then base ** that, then 1.0 / that.
  for (let i = 0; i < inv.length; i++) inv[i] = f(1 / f(f(ropeTheta) ** f((2 * i) / headDim)));
  if (type === 'default') return inv;
  const num = (key: string): number => {
    const v = scaling[key];
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`rope: rope_scaling.${key} must be a number for rope type ${type}, got ${JSON.stringify(v)}`);
    return v;
  };
  if (type === 'linear') {
    const factor = f(num('factor'));
    return inv.map((x) => f(x / factor));
  }
  if (type === 'llama3') {
    const factor = f(num('factor'));
    const low = num('low_freq_factor');
    const high = num('high_freq_factor');
    const old = num('original_max_position_embeddings');
    if (!(high > low)) throw new Error(`rope: llama3 needs high_freq_factor > low_freq_factor, got ${high} and ${low}`);
    const lowWavelen = f(old / low); // python floats, compared with the f32 tensor as f32
    const highWavelen = f(old / high);
    return inv.map((x) => {
      // `2 * math.pi / inv_freq` is torch's __rtruediv__: reciprocal(), then a multiply.
      const wavelen = f(f(1 / x) * f(2 * Math.PI));
      const scaled = wavelen > lowWavelen ? f(x / factor) : x; // inv_freq_llama
      if (wavelen < highWavelen || wavelen > lowWavelen) return scaled;
      // Medium frequencies: smooth = (old / wavelen − low) / (high − low), and
      // (1 − smooth) · inv / factor + smooth · inv.
      const smooth = f(f(f(f(1 / wavelen) * f(old)) - f(low)) / f(high - low));
      return f(f(f(f(1 - smooth) * scaled) / factor) + f(smooth * scaled));
    });
  }
  throw new UnsupportedRopeError(type);
}

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

/** A Rope from a config: ropeInvFreq(config) is its table, attention factor 1. */
export interface RopeFromConfig {
  config: RopeConfig;
  label?: string;
}

/** A Rope from a precomputed table (yarn, longrope, partial rotary: the model computes it). */
export interface RopeFromTable {
  /** inv_freq, rotaryDim / 2 f32 entries (rotaryDim = 2 · invFreq.length ≤ the head size). */
  invFreq: Float32Array;
  /**
   * cos and sin are multiplied by this (transformers: `cos = emb.cos() * attention_scaling`,
   * in f32). Default 1, which compiles the variant without the multiply.
   */
  attentionFactor?: number;
  label?: string;
}

export type RopeOptions = RopeFromConfig | RopeFromTable;

export interface RopeShape {
  /** Rows of Q and K prepared for: the dispatch size (setPositions may lower it). */
  tokens: number;
  nHeads: number;
  nKvHeads: number;
  /**
   * Elements per head, the row stride of a head in q and k (default: the rotary dim,
   * 2 · invFreq.length). Larger: partial rotary, only the first rotaryDim elements of each
   * head rotate (pairs (i, i + rotaryDim/2)), the rest pass through unchanged.
   */
  headDim?: number;
  /** Position of row 0 until setPositions changes it (default 0). */
  start?: number;
}

/** A prepared rope whose positions the caller moves every token. */
export interface PreparedRope extends PreparedOp {
  /**
   * Rows [0, tokens) get positions [start, start + tokens) from the next submit on;
   * tokens defaults to (and may not exceed) the prepared count.
   */
  setPositions(start: number, tokens?: number): void;
}

export class Rope {
  private constructor(
    private readonly device: GPUDevice,
    private readonly pipeline: GPUComputePipeline,
    readonly dtype: ComputeDtype,
    /** The rotary dim, 2 · invFreq.length: prepare()'s default head size. */
    readonly headDim: number,
    /** The table the shader reads, as uploaded. */
    readonly invFreq: Float32Array,
    private readonly invFreqBuffer: GPUBuffer,
    /** cos and sin are multiplied by this (1: the variant without the multiply). */
    readonly attentionFactor: number,
  ) {}

  /** The rotated elements per head: 2 · invFreq.length (= headDim). */
  get rotaryDim(): number {
    return this.headDim;
  }

  /**
   * Compiles the variant and uploads inv_freq once (rotaryDim / 2 f32: 256 bytes for 128),
   * from a config ({ config }) or a precomputed table ({ invFreq, attentionFactor }).
   */
  static async create(device: GPUDevice, dtype: ComputeDtype, options: RopeOptions): Promise<Rope> {
    let invFreq: Float32Array;
    let attentionFactor = 1;
    if ('config' in options && options.config) invFreq = ropeInvFreq(options.config);
    else {
      const table = options as RopeFromTable;
      if (!(table.invFreq instanceof Float32Array) || table.invFreq.length < 1) throw new Error('rope: invFreq must be a Float32Array of rotaryDim / 2 ≥ 1 entries');
      const bad = table.invFreq.findIndex((x) => !Number.isFinite(x));
      if (bad >= 0) throw new Error(`rope: invFreq[${bad}] = ${table.invFreq[bad]} is not finite`);
      attentionFactor = table.attentionFactor ?? 1;
      if (!Number.isFinite(attentionFactor) || attentionFactor <= 0) throw new Error(`rope: attentionFactor must be a positive number, got ${attentionFactor}`);
      invFreq = table.invFreq.slice();
    }
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
   * Rotates q: (tokens, nHeads, headDim) and k: (tokens, nKvHeads, headDim), both in the
   * compute dtype and distinct buffers, in place, row r at position start + r. headDim
   * (shape.headDim, default the rotary dim) ≥ rotaryDim: elements past rotaryDim of each
   * head are left as they are.
   */
  prepare(label: string, shape: RopeShape, q: GPUBuffer, k: GPUBuffer): PreparedRope {
    const { tokens, nHeads, nKvHeads } = shape;
    const headDim = shape.headDim ?? this.headDim;
    for (const [name, v] of [['tokens', tokens], ['nHeads', nHeads], ['nKvHeads', nKvHeads]] as const) {
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
    const check = (start: number, rows: number): void => {
      if (!Number.isInteger(rows) || rows < 1 || rows > tokens) throw new Error(`${label}: rope tokens must be 1..${tokens} (prepared), got ${rows}`);
      // f32(start + row) must be exact: positions below 2^24.
      if (!Number.isInteger(start) || start < 0 || start + rows > 2 ** 24) throw new Error(`${label}: rope positions [${start}, ${start + rows}) out of range [0, 2^24)`);
    };
    check(shape.start ?? 0, tokens);
    const values = {
      tokens,
      n_heads: nHeads,
      n_kv_heads: nKvHeads,
      head_dim: headDim,
      start: shape.start ?? 0,
      rot_half: this.headDim / 2,
      attention_factor: this.attentionFactor,
    };
    const params = PARAMS.createBuffer(this.device, label, values);
    const bindGroup = bindBuffers(this.device, this.pipeline, label, [params, q, k, this.invFreqBuffer]);
    const workgroups = workgroups1d(threads, ROPE_WORKGROUP, this.device.limits.maxComputeWorkgroupsPerDimension);
    return {
      label,
      dispatches: [{ label, pipeline: this.pipeline, bindGroup, workgroups }],
      setPositions: (start: number, rows = tokens) => {
        check(start, rows);
        PARAMS.write(this.device, params, { ...values, start, tokens: rows });
      },
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

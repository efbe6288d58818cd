// Launcher of shaders/embedding.wgsl: out (tokens, hidden) = rows of a (vocab, hidden)
// table for token ids, the table possibly row-chunked (a Llama-3 table is 128256 × 4096:
// 1 GiB in f16, 8 chunks at lavapipe's 128 MiB binding limit).
//
// Per token: the ids live in a small u32 buffer the caller owns and rewrites (or the
// sampler writes on the GPU, so the sampled id never has to come back to the host), or in
// a range of one (the model's: its pass's step, src/gpu/step.ts, so the ids and the rows
// are one write); the prepared op itself never changes. An id ≥ vocab gives a row of zeros
// (not clamped: a bad id then shows as a zero row rather than as a plausible token, and
// nothing is read outside the table). With options.scale (Gemma: x = embed(ids) · √hidden) each row is
// multiplied by the scale rounded to the compute dtype, as transformers' Gemma builds
// `normalizer = torch.tensor(hidden_size**0.5, dtype=hidden_states.dtype)`.

import type { GpuTensor } from '../gpu/gpu-tensor.js';
import { workgroups1d } from '../gpu/dispatch.js';
import { ParamsLayout } from '../gpu/params.js';
import { pipelineCache, type PipelineSpec } from '../gpu/pipeline-cache.js';
import { bindBuffers, type BufferResource, checkWeight, type ComputeDtype, computeBytes, dtypeFlags, isBinding, type PreparedOp } from './op.js';

/**
 * Invocations per workgroup; one workgroup copies one token's row (hidden / WORKGROUP
 * elements each), so a chunk that does not hold the id skips one workgroup per token.
 * Napkin math: decode (1 token, hidden 4096, f16) copies 8 KiB in 8 dispatches (8 chunks)
 * of one workgroup: ≈ 8 × 50 µs on lavapipe, dispatch overhead only on a real GPU.
 */
export const EMBEDDING_WORKGROUP = 256;

const PARAMS = new ParamsLayout([
  ['tokens', 'u32'], // T
  ['hidden', 'u32'], // elements per row
  ['first_row', 'u32'], // vocab id of the chunk's row 0
  ['rows', 'u32'], // rows in the chunk
  ['zero_past', 'u32'], // 1 on the last chunk: ids ≥ vocab get zeros
  ['scale', 'f32'], // SCALE variant: the multiplier in the compute dtype (1 otherwise, unused)
] as const);

export interface EmbeddingOptions {
  /**
   * Multiply each row by this (Gemma: √hidden_size). It is first rounded to the compute
   * dtype (to f16 under F16), as torch makes it a tensor of the activations' dtype; the
   * product is rounded once. Default: none (a plain copy).
   */
  scale?: number;
}

/**
 * x rounded to the nearest f16 value (ties to even), straight from the double as torch's
 * `torch.tensor(x, dtype=torch.float16)` does. Past f16's range: ±Infinity.
 */
export function roundToF16(x: number): number {
  if (!Number.isFinite(x) || x === 0) return x;
  const a = Math.abs(x);
  if (a >= 65520) return Math.sign(x) * Infinity; // 65504 + half an ulp (32) rounds up
  let e = Math.max(-14, Math.floor(Math.log2(a)));
  if (e > -14 && 2 ** e > a) e--; // log2's rounding near a power of two
  if (2 ** (e + 1) <= a) e++;
  const ulp = 2 ** (e - 10); // f16: 10 fraction bits; subnormals share 2^-24
  const q = a / ulp; // exact: a power-of-two scaling
  let n = Math.floor(q);
  const rest = q - n;
  if (rest > 0.5 || (rest === 0.5 && n % 2 === 1)) n++;
  return Math.sign(x) * n * ulp;
}

/** Every variant of the shader, for the test that compiles them all (no feature beyond shader-f16 used). */
export function embeddingVariants(dtypes: readonly ComputeDtype[], _features: ReadonlySet<string> = new Set()): { key: string; spec: PipelineSpec }[] {
  return dtypes.flatMap((dtype) => [false, true].map((scaled) => variant(dtype, scaled)));
}

function variant(dtype: ComputeDtype, scaled: boolean): { key: string; spec: PipelineSpec } {
  return {
    key: `embedding_${dtype.toLowerCase()}${scaled ? '_scaled' : ''}_wg${EMBEDDING_WORKGROUP}`,
    spec: { shader: 'embedding', flags: [...dtypeFlags(dtype), ...(scaled ? ['SCALE'] : [])], constants: { WORKGROUP_SIZE: EMBEDDING_WORKGROUP } },
  };
}

/** The embedding scale as a value of the compute dtype (torch: a tensor of hidden_states' dtype); 1 without one. */
export function embeddingScale(label: string, dtype: ComputeDtype, options: EmbeddingOptions): number {
  if (options.scale !== undefined && !Number.isFinite(options.scale)) throw new Error(`${label}: embedding scale must be a finite number, got ${options.scale}`);
  const scale = options.scale === undefined ? 1 : dtype === 'F16' ? roundToF16(options.scale) : Math.fround(options.scale);
  if (!Number.isFinite(scale)) throw new Error(`${label}: embedding scale ${options.scale} overflows ${dtype}`);
  return scale;
}

/**
 * Throws unless `ids` (a buffer, or a range of one such as a step's ids) holds `tokens` u32
 * at an offset the device can bind, and `out` (tokens, hidden) in `dtype`, with u32 indexes.
 */
export function checkGatherBuffers(device: GPUDevice, label: string, dtype: ComputeDtype, tokens: number, hidden: number, ids: BufferResource, out: GPUBuffer): void {
  const { buffer, offset = 0, size } = isBinding(ids) ? ids : { buffer: ids, size: undefined };
  const align = device.limits.minStorageBufferOffsetAlignment;
  // Checked here: a bad range is otherwise a validation error far from its cause.
  if (!Number.isInteger(offset) || offset < 0 || offset % align !== 0) throw new Error(`${label}: embedding ids offset ${offset} is not a multiple of ${align} (minStorageBufferOffsetAlignment)`);
  const bytes = size ?? buffer.size - offset;
  if (bytes < 0 || offset + bytes > buffer.size) throw new Error(`${label}: embedding ids range [${offset}, ${offset + bytes}) is past the end of ${buffer.label || 'its buffer'} (${buffer.size} bytes)`);
  if (bytes < tokens * 4) throw new Error(`${label}: embedding ids holds ${bytes} bytes, ${tokens} u32 need ${tokens * 4}`);
  const outBytes = tokens * hidden * computeBytes(dtype);
  if (out.size < outBytes) throw new Error(`${label}: embedding out holds ${out.size} bytes, (${tokens}, ${hidden}) ${dtype} needs ${outBytes}`);
  if (tokens * hidden > 2 ** 32 - 1) throw new Error(`${label}: embedding (${tokens}, ${hidden}) has more elements than u32 indexes`);
}

export class Embedding {
  private constructor(
    private readonly device: GPUDevice,
    private readonly pipeline: GPUComputePipeline,
    private readonly scaledPipeline: GPUComputePipeline,
    readonly dtype: ComputeDtype,
  ) {}

  /** Compiles the plain and the scaled variant (both small). */
  static async create(device: GPUDevice, dtype: ComputeDtype): Promise<Embedding> {
    const [plain, scaled] = await Promise.all([false, true].map((s) => {
      const { key, spec } = variant(dtype, s);
      return pipelineCache(device).get(key, spec);
    }));
    return new Embedding(device, plain, scaled, dtype);
  }

  /**
   * out: (tokens, hidden) in the compute dtype = table[ids[t]]; ids: (tokens,) u32, the
   * caller's buffer or a range of one (a step's `ids`); table: (vocab, hidden) in the compute dtype, any number of chunks.
   * One dispatch per chunk, in chunk order. options.scale: rows × scale (see EmbeddingOptions).
   */
  prepare(label: string, tokens: number, ids: BufferResource, table: GpuTensor, out: GPUBuffer, options: EmbeddingOptions = {}): PreparedOp {
    const scale = embeddingScale(label, this.dtype, options);
    const pipeline = scale === 1 ? this.pipeline : this.scaledPipeline;
    if (!Number.isInteger(tokens) || tokens < 1) throw new Error(`${label}: embedding tokens must be an integer ≥ 1, got ${tokens}`);
    if (table.shape.length !== 2) throw new Error(`${label}: embedding table ${table.name} must be 2-D (vocab, hidden), got [${table.shape.join(', ')}]`);
    const [vocab, hidden] = table.shape as [number, number];
    checkWeight(label, table, this.dtype, [vocab, hidden]);
    checkGatherBuffers(this.device, label, this.dtype, tokens, hidden, ids, out);

    const workgroups = workgroups1d(tokens, 1, this.device.limits.maxComputeWorkgroupsPerDimension);
    const paramsBuffers: GPUBuffer[] = [];
    const dispatches = table.chunks.map((chunk, i) => {
      const chunkLabel = table.chunks.length === 1 ? label : `${label}.chunk${i}`;
      const params = PARAMS.createBuffer(this.device, chunkLabel, {
        tokens,
        hidden,
        first_row: chunk.firstRow,
        rows: chunk.rows,
        zero_past: i === table.chunks.length - 1 ? 1 : 0,
        scale,
      });
      paramsBuffers.push(params);
      const bindGroup = bindBuffers(this.device, pipeline, chunkLabel, [params, ids, chunk.buffer, out]);
      return { label: chunkLabel, pipeline, bindGroup, workgroups };
    });
    return { label, dispatches, destroy: () => paramsBuffers.forEach((b) => b.destroy()) };
  }
}

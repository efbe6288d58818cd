// Launcher of shaders/qembedding.wgsl: out (tokens, hidden) = dequantized rows of a quantized
// (vocab, hidden) table (src/gpu/quantized-tensor.ts) for token ids, the table possibly
// row-chunked. A tied model's table is also its LM head (QGemv reads it with outF32), so
// quantizing that head means the gather reads the quantized table too: Llama-3.2-1B's
// 128256 × 2048 table is 525 MB in f16, ~148 MB in q4 (G = 32, f16 scales).
//
// Same contract as Embedding (src/ops/embedding.ts): ids in a caller-owned u32 buffer the
// prepared op never changes, one dispatch per chunk, an id ≥ vocab gives a row of zeros, and
// options.scale (Gemma's √hidden) is rounded to the compute dtype first. Rounding: each value
// is the dense shader's arithmetic on the dequantized f32 value s·(q − z) (exact in f32):
// T(f32(value) · scale), the product in f32, one conversion to the compute dtype. So under F32
// it equals Embedding over an F32 table of the dequantized values bit for bit, and under F16
// without a scale it equals Embedding over that table rounded to f16.

import { workgroups1d } from '../gpu/dispatch.js';
import { ParamsLayout } from '../gpu/params.js';
import { pipelineCache, type PipelineSpec } from '../gpu/pipeline-cache.js';
import type { QuantKind, QuantizedTensor } from '../gpu/quantized-tensor.js';
import { checkGatherBuffers, embeddingScale, type EmbeddingOptions } from './embedding.js';
import { bindBuffers, type BufferResource, type ComputeDtype, dtypeFlags, type PreparedOp } from './op.js';
import { checkQuantizedWeight, kindFlags, placeholderZeros } from './qgemv.js';

/**
 * Invocations per workgroup; one workgroup dequantizes one token's row, one packed word (4 or
 * 8 elements) per invocation per step. Napkin math: hidden 2048 is 256 q4 words or 512 q8
 * words, 4 or 8 steps; decode reads ~1.2 KB (q4) of table per chunk holding the id.
 */
export const QEMBEDDING_WORKGROUP = 64;

const PARAMS = new ParamsLayout([
  ['tokens', 'u32'], // T
  ['hidden', 'u32'], // K
  ['first_row', 'u32'], // vocab id of the chunk's row 0
  ['rows', 'u32'], // rows in the chunk
  ['zero_past', 'u32'], // 1 on the last chunk: ids ≥ vocab get zeros
  ['group_size', 'u32'],
  ['scales_f16', 'u32'], // 1: f16 scale pairs
  ['has_zeros', 'u32'], // 1: zero points bound
  ['scale', 'f32'], // the embedding scale in the compute dtype, 1 for none
] as const);

function variant(kind: QuantKind, dtype: ComputeDtype): { key: string; spec: PipelineSpec } {
  return {
    key: `qembedding_${kind}_${dtype.toLowerCase()}_wg${QEMBEDDING_WORKGROUP}`,
    spec: { shader: 'qembedding', flags: [...kindFlags(kind), ...dtypeFlags(dtype)], constants: { WORKGROUP_SIZE: QEMBEDDING_WORKGROUP } },
  };
}

/** Every variant: both kinds × the dtypes given (no feature beyond shader-f16 used). */
export function qembeddingVariants(dtypes: readonly ComputeDtype[], _features: ReadonlySet<string> = new Set()): { key: string; spec: PipelineSpec }[] {
  return (['q8', 'q4'] as const).flatMap((kind) => dtypes.map((dtype) => variant(kind, dtype)));
}

export class QEmbedding {
  private constructor(
    private readonly device: GPUDevice,
    private readonly pipeline: GPUComputePipeline,
    readonly kind: QuantKind,
    readonly dtype: ComputeDtype,
  ) {}

  static async create(device: GPUDevice, kind: QuantKind, dtype: ComputeDtype): Promise<QEmbedding> {
    if (dtype === 'F16' && !device.features.has('shader-f16')) throw new Error(`qembedding: F16 compute needs the device feature 'shader-f16'`);
    const { key, spec } = variant(kind, dtype);
    return new QEmbedding(device, await pipelineCache(device).get(key, spec), kind, dtype);
  }

  /**
   * out: (tokens, hidden) in the compute dtype = dequantized table[ids[t]] (· scale); ids:
   * (tokens,) u32, the caller's buffer or a range of one (a step's `ids`); table: quantized
   * (vocab, hidden) of this op's kind, any chunks and scale storage, with or without zeros.
   * One dispatch per chunk, in order.
   */
  prepare(label: string, tokens: number, ids: BufferResource, table: QuantizedTensor, out: GPUBuffer, options: EmbeddingOptions = {}): PreparedOp {
    const scale = embeddingScale(label, this.dtype, options);
    if (!Number.isInteger(tokens) || tokens < 1) throw new Error(`${label}: embedding tokens must be an integer ≥ 1, got ${tokens}`);
    const [, hidden] = checkQuantizedWeight(label, 'qembedding', table, this.kind);
    checkGatherBuffers(this.device, label, this.dtype, tokens, hidden, ids, out);

    const workgroups = workgroups1d(tokens, 1, this.device.limits.maxComputeWorkgroupsPerDimension);
    const noZeros = placeholderZeros(this.device, label);
    const buffers: GPUBuffer[] = [noZeros];
    const dispatches = table.chunks.map((chunk, i) => {
      const chunkLabel = table.chunks.length === 1 ? label : `${label}.chunk${i}`;
      const params = PARAMS.createBuffer(this.device, chunkLabel, {
        tokens,
        hidden,
        first_row: chunk.firstRow,
        rows: chunk.rows,
        zero_past: i === table.chunks.length - 1 ? 1 : 0,
        group_size: table.groupSize,
        scales_f16: table.scaleDtype === 'F16' ? 1 : 0,
        has_zeros: chunk.zeros ? 1 : 0,
        scale,
      });
      buffers.push(params);
      const bindGroup = bindBuffers(this.device, this.pipeline, chunkLabel, [params, ids, chunk.data, chunk.scales, chunk.zeros ?? noZeros, out]);
      return { label: chunkLabel, pipeline: this.pipeline, bindGroup, workgroups };
    });
    return { label, dispatches, destroy: () => buffers.forEach((b) => b.destroy()) };
  }
}

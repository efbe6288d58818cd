// Launcher of shaders/logprobs.wgsl: for each row that asks, the log-probability of its
// sampled id under the raw logits and its `top` most likely alternatives, as (id, f32)
// records, so a step reads back 8 · (top + 1) bytes for such a row and nothing for the
// others. The shader header has the semantics (vLLM's raw logprobs) and the design.
//
// Per token the caller stages each row's `top` (setRow: a count, or null for none) and
// upload(count) sends them with one writeBuffer; nothing is allocated. decodeLogprobs()
// turns a record read back into the TokenLogprobs a GenerationDelta carries.
//
// Measured on lavapipe (2 cores shared with a loaded machine; fastest of 40 runs), one row:
// vocab 151936: top 0 ~0.4 ms, top 5 ~0.6 ms, top 20 ~2.3 ms; vocab 32000: 0.2 / 0.3 /
// 1.4 ms. Top 20 pays its 20 merge rounds of 6 barriers each, which lavapipe makes dear.

import { ParamsLayout } from '../gpu/params.js';
import { pipelineCache, type PipelineSpec } from '../gpu/pipeline-cache.js';
import { bindBuffers, type ComputeDtype, type PreparedOp } from './op.js';

/** Threads per row: 64 lets each keep a 20-entry list in 16 KB of workgroup memory. */
export const LOGPROBS_WORKGROUP = 64;
/** Most alternatives a row may ask for (OpenAI's top_logprobs limit). */
export const LOGPROBS_TOP_MAX = 20;
/** u32 words of one row's record: (id, logprob) for the sampled id and each alternative. */
export const LOGPROBS_RECORD_WORDS = 2 * (1 + LOGPROBS_TOP_MAX);
/** What a row without logprobs stages. */
const NONE = 0xffffffff;

/** An id and its log-probability under the raw model logits. */
export interface TokenLogprob {
  id: number;
  logprob: number;
}

/** A sampled token's log-probability and the most likely ids at that step (most likely first, ties → lower id). */
export interface TokenLogprobs extends TokenLogprob {
  top: TokenLogprob[];
}

const PARAMS = new ParamsLayout([
  ['n', 'u32'], // logits per row (the vocabulary)
  ['id_base', 'u32'], // element of ids holding row 0's sampled id
] as const);

const VARIANT = {
  key: `logprobs_f32_top${LOGPROBS_TOP_MAX}_wg${LOGPROBS_WORKGROUP}`,
  spec: { shader: 'logprobs', constants: { WORKGROUP_SIZE: LOGPROBS_WORKGROUP, TOP_CAPACITY: LOGPROBS_TOP_MAX } } satisfies PipelineSpec,
};

/** Every variant of the shader: one, as logits are F32 in every compute dtype. */
export function logprobsVariants(_dtypes: readonly ComputeDtype[], _features: ReadonlySet<string>): { key: string; spec: PipelineSpec }[] {
  return [VARIANT];
}

export interface LogprobsBuffers {
  /** (rows, vocab) f32 raw logits, read only. */
  logits: GPUBuffer;
  /** (≥ idIndex + rows,) u32 sampled ids (the sample op's out). */
  ids: GPUBuffer;
  /** Which u32 of ids holds row 0's id. */
  idIndex?: number;
  /** (rows, LOGPROBS_RECORD_WORDS) u32: row r's record at r · LOGPROBS_RECORD_WORDS. */
  out: GPUBuffer;
}

export interface PreparedLogprobs extends PreparedOp {
  readonly rows: number;
  /** Stages row `row`: `top` alternatives (0–LOGPROBS_TOP_MAX) besides the sampled id's own, or null: none. */
  setRow(row: number, top: number | null): void;
  /** Sends rows [0, count) with one writeBuffer; rows ≥ count exit at once. */
  upload(count: number): void;
}

export class Logprobs {
  private constructor(
    private readonly device: GPUDevice,
    private readonly pipeline: GPUComputePipeline,
  ) {}

  static async create(device: GPUDevice): Promise<Logprobs> {
    return new Logprobs(device, await pipelineCache(device).get(VARIANT.key, VARIANT.spec));
  }

  /** One dispatch of `rows` workgroups. Buffers the op makes are freed if preparing fails. */
  prepare(label: string, vocab: number, rows: number, buffers: LogprobsBuffers): PreparedLogprobs {
    const { logits, ids, out } = buffers;
    const idIndex = buffers.idIndex ?? 0;
    if (!(Number.isInteger(vocab) && vocab >= 1 && Number.isInteger(rows) && rows >= 1 && vocab * rows < 2 ** 32)) {
      throw new Error(`${label}: logprobs needs a vocabulary ≥ 1 and rows ≥ 1 with rows · vocab < 2^32, got ${rows} × ${vocab}`);
    }
    if (logits.size < rows * vocab * 4) throw new Error(`${label}: logits hold ${logits.size} B < ${rows} × ${vocab} f32`);
    if (!(Number.isInteger(idIndex) && idIndex >= 0 && ids.size >= (idIndex + rows) * 4)) throw new Error(`${label}: ids (${ids.size} B) has no u32 at ${idIndex}..${idIndex + rows - 1}`);
    if (out.size < rows * LOGPROBS_RECORD_WORDS * 4) throw new Error(`${label}: out holds ${out.size} B < ${rows} records of ${LOGPROBS_RECORD_WORDS * 4} B`);
    const tops = this.device.createBuffer({ label: `${label}.tops`, size: Math.ceil(((1 + rows) * 4) / 16) * 16, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
    let paramsBuffer: GPUBuffer | undefined;
    try {
      paramsBuffer = PARAMS.createBuffer(this.device, label, { n: vocab, id_base: idIndex });
      const staged = new Uint32Array(1 + rows); // struct Tops: count, then one u32 per row
      const bindGroup = bindBuffers(this.device, this.pipeline, label, [paramsBuffer, tops, logits, ids, out]);
      const owned = [paramsBuffer, tops];
      return {
        label,
        rows,
        dispatches: [{ label, pipeline: this.pipeline, bindGroup, workgroups: [rows] }],
        setRow: (row, top) => {
          if (!(Number.isInteger(row) && row >= 0 && row < rows)) throw new Error(`${label}: row ${row} is not in [0, ${rows})`);
          if (top !== null && !(Number.isInteger(top) && top >= 0 && top <= LOGPROBS_TOP_MAX)) throw new Error(`${label}: logprobs top must be in [0, ${LOGPROBS_TOP_MAX}], got ${top}`);
          staged[1 + row] = top ?? NONE;
        },
        upload: (count) => {
          if (!(Number.isInteger(count) && count >= 0 && count <= rows)) throw new Error(`${label}: ${count} rows is not in [0, ${rows}]`);
          staged[0] = count;
          this.device.queue.writeBuffer(tops, 0, staged, 0, 1 + count);
        },
        destroy: () => owned.forEach((b) => b.destroy()),
      };
    } catch (e) {
      tops.destroy();
      paramsBuffer?.destroy();
      throw e;
    }
  }
}

/** Bytes of a row's record that a step must read back for `top` alternatives. */
export function logprobsRecordBytes(top: number): number {
  return 8 * (top + 1);
}

/**
 * A record read back (u32 words from `at`: the sampled id's pair, then `top` pairs) as
 * TokenLogprobs. Alternatives past the vocabulary (a top larger than it) are dropped.
 */
export function decodeLogprobs(words: Uint32Array, at: number, top: number): TokenLogprobs {
  const floats = new Float32Array(words.buffer, words.byteOffset, words.length);
  const alternatives: TokenLogprob[] = [];
  for (let i = 1; i <= top; i++) {
    const id = words[at + 2 * i];
    if (id !== NONE) alternatives.push({ id, logprob: floats[at + 2 * i + 1] });
  }
  return { id: words[at], logprob: floats[at + 1], top: alternatives };
}

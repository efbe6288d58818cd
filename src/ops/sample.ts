// Launcher of shaders/sample.wgsl: one token id per logits row drawn on the GPU (logit bias,
// repetition / frequency / presence penalties, temperature, top-k, top-p, min-p, seeded
// counter-based RNG), written as a u32 per row to a small buffer: the only thing a decode
// step reads back (4 bytes a row). The shader header gives the order and semantics of every
// step and explains the design (one workgroup per row, threshold searches instead of a sort).
//
// prepareRows(): up to `rows` logits rows, one dispatch of one workgroup per row. Per token
// the caller stages each active row (setRow: its request's config, RNG step and history
// length; nothing allocated) and upload(count) writes them all with one writeBuffer; rows
// past count exit at once. Each row reads its own ids from a shared history buffer and its
// own (id, bias) entries from a shared bias buffer (RowPlacement says where); a row staged
// as appending also writes its drawn id into its history, after the ids it read, so a
// decode loop never uploads the id it feeds next. A row staged as masked (constrained
// decoding) draws only ids whose bit is set in its row of the mask buffer, which the
// caller writes; an unmasked row never reads it (bits as before). prepare():
// today's one-row form over the same kernel, bit for bit the draws it always gave.
// The logits buffer is never written; the op owns (or is given) a (rows, vocab) f32 scratch
// and a (rows, vocab) u32 marks buffer.
//
// Measured on lavapipe (2-core CPU, one core per workgroup), per draw, seeded logits with a
// realistic spread: vocab 128256: greedy 0.6–0.8 ms, no filter or min-p only ~0.9 ms, top-k
// 40 ~4.5 ms, top-p 0.9 ~5.4 ms, both ~8.7 ms; vocab 32000: 0.2 / 0.3 / 1.2 / 2.4 / 2.1 ms;
// vocab 256: 0.1–0.3 ms (barriers dominate). Noisy: other work shared the cores.

import { ParamsLayout } from '../gpu/params.js';
import { pipelineCache, type PipelineSpec } from '../gpu/pipeline-cache.js';
import { bindBuffers, type ComputeDtype, type PreparedOp } from './op.js';
import {
  DEFAULT_SAMPLING,
  NO_PENALTIES,
  type PenaltyParams,
  type RowLimits,
  SAMPLE_ROW_BYTES,
  SAMPLE_ROWS_HEADER,
  type SampleRowConfig,
  type SampleStep,
  type SamplingParams,
  writeRow,
} from './sample-params.js';

export { DEFAULT_SAMPLING, NO_PENALTIES, type PenaltyParams, type SampleRowConfig, type SampleStep, type SamplingParams } from './sample-params.js';

/** Threads of the workgroup of each row (WebGPU's default limit is 256); a power of two. */
export const SAMPLE_WORKGROUP = 256;

const PARAMS = new ParamsLayout([
  ['n', 'u32'], // logits per row (the vocabulary)
  ['out_base', 'u32'], // element of out that receives row 0's id
] as const);

const VARIANT = {
  key: `sample_f32_wg${SAMPLE_WORKGROUP}`,
  spec: { shader: 'sample', constants: { WORKGROUP_SIZE: SAMPLE_WORKGROUP } } satisfies PipelineSpec,
};

/** Every variant of the shader: one, as logits are F32 in every compute dtype. */
export function sampleVariants(_dtypes: readonly ComputeDtype[], _features: ReadonlySet<string>): { key: string; spec: PipelineSpec }[] {
  return [VARIANT];
}

export interface SampleBuffers {
  /** (rows, vocab) f32, read only: row r at r · vocab. */
  logits: GPUBuffer;
  /** u32 token ids the penalties see; each row reads [historyBase, historyBase + historyLength), and a row that appends writes the element after. Omitted → no history. */
  history?: GPUBuffer;
  /** (entries,) (id u32, bias f32) pairs; each row reads [biasBase, biasBase + biasCount). Omitted → no bias. */
  bias?: GPUBuffer;
  /** (≥ outIndex + rows,) u32: row r's id lands at outIndex + r. */
  out: GPUBuffer;
  /** Which u32 of out receives row 0 (fixed at prepare time). */
  outIndex?: number;
  /** (rows, vocab) f32 work space to share between prepared ops (dispatches run in order); omitted → the op makes one. */
  scratch?: GPUBuffer;
  /** (rows, vocab) u32 work space (penalty counts) to share likewise; omitted → the op makes one. */
  marks?: GPUBuffer;
  /** (rows, maskWords(vocab)) u32 allowed-token bits of the rows staged as masked; omitted → no row may be. */
  mask?: GPUBuffer;
}

/** u32 words of one row's allowed-token mask: bit j & 31 of word j >> 5 is id j. */
export function maskWords(vocab: number): number {
  return Math.ceil(vocab / 32);
}

/** A prepared draw for up to `rows` rows whose parameters the caller stages per token. */
export interface PreparedSampleRows extends PreparedOp {
  readonly rows: number;
  /**
   * Stages row `row` (checked first; nothing allocated, nothing sent to the GPU yet).
   * `masked`: the row draws only ids allowed by its row of buffers.mask (the caller's to write).
   * `appends`: the drawn id is also written to the history at historyBase + historyLength
   * (the caller's decode feeds it there next, and needs no write of its own); no other row
   * of the dispatch may read that element.
   */
  setRow(row: number, config: SampleRowConfig, step: number, historyLength: number, masked?: boolean, appends?: boolean): void;
  /** Sends rows [0, count) with one writeBuffer, in order with later submits; rows ≥ count exit at once. */
  upload(count: number): void;
}

/** A prepared one-row draw whose Params the caller rewrites per token. */
export interface PreparedSample extends PreparedOp {
  /** Rewrites the row on the queue timeline (in order with submits); validates first. */
  write(params: SamplingParams & Partial<PenaltyParams> & SampleStep): void;
}

export class Sample {
  private constructor(
    private readonly device: GPUDevice,
    private readonly pipeline: GPUComputePipeline,
  ) {}

  /** Logits are F32 in every compute dtype, so there is no dtype to choose. */
  static async create(device: GPUDevice): Promise<Sample> {
    return new Sample(device, await pipelineCache(device).get(VARIANT.key, VARIANT.spec));
  }

  /** One dispatch of `rows` workgroups. Buffers the op makes are freed if preparing fails. */
  prepareRows(label: string, vocab: number, rows: number, buffers: SampleBuffers): PreparedSampleRows {
    const { logits, out } = buffers;
    const outIndex = buffers.outIndex ?? 0;
    const rowFloats = vocab * rows;
    // Counts are summed as f32 in the shader: exact below 2^24.
    if (!(Number.isInteger(vocab) && vocab >= 1 && vocab < 2 ** 24)) throw new Error(`${label}: sample needs a vocabulary in [1, 2^24), got ${vocab}`);
    if (!(Number.isInteger(rows) && rows >= 1 && rowFloats < 2 ** 32)) throw new Error(`${label}: sample needs 1 ≤ rows with rows · vocab < 2^32, got ${rows} rows of ${vocab}`);
    if (logits.size < rowFloats * 4) throw new Error(`${label}: logits hold ${logits.size} B < ${rows} × ${vocab} f32`);
    if (!(Number.isInteger(outIndex) && outIndex >= 0 && out.size >= (outIndex + rows) * 4)) {
      throw new Error(`${label}: out (${out.size} B) has no u32 at indices ${outIndex}..${outIndex + rows - 1}`);
    }
    if (buffers.mask && buffers.mask.size < rows * maskWords(vocab) * 4) {
      throw new Error(`${label}: mask holds ${buffers.mask.size} B < ${rows} × ${maskWords(vocab)} u32`);
    }
    for (const name of ['scratch', 'marks'] as const) {
      const b = buffers[name];
      if (b && b.size < rowFloats * 4) throw new Error(`${label}: ${name} holds ${b.size} B < ${rows} × ${vocab} × 4`);
    }
    const owned: GPUBuffer[] = [];
    const make = (name: string, size: number, usage = GPUBufferUsage.STORAGE): GPUBuffer => {
      const buffer = this.device.createBuffer({ label: `${label}.${name}`, size: Math.max(16, Math.ceil(size / 16) * 16), usage });
      owned.push(buffer);
      return buffer;
    };
    try {
      const history = buffers.history ?? make('history', 16); // never read: historyLength 0
      const bias = buffers.bias ?? make('bias', 16); // never read: biasCount 0
      const scratch = buffers.scratch ?? make('scratch', rowFloats * 4); // (rows, vocab) f32
      const marks = buffers.marks ?? make('marks', rowFloats * 4); // (rows, vocab) u32
      const mask = buffers.mask ?? make('mask', 16); // never read: no row is masked
      const limits: RowLimits = {
        historyCapacity: buffers.history ? Math.floor(history.size / 4) : 0,
        biasCapacity: buffers.bias ? Math.floor(bias.size / 8) : 0,
        mask: buffers.mask !== undefined,
      };
      const paramsBuffer = PARAMS.createBuffer(this.device, label, { n: vocab, out_base: outIndex });
      owned.push(paramsBuffer);
      const rowsBytes = SAMPLE_ROWS_HEADER + rows * SAMPLE_ROW_BYTES;
      const rowsBuffer = make('rows', rowsBytes, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST); // struct Rows, count 0 until upload
      const staged = new ArrayBuffer(rowsBytes); // reused every token
      const view = new DataView(staged);
      const bindGroup = bindBuffers(this.device, this.pipeline, label, [paramsBuffer, rowsBuffer, logits, history, bias, scratch, marks, out, mask]);
      return {
        label,
        rows,
        dispatches: [{ label, pipeline: this.pipeline, bindGroup, workgroups: [rows] }],
        setRow: (row, config, step, historyLength, masked = false, appends = false) => {
          if (!(Number.isInteger(row) && row >= 0 && row < rows)) throw new Error(`${label}: row ${row} is not in [0, ${rows})`);
          writeRow(view, row, config, step, historyLength, limits, label, masked, appends);
        },
        upload: (count) => {
          if (!(Number.isInteger(count) && count >= 0 && count <= rows)) throw new Error(`${label}: ${count} rows is not in [0, ${rows}]`);
          view.setUint32(0, count, true);
          this.device.queue.writeBuffer(rowsBuffer, 0, staged, 0, SAMPLE_ROWS_HEADER + count * SAMPLE_ROW_BYTES);
        },
        destroy: () => owned.forEach((b) => b.destroy()),
      };
    } catch (e) {
      owned.forEach((b) => b.destroy());
      throw e;
    }
  }

  /** One row: `params` are the initial values (write() changes them). */
  prepare(label: string, vocab: number, buffers: SampleBuffers, params: SamplingParams & Partial<PenaltyParams> & SampleStep): PreparedSample {
    const op = this.prepareRows(label, vocab, 1, buffers);
    const write = (p: SamplingParams & Partial<PenaltyParams> & SampleStep) => {
      // The whole history is "generated" only for the penalties asked for; prompt ids are the caller's to exclude.
      op.setRow(0, { ...NO_PENALTIES, ...p, historyBase: 0, generatedFrom: 0, biasBase: 0, biasCount: 0 }, p.step, p.historyLength);
      op.upload(1);
    };
    try {
      write(params);
    } catch (e) {
      op.destroy();
      throw e;
    }
    return { label, dispatches: op.dispatches, write, destroy: op.destroy };
  }
}

// Sampling for several sequences at once, on the GPU, after a forward pass that leaves one
// logits row per sequence: each row with its own request's parameters, logit bias, history
// (for the penalties) and RNG stream, in one dispatch, reading back 4 bytes a row plus
// 8 · (top + 1) for a row whose request asked for logprobs. The continuous-batching decode
// step and the one-sequence GpuSampler both run on it.
//
// A slot is a sequence the sampler keeps state for (the KV cache's slot): its history
// ((contextLength,) u32 ids, position = cache position) and its logit bias (up to
// LOGIT_BIAS_MAX entries, uploaded once per request by configure()). A step names, per
// logits row, the slot it samples for, its RNG step and its history length.
//
// A row may carry an allowed-token mask (constrained decoding): the sample kernel then draws
// only the ids it allows. The masks of a step go up in one writeBuffer over the rows from
// the first masked to the last ((rows, ceil(vocab / 32)) u32; 19 KB a row for 150k ids);
// a step with no masked row sends nothing more.
//
// The id a row draws is the id its sequence feeds next, at the history position right
// after the ids the row penalised: the kernel writes it there itself (each row "appends"),
// and remember() of that id at that position writes nothing. So a decode loop that
// remembers every id it feeds uploads only the ids it did not sample on the GPU (a prompt's,
// one the caller forces). The rows of one step must be distinct slots (a slot's history
// takes one drawn id a step).
//
// Per step on the host: one writeBuffer for the rows (a second when a row wants logprobs,
// another when a row is masked), one mapAsync; no allocation but what mapping returns
// (its promise, the mapped range and one view of it) when no row wants logprobs.

import { SluiceError } from '../errors.js';
import { decodeLogprobs, Logprobs, LOGPROBS_RECORD_WORDS, LOGPROBS_TOP_MAX, logprobsRecordBytes, type PreparedLogprobs, type TokenLogprobs } from '../ops/logprobs.js';
import { encodeOp, submitOne } from '../ops/op.js';
import { enterQuiet, isQuietDevice, leaveQuiet, POLL_MS } from '../gpu/quiet-wait.js';
import { maskWords, NO_PENALTIES, type PenaltyParams, type PreparedSampleRows, Sample, type SampleRowConfig, type SamplingParams } from '../ops/sample.js';

/** Most logitBias entries a request may give (OpenAI documents 300; vLLM takes any). */
export const LOGIT_BIAS_MAX = 1024;
/** Most top alternatives `logprobs` may ask for (OpenAI's top_logprobs limit). */
export const LOGPROBS_MAX = LOGPROBS_TOP_MAX;

/** A request's sampling configuration: the kernel's parameters plus OpenAI's options. */
export interface SamplerConfig extends SamplingParams, Partial<PenaltyParams> {
  /** Token id → bias in [−100, 100], added to the logit before everything else. */
  logitBias?: ReadonlyMap<number, number>;
  /** Top alternatives (0–20) to return with each sampled id's logprob; undefined → no logprobs. */
  logprobs?: number;
}

/** What one logits row of a step samples for. */
export interface RowRequest {
  /** The slot (sequence) whose configuration, bias and history the row uses. */
  slot: number;
  /** RNG counter, a u32: same seed and step on the same logits → same id. */
  step: number;
  /** Ids of the slot's history the penalties see (its cache length, the new ids included). */
  historyLength: number;
  /** Allowed ids of this step (bit i & 31 of word i >> 5 = id i), ≥ ceil(vocab / 32) words; absent → all. */
  mask?: Uint32Array;
}

export interface RowSamplerOptions {
  /** (rows, vocab) f32: row i holds the logits the i-th RowRequest of a step samples. */
  logits: GPUBuffer;
  vocab: number;
  /** Most rows in one step. */
  rows: number;
  /** Sequences with their own history and bias (default: rows). */
  slots?: number;
  /** History ids per slot (the model's context length). */
  contextLength: number;
  label?: string;
}

/**
 * Throws USAGE naming the option when an OpenAI-style option is out of its range (the
 * kernel's own parameters are checked by the op, with its label).
 */
export function checkSamplerOptions(o: Partial<SamplerConfig>, vocab: number): void {
  const bad = (what: string) => new SluiceError('USAGE', what);
  for (const key of ['frequencyPenalty', 'presencePenalty'] as const) {
    const v = o[key];
    if (v !== undefined && !(typeof v === 'number' && v >= -2 && v <= 2)) throw bad(`${key} must be a number in [-2, 2], not ${v}`);
  }
  if (o.logitBias !== undefined) {
    if (!(o.logitBias instanceof Map)) throw bad('logitBias must be a Map of token id → bias');
    if (o.logitBias.size > LOGIT_BIAS_MAX) throw bad(`logitBias has ${o.logitBias.size} entries; at most ${LOGIT_BIAS_MAX}`);
    for (const [id, bias] of o.logitBias) {
      if (!(Number.isInteger(id) && id >= 0 && id < vocab)) throw bad(`logitBias: token id ${id} is not in the vocabulary [0, ${vocab})`);
      if (!(typeof bias === 'number' && bias >= -100 && bias <= 100)) throw bad(`logitBias: the bias of token ${id} must be a number in [-100, 100], not ${bias}`);
    }
  }
  const n = o.logprobs;
  if (n !== undefined && !(Number.isInteger(n) && n >= 0 && n <= LOGPROBS_MAX)) throw bad(`logprobs must be a whole number in [0, ${LOGPROBS_MAX}], not ${n}`);
}

const PASS: GPUComputePassDescriptor = { label: 'sampler' }; // made once: nothing per token
const SUBMIT: GPUCommandEncoderDescriptor = { label: 'sampler' };
/** heldAt: the slot's history holds no drawn id the host knows of. */
const NOT_HELD = -1;
/** heldAt: a step that appends to the slot is encoded; its id is known once read back. */
const IN_FLIGHT = -2;
/**
 * Steps that may be encoded before the oldest is read back: a one-sequence decode loop
 * submits step t + 1 (fed on the GPU the id step t draws) before it reads step t
 * (GpuSampler's pass ahead), so each has a readback buffer of its own.
 */
export const MAX_IN_FLIGHT = 2;

/** One encoded step not yet read back: where its results land and what its rows were. */
interface Flight {
  readonly readback: GPUBuffer;
  serial: number; // the step's number, counted from 1 (remember() compares)
  count: number; // rows
  mapBytes: number; // bytes of readback it fills
  readonly rowSlot: Int32Array; // per row: its slot
  readonly rowAppendAt: Int32Array; // per row: the history position its id lands at (NOT_HELD: none)
  readonly rowTop: Int32Array; // per row: top alternatives read back, −1: none
}

export class RowSampler {
  /** Per slot: its request's row configuration (undefined until configured). */
  private readonly configs: (SampleRowConfig | undefined)[];
  /** Per slot: top alternatives its request wants, −1: no logprobs. */
  private readonly slotTop: Int32Array;
  /** (rows,) the last read step's ids (valid in [0, its count)). */
  private readonly ids: Uint32Array;
  /** (rows, LOGPROBS_RECORD_WORDS) the last read step's logprob records (rows that asked). */
  private readonly records: Uint32Array;
  private readonly one = new Uint32Array(1);
  /** Encoded steps not yet read, oldest at firstFlight (a ring of MAX_IN_FLIGHT); each reused. */
  private readonly flights: Flight[];
  private firstFlight = 0;
  private inFlight = 0;
  private serial = 0; // of the last step encoded
  /** The last step read back: its ids and records are the ones kept (logprobsOf). */
  private lastRead: Flight;
  /**
   * Per slot: the history position whose id the kernel wrote and the host read back
   * (heldId), so remembering that id there again writes nothing; NOT_HELD or IN_FLIGHT else.
   */
  private readonly heldAt: Int32Array;
  private readonly heldId: Uint32Array;
  /** Per slot: the serial of the last step encoded when remember() last wrote its history (a step before it must not claim what it appended). */
  private readonly rememberedAfter: Float64Array;
  private readonly idsBytes: number; // where the records start in readback (8-aligned)
  /** (rows, maskWords) staging of the masks of a step, sent with one writeBuffer. */
  private readonly masks: Uint32Array<ArrayBuffer>;
  private readonly maskWords: number;
  /** Host ms the last sampleRows spent copying and uploading masks (0 when no row was masked). */
  lastMaskMs = 0;
  /** Waits poll once a millisecond, not spinning a software GPU's core (quiet-wait.ts). */
  private readonly quiet: boolean;
  private lastReadAt = 0; // when the last readRows returned
  private stepMs = 0; // between the last two reads: a step's time in a decode loop

  private constructor(
    private readonly device: GPUDevice,
    readonly vocab: number,
    readonly rows: number,
    readonly slots: number,
    readonly contextLength: number,
    private readonly sample: PreparedSampleRows,
    private readonly logprobsOp: PreparedLogprobs,
    private readonly buffers: { history: GPUBuffer; bias: GPUBuffer; out: GPUBuffer; records: GPUBuffer; readbacks: GPUBuffer[]; mask: GPUBuffer },
  ) {
    this.maskWords = maskWords(vocab);
    this.masks = new Uint32Array(rows * this.maskWords);
    this.configs = new Array<SampleRowConfig | undefined>(slots).fill(undefined);
    this.slotTop = new Int32Array(slots).fill(-1);
    this.flights = buffers.readbacks.map((readback) => ({
      readback,
      serial: 0,
      count: 0,
      mapBytes: 0,
      rowSlot: new Int32Array(rows),
      rowAppendAt: new Int32Array(rows).fill(NOT_HELD),
      rowTop: new Int32Array(rows).fill(-1),
    }));
    this.lastRead = this.flights[0];
    this.heldAt = new Int32Array(slots).fill(NOT_HELD);
    this.heldId = new Uint32Array(slots);
    this.rememberedAfter = new Float64Array(slots);
    this.ids = new Uint32Array(rows);
    this.records = new Uint32Array(rows * LOGPROBS_RECORD_WORDS);
    this.idsBytes = Math.ceil((rows * 4) / 8) * 8;
    this.quiet = isQuietDevice(device);
  }

  /** Builds the pipelines and buffers once; frees what it made if any step fails. */
  static async create(device: GPUDevice, options: RowSamplerOptions): Promise<RowSampler> {
    const { logits, vocab, rows, contextLength } = options;
    const slots = options.slots ?? rows;
    const label = options.label ?? 'sampler';
    if (!(Number.isInteger(slots) && slots >= 1 && Number.isInteger(contextLength) && contextLength >= 1)) {
      throw new Error(`${label}: needs slots ≥ 1 and a context length ≥ 1, got ${slots} and ${contextLength}`);
    }
    const [sample, logprobs] = await Promise.all([Sample.create(device), Logprobs.create(device)]);
    const made: { destroy(): void }[] = [];
    const buffer = (name: string, bytes: number, usage: number) => {
      const b = device.createBuffer({ label: `${label}.${name}`, size: Math.max(16, Math.ceil(bytes / 16) * 16), usage });
      made.push(b);
      return b;
    };
    try {
      const S = GPUBufferUsage.STORAGE;
      const history = buffer('history', slots * contextLength * 4, S | GPUBufferUsage.COPY_DST); // (slots, contextLength) u32
      const bias = buffer('bias', slots * LOGIT_BIAS_MAX * 8, S | GPUBufferUsage.COPY_DST); // (slots, LOGIT_BIAS_MAX) (id, f32)
      const out = buffer('out', rows * 4, S | GPUBufferUsage.COPY_SRC); // (rows,) u32 sampled ids
      const records = buffer('records', rows * LOGPROBS_RECORD_WORDS * 4, S | GPUBufferUsage.COPY_SRC); // (rows, record) u32
      const mask = buffer('mask', rows * maskWords(vocab) * 4, S | GPUBufferUsage.COPY_DST); // (rows, ceil(vocab / 32)) u32
      const readbackBytes = Math.ceil((rows * 4) / 8) * 8 + rows * LOGPROBS_RECORD_WORDS * 4;
      const readbacks = Array.from({ length: MAX_IN_FLIGHT }, (_, i) => buffer(`readback${i}`, readbackBytes, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST));
      const sampleOp = sample.prepareRows(label, vocab, rows, { logits, history, bias, out, mask });
      made.push(sampleOp);
      const logprobsOp = logprobs.prepare(`${label}.logprobs`, vocab, rows, { logits, ids: out, out: records });
      made.push(logprobsOp);
      return new RowSampler(device, vocab, rows, slots, contextLength, sampleOp, logprobsOp, { history, bias, out, records, readbacks, mask });
    } catch (e) {
      for (const m of made) m.destroy();
      throw e;
    }
  }

  /**
   * Starts a request in `slot`: its parameters, its logit bias (one writeBuffer) and its
   * logprobs. `generatedFrom`: the history position of its first generated id (where its
   * prompt ends); the frequency and presence penalties count ids from there on.
   */
  configure(slot: number, config: SamplerConfig, generatedFrom: number): void {
    this.checkSlot(slot);
    checkSamplerOptions(config, this.vocab);
    const bias = config.logitBias ?? new Map<number, number>();
    const row: SampleRowConfig = {
      ...NO_PENALTIES,
      temperature: config.temperature,
      topK: config.topK,
      topP: config.topP,
      minP: config.minP,
      repetitionPenalty: config.repetitionPenalty,
      seed: config.seed,
      ...(config.frequencyPenalty !== undefined && { frequencyPenalty: config.frequencyPenalty }),
      ...(config.presencePenalty !== undefined && { presencePenalty: config.presencePenalty }),
      historyBase: slot * this.contextLength,
      generatedFrom,
      biasBase: slot * LOGIT_BIAS_MAX,
      biasCount: bias.size,
    };
    this.sample.setRow(0, row, 0, 0); // checks the parameters now, with the op's label (staged row 0 is rewritten before any upload)
    if (bias.size) {
      const entries = new Uint32Array(2 * bias.size);
      const values = new Float32Array(entries.buffer);
      let i = 0;
      for (const [id, b] of bias) {
        entries[2 * i] = id;
        values[2 * i + 1] = b;
        i++;
      }
      this.device.queue.writeBuffer(this.buffers.bias, slot * LOGIT_BIAS_MAX * 8, entries);
    }
    this.configs[slot] = row;
    this.slotTop[slot] = config.logprobs ?? -1;
  }

  /**
   * Records ids now in `slot`'s cache at positions [start, start + ids.length), for the
   * penalties. One id that the slot's last step drew, at the position the kernel put it
   * (its row's historyLength), is there already: nothing is written.
   */
  remember(slot: number, ids: readonly number[], start: number): void {
    this.checkSlot(slot);
    if (!(Number.isInteger(start) && start >= 0 && start + ids.length <= this.contextLength)) {
      throw new Error(`sampler: ids at [${start}, ${start + ids.length}) do not fit the history of ${this.contextLength}`);
    }
    if (ids.length === 0) return;
    if (ids.length === 1 && this.heldAt[slot] === start && this.heldId[slot] === ids[0]) return; // the decode case
    this.heldAt[slot] = NOT_HELD; // a write may cover it (or land after an append in flight)
    this.rememberedAfter[slot] = this.serial; // steps encoded so far may not claim their appends once read
    const at = (slot * this.contextLength + start) * 4;
    if (ids.length === 1) {
      this.one[0] = ids[0]; // the per-token case: no allocation
      this.device.queue.writeBuffer(this.buffers.history, at, this.one);
    } else this.device.queue.writeBuffer(this.buffers.history, at, new Uint32Array(ids));
  }

  /**
   * Stages and sends the rows (row i samples logits row i for rows[i].slot, distinct slots),
   * then encodes the sampling dispatch, the logprobs dispatch when a row's request wants
   * logprobs, and the copies readRows() maps. Submit the encoder, then call readRows().
   * Each row's id also lands in its slot's history at its historyLength (when that is
   * within the context), where the sequence feeds it next.
   */
  sampleRows(encoder: GPUCommandEncoder, rows: readonly RowRequest[]): void {
    const count = rows.length;
    if (count < 1 || count > this.rows) throw new Error(`sampler: ${count} rows, this sampler takes 1 to ${this.rows}`);
    if (this.inFlight === MAX_IN_FLIGHT) throw new Error(`sampler: ${MAX_IN_FLIGHT} steps encoded and not read back (readRows() first)`);
    const flight = this.flights[(this.firstFlight + this.inFlight) % MAX_IN_FLIGHT];
    let logprobRows = 0;
    let firstMasked = -1;
    let lastMasked = -1;
    let maskMs = 0;
    for (let i = 0; i < count; i++) {
      const { slot, step, historyLength, mask } = rows[i];
      this.checkSlot(slot);
      const config = this.configs[slot];
      if (!config) throw new Error(`sampler: slot ${slot} has no request (configure it first)`);
      if (!(historyLength <= this.contextLength)) throw new Error(`sampler: history length ${historyLength} of slot ${slot} is past its ${this.contextLength} ids`);
      for (let j = 0; j < i; j++) if (flight.rowSlot[j] === slot) throw new Error(`sampler: rows ${j} and ${i} both sample for slot ${slot} (a step takes one row a slot)`);
      if (mask) {
        if (mask.length < this.maskWords) throw new Error(`sampler: the mask of row ${i} has ${mask.length} words; ${this.vocab} ids need ${this.maskWords}`);
        const started = performance.now();
        this.masks.set(mask.length === this.maskWords ? mask : mask.subarray(0, this.maskWords), i * this.maskWords);
        maskMs += performance.now() - started;
        if (firstMasked < 0) firstMasked = i;
        lastMasked = i;
      }
      const appends = historyLength < this.contextLength; // the last position's id is never fed
      this.sample.setRow(i, config, step, historyLength, mask !== undefined, appends);
      flight.rowSlot[i] = slot;
      flight.rowAppendAt[i] = appends ? historyLength : NOT_HELD;
      const top = this.slotTop[slot];
      flight.rowTop[i] = top;
      this.logprobsOp.setRow(i, top < 0 ? null : top);
      if (top >= 0) logprobRows++;
    }
    if (firstMasked >= 0) {
      // Rows in between that are not masked send stale words they never read: still one write.
      const started = performance.now();
      const w = this.maskWords;
      this.device.queue.writeBuffer(this.buffers.mask, firstMasked * w * 4, this.masks, firstMasked * w, (lastMasked - firstMasked + 1) * w);
      maskMs += performance.now() - started;
    }
    this.lastMaskMs = maskMs;
    this.sample.upload(count);
    if (logprobRows) this.logprobsOp.upload(count);
    for (let i = 0; i < count; i++) this.heldAt[flight.rowSlot[i]] = flight.rowAppendAt[i] === NOT_HELD ? NOT_HELD : IN_FLIGHT;
    const pass = encoder.beginComputePass(PASS);
    encodeOp(pass, this.sample);
    if (logprobRows) encodeOp(pass, this.logprobsOp);
    pass.end();
    const { out, records } = this.buffers;
    const { readback } = flight;
    encoder.copyBufferToBuffer(out, 0, readback, 0, count * 4);
    flight.mapBytes = count * 4;
    for (let i = 0; i < count && logprobRows; i++) {
      if (flight.rowTop[i] < 0) continue;
      const at = i * LOGPROBS_RECORD_WORDS * 4;
      const bytes = logprobsRecordBytes(flight.rowTop[i]);
      encoder.copyBufferToBuffer(records, at, readback, this.idsBytes + at, bytes);
      flight.mapBytes = this.idsBytes + at + bytes;
    }
    flight.count = count;
    flight.serial = ++this.serial;
    this.inFlight++;
  }

  /** sampleRows in a command buffer of its own, submitted (after a pass submitted without it). */
  submitRows(rows: readonly RowRequest[]): void {
    const encoder = this.device.createCommandEncoder(SUBMIT);
    this.sampleRows(encoder, rows);
    submitOne(this.device, encoder);
  }

  /**
   * After the submit of sampleRows' encoder: the sampled ids of the oldest step not yet
   * read, in rows [0, count) of the returned array (the sampler's own, overwritten by the
   * next read; nothing allocated).
   */
  async readRows(): Promise<Uint32Array> {
    if (this.inFlight === 0) throw new Error('sampler: readRows() with no step encoded');
    const flight = this.flights[this.firstFlight];
    const { readback, mapBytes, count } = flight;
    if (this.quiet) {
      // With a step queued behind this one the GPU stays busy while the read is late:
      // poll a quarter-step apart (at most QUEUED_POLL_MS), else every POLL_MS.
      enterQuiet(this.inFlight > 1 ? this.stepMs / 4 : POLL_MS); // no closure for quietWait: this runs every token
      try {
        await readback.mapAsync(GPUMapMode.READ, 0, mapBytes);
      } finally {
        leaveQuiet();
      }
    } else await readback.mapAsync(GPUMapMode.READ, 0, mapBytes);
    const mapped = readback.getMappedRange(0, mapBytes);
    this.ids.set(new Uint32Array(mapped, 0, count));
    if (mapBytes > count * 4) {
      const words = mapBytes / 4 - this.idsBytes / 4;
      this.records.set(new Uint32Array(mapped, this.idsBytes, words));
    }
    readback.unmap();
    const now = performance.now();
    this.stepMs = now - this.lastReadAt;
    this.lastReadAt = now;
    this.firstFlight = (this.firstFlight + 1) % MAX_IN_FLIGHT;
    this.inFlight--;
    this.lastRead = flight;
    for (let i = 0; i < count; i++) {
      const slot = flight.rowSlot[i];
      const at = flight.rowAppendAt[i];
      // Remembered over since it was encoded (that write is the truth), or appends nothing.
      if (flight.serial <= this.rememberedAfter[slot] || at === NOT_HELD) continue;
      this.heldAt[slot] = at;
      this.heldId[slot] = this.ids[i];
    }
    return this.ids;
  }

  /** Steps encoded and not yet read back (0 to MAX_IN_FLIGHT). */
  get stepsInFlight(): number {
    return this.inFlight;
  }

  /**
   * Encodes a copy of row `row`'s drawn id (u32) to `target`: after sampleRows in the same
   * encoder, so the next pass can take its token from the GPU (GpuSampler's pass ahead).
   */
  copyDrawn(encoder: GPUCommandEncoder, row: number, target: Readonly<GPUBufferBinding>): void {
    encoder.copyBufferToBuffer(this.buffers.out, row * 4, target.buffer, target.offset ?? 0, 4);
  }

  /** After readRows(): row `row`'s logprobs, or null when its request did not ask. */
  logprobsOf(row: number): TokenLogprobs | null {
    const read = this.lastRead;
    if (!(row >= 0 && row < read.count) || read.rowTop[row] < 0) return null;
    return decodeLogprobs(this.records, row * LOGPROBS_RECORD_WORDS, read.rowTop[row]);
  }

  destroy(): void {
    this.sample.destroy();
    this.logprobsOp.destroy();
    const { readbacks, ...rest } = this.buffers;
    for (const b of [...Object.values(rest), ...readbacks]) b.destroy();
  }

  private checkSlot(slot: number): void {
    if (!(Number.isInteger(slot) && slot >= 0 && slot < this.slots)) throw new Error(`sampler: slot ${slot} is not in [0, ${this.slots})`);
  }
}

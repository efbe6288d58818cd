// The batch scheduler's backend on a LlamaModel with `slots` KV cache slots: prefill
// chunks go straight to the model (no LM head), a decode step is one forward pass over
// its rows with the RowSampler's dispatch in the same command buffer, and one read back
// of 4 bytes a row (plus the logprobs a row asked for). A step with grammar-constrained
// rows submits the pass first, fills their masks on the host while the GPU runs it, then
// submits the sampling (with the masks) on its own: two submits, the mask time hidden
// behind the pass instead of added to it.
//
// Per decode step the sampler's host side is one writeBuffer (its rows) when no row is
// masked or wants logprobs: each row's fed id is remembered for the penalties, but the
// sampler's kernel already put every id it drew where it is fed, so only a sequence's
// first row (its prompt's last id) writes one. Nothing here allocates per step.
//
// A sequence decoding alone goes ahead (decode's `ahead`): its next one-row pass is
// submitted, fed on the GPU the id this step draws, before this step is read back.

import type { TokenLogprobs } from '../ops/logprobs.js';
import type { LlamaModel } from '../model/llama.js';
import { PREFILL_CHUNK } from '../model/llama.js';
import type { BatchBackend, BatchRow } from './batch-scheduler.js';
import { type RowRequest, RowSampler, type SamplerConfig } from './row-sampler.js';

export class ModelBatchBackend implements BatchBackend {
  readonly prefillChunk = PREFILL_CHUNK;
  /** One request object per row, reused every step (nothing allocated per token). */
  private readonly requests: RowRequest[];
  private readonly views: RowRequest[][];
  private readonly one = [0];
  /** Host ms the last decode spent copying and uploading masks: a field, not a getter (a returned float is boxed). */
  lastMaskMs = 0;
  /** The step's requests, for encodeSampling (set before each unmasked decode). */
  private stepRequests: readonly RowRequest[] = [];
  /**
   * What decodeRows encodes after the pass, made once (no closure per token): the sampling,
   * and for a one-row step a copy of the drawn id to where the next one-row pass reads its
   * token (decode's `ahead`).
   */
  private readonly encodeSampling = (encoder: GPUCommandEncoder) => {
    this.sampler.sampleRows(encoder, this.stepRequests);
    if (this.stepRequests.length === 1) this.sampler.copyDrawn(encoder, 0, this.model.decodeIdSlot);
  };
  /** The one-row pass submitted ahead and not yet read (decode's `ahead`): its slot (−1: none), position and RNG step. */
  private aheadSlot = -1;
  private aheadPosition = 0;
  private aheadStep = 0;
  /** The id the last one-row step drew (what a pass ahead was fed). */
  private lastDrawn = -1;

  private constructor(
    readonly model: LlamaModel,
    readonly sampler: RowSampler,
  ) {
    this.requests = Array.from({ length: model.slots }, () => ({ slot: 0, step: 0, historyLength: 0 }));
    // sampleRows takes exactly the step's rows: a prefix view of each length, made once.
    this.views = Array.from({ length: model.slots + 1 }, (_, n) => this.requests.slice(0, n));
  }

  static async create(model: LlamaModel): Promise<ModelBatchBackend> {
    const sampler = await RowSampler.create(model.device, {
      logits: model.logits,
      vocab: model.config.vocabSize,
      rows: model.slots,
      slots: model.slots,
      contextLength: model.contextLength,
    });
    return new ModelBatchBackend(model, sampler);
  }

  get slots(): number {
    return this.model.slots;
  }

  get contextLength(): number {
    return this.model.contextLength;
  }

  get vocabSize(): number {
    return this.model.config.vocabSize;
  }

  begin(slot: number, config: SamplerConfig, promptLength: number): void {
    this.sampler.configure(slot, config, promptLength);
  }

  async prefill(slot: number, ids: readonly number[], start: number): Promise<void> {
    this.sampler.remember(slot, ids, start);
    this.model.prefillSlot(slot, ids, start);
  }

  /**
   * `ahead` (one unmasked row): the scheduler expects that row's sequence to feed the id it
   * draws next, at the next position. Before reading this step back, that pass is
   * submitted, its id copied on the GPU from this step's draw (GpuSampler.next does the
   * same), so the GPU works while the host reads, emits and schedules. A next step that is
   * exactly that row (slot, position, RNG step, the id drawn) finds its pass running;
   * anything else reads the pass ahead back and drops it (its key and value rows lie past
   * what the slot's sequence has fed, and are overwritten when fed).
   */
  async decode(rows: readonly BatchRow[], ahead = false): Promise<Uint32Array> {
    const one = rows.length === 1 && rows[0].mask === undefined ? rows[0] : null;
    const hit = this.aheadSlot >= 0 && one !== null && one.slot === this.aheadSlot && one.position === this.aheadPosition && one.step === this.aheadStep && one.id === this.lastDrawn;
    if (this.aheadSlot >= 0 && !hit) await this.sampler.readRows(); // dropped: read only to keep the sampler's steps in order
    this.aheadSlot = -1;
    this.lastMaskMs = 0;
    if (hit) this.model.recordFed(one.id, one.position); // its pass ran on the GPU's copy of the id
    else if (!this.prepare(rows)) {
      this.stepRequests = this.views[rows.length];
      await this.model.decodeRows(rows, this.encodeSampling);
    } else {
      await this.model.decodeRows(rows); // submitted: the GPU runs the pass while the host fills the masks
      for (let i = 0; i < rows.length; i++) this.requests[i].mask = rows[i].mask?.();
      this.sampler.submitRows(this.views[rows.length]);
      this.lastMaskMs = this.sampler.lastMaskMs;
    }
    if (ahead && one) {
      const request = this.requests[0];
      request.slot = one.slot;
      request.step = one.step + 1;
      request.historyLength = one.position + 2;
      request.mask = undefined;
      this.stepRequests = this.views[1];
      if (this.model.forwardFed(one.position + 1, one.slot, this.encodeSampling)) {
        this.aheadSlot = one.slot;
        this.aheadPosition = one.position + 1;
        this.aheadStep = one.step + 1;
      }
    }
    const ids = await this.sampler.readRows(); // this step's: the oldest in flight
    if (one) this.lastDrawn = ids[0];
    return ids;
  }

  /** The rows' histories and sampling requests, before their pass (inline in decode: no promise of its own); whether a row is masked. */
  private prepare(rows: readonly BatchRow[]): boolean {
    let masked = false;
    for (let i = 0; i < rows.length; i++) {
      const { slot, id, position, step, mask } = rows[i];
      this.one[0] = id;
      this.sampler.remember(slot, this.one, position); // writes nothing when the sampler drew `id` (all but a first row)
      const request = this.requests[i];
      request.slot = slot;
      request.step = step;
      request.historyLength = position + 1;
      request.mask = undefined;
      masked ||= mask !== undefined;
    }
    return masked;
  }

  logprobsOf(row: number): TokenLogprobs | null {
    return this.sampler.logprobsOf(row);
  }

  destroy(): void {
    this.sampler.destroy();
  }
}

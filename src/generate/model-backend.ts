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
  /** What decodeRows encodes after the pass, made once (no closure per token). */
  private readonly encodeSampling = (encoder: GPUCommandEncoder) => this.sampler.sampleRows(encoder, this.stepRequests);

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

  async decode(rows: readonly BatchRow[]): Promise<Uint32Array> {
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
    const requests = this.views[rows.length];
    if (!masked) {
      this.stepRequests = requests;
      await this.model.decodeRows(rows, this.encodeSampling);
      this.lastMaskMs = 0;
      return this.sampler.readRows();
    }
    await this.model.decodeRows(rows); // submitted: the GPU runs the pass while the host fills the masks
    for (let i = 0; i < rows.length; i++) this.requests[i].mask = rows[i].mask?.();
    this.sampler.submitRows(requests);
    this.lastMaskMs = this.sampler.lastMaskMs;
    return this.sampler.readRows();
  }

  logprobsOf(row: number): TokenLogprobs | null {
    return this.sampler.logprobsOf(row);
  }

  destroy(): void {
    this.sampler.destroy();
  }
}

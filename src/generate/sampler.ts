// Sampling on the GPU at the end of each forward pass of one sequence: a RowSampler with
// one row and one slot over the model's logits. The history (for the penalties) lives on the
// GPU, and the host reads back 4 bytes a token (+ 8 · (top + 1) when logprobs are asked).
// Everything is made once per model; a token costs one small write (the row's step and
// history length: the kernel itself puts the id it drew into the history, where the next
// call feeds it) and one small read, and allocates nothing but what mapping the read
// returns, without logprobs.
// A constrained step submits the model's pass alone, fills its allowed-token mask on the
// host while the GPU runs it, then submits the sampling with the mask (ceil(vocab / 32)
// u32): the mask's host time hides behind the pass.

import type { LlamaModel } from '../model/llama.js';
import type { TokenLogprobs } from '../ops/logprobs.js';
import { checkSamplerOptions, type RowRequest, RowSampler, type SamplerConfig } from './row-sampler.js';

export class GpuSampler {
  /** The one row of every step, rewritten in place (no allocation per token). */
  private readonly request: RowRequest = { slot: 0, step: 0, historyLength: 0 };
  private readonly requests: readonly RowRequest[] = [this.request];
  /** False until the request's first next(), which knows where its prompt ends. */
  private started = false;
  /**
   * What forward() runs after the model, made once (no closure per token): the sampling,
   * then a copy of the drawn id to where the next decode pass reads its token, so that
   * pass may be submitted before the id is read back (next()'s `ahead`).
   */
  private readonly encodeSampling = (encoder: GPUCommandEncoder) => {
    this.rows.sampleRows(encoder, this.requests);
    this.rows.copyDrawn(encoder, 0, this.model.decodeIdSlot);
  };
  /** The position of the decode pass submitted ahead and not yet read (−1: none), fed the id last drawn. */
  private aheadAt = -1;
  /** False once something it did not see happened (a new request, a remembered id): it is only read and dropped then. */
  private aheadUsable = false;
  /** The RNG step the pass ahead took: a dropped pass gives it back, so the ids match a sampler that never went ahead. */
  private aheadStep = 0;
  private lastDrawn = -1;

  private constructor(
    private readonly model: LlamaModel,
    private readonly rows: RowSampler,
    private config: SamplerConfig,
  ) {}

  static async create(model: LlamaModel, params: SamplerConfig): Promise<GpuSampler> {
    checkSamplerOptions(params, model.config.vocabSize);
    const rows = await RowSampler.create(model.device, { logits: model.logits, vocab: model.config.vocabSize, rows: 1, contextLength: model.contextLength });
    return new GpuSampler(model, rows, params);
  }

  /** New parameters for the next request (a new seed restarts the RNG stream). Throws USAGE on an option out of range. */
  configure(config: SamplerConfig): void {
    checkSamplerOptions(config, this.model.config.vocabSize);
    this.config = config;
    this.request.step = 0;
    this.started = false;
    this.aheadUsable = false; // a pass still ahead was sampled for the old request: the next call drops it
  }

  /** Records ids now in the cache at positions [start, start + ids.length), for the penalties. */
  remember(ids: readonly number[], start: number): void {
    this.dropAhead(); // it penalised the history before this
    this.rows.remember(0, ids, start);
  }

  /** Marks a pass ahead for dropping and gives back the RNG step it took. */
  private dropAhead(): void {
    if (this.aheadAt >= 0 && this.aheadUsable) this.request.step = this.aheadStep;
    this.aheadUsable = false;
  }

  /**
   * Runs the model on `ids` at `start` with sampling in the same command buffer, and
   * returns the sampled id. The penalties see every id up to and including these; the
   * first call of a request takes `ids` as its prompt (frequency and presence count what
   * comes after). `mask`: draw only the ids the mask it returns allows (bit i & 31 of
   * word i >> 5); called once the pass is submitted.
   *
   * `ahead`: the caller will likely feed the returned id next, at start + ids.length. Before
   * reading this call's id back, the next decode pass is submitted with that id taken on
   * the GPU, so the GPU works while the host reads, decides and encodes (the host's time
   * per token hides behind the pass). The next call that feeds exactly that id there
   * finds its pass done or running; any other call first reads the pass ahead back and
   * drops it (its key and value rows are overwritten when that position is fed again).
   */
  async next(ids: readonly number[], start: number, mask?: () => Uint32Array, ahead = false): Promise<number> {
    const end = start + ids.length;
    const hit = this.aheadAt >= 0 && this.aheadUsable && this.aheadAt === start && ids.length === 1 && ids[0] === this.lastDrawn && !mask;
    if (this.aheadAt >= 0 && !hit) {
      this.dropAhead();
      await this.rows.readRows(); // read only to keep the sampler's steps in order
    }
    this.aheadAt = -1;
    if (hit) {
      this.model.recordFed(ids[0], start); // its pass ran on the GPU's copy of the id
    } else {
      if (!this.started) {
        this.rows.configure(0, this.config, end); // uploads the logit bias once per request
        this.started = true;
      }
      this.rows.remember(0, ids, start); // a decode step's id was drawn here: already in the history, nothing written
      this.request.historyLength = end;
      this.request.mask = undefined;
      if (mask) {
        await this.model.forward(ids, start); // submitted: the GPU runs it while the host fills the mask
        this.request.mask = mask();
        this.rows.submitRows(this.requests);
      } else await this.model.forward(ids, start, this.encodeSampling);
      this.request.step++;
    }
    if (ahead && !mask) {
      this.request.historyLength = end + 1;
      this.request.mask = undefined;
      this.aheadStep = this.request.step;
      if (this.model.forwardFed(end, 0, this.encodeSampling)) {
        this.request.step++;
        this.aheadAt = end;
        this.aheadUsable = true;
      }
    }
    this.lastDrawn = (await this.rows.readRows())[0]; // this call's step: the oldest in flight
    return this.lastDrawn;
  }

  /** Host ms the last next() spent copying and uploading its mask. */
  get lastMaskMs(): number {
    return this.rows.lastMaskMs;
  }

  /** After next(): the sampled token's logprobs when the request asked for them, else null. */
  logprobs(): TokenLogprobs | null {
    return this.rows.logprobsOf(0);
  }

  destroy(): void {
    this.rows.destroy();
  }
}

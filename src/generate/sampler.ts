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
  /** What forward() runs after the model, made once (no closure per token). */
  private readonly encodeSampling = (encoder: GPUCommandEncoder) => this.rows.sampleRows(encoder, this.requests);

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
  }

  /** Records ids now in the cache at positions [start, start + ids.length), for the penalties. */
  remember(ids: readonly number[], start: number): void {
    this.rows.remember(0, ids, start);
  }

  /**
   * Runs the model on `ids` at `start` with sampling in the same command buffer, and
   * returns the sampled id. The penalties see every id up to and including these; the
   * first call of a request takes `ids` as its prompt (frequency and presence count what
   * comes after). `mask`: draw only the ids the mask it returns allows (bit i & 31 of
   * word i >> 5); called once the pass is submitted.
   */
  async next(ids: readonly number[], start: number, mask?: () => Uint32Array): Promise<number> {
    const end = start + ids.length;
    if (!this.started) {
      this.rows.configure(0, this.config, end); // uploads the logit bias once per request
      this.started = true;
    }
    this.remember(ids, start); // a decode step's id was drawn here: already in the history, nothing written
    this.request.historyLength = end;
    this.request.mask = undefined;
    if (mask) {
      await this.model.forward(ids, start); // submitted: the GPU runs it while the host fills the mask
      this.request.mask = mask();
      this.rows.submitRows(this.requests);
    } else await this.model.forward(ids, start, this.encodeSampling);
    this.request.step++;
    return (await this.rows.readRows())[0];
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

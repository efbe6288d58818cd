// One reply's bookkeeping between the sampler and its consumer: each sampled id becomes a
// text delta (incremental detokenizing, never half a UTF-8 character), cut at stop strings
// matched across token boundaries, and the reply ends on an eos id, a stop string or the
// token budget. Shared by every loop that samples (one sequence or a batch of them), so
// they all end replies the same way.

import { SluiceError } from '../errors.js';
import { Detokenizer } from '../text/detokenizer.js';
import { StopMatcher } from '../text/stop.js';
import type { Tokenizer } from '../text/tokenizer.js';
import type { GenerationDelta, StopReason } from './generate.js';

export interface ReplyOptions {
  /** Most tokens to generate (default 256). */
  maxTokens?: number;
  /** Stop strings (need a tokenizer). */
  stop?: readonly string[];
  /** Ids that end the reply (not emitted). */
  eosIds?: readonly number[];
}

/** What one sampled id did to the reply. */
export interface ReplyStep {
  /** The delta to emit (absent: nothing to show, e.g. an eos id). */
  delta?: GenerationDelta;
  /** Set when the reply ends with this id; its id is then not fed back to the model. */
  stop?: StopReason;
}

export class Reply {
  readonly maxTokens: number;
  /** Ids sampled so far (eos included: the sampler produced it). */
  generated = 0;
  private readonly eos: ReadonlySet<number>;
  private readonly detokenizer: Detokenizer | null;
  private readonly stops: StopMatcher | null;

  /** `promptIds`: the ids before the reply (their last few give the detokenizer context). */
  constructor(tokenizer: Tokenizer | undefined, promptIds: readonly number[], options: ReplyOptions) {
    this.maxTokens = options.maxTokens ?? 256;
    if (!Number.isInteger(this.maxTokens) || this.maxTokens < 0) throw new SluiceError('USAGE', `max tokens must be a non-negative integer, not ${this.maxTokens}`);
    if (options.stop?.length && !tokenizer) throw new SluiceError('USAGE', 'stop strings need a tokenizer');
    this.eos = new Set(options.eosIds ?? []);
    this.detokenizer = tokenizer ? new Detokenizer(tokenizer, { skipSpecialTokens: true, context: promptIds.slice(-8) }) : null;
    this.stops = options.stop?.length ? new StopMatcher(options.stop) : null;
  }

  /** True when the budget allows no (more) tokens. */
  get exhausted(): boolean {
    return this.generated >= this.maxTokens;
  }

  /** Takes one sampled id. */
  push(id: number): ReplyStep {
    this.generated++;
    if (this.eos.has(id)) return { stop: 'eos' };
    let text = this.detokenizer ? this.detokenizer.push(id) : '';
    if (this.stops) {
      const r = this.stops.push(text);
      text = r.text;
      if (r.stop) return { delta: text ? { text, ids: [id] } : undefined, stop: 'stop' };
    }
    return { delta: { text, ids: [id] }, stop: this.exhausted ? 'length' : undefined };
  }

  /** The text held back at the end (an incomplete character, a partial stop string), if any. */
  finish(reason: StopReason): GenerationDelta | null {
    if (!this.detokenizer || reason === 'stop') return null;
    let tail = this.detokenizer.flush();
    if (this.stops) tail = this.stops.push(tail).text + this.stops.flush();
    return tail ? { text: tail, ids: [] } : null;
  }
}

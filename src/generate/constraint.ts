// One request's grammar constraint on the host side of constrained decoding: the grammar
// compiled (or checked, when the caller compiled it) against the model's vocabulary, a
// matcher at the start of the reply, and the time spent on it. Each step: fill() the
// allowed-token mask the GPU sampler applies, then accept() the id it drew. The mask makes
// a refused id impossible, so a refusal is a bug (the backend ignored the mask), reported
// as an internal error, never as the user's.
//
// Shared by the batch scheduler and the one-sequence generate() loop, so both constrain
// and end replies the same way.

import { SluiceError } from '../errors.js';
import { CompiledGrammar, compileGrammar, type GrammarMatcher, type GrammarSource, TokenVocabulary } from '../grammar/index.js';
import type { Tokenizer } from '../text/tokenizer.js';

/** What a constrained reply cost on the host. */
export interface GrammarStats {
  /** compileGrammar's wall time (0: the caller passed a CompiledGrammar). */
  compileMs: number;
  /** Host time of the masks: fillMask plus its share of the copy and upload, over the reply. */
  maskMs: number;
  /** Masks filled (one per sampled token). */
  masks: number;
}

export class GrammarConstraint {
  private readonly matcher: GrammarMatcher;
  readonly stats: GrammarStats;

  private constructor(grammar: CompiledGrammar, compileMs: number) {
    this.matcher = grammar.start();
    this.stats = { compileMs, maskMs: 0, masks: 0 };
  }

  /**
   * Compiles `source` against the vocabulary of `tokenizer` padded to the model's
   * `vocabSize` rows (ids the tokenizer lacks never allowed) with the request's eos ids
   * (the vocabulary is built once per tokenizer and cached); a CompiledGrammar must have
   * been compiled for `vocabSize` rows with eos ids among `eosIds`. USAGE when it cannot.
   */
  static create(source: GrammarSource | CompiledGrammar, tokenizer: Tokenizer | undefined | null, vocabSize: number, eosIds: readonly number[]): GrammarConstraint {
    if (source instanceof CompiledGrammar) {
      const { vocab } = source;
      if (vocab.vocabSize !== vocabSize) throw new SluiceError('USAGE', `grammar: compiled for ${vocab.vocabSize} token ids; the model has ${vocabSize}`);
      const stray = vocab.eosIds.find((id) => !eosIds.includes(id));
      if (stray !== undefined) throw new SluiceError('USAGE', `grammar: its eos id ${stray} is not one of the request's eos ids (${eosIds.join(', ') || 'none'})`);
      return new GrammarConstraint(source, 0);
    }
    if (!tokenizer) throw new SluiceError('USAGE', 'grammar: constrained output needs the model\'s tokenizer (tokenizer.json)');
    if (eosIds.length === 0) throw new SluiceError('USAGE', 'grammar: constrained output needs an eos id to end the reply');
    const vocab = TokenVocabulary.fromTokenizer(tokenizer, { vocabSize, eosIds });
    const grammar = compileGrammar(source, vocab);
    return new GrammarConstraint(grammar, grammar.stats.compileMs);
  }

  /** Nothing but eos may follow (or eos was accepted): the reply is complete. */
  get done(): boolean {
    return this.matcher.done;
  }

  /**
   * Fills `mask` (≥ maskWords u32) with the ids allowed next; times it. USAGE when no token
   * can continue the output (a grammar whose next bytes no token of the vocabulary spells).
   */
  fill(mask: Uint32Array): void {
    const started = performance.now();
    this.matcher.fillMask(mask);
    let any = false;
    for (let i = 0; i < mask.length && !any; i++) any = mask[i] !== 0; // stops at the first allowed word
    this.stats.maskMs += performance.now() - started;
    this.stats.masks++;
    if (!any) throw new SluiceError('USAGE', 'grammar: no token of the vocabulary can continue the output here');
  }

  /** Adds host time spent on this request's mask outside fill() (its share of the upload). */
  addMaskTime(ms: number): void {
    this.stats.maskMs += ms;
  }

  /** Advances past the drawn id; throws an internal error when the grammar refuses it. */
  accept(id: number): void {
    if (this.matcher.accept(id)) return;
    throw new Error(`internal error: constrained decoding drew token ${id}, which the grammar does not allow here; the sampler must apply the mask`);
  }
}

// The generation loop: prefill the new tokens, then one forward pass per token with
// sampling on the GPU, as an async iterator of deltas. Text, when a tokenizer is given,
// is detokenized incrementally (never half a UTF-8 character) and cut at stop strings
// matched across token boundaries. The iterator's return value is the run's statistics.
// With options.grammar each step's allowed-token mask is filled on the host and applied by
// the GPU sampler (constraint.ts), as the batch scheduler does.

import { SluiceError } from '../errors.js';
import type { CompiledGrammar, GrammarSource } from '../grammar/index.js';
import type { LlamaModel } from '../model/llama.js';
import type { TokenLogprobs } from '../ops/logprobs.js';
import { DEFAULT_SAMPLING, type SamplingParams } from '../ops/sample.js';
import { Detokenizer } from '../text/detokenizer.js';
import { StopMatcher } from '../text/stop.js';
import type { Tokenizer } from '../text/tokenizer.js';
import { GrammarConstraint, type GrammarStats } from './constraint.js';
import { checkSamplerOptions, type SamplerConfig } from './row-sampler.js';
import type { GpuSampler } from './sampler.js';

export type { TokenLogprob, TokenLogprobs } from '../ops/logprobs.js';
export { LOGIT_BIAS_MAX, LOGPROBS_MAX } from './row-sampler.js';
export type { CompiledGrammar, GrammarSource } from '../grammar/index.js';
export type { GrammarStats } from './constraint.js';

export interface GenerateOptions extends Partial<SamplingParams> {
  /** OpenAI's frequency_penalty, in [−2, 2]: logit −= count · this, where count is how many
   *  times the id was generated so far in this request (vLLM's apply_penalties; not the prompt). */
  frequencyPenalty?: number;
  /** OpenAI's presence_penalty, in [−2, 2]: logit −= this once the id was generated in this request. */
  presencePenalty?: number;
  /** OpenAI's logit_bias: token id → a bias in [−100, 100] added to its logit before every
   *  other step (penalties, temperature, filters); at most LOGIT_BIAS_MAX entries. */
  logitBias?: ReadonlyMap<number, number>;
  /** Log-probabilities of each generated token under the raw model logits (before bias,
   *  penalties and temperature, vLLM's default), plus this many top alternatives (0–20);
   *  undefined → none computed, nothing extra read back. */
  logprobs?: number;
  /** Most tokens to generate (default 256). */
  maxTokens?: number;
  /** Stop strings: generation ends before the first one (needs a tokenizer). */
  stop?: readonly string[];
  /** Ids that end generation (not emitted): the model's eos ids. */
  eosIds?: readonly number[];
  /**
   * Constrained decoding: the reply must match this grammar (a JSON schema, `{ jsonObject:
   * true }`, a regex or GBNF; src/grammar/). A GrammarSource is compiled once per request
   * against the model's vocabulary (the tokenizer's tokens; ids past it and special tokens
   * never allowed) with the request's eos ids; compile errors throw USAGE naming the keyword
   * before any token. A CompiledGrammar is used as is (its vocabSize must be the model's,
   * its eos ids among the request's). Each step the allowed-token bitmask is applied in the
   * GPU sampler before bias, penalties and filters, so no other token is drawn at any
   * temperature; logprobs stay those of the raw logits. The reply ends with stopReason
   * 'eos' when the grammar is complete and nothing else may follow (or the model draws eos
   * where the grammar may end); 'length' can still cut it short. Needs a tokenizer (USAGE).
   */
  grammar?: GrammarSource | CompiledGrammar;
  signal?: AbortSignal;
}

export interface GenerationDelta {
  /** New text (empty while a character or a possible stop string is incomplete). */
  text: string;
  /** The token ids this delta adds. */
  ids: number[];
  /** With options.logprobs: one entry per id of `ids`, in order. */
  logprobs?: TokenLogprobs[];
}

export type StopReason = 'eos' | 'stop' | 'length' | 'abort' | 'context';

export interface GenerationStats {
  promptTokens: number;
  generatedTokens: number;
  /** Time to the first generated token (prefill + one sample). */
  ttftMs: number;
  prefillTokensPerSecond: number;
  decodeTokensPerSecond: number;
  stopReason: StopReason;
  /** Cache positions used after this run (the next turn starts here). */
  position: number;
  /** With options.grammar: compile time and the host time of its masks. */
  grammar?: GrammarStats;
}

export interface GenerateContext {
  model: LlamaModel;
  sampler: GpuSampler;
  tokenizer?: Tokenizer;
}

/**
 * Generates after `promptIds` placed at cache position `start` (the cache before it holds
 * earlier turns). Yields deltas; returns the statistics.
 */
export async function* generate(ctx: GenerateContext, promptIds: readonly number[], start: number, options: GenerateOptions = {}): AsyncGenerator<GenerationDelta, GenerationStats> {
  const { model, sampler, tokenizer } = ctx;
  const maxTokens = options.maxTokens ?? 256;
  if (!Number.isInteger(maxTokens) || maxTokens < 0) throw new SluiceError('USAGE', `max tokens must be a non-negative integer, not ${maxTokens}`);
  if (promptIds.length === 0) throw new SluiceError('USAGE', 'generate: the prompt has no tokens');
  if (options.stop?.length && !tokenizer) throw new SluiceError('USAGE', 'stop strings need a tokenizer');
  if (start + promptIds.length > model.contextLength) {
    throw new SluiceError('USAGE', `the prompt (${promptIds.length} tokens at position ${start}) does not fit the context of ${model.contextLength} tokens`);
  }
  sampler.configure({ ...DEFAULT_SAMPLING, ...definedOnly(options) }); // throws USAGE on an option out of range
  const withLogprobs = options.logprobs !== undefined;
  const eos = new Set(options.eosIds ?? []);
  const vocab = model.config.vocabSize;
  const constraint = options.grammar ? GrammarConstraint.create(options.grammar, tokenizer, vocab, options.eosIds ?? []) : null;
  const mask = new Uint32Array(constraint ? Math.ceil(vocab / 32) : 0);
  const fillMask = constraint ? () => (constraint.fill(mask), mask) : undefined; // called while the GPU runs the pass
  const detokenizer = tokenizer ? new Detokenizer(tokenizer, { skipSpecialTokens: true, context: promptIds.slice(-8) }) : null;
  const stops = options.stop?.length ? new StopMatcher(options.stop) : null;

  const began = performance.now();
  let position = start;
  let generated = 0;
  let firstAt = began;
  let stopReason: StopReason = 'length';
  let pending = promptIds;
  const fed = [0]; // the one id of each decode step, reused (nothing allocated to feed it)
  while (generated < maxTokens) {
    if (options.signal?.aborted) {
      stopReason = 'abort';
      break;
    }
    if (position + pending.length > model.contextLength) {
      stopReason = 'context';
      break;
    }
    // Ahead: the next pass is submitted before this one's id is read (not under a grammar,
    // whose mask needs the id first, nor past the last token asked for).
    const id = await sampler.next(pending, position, fillMask, !constraint && generated + 1 < maxTokens);
    if (constraint) {
      constraint.addMaskTime(sampler.lastMaskMs);
      constraint.accept(id); // the mask made any other id impossible
    }
    const logprobs = withLogprobs ? [sampler.logprobs()!] : undefined; // computed and read back only when asked
    position += pending.length;
    if (generated === 0) firstAt = performance.now();
    generated++;
    if (eos.has(id)) {
      stopReason = 'eos';
      break;
    }
    fed[0] = id;
    pending = fed;
    let text = detokenizer ? detokenizer.push(id) : '';
    if (stops) {
      const r = stops.push(text);
      text = r.text;
      if (r.stop) {
        if (text) yield { text, ids: [id], ...(logprobs && { logprobs }) };
        stopReason = 'stop';
        break;
      }
    }
    yield { text, ids: [id], ...(logprobs && { logprobs }) };
    // A complete grammar allows only eos next: end here rather than spend a pass drawing it.
    if (constraint?.done) {
      stopReason = 'eos';
      break;
    }
  }
  // The last sampled id is not in the cache yet: the next turn's prompt must start with
  // it (or the caller drops it), so `position` counts only what the cache holds.
  if (detokenizer && stopReason !== 'stop') {
    let tail = detokenizer.flush();
    if (stops) tail = stops.push(tail).text + stops.flush();
    if (tail) yield { text: tail, ids: [] };
  }
  const end = performance.now();
  const prefillSeconds = Math.max((firstAt - began) / 1000, 1e-9);
  const decodeSeconds = Math.max((end - firstAt) / 1000, 1e-9);
  return {
    promptTokens: promptIds.length,
    generatedTokens: generated,
    ttftMs: firstAt - began,
    prefillTokensPerSecond: promptIds.length / prefillSeconds,
    decodeTokensPerSecond: generated > 1 ? (generated - 1) / decodeSeconds : 0,
    stopReason,
    position,
    ...(constraint && { grammar: { ...constraint.stats } }),
  };
}

/** Throws USAGE naming the option when an OpenAI-style option is out of its range. */
export function checkSamplingOptions(o: GenerateOptions, vocab: number): void {
  checkSamplerOptions(o, vocab);
}

function definedOnly(o: GenerateOptions): Partial<SamplerConfig> {
  const out: Partial<SamplerConfig> = {};
  for (const key of ['temperature', 'topK', 'topP', 'minP', 'repetitionPenalty', 'seed', 'frequencyPenalty', 'presencePenalty', 'logprobs'] as const) {
    if (o[key] !== undefined) out[key] = o[key];
  }
  if (o.logitBias !== undefined) out.logitBias = o.logitBias;
  return out;
}

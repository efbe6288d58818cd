// Continuous batching: many replies generated at once on one model, each in its own KV
// cache slot. Decode reads every weight once per step whatever the rows, so one pass over
// R sequences costs little more than over one (it is bandwidth-bound).
//
// A step of the loop:
//   1. admit   waiting requests take free slots, each the slot whose cached ids share the
//              longest prefix with its prompt (a chat's next turn finds its own
//              conversation; ties go to the least recently used slot);
//   2. prefill one chunk (≤ backend.prefillChunk ids) of the oldest sequence still
//              prefilling: a long prompt delays the others by one chunk per step;
//   3. decode  one pass over every sequence past its prefill: row r feeds its last id at
//              its position and samples its next id with its own parameters.
// A prompt's last id is not prefilled: it is the sequence's first decode row, whose
// logits give the first reply token, in the same step as the prompt's last chunk. So
// prefill passes never run the LM head, and a request arriving while others decode waits
// for the step in flight, then one step per 64 prompt ids (each a chunk and the others'
// decode), the last of which gives its first token.
//
// A request with a grammar (options.grammar) is compiled once, in submit(), against the
// model's vocabulary (backend.vocabSize rows, the tokenizer's tokens, the request's eos ids).
// Each decode step's row carries a callback that fills the row's allowed-token mask (one
// Uint32Array per slot, reused; the callback is the slot's, made once); the backend calls it
// once the pass is submitted, so the host fills masks while the GPU runs the forward pass,
// and its sampler applies them. The drawn id advances the matcher; the reply ends with
// stopReason 'eos' once the grammar is complete and nothing else may follow.
//
// Every reply is a stream of deltas (an async generator, as generate() yields); its
// consumer may stop early (the sequence is cancelled and its slot freed) or abort it with
// its signal.
//
// Allocations (issue 21; test/generate/scheduler-allocations.test.ts counts them): the
// step loop's own code allocates nothing per decode step. Its rows are objects made once
// (one per row index; `rowViews[n]`, an array of the first n, made once per length), the
// sequences of a step go into arrays made once, each slot's cached ids are a typed array of
// the context's length, and each slot's mask callback is made with the slot. What still
// allocates per token, by design and outside the loop's control:
//   - Reply.push (reply.ts): the delta given to the consumer, its ids array, its text (the
//     detokenizer's string), and the step object saying whether the reply stops;
//   - the consumer's side: submit()'s async generator (each yield's result and promise),
//     changed()'s promise when the consumer waits for a delta, and notify()'s resolve of
//     it (which queues the consumer's wake-up);
//   - pump()'s await of each pass (its promise reaction), and the backend's own async
//     decode (its promise; the row sampler's view of the mapped read-back range);
//   - with logprobs, the delta copied with its logprobs (`{ ...delta, logprobs }`).
// Admitting a request and its prefill chunks allocate too (per request and per chunk, not
// per token).

import { SluiceError } from '../errors.js';
import type { TokenLogprobs } from '../ops/logprobs.js';
import type { SamplingParams } from '../ops/sample.js';
import type { Tokenizer } from '../text/tokenizer.js';
import { GrammarConstraint } from './constraint.js';
import type { GenerateOptions, GenerationDelta, GenerationStats, StopReason } from './generate.js';
import { Reply } from './reply.js';
import type { SamplerConfig } from './row-sampler.js';

/**
 * One row of a decode pass. The scheduler's, reused every step (and so is the array of
 * them): a backend reads them during decode() and keeps neither past it.
 */
export interface BatchRow {
  slot: number;
  /** The id fed at `position`: the prompt's last id, then each sampled one. */
  id: number;
  position: number;
  /** Tokens this sequence sampled before this row (its RNG counter). */
  step: number;
  /**
   * Grammar-constrained rows: the ids allowed (bit i & 31 of word i >> 5 = id i), filled
   * when called; decode() must draw only these. Call it after submitting the model's pass,
   * so the host fills it while the GPU runs the pass (it never throws). Undefined for an
   * unconstrained row.
   */
  mask?: () => Uint32Array;
}

/** What the scheduler runs on: a model with `slots` KV cache slots and its sampler. */
export interface BatchBackend {
  readonly slots: number;
  /** Positions each slot holds. */
  readonly contextLength: number;
  /** Most ids of one prefill call. */
  readonly prefillChunk: number;
  /**
   * Rows of the logits (the model's vocabulary, masks have ceil(vocabSize / 32) words).
   * Grammar-constrained requests need it: a backend without it does not apply masks, and
   * the scheduler refuses them (USAGE).
   */
  readonly vocabSize?: number;
  /** Host ms the last decode spent copying and uploading masks (counted in GrammarStats). */
  readonly lastMaskMs?: number;
  /**
   * A sequence takes `slot`: its sampling configuration (its own seed: a random one when
   * the request gave none) and where its prompt ends (the penalties count what follows).
   */
  begin(slot: number, config: SamplerConfig, promptLength: number): void;
  /** Writes the keys and values of `ids` at [start, start + ids.length) of `slot` (no logits). */
  prefill(slot: number, ids: readonly number[], start: number): Promise<void>;
  /**
   * One pass over `rows` (distinct slots); resolves with each row's sampled id. `ahead`
   * (one unmasked row): the next step is likely that row's sequence again, fed the id this
   * one draws; a backend may submit it before reading this one back (ModelBatchBackend).
   */
  decode(rows: readonly BatchRow[], ahead?: boolean): Promise<ArrayLike<number>>;
  /** The logprobs of row `row` of the last decode, when its sequence asked for them. */
  logprobsOf(row: number): TokenLogprobs | null;
}

export interface BatchOptions {
  /** Requests that may wait for a slot (default 16; beyond: BUSY). */
  maxQueue?: number;
  tokenizer?: Tokenizer;
  /** Sampling defaults under each request's options (generation_config.json). */
  defaults?: Partial<SamplingParams>;
  /** Eos ids of requests that name none. */
  eosIds?: readonly number[];
  /** A lone decoding sequence's next step may be submitted before its current one is read (default true; BatchBackend.decode's `ahead`). */
  decodeAhead?: boolean;
}

export interface BatchStats extends GenerationStats {
  /** Prompt ids found in the slot's cache (not prefilled again). */
  reusedTokens: number;
  /** The slot that ran the request. */
  slot: number;
}

interface Slot {
  /** (contextLength,) ids whose keys and values the slot holds, at positions 0 … cachedLength − 1. */
  readonly cached: Uint32Array;
  cachedLength: number;
  owner: Sequence | null;
  /** Scheduler step when the slot was last released (LRU among equal prefixes). */
  releasedAt: number;
  /** The allowed-token mask of the slot's constrained sequences, made at the first one. */
  mask: Uint32Array | null;
  /** Fills `mask` for the slot's owner (a row's BatchRow.mask): made once, not per row and step. */
  readonly fillMask: () => Uint32Array;
}

type Phase = 'waiting' | 'prefill' | 'decode' | 'done';

const SAMPLING_KEYS = ['temperature', 'topK', 'topP', 'minP', 'repetitionPenalty', 'seed'] as const;

class Sequence {
  phase: Phase = 'waiting';
  slot = -1;
  /** Prompt ids already in the slot's cache (reused or prefilled). */
  fed = 0;
  reused = 0;
  /** The next decode row's id and position. */
  next = 0;
  position = 0;
  cancelled = false;
  readonly submittedAt = performance.now();
  firstAt = 0;
  endedAt = 0;
  /** Ids in the slot's cache when the sequence ended (the next turn may reuse them). */
  cachedAtEnd = 0;
  stopReason: StopReason = 'length';
  error: unknown = null;
  /** Why the grammar's mask could not be filled this step (reported after the step). */
  maskError: unknown = null;
  /**
   * Host ms of the backend's mask uploads charged to this sequence, added to its grammar's
   * stats when it ends: a float field updated in place, where a call per step would box it.
   */
  maskUploadMs = 0;
  // the consumer's side: deltas not yet taken, and the wake-up of a waiting consumer
  readonly out: GenerationDelta[] = [];
  private wake: (() => void) | null = null;

  constructor(
    readonly prompt: readonly number[],
    readonly sampling: SamplerConfig,
    readonly reply: Reply,
    readonly signal: AbortSignal | undefined,
    readonly constraint: GrammarConstraint | null,
  ) {}

  emit(delta: GenerationDelta): void {
    this.out.push(delta);
    this.notify();
  }

  notify(): void {
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }

  /** Resolves when there is output, an end or an error. */
  changed(): Promise<void> {
    if (this.out.length || this.phase === 'done') return Promise.resolve();
    return new Promise((resolve) => (this.wake = resolve));
  }
}

export class BatchScheduler {
  private readonly slotState: Slot[];
  private readonly waiting: Sequence[] = [];
  private readonly active: Sequence[] = []; // in slots, in admission order
  private running = false;
  private steps = 0;
  private readonly maxQueue: number;
  // A step's sequences and rows, in arrays made once (nothing allocated per step):
  /** The sequences past their prefill this step, in admission order: [0, decodingCount). */
  private readonly decoding: (Sequence | null)[];
  private decodingCount = 0;
  /** rowViews[n]: the first n of one BatchRow per row index, made once per n (a step's rows). */
  private readonly rowViews: BatchRow[][];
  /** The sequence of each row of the pass in flight (null past its rows). */
  private readonly rowSequences: (Sequence | null)[];
  /** Rows of the pass in flight with a mask (they share the backend's mask upload time). */
  private maskedRows = 0;

  constructor(
    readonly backend: BatchBackend,
    private readonly options: BatchOptions = {},
  ) {
    if (!Number.isInteger(backend.slots) || backend.slots < 1) throw new SluiceError('USAGE', `a batch needs at least one slot, not ${backend.slots}`);
    // Ids at positions [0, contextLength) of every slot: 4 bytes a position, beside the KV cache's kilobytes.
    this.slotState = Array.from({ length: backend.slots }, (_, i): Slot => ({
      cached: new Uint32Array(backend.contextLength),
      cachedLength: 0,
      owner: null,
      releasedAt: -1,
      mask: null,
      fillMask: () => this.maskOf(this.slotState[i]),
    }));
    this.maxQueue = options.maxQueue ?? 16;
    this.decoding = Array.from({ length: backend.slots }, () => null);
    this.rowSequences = Array.from({ length: backend.slots }, () => null);
    const rows = Array.from({ length: backend.slots }, (): BatchRow => ({ slot: 0, id: 0, position: 0, step: 0, mask: undefined }));
    this.rowViews = Array.from({ length: backend.slots + 1 }, (_, n) => rows.slice(0, n));
  }

  /**
   * Requests generating or waiting for a slot. A cancelled one no longer counts, though its
   * slot frees only at the end of the pass in flight.
   */
  get pending(): number {
    let n = this.waiting.length;
    for (let i = 0; i < this.active.length; i++) if (!this.active[i].cancelled) n++;
    return n;
  }

  /** Sequences holding a slot now. */
  get generating(): number {
    return this.active.length;
  }

  /**
   * Generates after `prompt` in a slot (reusing the longest cached prefix), yielding text
   * deltas; returns the statistics. Throws BUSY at once when maxQueue requests already wait.
   */
  async *submit(prompt: readonly number[], options: GenerateOptions = {}): AsyncGenerator<GenerationDelta, BatchStats> {
    if (prompt.length === 0) throw new SluiceError('USAGE', 'the prompt has no tokens');
    if (prompt.length + 1 > this.backend.contextLength) {
      throw new SluiceError('USAGE', `the prompt is ${prompt.length} tokens; the context holds ${this.backend.contextLength} (and the reply needs at least one)`);
    }
    if (options.signal?.aborted) throw aborted(options.signal);
    const free = this.slotState.some((s) => s.owner === null) && this.waiting.length === 0;
    if (!free && this.waiting.length >= this.maxQueue) {
      throw new SluiceError('BUSY', `the model is busy: ${this.waiting.length} requests already waiting (limit ${this.maxQueue})`);
    }
    const sampling = samplingOf(this.options.defaults, options);
    const eosIds = options.eosIds ?? this.options.eosIds ?? [];
    const reply = new Reply(this.options.tokenizer, prompt, { maxTokens: options.maxTokens, stop: options.stop, eosIds });
    const seq = new Sequence(prompt, sampling, reply, options.signal, options.grammar ? this.constraintOf(options.grammar, eosIds) : null);
    const onAbort = () => this.cancel(seq);
    options.signal?.addEventListener('abort', onAbort, { once: true });
    this.waiting.push(seq);
    void this.pump();
    try {
      for (;;) {
        await seq.changed();
        while (seq.out.length) yield seq.out.shift()!;
        if (seq.phase === 'done') break;
      }
      if (seq.error) throw seq.error;
      return this.stats(seq);
    } finally {
      options.signal?.removeEventListener('abort', onAbort);
      if (seq.phase !== 'done') this.cancel(seq); // the consumer stopped early
    }
  }

  /** The request's grammar, compiled against the model's vocabulary (USAGE when it cannot be). */
  private constraintOf(grammar: NonNullable<GenerateOptions['grammar']>, eosIds: readonly number[]): GrammarConstraint {
    const { vocabSize } = this.backend;
    if (vocabSize === undefined) throw new SluiceError('USAGE', 'grammar: this backend cannot constrain output (it applies no token masks)');
    return GrammarConstraint.create(grammar, this.options.tokenizer, vocabSize, eosIds);
  }

  /** Forgets every slot's cached ids (the next requests prefill from scratch). */
  forget(): void {
    for (const s of this.slotState) if (s.owner === null) s.cachedLength = 0;
  }

  private cancel(seq: Sequence): void {
    if (seq.phase === 'done') return;
    if (seq.phase === 'waiting') {
      this.waiting.splice(this.waiting.indexOf(seq), 1);
      seq.error = aborted(seq.signal);
      this.finish(seq, 'abort');
      return;
    }
    seq.cancelled = true; // ends at the next step boundary (a pass may be in flight)
    void this.pump();
  }

  /**
   * The loop: runs while any sequence is active or waiting; one instance at a time. In a
   * step of decode alone, nothing here allocates (indexed loops, arrays made once).
   */
  private async pump(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      while (this.waiting.length || this.active.length) {
        this.steps++;
        this.admit();
        this.finishCancelled();
        const prefilling = this.firstPrefilling();
        this.collectDecoding();
        if (!prefilling && !this.decodingCount && this.active.length) {
          // Unreachable by construction (an active sequence prefills or decodes); if it ever
          // happens, fail them rather than spin without yielding.
          for (const seq of [...this.active]) (seq.error = new Error('batch scheduler: a sequence made no progress')), this.finish(seq, 'abort');
          continue;
        }
        try {
          if (prefilling) {
            await this.prefillChunk(prefilling);
            // A prompt whose last chunk just went in decodes in this same step: its first
            // token comes one step sooner (TTFT of a request arriving mid-decode).
            if (prefilling.phase === 'decode') this.collectDecoding();
          }
          const rows = this.decodingCount ? this.fillRows() : 0;
          if (rows) this.takeSampled(await this.backend.decode(this.rowViews[rows], this.decodeAhead(rows)), rows);
        } catch (e) {
          // The failed pass's slots hold unknown state: their sequences end with the error.
          const failed = this.decoding.slice(0, this.decodingCount) as Sequence[];
          if (prefilling && !failed.includes(prefilling)) failed.unshift(prefilling);
          for (const seq of failed) {
            this.slotState[seq.slot].cachedLength = 0;
            seq.error = e;
            this.finish(seq, 'abort');
          }
        } finally {
          this.decoding.fill(null); // no finished sequence kept alive by the step's arrays
          this.rowSequences.fill(null);
          this.decodingCount = 0;
        }
      }
    } finally {
      this.running = false;
    }
  }

  /** Ends the cancelled sequences holding slots, in admission order. */
  private finishCancelled(): void {
    for (let i = 0; i < this.active.length; ) {
      const seq = this.active[i];
      if (seq.cancelled) this.finish(seq, 'abort'); // takes it out of `active`
      else i++;
    }
  }

  /** The oldest sequence still prefilling, if any. */
  private firstPrefilling(): Sequence | null {
    for (let i = 0; i < this.active.length; i++) if (this.active[i].phase === 'prefill') return this.active[i];
    return null;
  }

  /** `decoding` ← the active sequences past their prefill, in admission order. */
  private collectDecoding(): void {
    let n = 0;
    for (let i = 0; i < this.active.length; i++) if (this.active[i].phase === 'decode') this.decoding[n++] = this.active[i];
    this.decodingCount = n;
  }

  /** Waiting sequences (FIFO) take free slots, each the one with the longest shared prefix. */
  private admit(): void {
    while (this.waiting.length) {
      const free = this.slotState.map((s, i) => ({ s, i })).filter(({ s }) => s.owner === null);
      if (!free.length) return;
      const seq = this.waiting.shift()!;
      // Reuse at most prompt.length − 1 ids: the last one is fed by the first decode row.
      const limit = seq.prompt.length - 1;
      let best = free[0];
      let bestShared = -1;
      for (const f of free) {
        const shared = sharedPrefix(f.s.cached, seq.prompt, Math.min(limit, f.s.cachedLength));
        if (shared > bestShared || (shared === bestShared && f.s.releasedAt < best.s.releasedAt)) {
          best = f;
          bestShared = shared;
        }
      }
      best.s.owner = seq;
      best.s.cachedLength = bestShared; // what stays valid whatever happens next
      seq.slot = best.i;
      this.backend.begin(seq.slot, seq.sampling, seq.prompt.length);
      seq.reused = seq.fed = bestShared;
      seq.phase = 'prefill';
      this.active.push(seq);
      if (seq.fed === limit) this.startDecode(seq);
    }
  }

  private async prefillChunk(seq: Sequence): Promise<void> {
    const end = Math.min(seq.fed + this.backend.prefillChunk, seq.prompt.length - 1);
    const ids = seq.prompt.slice(seq.fed, end);
    await this.backend.prefill(seq.slot, ids, seq.fed);
    const slot = this.slotState[seq.slot];
    slot.cached.set(ids, slot.cachedLength);
    slot.cachedLength += ids.length;
    seq.fed = end;
    if (seq.fed === seq.prompt.length - 1) this.startDecode(seq);
  }

  private startDecode(seq: Sequence): void {
    seq.phase = 'decode';
    seq.next = seq.prompt[seq.prompt.length - 1];
    seq.position = seq.prompt.length - 1;
    if (seq.reply.exhausted) this.finish(seq, 'length'); // maxTokens 0
  }

  /**
   * The step's rows ← its decoding sequences (those at the context's end finish first):
   * row r feeds `rowSequences[r]`'s last id at its position. Returns how many rows.
   */
  private fillRows(): number {
    const limit = this.backend.contextLength;
    const rows = this.rowViews[this.backend.slots];
    let n = 0;
    let masked = 0;
    for (let i = 0; i < this.decodingCount; i++) {
      const seq = this.decoding[i]!;
      if (seq.position >= limit) this.finish(seq, 'context');
      if (seq.phase !== 'decode') continue;
      const row = rows[n];
      row.slot = seq.slot;
      row.id = seq.next;
      row.position = seq.position;
      row.step = seq.reply.generated;
      row.mask = seq.constraint ? this.slotState[seq.slot].fillMask : undefined;
      if (seq.constraint) masked++;
      this.rowSequences[n++] = seq;
    }
    this.maskedRows = masked;
    return n;
  }

  /**
   * Whether the step's next pass may go ahead: one sequence alone, decoding unconstrained,
   * nothing waiting or prefilling to join the next step, and a next token it may still
   * take (it may yet draw eos or a stop: that pass is then dropped).
   */
  private decodeAhead(rows: number): boolean {
    if (rows !== 1 || this.options.decodeAhead === false || this.waiting.length || this.active.length !== 1) return false;
    const seq = this.rowSequences[0]!;
    return !seq.constraint && seq.reply.generated + 1 < seq.reply.maxTokens && seq.position + 1 < this.backend.contextLength;
  }

  /** Each row's sampled id goes to its sequence: cached, checked by its grammar, emitted. */
  private takeSampled(sampled: ArrayLike<number>, rows: number): void {
    const uploadShare = this.maskedRows ? (this.backend.lastMaskMs ?? 0) / this.maskedRows : 0;
    for (let r = 0; r < rows; r++) {
      const seq = this.rowSequences[r]!;
      const id = sampled[r];
      // The fed id is now in the cache at `position`.
      const slot = this.slotState[seq.slot];
      slot.cached[slot.cachedLength++] = seq.next;
      seq.position++;
      if (seq.firstAt === 0) seq.firstAt = performance.now();
      if (seq.constraint) {
        seq.maskUploadMs += uploadShare;
        try {
          if (seq.maskError) throw seq.maskError; // no token could continue its output
          seq.constraint.accept(id); // the mask made any other id impossible
        } catch (e) {
          seq.error = e; // this sequence alone ends, with the error
          this.finish(seq, 'abort');
          continue;
        }
      }
      const step = seq.reply.push(id);
      if (step.delta) {
        const logprobs = seq.sampling.logprobs !== undefined ? this.backend.logprobsOf(r) : null;
        seq.emit(logprobs ? { ...step.delta, logprobs: [logprobs] } : step.delta);
      }
      // A complete grammar allows only eos next: end here rather than spend a pass drawing it.
      const stop = step.stop ?? (seq.constraint?.done ? 'eos' : undefined);
      if (stop) this.finish(seq, stop);
      else seq.next = id;
    }
  }

  /**
   * Fills the slot's reused mask with the ids the sequence's grammar allows next. Never
   * throws (the backend calls it mid-step): a failure is kept for after the step, and the
   * mask allows nothing meanwhile.
   */
  private maskOf(slot: Slot): Uint32Array {
    const seq = slot.owner!; // the pass in flight's: a slot changes hands between steps only
    const words = Math.ceil(this.backend.vocabSize! / 32);
    if (!slot.mask || slot.mask.length !== words) slot.mask = new Uint32Array(words);
    try {
      seq.constraint!.fill(slot.mask);
    } catch (e) {
      seq.maskError = e;
      slot.mask.fill(0);
    }
    return slot.mask;
  }

  /** Ends a sequence: its slot keeps what it cached; the consumer gets the tail and the end. */
  private finish(seq: Sequence, reason: StopReason): void {
    if (seq.phase === 'done') return;
    seq.endedAt = performance.now();
    seq.constraint?.addMaskTime(seq.maskUploadMs);
    if (seq.slot >= 0) {
      const slot = this.slotState[seq.slot];
      seq.cachedAtEnd = slot.cachedLength;
      slot.owner = null;
      slot.releasedAt = this.steps;
      const i = this.active.indexOf(seq);
      if (i >= 0) this.active.splice(i, 1);
    }
    seq.stopReason = reason;
    if (!seq.error) {
      const tail = seq.reply.finish(reason);
      if (tail) seq.out.push(tail);
    }
    seq.phase = 'done';
    seq.notify();
  }

  private stats(seq: Sequence): BatchStats {
    const end = seq.endedAt;
    const firstAt = seq.firstAt || end;
    const prefillSeconds = Math.max((firstAt - seq.submittedAt) / 1000, 1e-9);
    const decodeSeconds = Math.max((end - firstAt) / 1000, 1e-9);
    const generated = seq.reply.generated;
    return {
      promptTokens: seq.prompt.length,
      generatedTokens: generated,
      ttftMs: firstAt - seq.submittedAt,
      prefillTokensPerSecond: (seq.prompt.length - seq.reused) / prefillSeconds,
      decodeTokensPerSecond: generated > 1 ? (generated - 1) / decodeSeconds : 0,
      stopReason: seq.stopReason,
      position: seq.cachedAtEnd,
      reusedTokens: seq.reused,
      slot: seq.slot,
      ...(seq.constraint && { grammar: { ...seq.constraint.stats } }),
    };
  }
}

/** The request's sampling configuration over the defaults; no seed → a random one. */
function samplingOf(defaults: Partial<SamplingParams> | undefined, options: GenerateOptions): SamplerConfig {
  const out: SamplerConfig = { temperature: 1, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1, seed: randomSeed() };
  for (const key of SAMPLING_KEYS) {
    const v = options[key] ?? defaults?.[key];
    if (v !== undefined) out[key] = v;
  }
  const { frequencyPenalty, presencePenalty, logitBias, logprobs } = options;
  return { ...out, frequencyPenalty, presencePenalty, logitBias, logprobs };
}

/** A u32 from the platform's CSPRNG (Node and browsers both have crypto.getRandomValues). */
export function randomSeed(): number {
  return crypto.getRandomValues(new Uint32Array(1))[0];
}

/** Ids a and b share at their start, at most `limit` (within both). */
function sharedPrefix(a: ArrayLike<number>, b: readonly number[], limit: number): number {
  let n = 0;
  while (n < limit && n < a.length && a[n] === b[n]) n++;
  return n;
}

function aborted(signal: AbortSignal | undefined): SluiceError {
  return new SluiceError('ABORTED', 'the request was cancelled while waiting for the model', { cause: signal?.reason });
}

// Incremental detokenization: ids arrive one at a time while the model generates, and the
// text must stream out without ever showing half a character.
//
// Decoding each token alone is wrong twice over: a byte-level BPE token can hold part of a
// UTF-8 sequence (an emoji's 4 bytes split as `ðŁ` + `ĺĢ`, or SentencePiece's <0xF0>
// <0x9F> <0x98> <0x80> byte tokens), which decodes to U+FFFD until the rest arrives; and
// SentencePiece decoders strip the leading space of the first token of whatever they are
// given, so " world" alone decodes to "world". So, as text-generation-inference and vLLM
// do, we decode a short window of recent ids that starts at a token already shown, and
// emit only what the window adds past what was already emitted from it: the window's
// first token takes the stripped space, and the new tokens keep theirs.
//
// A window whose text ends in U+FFFD ends in an unfinished character (a truly invalid byte
// looks the same until the next token shows otherwise): everything before that run of
// U+FFFD is emitted, the run is held. Once the window decodes with no trailing U+FFFD it is
// whole, and the next window starts at the previous whole point, so each decode covers a
// handful of tokens, not the whole reply.
//
// Concatenated, the deltas plus flush() equal tokenizer.decode(all ids) — with
// clean_up_tokenization_spaces off, which the detokenizer always uses: that clean-up
// rewrites text across token boundaries (" ." → "."), so a prefix could change after it
// was shown.

import type { Tokenizer } from './tokenizer.js';

export interface DetokenizerOptions {
  /** Leave special tokens (`<|im_end|>`, `</s>`) out of the text. Default false. */
  skipSpecialTokens?: boolean;
  /**
   * Ids already shown before the first pushed one, usually the last few prompt ids (2–4
   * is plenty). Decoding starts from them, so the first generated token keeps its
   * leading space under a SentencePiece decoder, as it does in the decode of the whole
   * sequence.
   */
  context?: readonly number[];
}

/** Past this many tokens without a whole window (only garbage bytes do that), give up
 *  waiting: emit what there is, U+FFFD included, and start afresh. A character is at most
 *  4 bytes, so a real one is never still unfinished 16 tokens after it began. */
const MAX_PENDING = 16;

const REPLACEMENT = 0xfffd;

export class Detokenizer {
  private readonly ids: number[] = [];
  /** The window is ids[start..]; it decoded whole up to ids[..whole]. */
  private start = 0;
  private whole = 0;
  /** How much of the window's decoded text (UTF-16 units) has been emitted. */
  private emitted = 0;
  private readonly skipSpecial: boolean;

  constructor(
    private readonly tokenizer: Tokenizer,
    options: DetokenizerOptions = {},
  ) {
    this.skipSpecial = options.skipSpecialTokens ?? false;
    const context = (options.context ?? []).filter((id) => !this.skipped(id));
    if (context.length > 0) {
      this.ids.push(...context);
      this.whole = context.length;
      const text = this.decode(0);
      this.emitted = text.length - trailingReplacements(text);
    }
  }

  /** Feeds one generated id; returns the text it completes (often '', never half a character). */
  push(id: number): string {
    // Skipped tokens never enter the window: a window starting at one would decode its
    // next token as the first one, and lose that token's leading space.
    if (this.skipped(id)) return '';
    this.ids.push(id);
    const text = this.decode(this.start);
    const held = trailingReplacements(text);
    if (held > 0 && this.ids.length - this.whole < MAX_PENDING) {
      const end = text.length - held;
      if (end <= this.emitted) return '';
      const delta = text.slice(this.emitted, end);
      this.emitted = end;
      return delta;
    }
    const delta = text.slice(this.emitted);
    // Slide: the next window starts at the last whole point before this one.
    const wasWhole = held === 0;
    this.start = wasWhole ? this.whole : this.ids.length;
    this.whole = this.ids.length;
    this.emitted = wasWhole ? this.decode(this.start).length : 0;
    return delta;
  }

  /** Feeds several ids; returns the text they complete, in one string. */
  pushAll(ids: Iterable<number>): string {
    let out = '';
    for (const id of ids) out += this.push(id);
    return out;
  }

  /** At the end of generation: whatever is still held (an unfinished character shows as U+FFFD). */
  flush(): string {
    const text = this.decode(this.start);
    const delta = text.slice(this.emitted);
    this.start = this.whole = this.ids.length;
    this.emitted = 0;
    return delta;
  }

  private skipped(id: number): boolean {
    return this.skipSpecial && this.tokenizer.specialIds.has(id);
  }

  private decode(from: number): string {
    return this.tokenizer.decode(this.ids.slice(from), { cleanUpSpaces: false });
  }
}

function trailingReplacements(text: string): number {
  let n = 0;
  while (n < text.length && text.charCodeAt(text.length - 1 - n) === REPLACEMENT) n++;
  return n;
}

// The engine's per-token log-probabilities (GenerationDelta.logprobs: the sampled id's and
// its top alternatives under the raw model logits) in OpenAI's two response shapes:
//   chat         choice.logprobs = {content: [{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}], refusal: null}
//   completions  choice.logprobs = {tokens, token_logprobs, top_logprobs: [{token: logprob}], text_offset}
// A token is shown as its own decoded text and bytes as that text's UTF-8, as vLLM does
// (vllm/entrypoints/openai/serving_chat.py, _create_chat_logprobs: tokenizer.decode of
// one id); `token_id:N` when the model has no tokenizer. In a stream each chunk carries
// the entries of its own tokens.

import type { GenerationDelta, TokenLogprob, TokenLogprobs } from '../generate/generate.js';
import type { Tokenizer } from '../text/tokenizer.js';

export interface ChatTokenLogprob {
  token: string;
  logprob: number;
  bytes: number[];
  top_logprobs: { token: string; logprob: number; bytes: number[] }[];
}

export interface CompletionLogprobs {
  tokens: string[];
  token_logprobs: number[];
  /** The alternatives and the sampled token, token → logprob (OpenAI: up to logprobs + 1). */
  top_logprobs: Record<string, number>[];
  /** Where each token's text starts in the choice's text (code points). */
  text_offset: number[];
}

/** One choice's log-probabilities, gathered delta by delta. */
export class ChoiceLogprobs {
  /** Code points of the choice's text so far: the next token's text_offset. */
  private offset = 0;
  readonly chatEntries: ChatTokenLogprob[] = [];
  readonly completion: CompletionLogprobs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };

  constructor(private readonly tokenizer: Tokenizer | null) {}

  /** Adds a delta's entries; returns them in both shapes (what a stream chunk carries). */
  add(delta: GenerationDelta): { chat: ChatTokenLogprob[]; completion: CompletionLogprobs } {
    const chat: ChatTokenLogprob[] = [];
    const completion: CompletionLogprobs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
    for (const entry of delta.logprobs ?? []) {
      chat.push({ ...this.shown(entry), top_logprobs: entry.top.map((t) => this.shown(t)) });
      const token = this.text(entry.id);
      completion.tokens.push(token);
      completion.token_logprobs.push(entry.logprob);
      completion.top_logprobs.push(topMap(entry, (id) => this.text(id)));
      completion.text_offset.push(this.offset);
    }
    this.offset += [...delta.text].length;
    this.chatEntries.push(...chat);
    for (const key of ['tokens', 'token_logprobs', 'top_logprobs', 'text_offset'] as const) (this.completion[key] as unknown[]).push(...completion[key]);
    return { chat, completion };
  }

  private text(id: number): string {
    return this.tokenizer ? this.tokenizer.decode([id]) : `token_id:${id}`;
  }

  private shown(entry: TokenLogprob): { token: string; logprob: number; bytes: number[] } {
    const token = this.text(entry.id);
    return { token, logprob: entry.logprob, bytes: [...new TextEncoder().encode(token)] };
  }
}

/** The alternatives, then the sampled token if it was not among them. */
function topMap(entry: TokenLogprobs, text: (id: number) => string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const t of [...entry.top, entry]) {
    const token = text(t.id);
    if (!(token in out)) out[token] = t.logprob;
  }
  return out;
}

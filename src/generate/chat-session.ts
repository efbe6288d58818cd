// A conversation over one model and its KV cache. Each turn renders the whole
// conversation with the chat template, tokenizes it, and prefills only what the cache
// does not already hold (the longest common prefix with the cached ids is reused), so a
// turn costs its own tokens, not the conversation's. When the context is full the oldest
// turns are dropped (the system message stays) and the cache is rebuilt, with a notice.

import { SluiceError } from '../errors.js';
import type { LlamaModel } from '../model/llama.js';
import type { ChatMessage, ChatTemplate } from '../text/chat-template.js';
import type { Tokenizer } from '../text/tokenizer.js';
import { generate, type GenerateOptions, type GenerationDelta, type GenerationStats } from './generate.js';
import type { GpuSampler } from './sampler.js';

export interface ChatContext {
  model: LlamaModel;
  sampler: GpuSampler;
  tokenizer: Tokenizer;
  template: ChatTemplate;
  eosIds: readonly number[];
}

export interface ChatTurnStats extends GenerationStats {
  /** Prompt tokens found in the cache from earlier turns (not prefilled again). */
  reusedTokens: number;
}

export class ChatSession {
  readonly messages: ChatMessage[] = [];
  /** Ids whose keys and values are in the cache, at positions 0 … length−1. */
  private cached: number[] = [];

  constructor(
    private readonly ctx: ChatContext,
    system?: string,
    /** Told when old turns are dropped to make room. */
    private readonly onNotice: (message: string) => void = () => {},
  ) {
    if (system) this.messages.push({ role: 'system', content: system });
  }

  /** Forgets the conversation (keeps the system message). */
  reset(): void {
    this.messages.splice(this.messages[0]?.role === 'system' ? 1 : 0);
    this.cached = [];
  }

  /** One turn: the user's message in, the assistant's reply out as deltas; returns stats. */
  async *send(content: string, options: GenerateOptions = {}): AsyncGenerator<GenerationDelta, ChatTurnStats> {
    this.messages.push({ role: 'user', content });
    let ids = this.promptIds();
    // Room for at least one reply token, else drop the oldest exchange and try again.
    while (ids.length + 1 > this.ctx.model.contextLength) {
      const first = this.messages[0]?.role === 'system' ? 1 : 0;
      if (this.messages.length - first <= 1) {
        this.messages.pop();
        throw new SluiceError('USAGE', `the message is ${ids.length} tokens with the template, more than the context of ${this.ctx.model.contextLength}`);
      }
      const dropped = this.messages.splice(first, this.messages[first + 1]?.role === 'assistant' ? 2 : 1);
      this.onNotice(`context full (${this.ctx.model.contextLength} tokens): dropped the oldest ${dropped.length === 2 ? 'exchange' : 'message'}`);
      this.cached = [];
      ids = this.promptIds();
    }
    // Reuse the cached prefix, but prefill at least one token (its logits start the reply).
    let reused = 0;
    while (reused < ids.length - 1 && reused < this.cached.length && ids[reused] === this.cached[reused]) reused++;

    let text = '';
    const generated: number[] = [];
    const run = generate(this.ctx, ids.slice(reused), reused, { ...options, eosIds: options.eosIds ?? this.ctx.eosIds });
    let result = await run.next();
    while (!result.done) {
      text += result.value.text;
      generated.push(...result.value.ids);
      yield result.value;
      result = await run.next();
    }
    const stats = result.value;
    this.messages.push({ role: 'assistant', content: text });
    this.cached = [...ids, ...generated].slice(0, stats.position);
    return { ...stats, promptTokens: ids.length, reusedTokens: reused };
  }

  private promptIds(): number[] {
    const prompt = this.ctx.template.render(this.messages, { addGenerationPrompt: true });
    // The template writes bos itself, as transformers' apply_chat_template expects.
    return this.ctx.tokenizer.encode(prompt, { addSpecialTokens: false });
  }
}

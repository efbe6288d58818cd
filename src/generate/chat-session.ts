// A conversation with a model: the messages so far, sent whole with each new turn (the
// engine's cache makes the earlier turns free: only the new turn is prefilled). When the
// context is full the oldest turns are dropped (the system message stays), with a notice.

import { SluiceError } from '../errors.js';
import type { ChatMessage } from '../text/chat-template.js';
import type { ChatOptions, CompletionStats, Engine } from './engine.js';
import type { GenerationDelta } from './generate.js';

export type ChatTurnStats = CompletionStats;

export class ChatSession {
  readonly messages: ChatMessage[] = [];

  constructor(
    private readonly engine: Engine,
    system?: string,
    /** Told when old turns are dropped to make room. */
    private readonly onNotice: (message: string) => void = () => {},
  ) {
    if (system) this.messages.push({ role: 'system', content: system });
  }

  /** Forgets the conversation (keeps the system message). */
  reset(): void {
    this.messages.splice(this.messages[0]?.role === 'system' ? 1 : 0);
    this.engine.forget();
  }

  /**
   * One turn: the user's message in, the assistant's reply out as deltas; returns stats.
   * A turn that fails, or that its consumer abandons (break, throw), leaves the messages as
   * they were before it (no user message without its reply, dropped turns put back) and
   * ends its engine request, so the model is free for the next.
   */
  async *send(content: string, options: ChatOptions = {}): AsyncGenerator<GenerationDelta, ChatTurnStats> {
    const { templateVariables, ...generate } = options;
    const before = [...this.messages];
    let run: AsyncGenerator<GenerationDelta, ChatTurnStats> | null = null;
    let finished = false;
    try {
      this.messages.push({ role: 'user', content });
      let ids = this.engine.chatPromptIds(this.messages, templateVariables);
      // Room for at least one reply token, else drop the oldest exchange and try again.
      while (ids.length + 1 > this.engine.contextLength) {
        const first = this.messages[0]?.role === 'system' ? 1 : 0;
        if (this.messages.length - first <= 1) {
          throw new SluiceError('USAGE', `the message is ${ids.length} tokens with the template, more than the context of ${this.engine.contextLength}`);
        }
        const dropped = this.messages.splice(first, this.messages[first + 1]?.role === 'assistant' ? 2 : 1);
        this.onNotice(`context full (${this.engine.contextLength} tokens): dropped the oldest ${dropped.length === 2 ? 'exchange' : 'message'}`);
        ids = this.engine.chatPromptIds(this.messages, templateVariables);
      }
      let text = '';
      run = this.engine.complete(ids, generate);
      let r = await run.next();
      while (!r.done) {
        text += r.value.text;
        yield r.value;
        r = await run.next();
      }
      this.messages.push({ role: 'assistant', content: text });
      finished = true;
      return r.value;
    } finally {
      if (!finished) {
        this.messages.splice(0, this.messages.length, ...before);
        // Stopped at a yield: end the engine request too (it releases the model's turn).
        await run?.return(undefined as never);
      }
    }
  }
}

// Prompts → token ids, the two ways a request gives one: chat messages through the model's
// template, or raw text with the tokenizer's bos. Pure functions of the tokenizer and the
// template, shared by the engine and by the server's tokenizer worker (src/server/
// prompt-worker.ts), so a prompt tokenized off the main thread gets exactly these ids.

import type { ChatMessage, ChatTemplate } from '../text/chat-template.js';
import type { Tokenizer } from '../text/tokenizer.js';

/** Renders `messages` with the generation prompt; the template writes bos itself, as transformers' apply_chat_template expects. */
export function chatTemplateIds(tokenizer: Tokenizer, template: ChatTemplate, messages: readonly ChatMessage[], variables: Readonly<Record<string, unknown>>): number[] {
  return tokenizer.encode(template.render(messages, { addGenerationPrompt: true, variables }), { addSpecialTokens: false });
}

/** A raw text prompt with the tokenizer's bos (as transformers' generate does). */
export function rawTextIds(tokenizer: Tokenizer, prompt: string): number[] {
  return tokenizer.encode(prompt, { addSpecialTokens: true });
}

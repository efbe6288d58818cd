// A loaded model as a service: requests run together, one per KV cache slot (continuous
// batching, batch-scheduler.ts), the rest wait for a slot; each may be cancelled, and a
// request reuses the slot whose cached ids share its longest prefix — the next chat turn
// only prefills what is new. This is what the embedding API (sluice/node loadModel) and
// the server run on.

import { SluiceError } from '../errors.js';
import { TokenVocabulary } from '../grammar/index.js';
import type { GenerationDefaults } from '../model/generation-config.js';
import type { LlamaModel } from '../model/llama.js';
import { type ChatMessage, type ChatTemplate, checkTemplateVariables } from '../text/chat-template.js';
import type { Tokenizer } from '../text/tokenizer.js';
import { type ToolCall, ToolCallParser, type ToolCallSyntax, type ToolChoice, type ToolDefinition, toolCallSyntax } from '../text/tool-calls.js';
import { type BatchBackend, BatchScheduler, randomSeed } from './batch-scheduler.js';
import { type ChatPlan, type ChatPlanLabels, type ResponseFormat, LIBRARY_LABELS, planChat } from './chat-plan.js';
import type { GenerateOptions, GenerationDelta, GenerationStats } from './generate.js';
import { chatTemplateIds, rawTextIds } from './prompt-ids.js';

export interface EngineParts {
  model: LlamaModel;
  /** The model's slots and sampler (ModelBatchBackend.create(model)). */
  backend: BatchBackend;
  tokenizer: Tokenizer | null;
  template: ChatTemplate | null;
  /** Why there is no template (chat's error), when there is none. */
  templateError?: Error | null;
  eosIds: readonly number[];
  defaults: GenerationDefaults;
}

/** Options of a chat request: sampling, plus what the chat template is given. */
export interface ChatOptions extends GenerateOptions {
  /** Chat template variables for this request (Qwen3's `enable_thinking: false`, Llama 3.1's
   *  `date_string`…), over the engine's own key by key. Reserved names (messages,
   *  add_generation_prompt, bos_token, tools…) are refused. */
  templateVariables?: Readonly<Record<string, unknown>>;
  /** The reply's format: `{ type: 'json_object' }` or `{ type: 'json_schema', schema,
   *  strict? }` constrain it with a grammar (strict defaults to false, as OpenAI's). */
  responseFormat?: ResponseFormat;
  /** Functions the model may call, given to the chat template as `tools`. */
  tools?: readonly ToolDefinition[];
  /** 'auto' (default): calls are parsed from the reply; 'none': tools not rendered;
   *  'required' / a named function: the reply is one call, its arguments constrained by
   *  the function's `parameters` schema. */
  toolChoice?: ToolChoice;
}

/** A chat delta: text (content only: tool-call syntax is taken out), and the calls it completes. */
export interface ChatDelta extends GenerationDelta {
  /** Tool calls completed by this delta, each once (OpenAI's shape; give them back as the
   *  assistant message's `tool_calls` in the next turn, with a `tool` message per result). */
  toolCalls?: ToolCall[];
}

export interface EngineOptions {
  /** Requests that may wait for a free slot (default 16; beyond: BUSY). */
  maxQueue?: number;
  /** Chat template variables of every request (a request's own win, key by key). */
  templateVariables?: Readonly<Record<string, unknown>>;
}

export interface CompletionStats extends GenerationStats {
  /** Prompt tokens found in the slot's cache from an earlier request (not prefilled again). */
  reusedTokens: number;
  /** The KV cache slot that ran the request. */
  slot: number;
  /** Tokens of the reply: the ids its deltas carried. Unlike generatedTokens, an eos id
   *  that ended it is not one (what OpenAI's usage.completion_tokens counts). */
  completionTokens: number;
  /** The RNG seed this reply drew with: options.seed, else a random one (give it back as
   *  seed to repeat the reply). */
  seed: number;
}

/** One engine per LlamaModel: it owns the model's KV cache slots. */
export class Engine {
  private readonly scheduler: BatchScheduler;

  /** Chat template variables of every request. */
  readonly templateVariables: Readonly<Record<string, unknown>>;

  /** The template's tool-call syntax, read once (undefined: not read yet). */
  private syntax: ToolCallSyntax | null | undefined;

  constructor(
    readonly parts: EngineParts,
    options: EngineOptions = {},
  ) {
    checkTemplateVariables(options.templateVariables, 'templateVariables');
    this.scheduler = new BatchScheduler(parts.backend, { maxQueue: options.maxQueue ?? 16, tokenizer: parts.tokenizer ?? undefined });
    this.templateVariables = { ...options.templateVariables };
  }

  get contextLength(): number {
    return this.parts.model.contextLength;
  }

  /** Requests running or waiting. */
  get pending(): number {
    return this.scheduler.pending;
  }

  /** Sequences decoded at once (the model's KV cache slots). */
  get parallel(): number {
    return this.parts.backend.slots;
  }

  /**
   * Chat messages → prompt ids with the model's template (throws when it has none), given
   * the engine's template variables overridden key by key by `templateVariables`.
   */
  chatPromptIds(messages: readonly ChatMessage[], templateVariables?: Readonly<Record<string, unknown>>, tools: readonly ToolDefinition[] | null = null): number[] {
    const variables = this.chatVariables(templateVariables);
    return chatTemplateIds(this.parts.tokenizer!, this.parts.template!.withTools(tools), messages, variables);
  }

  /**
   * A chat request's response format and tools → the tools to render, the grammar of the
   * reply (compiled here, against the model's vocabulary with `eosIds`, default the
   * model's) and how its calls are parsed. USAGE naming the field (`labels`) and the schema
   * keyword when it cannot; throws when the model cannot chat.
   */
  chatPlan(request: Pick<ChatOptions, 'responseFormat' | 'tools' | 'toolChoice' | 'eosIds'>, labels: ChatPlanLabels = LIBRARY_LABELS): ChatPlan {
    const { tokenizer, template, model } = this.parts;
    if (!tokenizer || !template) throw this.parts.templateError ?? new SluiceError('NOT_FOUND', 'this model has no chat template');
    this.syntax ??= toolCallSyntax(template.text);
    const eosIds = request.eosIds ?? this.parts.eosIds;
    const vocabulary = () => TokenVocabulary.fromTokenizer(tokenizer, { vocabSize: model.config.vocabSize, eosIds });
    return planChat(request, { syntax: this.syntax, templateSource: template.source, vocabulary }, labels);
  }

  /**
   * The template variables of a chat request: the engine's, overridden key by key by the
   * request's (reserved names refused). Throws when the model cannot chat (no template).
   */
  chatVariables(templateVariables?: Readonly<Record<string, unknown>>): Record<string, unknown> {
    if (!this.parts.tokenizer || !this.parts.template) throw this.parts.templateError ?? new SluiceError('NOT_FOUND', 'this model has no chat template');
    checkTemplateVariables(templateVariables, 'templateVariables');
    return { ...this.templateVariables, ...templateVariables };
  }

  /** A raw text prompt → ids, with the tokenizer's bos (as transformers' generate does). */
  textPromptIds(prompt: string): number[] {
    if (!this.parts.tokenizer) throw new SluiceError('NOT_FOUND', 'this model has no tokenizer.json: give token ids');
    return rawTextIds(this.parts.tokenizer, prompt);
  }

  /** Streams a chat reply to `messages`. */
  chat(messages: readonly ChatMessage[], options: ChatOptions = {}): AsyncGenerator<ChatDelta, CompletionStats> {
    const { templateVariables, responseFormat, tools, toolChoice, ...generate } = options;
    const plan = this.chatPlan({ responseFormat, tools, toolChoice, eosIds: generate.eosIds });
    return this.completeChat(this.chatPromptIds(messages, templateVariables, plan.tools), plan, generate);
  }

  /**
   * Generates a chat reply after `ids` (rendered with `plan.tools`) under the plan: its
   * grammar, and its tool calls taken out of the text into `toolCalls`.
   */
  completeChat(ids: readonly number[], plan: ChatPlan, options: GenerateOptions = {}): AsyncGenerator<ChatDelta, CompletionStats> {
    if (plan.grammar && options.grammar) throw new SluiceError('USAGE', 'grammar and a response format or required tool call both constrain the reply: give one');
    const run = this.complete(ids, plan.grammar ? { ...options, grammar: plan.grammar } : options);
    return plan.parse ? withToolCalls(run, new ToolCallParser(plan.parse.syntax, plan.parse.names)) : run;
  }

  /** Streams a raw completion of `prompt` (text, or token ids). */
  generate(prompt: string | readonly number[], options: GenerateOptions = {}): AsyncGenerator<GenerationDelta, CompletionStats> {
    return this.complete(typeof prompt === 'string' ? this.textPromptIds(prompt) : prompt, options);
  }

  /**
   * Generates after `ids` in a slot (waiting for one when all are busy), reusing the
   * longest cached prefix. Model defaults (generation_config.json) apply under `options`;
   * eos ids default to the model's; no seed → a random one (stats.seed), so temperature > 0
   * does not repeat itself. The request ends with the generator, also when its consumer
   * stops early or throws.
   */
  async *complete(ids: readonly number[], options: GenerateOptions = {}): AsyncGenerator<GenerationDelta, CompletionStats> {
    if (ids.length === 0) throw new SluiceError('USAGE', 'the prompt has no tokens');
    if (ids.length + 1 > this.contextLength) {
      throw new SluiceError('USAGE', `the prompt is ${ids.length} tokens; the context holds ${this.contextLength} (and the reply needs at least one)`);
    }
    // An id past the embedding table would read another tensor's memory on the GPU.
    const vocab = this.parts.model.config.vocabSize;
    const outside = ids.findIndex((id) => !(Number.isInteger(id) && id >= 0 && id < vocab));
    if (outside >= 0) throw new SluiceError('USAGE', `prompt token id ${ids[outside]} (at index ${outside}) is not in the vocabulary [0, ${vocab})`);
    const seed = options.seed ?? randomSeed();
    const { eosIds, defaults } = this.parts;
    const run = this.scheduler.submit(ids, { ...defaults, ...options, seed, eosIds: options.eosIds ?? eosIds });
    let completionTokens = 0;
    try {
      let r = await run.next();
      while (!r.done) {
        completionTokens += r.value.ids.length;
        yield r.value;
        r = await run.next();
      }
      return { ...r.value, completionTokens, seed };
    } finally {
      await run.return(undefined as never); // a consumer that stopped early frees the slot
    }
  }

  /** Forgets the cached conversations of idle slots (the next requests prefill from scratch). */
  forget(): void {
    this.scheduler.forget();
  }
}

/** `run` with its text passed through `parser`: content stays text, calls come out as toolCalls. */
async function* withToolCalls(run: AsyncGenerator<GenerationDelta, CompletionStats>, parser: ToolCallParser): AsyncGenerator<ChatDelta, CompletionStats> {
  try {
    let r = await run.next();
    while (!r.done) {
      const piece = parser.push(r.value.text);
      yield { ...r.value, text: piece.content, ...(piece.calls.length > 0 && { toolCalls: piece.calls }) };
      r = await run.next();
    }
    const piece = parser.end();
    if (piece.content || piece.calls.length > 0) yield { text: piece.content, ids: [], ...(piece.calls.length > 0 && { toolCalls: piece.calls }) };
    return r.value;
  } finally {
    await run.return(undefined as never); // a consumer that stopped early frees the slot
  }
}

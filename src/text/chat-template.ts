// Chat templates: the Jinja program a model ships to turn a conversation into the exact
// prompt text it was trained on. It lives in `chat_template.jinja` (transformers ≥ 4.47
// writes it there) or in tokenizer_config.json's "chat_template": a string, or a list of
// {name, template} of which "default" is the one to use. Rendered with @huggingface/jinja,
// given what transformers' apply_chat_template gives it: messages, add_generation_prompt,
// the special tokens as strings, raise_exception, strftime_now, tools (None unless the
// request has tools: a list of {type: "function", function}) — and the caller's template variables (transformers' **kwargs, vLLM's chat_template_kwargs), such
// as Qwen3's enable_thinking. date_string is not defined unless given as one: transformers
// leaves it undefined, and Llama 3.1's template then uses its own default ("26 Jul 2024").

import { Environment, Interpreter, Template } from '@huggingface/jinja';
import { SluiceError } from '../errors.js';
import { fileLabel, type ReadModelFile, type Tokenizer } from './tokenizer.js';
import type { ToolCall, ToolDefinition } from './tool-calls.js';

export type ChatRole = 'system' | 'user' | 'assistant' | 'tool';

export interface ChatMessage {
  role: ChatRole;
  /** The text ('' for an assistant turn that only called tools). */
  content: string;
  /** An assistant turn's tool calls, as replies give them (arguments as JSON text; the
   *  template gets them parsed, as HF templates expect: `tool_call.arguments | tojson`). */
  tool_calls?: readonly ToolCall[];
  /** A tool turn: the id of the call it answers. */
  tool_call_id?: string;
  /** A tool turn: the function's name (some templates print it). */
  name?: string;
}

export interface RenderOptions {
  /** End with the header of an assistant turn, so the model writes the reply. Default
   *  false, as in transformers; a chat front end wants true. */
  addGenerationPrompt?: boolean;
  /** The clock behind strftime_now (tests pin it). Default: now. */
  now?: Date;
  /** More template variables (Qwen3's enable_thinking, Llama 3.1's date_string…); a
   *  reserved name (RESERVED_TEMPLATE_VARIABLES) is refused. */
  variables?: Readonly<Record<string, unknown>>;
  /** The template's `tools` (none when absent or empty, as transformers passes None). */
  tools?: readonly ToolDefinition[] | null;
}

/**
 * What the renderer itself defines, which a template variable may not replace: the
 * conversation, the special tokens, and the globals transformers gives every template
 * (the literals true/false/none among them).
 */
export const RESERVED_TEMPLATE_VARIABLES: ReadonlySet<string> = new Set([
  'messages', 'add_generation_prompt', 'tools', 'documents',
  'bos_token', 'eos_token', 'pad_token', 'unk_token',
  'raise_exception', 'strftime_now', 'range',
  'true', 'false', 'none', 'True', 'False', 'None',
]);

/**
 * Throws a USAGE error naming the first key of `variables` that is not a plain name
 * (letters, digits, _; what a template can read) or is reserved. `label` starts the
 * message ("chat: --template-var"), so each caller says where the key came from.
 */
export function checkTemplateVariables(variables: Readonly<Record<string, unknown>> | undefined, label = 'template variable'): void {
  if (variables === undefined) return;
  if (typeof variables !== 'object' || variables === null || Array.isArray(variables)) {
    throw new SluiceError('USAGE', `${label}: template variables must be an object of name → value`);
  }
  for (const key of Object.keys(variables)) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) throw new SluiceError('USAGE', `${label}: ${JSON.stringify(key)} is not a template variable name (letters, digits and _, not first a digit)`);
    if (RESERVED_TEMPLATE_VARIABLES.has(key)) throw new SluiceError('USAGE', `${label}: ${key} is set by sluice and cannot be a template variable`);
  }
}

/** The special tokens a template may print, as strings. */
export interface TemplateTokens {
  bos_token?: string;
  eos_token?: string;
  pad_token?: string;
  unk_token?: string;
}

export class ChatTemplate {
  private readonly template: Template;

  /**
   * @param text the Jinja source
   * @param source the file it came from, named in errors (`dir/chat_template.jinja`)
   */
  constructor(
    readonly text: string,
    readonly source: string,
    readonly tokens: TemplateTokens = {},
    /** Given as `tools` to every render that names none (see withTools). */
    private readonly tools: readonly ToolDefinition[] | null = null,
  ) {
    try {
      // Template() lexes with trim_blocks and lstrip_blocks, as transformers' environment does.
      this.template = new Template(text);
    } catch (e) {
      throw new SluiceError('UNSUPPORTED_FORMAT', `${source}: the chat template does not parse (${(e as Error).message})`, { cause: e });
    }
  }

  /** This template, rendering `tools` (none: null or empty) unless a render names its own. */
  withTools(tools: readonly ToolDefinition[] | null): ChatTemplate {
    return tools?.length ? new ChatTemplate(this.text, this.source, this.tokens, tools) : this;
  }

  /** The prompt text for `messages`; tokenize it with addSpecialTokens: false (it holds bos already). */
  render(messages: readonly ChatMessage[], options: RenderOptions = {}): string {
    checkMessages(messages);
    checkTemplateVariables(options.variables);
    const now = options.now ?? new Date();
    // Template.render() cannot be used: it declares raise_exception and strftime_now itself
    // and throws "Variable already declared" when given them. So the globals are set here,
    // mirroring the library's setupGlobals (0.5.11) and replacing those two.
    const env = new Environment();
    const globals: Record<string, unknown> = {
      true: true, false: false, none: null, True: true, False: false, None: null,
      range,
      raise_exception: (message: unknown) => {
        throw new TemplateRaised(String(message));
      },
      strftime_now: (format: unknown) => strftime(now, String(format)),
      ...Object.fromEntries(Object.entries(this.tokens).filter(([, v]) => v !== undefined)),
      messages: messages.map(templateMessage),
      add_generation_prompt: options.addGenerationPrompt ?? false,
      tools: templateTools(options.tools === undefined ? this.tools : options.tools),
      documents: null,
      ...options.variables, // checked above: none of them replaces what is set here
    };
    for (const [name, value] of Object.entries(globals)) env.set(name, value);
    try {
      const out = new Interpreter(env).run(this.template.parsed).value;
      if (typeof out !== 'string') throw new Error(`rendered to ${typeof out}, not text`);
      return out;
    } catch (e) {
      if (e instanceof TemplateRaised) {
        throw new SluiceError('UNSUPPORTED_FORMAT', `${this.source}: the chat template refuses these messages: ${e.message}`);
      }
      throw new SluiceError('UNSUPPORTED_FORMAT', `${this.source}: the chat template failed (${(e as Error).message})`, { cause: e });
    }
  }
}

/**
 * The template text from tokenizer_config.json's "chat_template": a string, or the list
 * form [{name, template}] from which `name` (default "default") is taken. Null when absent.
 */
export function templateFromConfig(config: Readonly<Record<string, unknown>>, label: string, name = 'default'): string | null {
  const value = config.chat_template;
  if (value === undefined || value === null) return null;
  if (typeof value === 'string') return value;
  const bad = () => new SluiceError('INVALID_JSON', `${label}: chat_template must be a string or a list of {"name", "template"}`);
  if (!Array.isArray(value)) throw bad();
  const named = new Map<string, string>();
  for (const entry of value) {
    if (typeof entry !== 'object' || entry === null || typeof entry.name !== 'string' || typeof entry.template !== 'string') throw bad();
    named.set(entry.name, entry.template);
  }
  const text = named.get(name);
  if (text === undefined) {
    throw new SluiceError('UNSUPPORTED_FORMAT', `${label}: no chat template named "${name}" (it has ${[...named.keys()].map((n) => `"${n}"`).join(', ') || 'none'})`);
  }
  return text;
}

/**
 * The model's chat template: `chat_template.jinja` when the directory has one (it wins, as
 * in transformers), else tokenizer_config.json's. Throws when there is neither.
 */
export async function loadChatTemplate(readFile: ReadModelFile, tokenizer: Tokenizer, options: { name?: string } = {}): Promise<ChatTemplate> {
  const where = tokenizer.where;
  const tokens = templateTokens(tokenizer);
  const jinja = await readFile('chat_template.jinja');
  if (jinja !== null) return new ChatTemplate(jinja, fileLabel(where, 'chat_template.jinja'), tokens);
  const configLabel = fileLabel(where, 'tokenizer_config.json');
  const text = templateFromConfig(tokenizer.config, configLabel, options.name);
  if (text === null) {
    throw new SluiceError('UNSUPPORTED_FORMAT', `${where ?? 'this model'}: no chat template (no chat_template.jinja, and ${configLabel} has no "chat_template"); \`sluice generate\` still works, on raw text`);
  }
  return new ChatTemplate(text, configLabel, tokens);
}

export function templateTokens(tokenizer: Tokenizer): TemplateTokens {
  return {
    bos_token: tokenizer.bos?.token,
    eos_token: tokenizer.eos?.token,
    pad_token: tokenizer.pad?.token,
    unk_token: tokenizer.unk?.token,
  };
}

// ── helpers ─────────────────────────────────────────────────────────────────────────────

class TemplateRaised extends Error {}

function checkMessages(messages: readonly ChatMessage[]): void {
  if (!Array.isArray(messages)) throw new TypeError('ChatTemplate.render: messages must be a list');
  messages.forEach((m, i) => {
    if (typeof m !== 'object' || m === null || typeof m.role !== 'string' || typeof m.content !== 'string') {
      throw new TypeError(`ChatTemplate.render: messages[${i}] must be {role: string, content: string}`);
    }
    const calls: unknown = m.tool_calls;
    if (calls !== undefined && !(Array.isArray(calls) && calls.every((c) => typeof c?.function?.name === 'string' && typeof c.function.arguments === 'string'))) {
      throw new TypeError(`ChatTemplate.render: messages[${i}].tool_calls must be a list of {id, type: "function", function: {name, arguments}}`);
    }
    for (const key of ['tool_call_id', 'name'] as const) {
      if (m[key] !== undefined && typeof m[key] !== 'string') throw new TypeError(`ChatTemplate.render: messages[${i}].${key} must be a string`);
    }
  });
}

/**
 * A message as HF templates read it: keys only where set (Llama 3.1's template tests
 * `'tool_calls' in message`), a call's arguments as an object (Qwen's and Llama's write
 * `tool_call.arguments | tojson`; vLLM parses them the same way before rendering).
 */
function templateMessage(m: ChatMessage, i: number): Record<string, unknown> {
  const out: Record<string, unknown> = { role: m.role, content: m.content };
  if (m.tool_calls) {
    out.tool_calls = m.tool_calls.map((c, j) => {
      let args: unknown;
      try {
        args = JSON.parse(c.function.arguments);
      } catch {
        throw new SluiceError('USAGE', `messages[${i}].tool_calls[${j}].function.arguments is not JSON text`);
      }
      return { id: c.id, type: 'function', function: { name: c.function.name, arguments: args } };
    });
  }
  if (m.tool_call_id !== undefined) out.tool_call_id = m.tool_call_id;
  if (m.name !== undefined) out.name = m.name;
  return out;
}

/** Tools as the template gets them: an empty list is None (Llama's template tests `tools is not none`). */
function templateTools(tools: readonly ToolDefinition[] | null | undefined): ToolDefinition[] | null {
  return tools?.length ? [...tools] : null;
}

/** Python's range(), as the library's own global. */
function range(start: number, stop?: number, step = 1): number[] {
  if (stop === undefined) [start, stop] = [0, start];
  if (step === 0) throw new Error('range() step must not be zero');
  const out: number[] = [];
  for (let i = start; step > 0 ? i < stop : i > stop; i += step) out.push(i);
  return out;
}

const MONTHS = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December'];
const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];

/**
 * Python's `datetime.now().strftime(format)` in the C locale (English names, local time),
 * which is what transformers' strftime_now runs. The library's own uses the host's locale
 * for month names and knows fewer directives. Unknown directives are kept as written.
 */
export function strftime(date: Date, format: string): string {
  const pad = (n: number, width = 2) => String(n).padStart(width, '0');
  const hour12 = date.getHours() % 12 || 12;
  const startOfYear = new Date(date.getFullYear(), 0, 1);
  const dayOfYear = Math.round((new Date(date.getFullYear(), date.getMonth(), date.getDate()).getTime() - startOfYear.getTime()) / 86_400_000) + 1;
  return format.replace(/%[a-zA-Z%]/g, (d) => {
    switch (d) {
      case '%Y': return String(date.getFullYear());
      case '%y': return pad(date.getFullYear() % 100);
      case '%m': return pad(date.getMonth() + 1);
      case '%d': return pad(date.getDate());
      case '%e': return String(date.getDate()).padStart(2, ' ');
      case '%j': return pad(dayOfYear, 3);
      case '%H': return pad(date.getHours());
      case '%I': return pad(hour12);
      case '%M': return pad(date.getMinutes());
      case '%S': return pad(date.getSeconds());
      case '%p': return date.getHours() < 12 ? 'AM' : 'PM';
      case '%B': return MONTHS[date.getMonth()];
      case '%b': return MONTHS[date.getMonth()].slice(0, 3);
      case '%A': return DAYS[date.getDay()];
      case '%a': return DAYS[date.getDay()].slice(0, 3);
      case '%%': return '%';
      default: return d;
    }
  });
}

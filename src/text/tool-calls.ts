// Tool (function) calling, text side: OpenAI's shapes for tools and calls, which syntax a
// model writes its calls in (read off its chat template), and a streaming parser that
// turns the model's text back into calls. The parser never fails: text that is not a
// well-formed call of a given tool stays content, as written.
//
// Syntaxes (what vLLM's tool parsers read; vllm/entrypoints/openai/tool_parsers/):
//   hermes       <tool_call>\n{"name": "f", "arguments": {...}}\n</tool_call>, any number,
//                after some content (Hermes 2 Pro, Qwen2.5, Qwen3; hermes_tool_parser.py)
//   llama3-json  {"name": "f", "parameters": {...}} as the whole reply, possibly after
//                <|python_tag|>, several joined by ";" (Llama 3.1–3.3; llama_tool_parser.py)

import { SluiceError, quote } from '../errors.js';

/** A function the model may call (OpenAI's `tools[]` entry; HF templates take the same). */
export interface ToolDefinition {
  type: 'function';
  function: {
    name: string;
    description?: string;
    /** A JSON schema of the arguments object; absent: the function takes none. */
    parameters?: Record<string, unknown>;
    /** OpenAI's function.strict: keywords a grammar cannot enforce are refused (true) or ignored (false, the default). */
    strict?: boolean;
  };
}

/** OpenAI's tool_choice. 'auto' (the default with tools): the model decides; 'none': no call;
 *  'required': one call of any tool; a named function: one call of it. */
export type ToolChoice = 'auto' | 'none' | 'required' | { type: 'function'; function: { name: string } };

/** A call the model made (OpenAI's `message.tool_calls[]` entry). */
export interface ToolCall {
  /** `call_` + 24 random letters and digits. */
  id: string;
  type: 'function';
  function: {
    name: string;
    /** The arguments object as JSON text. */
    arguments: string;
  };
}

export type ToolCallSyntax = 'hermes' | 'llama3-json';

/** How each syntax writes one call, for the parser and for the grammar of a required call. */
export const TOOL_SYNTAXES: Readonly<Record<ToolCallSyntax, { open: string; close: string; argumentsKey: string }>> = {
  hermes: { open: '<tool_call>\n', close: '\n</tool_call>', argumentsKey: 'arguments' },
  'llama3-json': { open: '', close: '', argumentsKey: 'parameters' },
};

/** OpenAI's limit on tools per request. */
export const MAX_TOOLS = 128;
const NAME = /^[A-Za-z0-9_-]{1,64}$/; // OpenAI's rule for function names

/**
 * The syntax a chat template teaches its model, from the template's text: `<tool_call>`
 * with JSON `"arguments"` is Hermes (the XML-style `<function=…>` calls of Qwen3-Coder are
 * not); `"parameters"` with `<|python_tag|>` or the `ipython` role is Llama 3.1's JSON.
 * Null: the template renders no tools, or in a syntax sluice does not parse.
 */
export function toolCallSyntax(templateText: string): ToolCallSyntax | null {
  if (!/\btools\b/.test(templateText)) return null;
  if (templateText.includes('<tool_call>') && templateText.includes('"arguments"') && !templateText.includes('<function=')) return 'hermes';
  if (templateText.includes('"parameters"') && (templateText.includes('<|python_tag|>') || templateText.includes('ipython'))) return 'llama3-json';
  return null;
}

const usage = (message: string) => new SluiceError('USAGE', message);
const isObject = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);

/** Checks `tools` (a list of ToolDefinition); USAGE naming `${label}[i]…` when malformed. */
export function checkTools(tools: unknown, label = 'tools'): ToolDefinition[] {
  if (!Array.isArray(tools)) throw usage(`${label} must be a list of {"type": "function", "function": {...}}`);
  if (tools.length > MAX_TOOLS) throw usage(`${label} has ${tools.length} tools; at most ${MAX_TOOLS}`);
  const names = new Set<string>();
  return tools.map((tool, i) => {
    const at = `${label}[${i}]`;
    if (!isObject(tool) || tool.type !== 'function' || !isObject(tool.function)) throw usage(`${at} must be {"type": "function", "function": {"name", "description", "parameters"}}`);
    const { name, description, parameters, strict } = tool.function;
    if (typeof name !== 'string' || !NAME.test(name)) throw usage(`${at}.function.name must be 1 to 64 letters, digits, _ or -${typeof name === 'string' ? `, not ${quote(name, 80)}` : ''}`);
    if (names.has(name)) throw usage(`${at}.function.name: ${quote(name)} is given twice`);
    names.add(name);
    if (description !== undefined && description !== null && typeof description !== 'string') throw usage(`${at}.function.description must be a string`);
    if (parameters !== undefined && parameters !== null && !isObject(parameters)) throw usage(`${at}.function.parameters must be a JSON schema object`);
    if (strict !== undefined && strict !== null && typeof strict !== 'boolean') throw usage(`${at}.function.strict must be true or false`);
    const fn: ToolDefinition['function'] = { name };
    if (typeof description === 'string') fn.description = description;
    if (isObject(parameters)) fn.parameters = parameters;
    if (typeof strict === 'boolean') fn.strict = strict;
    return { type: 'function', function: fn };
  });
}

/** Checks a tool choice against the tools; USAGE naming `label` when it is malformed or names no tool. */
export function checkToolChoice(choice: unknown, tools: readonly ToolDefinition[] | undefined, label = 'toolChoice'): ToolChoice {
  if (choice === 'auto' || choice === 'none' || choice === 'required') {
    if (choice === 'required' && !tools?.length) throw usage(`${label} "required" needs tools`);
    return choice;
  }
  if (!isObject(choice) || choice.type !== 'function' || !isObject(choice.function) || typeof choice.function.name !== 'string') {
    throw usage(`${label} must be "auto", "none", "required" or {"type": "function", "function": {"name": …}}`);
  }
  const name = choice.function.name;
  if (!tools?.some((t) => t.function.name === name)) throw usage(`${label}: no tool is named ${quote(name)}`);
  return { type: 'function', function: { name } };
}

/** A fresh call id, `call_` + 24 letters and digits (browser-safe: crypto.getRandomValues). */
export function newToolCallId(): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  return `call_${Array.from(crypto.getRandomValues(new Uint8Array(24)), (b) => alphabet[b % alphabet.length]).join('')}`;
}

/** What the parser has made of the text so far: content to show, and finished calls. */
export interface ParsedPiece {
  content: string;
  calls: ToolCall[];
}

const HERMES_OPEN = '<tool_call>';
const HERMES_CLOSE = '</tool_call>';
const PYTHON_TAG = '<|python_tag|>';

/**
 * Streams a reply's text through; content comes out as soon as it cannot be the start of a
 * call, calls once they are complete. The result does not depend on how the text is cut
 * into pushes, so a streamed reply and a whole one parse alike. A call is a JSON object
 * naming one of `toolNames`, with an arguments object; anything else is left as content.
 * Whitespace around calls is dropped; a reply without calls comes out exactly as written.
 */
export class ToolCallParser {
  private pending = '';
  /** Whitespace held back: shown when text follows it, dropped when a call does (or the reply ends after calls). */
  private heldSpace = '';
  /** Hermes: inside <tool_call>…; llama3-json: 'start' until the first non-space, then 'json' or 'text'. */
  private mode: 'text' | 'call' | 'start' | 'json' = 'start';
  private calls = 0;

  constructor(
    readonly syntax: ToolCallSyntax,
    private readonly toolNames: ReadonlySet<string>,
    private readonly newId: () => string = newToolCallId,
  ) {
    if (syntax === 'hermes') this.mode = 'text';
  }

  push(text: string): ParsedPiece {
    this.pending += text;
    const out: ParsedPiece = { content: '', calls: [] };
    if (this.syntax === 'hermes') this.hermes(out, false);
    else this.llama(out, false);
    return out;
  }

  /** The end of the reply: what was held back, as content or calls. */
  end(): ParsedPiece {
    const out: ParsedPiece = { content: '', calls: [] };
    if (this.syntax === 'hermes') this.hermes(out, true);
    else this.llama(out, true);
    if (this.calls === 0) out.content += this.heldSpace; // a reply without calls loses nothing
    this.heldSpace = '';
    return out;
  }

  private hermes(out: ParsedPiece, end: boolean): void {
    for (;;) {
      if (this.mode === 'text') {
        const at = this.pending.indexOf(HERMES_OPEN);
        if (at >= 0) {
          this.show(out, this.pending.slice(0, at));
          this.pending = this.pending.slice(at + HERMES_OPEN.length);
          this.mode = 'call';
          continue;
        }
        const keep = end ? 0 : partialSuffix(this.pending, HERMES_OPEN);
        this.show(out, this.pending.slice(0, this.pending.length - keep));
        this.pending = this.pending.slice(this.pending.length - keep);
        return;
      }
      const at = this.pending.indexOf(HERMES_CLOSE);
      if (at < 0 && !end) return;
      // A call the reply ended inside counts when its JSON is complete (vLLM's hermes parser accepts it too).
      const body = at < 0 ? this.pending : this.pending.slice(0, at);
      const call = this.call(body);
      if (call) {
        out.calls.push(call);
        this.heldSpace = ''; // the whitespace before a call goes with it
      } else this.show(out, HERMES_OPEN + body + (at < 0 ? '' : HERMES_CLOSE));
      this.pending = at < 0 ? '' : this.pending.slice(at + HERMES_CLOSE.length);
      this.mode = 'text';
      if (at < 0) return;
    }
  }

  private llama(out: ParsedPiece, end: boolean): void {
    if (this.mode === 'start') {
      const rest = this.pending.trimStart();
      // Only whitespace so far, or what may still become <|python_tag|>: wait.
      if (!end && (rest === '' || (rest.length < PYTHON_TAG.length && PYTHON_TAG.startsWith(rest)))) return;
      this.mode = rest.startsWith('{') || rest.startsWith(PYTHON_TAG) ? 'json' : 'text';
    }
    if (this.mode === 'text') {
      out.content += this.heldSpace + this.pending;
      this.heldSpace = this.pending = '';
      return;
    }
    if (!end) return; // a JSON reply is judged whole
    const calls = this.llamaCalls(this.pending.trim());
    if (calls) out.calls.push(...calls);
    else out.content += this.pending; // not calls after all: the whole reply, as written
    this.pending = '';
  }

  /** `{…}` or `<|python_tag|>{…}; {…}` → calls, or null when any part is not one. */
  private llamaCalls(text: string): ToolCall[] | null {
    if (text.startsWith(PYTHON_TAG)) text = text.slice(PYTHON_TAG.length).trim();
    const calls: ToolCall[] = [];
    for (const part of splitTopLevel(text)) {
      const call = this.call(part);
      if (!call) return null;
      calls.push(call);
    }
    return calls.length > 0 ? calls : null;
  }

  /** One call's JSON text → a call of a known tool, or null. */
  private call(json: string): ToolCall | null {
    let value: unknown;
    try {
      value = JSON.parse(json);
    } catch {
      return null;
    }
    if (!isObject(value) || typeof value.name !== 'string' || !this.toolNames.has(value.name)) return null;
    const keys = Object.keys(value).filter((k) => k !== 'name' && !(k === 'type' && value.type === 'function'));
    // The arguments under the syntax's key, or the other one (models mix them up), or none.
    if (keys.length > 1 || (keys.length === 1 && keys[0] !== 'arguments' && keys[0] !== 'parameters')) return null;
    let args = keys.length === 1 ? value[keys[0]] : {};
    if (typeof args === 'string') {
      try {
        args = JSON.parse(args); // some models write the arguments as a JSON string
      } catch {
        return null;
      }
    }
    if (!isObject(args)) return null;
    this.calls++;
    return { id: this.newId(), type: 'function', function: { name: value.name, arguments: JSON.stringify(args) } };
  }

  /** Content out, the whitespace at its end held until what follows is known. */
  private show(out: ParsedPiece, text: string): void {
    const all = this.heldSpace + text;
    const trimmed = all.trimEnd();
    out.content += trimmed;
    this.heldSpace = all.slice(trimmed.length);
  }
}

/** Length of the longest suffix of `text` that is a proper prefix of `marker`. */
function partialSuffix(text: string, marker: string): number {
  for (let n = Math.min(marker.length - 1, text.length); n > 0; n--) {
    if (text.endsWith(marker.slice(0, n))) return n;
  }
  return 0;
}

/** `{…}; {…}` → each top-level `{…}` text (strings and nesting respected), or [text] when it is not such a list. */
function splitTopLevel(text: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let inString = false;
  let begin = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === '{') depth++;
    else if (c === '}') {
      if (--depth < 0) return [text];
      if (depth > 0) continue;
      parts.push(text.slice(begin, i + 1));
      const next = text.slice(i + 1).match(/^\s*;?\s*/)![0];
      i += next.length;
      begin = i + 1;
    } else if (depth === 0 && !/\s/.test(c)) return [text];
  }
  if (begin < text.length || depth !== 0) return [text];
  return parts;
}

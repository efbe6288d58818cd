// What a chat request's response format and tools make of its reply: the tools the chat
// template renders, the grammar the reply must match, and the syntax its tool calls are
// parsed from. Built (and its grammar compiled) before generation starts, so a bad schema
// is the request's error, never a failure halfway through a reply.
//
//   tool_choice   tools rendered   grammar                                   parsed
//   none          no               the response format's (if any)            no
//   auto          yes              none, or call | response format (JSON)   yes
//   required      yes              one call of any tool                      yes
//   {function}    yes              one call of that tool                     yes
//
// A call's grammar is the syntax's literal text around {"name": "<tool>", "<key>": ARGS},
// ARGS compiled from the tool's `parameters` schema by the grammar module's JSON-schema
// front end; the pieces are joined at the grammar IR (rules appended, refs shifted), as
// GBNF cannot embed a JSON schema.

import { SluiceError } from '../errors.js';
import { type Automaton, DEFAULT_LIMITS, buildAutomaton } from '../grammar/automaton.js';
import { type Expr, type Grammar, type GrammarRule, alt, literal, ref, seq } from '../grammar/expr.js';
import { CompiledGrammar, type TokenVocabulary, compileGrammar } from '../grammar/index.js';
import { jsonSchemaGrammar } from '../grammar/json-schema.js';
import { TOOL_SYNTAXES, type ToolCallSyntax, type ToolChoice, type ToolDefinition, checkToolChoice, checkTools } from '../text/tool-calls.js';

/**
 * The reply's format (OpenAI's response_format): free text, any JSON object, or JSON
 * matching `schema`. `strict` (default false, as OpenAI's) refuses schema keywords a
 * grammar cannot enforce; false ignores them (the reply may then not satisfy them).
 */
export type ResponseFormat = { type: 'text' } | { type: 'json_object' } | { type: 'json_schema'; schema: unknown; strict?: boolean; name?: string };

export interface ChatPlanRequest {
  responseFormat?: ResponseFormat;
  tools?: readonly ToolDefinition[];
  /** Default: 'auto' with tools. */
  toolChoice?: ToolChoice;
}

export interface ChatPlan {
  /** Given to the chat template as `tools` (null: none). */
  tools: ToolDefinition[] | null;
  grammar?: CompiledGrammar;
  /** Parse the reply's tool calls in this syntax, of these tools (null: it has none). */
  parse: { syntax: ToolCallSyntax; names: ReadonlySet<string> } | null;
}

/** How errors name the request's fields (the server uses OpenAI's). */
export interface ChatPlanLabels {
  responseFormat: string;
  /** The response format's schema. */
  schema: string;
  tools: string;
  toolChoice: string;
}

export const LIBRARY_LABELS: ChatPlanLabels = { responseFormat: 'responseFormat', schema: 'responseFormat.schema', tools: 'tools', toolChoice: 'toolChoice' };

export interface ChatPlanContext {
  /** The tool-call syntax of the model's template (null: it takes no tools sluice can parse). */
  syntax: ToolCallSyntax | null;
  /** Where the syntax came from, for the error when there is none. */
  templateSource: string;
  /** The model's vocabulary; compiles grammars. */
  vocabulary: () => TokenVocabulary;
}

/** Checks the request and compiles its grammar; USAGE naming the field (and schema keyword) when it cannot. */
export function planChat(request: ChatPlanRequest, context: ChatPlanContext, labels: ChatPlanLabels = LIBRARY_LABELS): ChatPlan {
  const format = checkResponseFormat(request.responseFormat, labels.responseFormat);
  const tools = request.tools === undefined || request.tools === null ? undefined : checkTools(request.tools, labels.tools);
  const choice = request.toolChoice === undefined || request.toolChoice === null ? 'auto' : checkToolChoice(request.toolChoice, tools, labels.toolChoice);
  if (request.toolChoice !== undefined && request.toolChoice !== null && tools === undefined) throw usage(`${labels.toolChoice} needs ${labels.tools}`);
  if (!tools?.length || choice === 'none') return { tools: null, grammar: format && formatGrammar(format, context.vocabulary(), labels.schema), parse: null };

  const syntax = context.syntax;
  if (!syntax) {
    throw usage(`${labels.tools}: ${context.templateSource} does not render tools in a tool-call syntax sluice parses (Hermes <tool_call> JSON, or Llama 3.1 JSON)`);
  }
  const parse = { syntax, names: new Set(tools.map((t) => t.function.name)) };
  if (choice === 'auto' && !format) return { tools, parse };
  const called = typeof choice === 'object' ? tools.filter((t) => t.function.name === choice.function.name) : tools;
  const grammar = joinGrammars(context.vocabulary(), (join) => {
    const calls = called.map((t, i) => callExpr(join, syntax, t, `${labels.tools}[${tools.indexOf(t)}].function.parameters`, i));
    const alternatives = choice === 'auto' ? [...calls, join.add(formatIr(format!, labels.schema), labels.schema)] : calls;
    return alt(...alternatives);
  });
  return { tools, grammar, parse };
}

/** Checks a ResponseFormat; undefined for free text. */
export function checkResponseFormat(value: unknown, label = 'responseFormat'): Exclude<ResponseFormat, { type: 'text' }> | undefined {
  if (value === undefined || value === null) return undefined;
  const f = value as Record<string, unknown>;
  if (typeof value !== 'object' || Array.isArray(value)) throw usage(`${label} must be an object: {type: "text" | "json_object" | "json_schema"}`);
  if (f.type === 'text') return undefined;
  if (f.type === 'json_object') return { type: 'json_object' };
  if (f.type !== 'json_schema') throw usage(`${label}.type must be "text", "json_object" or "json_schema"${typeof f.type === 'string' ? `, not ${JSON.stringify(f.type.slice(0, 40))}` : ''}`);
  if (typeof f.schema !== 'object' && typeof f.schema !== 'boolean') throw usage(`${label}: json_schema needs a schema (an object)`);
  if (f.strict !== undefined && f.strict !== null && typeof f.strict !== 'boolean') throw usage(`${label}.strict must be true or false`);
  return { type: 'json_schema', schema: f.schema, strict: f.strict === true };
}

const usage = (message: string) => new SluiceError('USAGE', message);

function formatGrammar(format: Exclude<ResponseFormat, { type: 'text' }>, vocab: TokenVocabulary, label: string): CompiledGrammar {
  if (format.type === 'json_object') return compileGrammar({ jsonObject: true }, vocab);
  return relabelled(label, () => compileGrammar({ jsonSchema: format.schema, strict: format.strict === true }, vocab));
}

/** The format as grammar IR (json_object: a schema of any object, which compiles to the same). */
function formatIr(format: Exclude<ResponseFormat, { type: 'text' }>, label: string): Grammar {
  const schema = format.type === 'json_object' ? { type: 'object' } : format.schema;
  const strict = format.type === 'json_schema' && format.strict === true;
  return relabelled(label, () => jsonSchemaGrammar(schema, { strict, whitespace: 'bounded' }));
}

/** One call of `tool`: the syntax's text around {"name": …, "<key>": <parameters>}. */
function callExpr(join: GrammarJoin, syntax: ToolCallSyntax, tool: ToolDefinition, label: string, i: number): Expr {
  const { open, close, argumentsKey } = TOOL_SYNTAXES[syntax];
  // No parameters: the function takes none (OpenAI), so its arguments are {}.
  const schema = tool.function.parameters ?? { type: 'object', properties: {}, additionalProperties: false };
  const strict = tool.function.strict === true;
  const args = join.add(relabelled(label, () => jsonSchemaGrammar(schema, { strict, whitespace: 'bounded' })), label);
  const head = `${open}{"name": ${JSON.stringify(tool.function.name)}, ${JSON.stringify(argumentsKey)}: `;
  return join.share(`tool call ${i}`, seq(literal(head), args, literal(`}${close}`)));
}

/** The JSON-schema front end names paths from `schema`; a request names its own field. */
function relabelled<T>(label: string, compile: () => T): T {
  try {
    return compile();
  } catch (e) {
    if (e instanceof SluiceError && e.code === 'USAGE' && e.message.startsWith('schema')) throw usage(label + e.message.slice('schema'.length));
    throw e;
  }
}

/** Grammars appended into one rule list. */
interface GrammarJoin {
  /** Appends `g`'s rules (names under `label`, refs shifted); a ref to its root. */
  add(g: Grammar, label: string): Expr;
  /** A new rule holding `body`, as a ref. */
  share(name: string, body: Expr): Expr;
}

/** Builds a root from joined grammars and compiles it, as compileGrammar does for one. */
function joinGrammars(vocab: TokenVocabulary, build: (join: GrammarJoin) => Expr): CompiledGrammar {
  const started = performance.now();
  if (vocab.eosIds.length === 0) throw usage('the vocabulary has no eos id, so a complete reply could not end');
  const rules: GrammarRule[] = [];
  const join: GrammarJoin = {
    add(g, label) {
      const offset = rules.length;
      const memo = new Map<Expr, Expr>();
      for (const r of g.rules) rules.push({ name: r.name.startsWith('schema') ? label + r.name.slice('schema'.length) : r.name, body: shift(r.body, offset, memo) });
      return ref(g.root + offset);
    },
    share(name, body) {
      rules.push({ name, body });
      return ref(rules.length - 1);
    },
  };
  const body = build(join);
  rules.push({ name: 'reply', body });
  const automaton: Automaton = buildAutomaton({ rules, root: rules.length - 1 }, DEFAULT_LIMITS);
  return new CompiledGrammar(automaton, vocab, { compileMs: performance.now() - started, states: automaton.numStates, rules: automaton.ruleNames.length });
}

/** `e` with every rule reference moved by `by`; shared subtrees stay shared (memo). */
function shift(e: Expr, by: number, memo: Map<Expr, Expr>): Expr {
  if (by === 0 || e.k === 'byte') return e;
  const seen = memo.get(e);
  if (seen) return seen;
  let out: Expr;
  if (e.k === 'ref') out = ref(e.rule + by);
  else if (e.k === 'rep') out = { ...e, item: shift(e.item, by, memo) };
  else out = { k: e.k, items: e.items.map((item) => shift(item, by, memo)) };
  memo.set(e, out);
  return out;
}

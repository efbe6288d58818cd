// Constrained decoding, CPU side: a JSON schema, `json_object`, a regex or a GBNF grammar
// is compiled once per request against the model's vocabulary; then, each step, a matcher
// fills the allowed-token bitmask (bit i of word i>>5 = token i may be sampled) and accepts
// the sampled token. When the grammar is complete only eos is allowed.
//
//   const vocab = TokenVocabulary.fromTokenizer(tokenizer, { vocabSize: config.vocabSize, eosIds });
//   const grammar = compileGrammar({ jsonSchema: schema }, vocab);   // throws USAGE naming the keyword
//   const m = grammar.start();
//   const mask = new Uint32Array(vocab.maskWords);
//   for (;;) { m.fillMask(mask); const id = sample(logits, mask); if (!m.accept(id) || m.done) break; }
//
// Pipeline: front end (json-schema.ts, regex.ts, gbnf.ts) → byte-level grammar IR (expr.ts)
// → per-rule DFAs with calls (automaton.ts, checked by automaton-checks.ts) → matcher over
// the vocabulary trie (matcher.ts, vocabulary.ts).

import { SluiceError } from '../errors.js';
import { type Automaton, type AutomatonLimits, DEFAULT_LIMITS, buildAutomaton } from './automaton.js';
import { utf8Class } from './codepoints.js';
import { type Grammar, GrammarBuilder } from './expr.js';
import { parseGbnf } from './gbnf.js';
import { jsonSchemaGrammar } from './json-schema.js';
import { JsonLexicon, type WhitespacePolicy } from './json-text.js';
import { GrammarMatcher, GrammarRuntime } from './matcher.js';
import { parseRegex } from './regex.js';
import type { TokenVocabulary } from './vocabulary.js';

export { GrammarMatcher } from './matcher.js';
export { TokenVocabulary, type TokenDecoding, type VocabularyOptions } from './vocabulary.js';
export type { WhitespacePolicy } from './json-text.js';
export { MAX_INDENT } from './json-text.js';
export { MAX_PROPERTIES, MAX_DEPTH } from './json-schema.js';
export { SUPPORTED_FORMATS } from './json-schema-types.js';

export type GrammarSource =
  /** A JSON Schema; strict (default true) refuses keywords it cannot enforce, false ignores them. */
  | { jsonSchema: unknown; strict?: boolean }
  /** Any JSON object (OpenAI's response_format json_object). */
  | { jsonObject: true }
  /** A JavaScript-syntax regex the whole output must match (see regex.ts for the subset). */
  | { regex: string }
  /** A GBNF grammar (see gbnf.ts); its `root` rule must match the whole output. */
  | { grammar: string };

export interface GrammarOptions {
  /** JSON sources: whitespace between tokens; 'bounded' (default) = nothing, a space, or a
   *  newline and up to MAX_INDENT spaces/tabs; 'none' = compact JSON. */
  whitespace?: WhitespacePolicy;
  /** Automaton size budgets (defaults: DEFAULT_LIMITS). */
  limits?: Partial<AutomatonLimits>;
}

export interface GrammarStats {
  /** Wall time of compileGrammar. */
  compileMs: number;
  /** Automaton states and rules with their own automaton (1 = no recursion, no stack). */
  states: number;
  rules: number;
}

export class CompiledGrammar {
  private readonly runtime: GrammarRuntime;

  constructor(
    automaton: Automaton,
    readonly vocab: TokenVocabulary,
    readonly stats: GrammarStats,
  ) {
    this.runtime = new GrammarRuntime(automaton, vocab);
  }

  /** A matcher at the start of the output. Matchers of one grammar share its caches. */
  start(): GrammarMatcher {
    return new GrammarMatcher(this.runtime);
  }
}

/** Compiles `source` against `vocab`; USAGE naming the keyword, line or position when it cannot. */
export function compileGrammar(source: GrammarSource, vocab: TokenVocabulary, options: GrammarOptions = {}): CompiledGrammar {
  const started = performance.now();
  if (vocab.eosIds.length === 0) throw new SluiceError('USAGE', 'compileGrammar: the vocabulary has no eos id, so a complete output could not end');
  const automaton = buildAutomaton(toGrammar(source, options), { ...DEFAULT_LIMITS, ...options.limits });
  const stats = { compileMs: performance.now() - started, states: automaton.numStates, rules: automaton.ruleNames.length };
  return new CompiledGrammar(automaton, vocab, stats);
}

function toGrammar(source: GrammarSource, options: GrammarOptions): Grammar {
  const keys = typeof source === 'object' && source !== null ? Object.keys(source).filter((k) => k !== 'strict') : [];
  if (keys.length !== 1) throw new SluiceError('USAGE', 'compileGrammar: the source must be one of {jsonSchema}, {jsonObject: true}, {regex}, {grammar}');
  const whitespace = options.whitespace ?? 'bounded';
  if (whitespace !== 'bounded' && whitespace !== 'none') throw new SluiceError('USAGE', `compileGrammar: whitespace must be "bounded" or "none", not ${JSON.stringify(whitespace)}`);
  if ('jsonSchema' in source) {
    const strict = source.strict ?? true;
    if (typeof strict !== 'boolean') throw new SluiceError('USAGE', 'compileGrammar: strict must be true or false');
    return jsonSchemaGrammar(source.jsonSchema, { strict, whitespace });
  }
  if ('jsonObject' in source) {
    const builder = new GrammarBuilder();
    const root = builder.declare('json_object');
    builder.define(root, new JsonLexicon(builder, whitespace).anyObject());
    return builder.build(root);
  }
  if ('regex' in source) {
    if (typeof source.regex !== 'string') throw new SluiceError('USAGE', 'compileGrammar: regex must be a string');
    const builder = new GrammarBuilder();
    const root = builder.declare('regex');
    builder.define(root, parseRegex(source.regex, { chars: utf8Class, where: 'regex' }));
    return builder.build(root);
  }
  if ('grammar' in source && typeof source.grammar === 'string') return parseGbnf(source.grammar);
  throw new SluiceError('USAGE', 'compileGrammar: grammar must be a string');
}

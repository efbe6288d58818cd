// JSON's lexical pieces as grammar IR (RFC 8259): whitespace, string characters, numbers,
// literals, and the recursive "any JSON value" rules used by `json_object`, `{}` and `true`
// schemas.
//
// Two bounds keep a random model from running forever or producing values a validator
// rejects:
//  - whitespace between tokens is bounded: nothing, one space, or one newline and at most
//    MAX_INDENT spaces/tabs (llama.cpp's `space` rule, examples/json_schema_to_grammar.py,
//    minus its second newline); `whitespace: 'none'` allows none (compact JSON);
//  - numbers have at most 15 integer digits, 15 fraction digits and a 2-digit exponent, so
//    every number parses to a finite double (1e999 would parse to Infinity, which no
//    schema's `number` accepts) and an integer stays exact (< 2^53).

import { type CodeRanges, intersect, subtract, utf8Class } from './codepoints.js';
import { EMPTY, type Expr, type GrammarBuilder, alt, byteRange, literal, opt, ref, rep, seq } from './expr.js';

export type WhitespacePolicy = 'none' | 'bounded';
export const MAX_INDENT = 20;
export const MAX_INT_DIGITS = 15;
export const MAX_FRACTION_DIGITS = 15;
/** The largest integer a JSON number may have under MAX_INT_DIGITS. */
export const MAX_INT = 10 ** MAX_INT_DIGITS - 1;

function whitespace(policy: WhitespacePolicy): Expr {
  if (policy === 'none') return EMPTY;
  return opt(alt(literal(' '), seq(literal('\n'), rep(alt(literal(' '), literal('\t')), 0, MAX_INDENT))));
}
const digit = byteRange(0x30, 0x39);
const hex = alt(digit, byteRange(0x41, 0x46), byteRange(0x61, 0x66));
// \uXXXX naming a non-surrogate: a lone surrogate would count as a character of its own in
// a validator's length, two escaped halves as one, and our lengths count escapes as one.
const nonSurrogateHex4 = alt(
  seq(alt(digit, byteRange(0x41, 0x43), byteRange(0x61, 0x63), byteRange(0x45, 0x46), byteRange(0x65, 0x66)), hex, hex, hex),
  seq(alt(literal('D'), literal('d')), byteRange(0x30, 0x37), hex, hex),
);

const NEEDS_ESCAPE: CodeRanges = [[0x00, 0x1f], [0x22, 0x22], [0x5c, 0x5c]];
const SHORT_ESCAPES = new Map<number, string>([[0x08, '\\b'], [0x09, '\\t'], [0x0a, '\\n'], [0x0c, '\\f'], [0x0d, '\\r'], [0x22, '\\"'], [0x5c, '\\\\']]);

/**
 * One character of `ranges` as it appears inside a JSON string: itself in UTF-8, or its
 * escape where JSON requires one (", \, control characters).
 */
export function jsonChars(ranges: CodeRanges): Expr {
  const escaped: Expr[] = [];
  for (const [lo, hi] of intersect(ranges, NEEDS_ESCAPE)) {
    for (let c = lo; c <= hi; c++) escaped.push(literal(SHORT_ESCAPES.get(c) ?? `\\u${c.toString(16).padStart(4, '0')}`));
  }
  return alt(utf8Class(subtract(ranges, NEEDS_ESCAPE)), ...escaped);
}

/** Any one character of a JSON string (one code point, however it is written). */
export const JSON_CHAR: Expr = alt(
  utf8Class(subtract([[0, 0x10ffff]], NEEDS_ESCAPE)),
  seq(literal('\\'), alt(...Array.from('"\\/bfnrt', (c) => literal(c)), seq(literal('u'), nonSurrogateHex4))),
);

const unsignedInt = alt(literal('0'), seq(byteRange(0x31, 0x39), rep(digit, 0, MAX_INT_DIGITS - 1)));
export const JSON_INTEGER: Expr = seq(opt(literal('-')), unsignedInt);
export const FRACTION: Expr = seq(literal('.'), rep(digit, 1, MAX_FRACTION_DIGITS));
export const JSON_NUMBER: Expr = seq(
  JSON_INTEGER,
  opt(FRACTION),
  opt(seq(alt(literal('e'), literal('E')), opt(alt(literal('+'), literal('-'))), rep(digit, 1, 2))),
);
export const JSON_BOOLEAN: Expr = alt(literal('true'), literal('false'));
export const JSON_NULL: Expr = literal('null');

/**
 * JSON's pieces for one grammar. Whitespace, a string character and numbers are rules of
 * the grammar, referenced wherever they occur: the automaton inlines them while that is
 * small (one DFA, no stack), and calls them in a large schema (5000 properties, a
 * maxLength of 1000), so its size grows with the schema, not with schema × piece.
 */
export class JsonLexicon {
  readonly ws: Expr;
  readonly char: Expr;
  readonly integer: Expr;
  readonly number: Expr;
  private value: Expr | null = null;

  constructor(
    readonly builder: GrammarBuilder,
    readonly policy: WhitespacePolicy,
  ) {
    this.ws = policy === 'none' ? EMPTY : builder.share('whitespace', whitespace(policy));
    this.char = builder.share('a JSON string character', JSON_CHAR);
    this.integer = builder.share('a JSON integer', JSON_INTEGER);
    this.number = builder.share('a JSON number', JSON_NUMBER);
  }

  string(minLength = 0, maxLength = Infinity): Expr {
    return seq(literal('"'), rep(this.char, minLength, maxLength), literal('"'));
  }

  /** `{ ws member (ws , ws member)* ws }`, or `{ ws }`: members separated as JSON wants. */
  objectOf(member: Expr, maxMembers = Infinity): Expr {
    const { ws } = this;
    const members = seq(member, rep(seq(ws, literal(','), ws, member), 0, maxMembers - 1), ws);
    return seq(literal('{'), ws, maxMembers > 0 ? opt(members) : EMPTY, literal('}'));
  }

  arrayOf(item: Expr): Expr {
    const { ws } = this;
    return seq(literal('['), ws, opt(seq(item, rep(seq(ws, literal(','), ws, item), 0, Infinity), ws)), literal(']'));
  }

  /** The rule `value ::= object | array | string | number | true | false | null`. */
  anyValue(): Expr {
    if (this.value) return this.value;
    const id = this.builder.declare('a JSON value');
    this.value = ref(id);
    const member = seq(this.string(), this.ws, literal(':'), this.ws, this.value);
    this.builder.define(id, alt(this.objectOf(member), this.arrayOf(this.value), this.string(), this.number, JSON_BOOLEAN, JSON_NULL));
    return this.value;
  }

  /** Any JSON object (OpenAI's `json_object` response format). */
  anyObject(): Expr {
    return this.objectOf(seq(this.string(), this.ws, literal(':'), this.ws, this.anyValue()));
  }
}

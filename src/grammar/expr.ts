// The grammar IR every front end (JSON schema, regex, GBNF) compiles to, and the automaton
// (automaton.ts) compiles from: expressions over BYTES, not characters, because tokens are
// byte strings (a byte-level BPE token may hold half of a UTF-8 character). Character
// classes are lowered to UTF-8 byte sequences by codepoints.ts.
//
// A grammar is a list of rules; `ref` calls a rule. Only rules can be recursive (an Expr is a
// tree), so recursion is explicit and the automaton can tell a regular rule it may inline
// from a recursive one that needs the matcher's stack.

import { SluiceError, quote } from '../errors.js';

export type Expr =
  | { readonly k: 'byte'; readonly lo: number; readonly hi: number } // one byte in [lo, hi]
  | { readonly k: 'seq'; readonly items: readonly Expr[] } // empty seq = the empty string
  | { readonly k: 'alt'; readonly items: readonly Expr[] } // empty alt = matches nothing
  | { readonly k: 'rep'; readonly item: Expr; readonly min: number; readonly max: number } // max may be Infinity
  | { readonly k: 'ref'; readonly rule: number };

/** Matches the empty string. */
export const EMPTY: Expr = { k: 'seq', items: [] };
/** Matches nothing (an empty character class, a `false` schema). */
export const NOTHING: Expr = { k: 'alt', items: [] };

/** Largest count a repetition may name (`x{0,100000}`): bounded before anything is built. */
export const MAX_REPEAT = 10_000;

export const isNothing = (e: Expr): boolean => e.k === 'alt' && e.items.length === 0;
export const isEmpty = (e: Expr): boolean => e.k === 'seq' && e.items.length === 0;

/** Concatenation; flattens nested sequences; anything followed by NOTHING is NOTHING. */
export function seq(...items: Expr[]): Expr {
  const out: Expr[] = [];
  for (const e of items) {
    if (isNothing(e)) return NOTHING;
    if (e.k === 'seq') out.push(...e.items);
    else out.push(e);
  }
  return out.length === 1 ? out[0] : { k: 'seq', items: out };
}

/** Alternation; flattens nested alternations and drops NOTHING branches. */
export function alt(...items: Expr[]): Expr {
  const out: Expr[] = [];
  for (const e of items) {
    if (e.k === 'alt') out.push(...e.items);
    else out.push(e);
  }
  return out.length === 1 ? out[0] : { k: 'alt', items: out };
}

export function rep(item: Expr, min: number, max: number): Expr {
  if (max === 0 || isEmpty(item)) return EMPTY;
  if (isNothing(item)) return min === 0 ? EMPTY : NOTHING;
  if (min === 1 && max === 1) return item;
  return { k: 'rep', item, min, max };
}

export const opt = (item: Expr): Expr => rep(item, 0, 1);
export const byteRange = (lo: number, hi: number): Expr => ({ k: 'byte', lo, hi });
export const ref = (rule: number): Expr => ({ k: 'ref', rule });

const encoder = new TextEncoder();

/** The UTF-8 bytes of `text`, in order. */
export function literal(text: string): Expr {
  return seq(...Array.from(encoder.encode(text), (b) => byteRange(b, b)));
}

/**
 * About how many automaton states `e` expands to (a repetition counts its copies, a ref 1):
 * the front ends check it against a budget so a huge schema fails with its path named
 * instead of exhausting memory in the automaton.
 */
export function exprSize(e: Expr): number {
  switch (e.k) {
    case 'byte':
      return 1;
    case 'ref':
      return 1;
    case 'seq':
    case 'alt': {
      let n = 1;
      for (const item of e.items) n += exprSize(item);
      return n;
    }
    case 'rep':
      return 1 + exprSize(e.item) * Math.max(1, Number.isFinite(e.max) ? e.max : e.min + 1);
  }
}

export interface GrammarRule {
  /** For error messages: a GBNF rule name, or the schema path a $ref points to. */
  readonly name: string;
  body: Expr;
}

export interface Grammar {
  readonly rules: readonly GrammarRule[];
  readonly root: number;
}

/** Collects rules; a rule may be declared before its body is known (recursion). */
export class GrammarBuilder {
  readonly rules: GrammarRule[] = [];

  /** A new rule; its body is NOTHING until `define`. */
  declare(name: string): number {
    this.rules.push({ name, body: NOTHING });
    return this.rules.length - 1;
  }

  define(id: number, body: Expr): void {
    this.rules[id].body = body;
  }

  /** A rule holding `body`, returned as a ref (shares one copy of a large expression). */
  share(name: string, body: Expr): Expr {
    const id = this.declare(name);
    this.define(id, body);
    return ref(id);
  }

  build(root: number): Grammar {
    return { rules: this.rules, root };
  }
}

/** The one error every grammar front end throws: `${where}: ${why}`, code USAGE. */
export function grammarError(where: string, why: string): SluiceError {
  return new SluiceError('USAGE', `${where}: ${why}`);
}

/** A value from the user's schema or grammar as an error shows it: short, whatever its size. */
export function shown(value: unknown): string {
  if (typeof value === 'string') return quote(value, 60);
  if (Array.isArray(value)) return `a list of ${value.length}`;
  if (typeof value === 'object' && value !== null) return 'an object';
  return String(value);
}

/** A property name as a path segment (`schema.properties.<key>`), cut when long. */
export const pathKey = (key: string): string => (key.length <= 60 ? key : `${key.slice(0, 60)}…`);

export { quote };

// The `--grammar FILE` format: llama.cpp's GBNF (ggml-org/llama.cpp grammars/README.md; the
// parser follows src/llama-grammar.cpp parse_space/parse_sequence/parse_alternates).
//
//   root   ::= "Answer: " answer "\n"      # the whole output must match `root`
//   answer ::= [A-D] | "none" ( "," ws )?   # alternatives, groups, classes
//   ws     ::= [ \t]{0,4}                   # * + ? {m} {m,} {m,n}
//
// Rule names: letters, digits, '-', '_'. Terminals: "literals" and [classes] with ranges and
// ^ negation, `.` (any character); escapes \n \r \t \\ \" \[ \] \xHH \uHHHH \UHHHHHHHH.
// A rule ends at the end of its line, except inside parentheses and after `|`. `#` starts
// a comment. Not supported (refused): llama.cpp's token references (<[id]>, <think>, !<…>).
// The grammar is taken as written: unbounded repetitions (`ws ::= [ \t\n]*`) stay unbounded.

import { type CodeRanges, MAX_CODE_POINT, negate, normalize, utf8Class } from './codepoints.js';
import { type Expr, type Grammar, GrammarBuilder, MAX_REPEAT, alt, grammarError, literal, ref, rep, seq, shown } from './expr.js';

const MAX_NESTING = 100;

export function parseGbnf(text: string): Grammar {
  return new GbnfParser(text).parse();
}

class GbnfParser {
  private pos = 0;
  private readonly builder = new GrammarBuilder();
  private readonly ids = new Map<string, number>();
  private readonly definedAt = new Map<string, number>();
  private readonly usedAt = new Map<string, number>();
  private nesting = 0;

  constructor(private readonly text: string) {}

  parse(): Grammar {
    this.space(true);
    while (this.pos < this.text.length) {
      const line = this.line();
      const name = this.name();
      if (this.definedAt.has(name)) throw this.error(`rule ${shown(name)} is defined twice (first on line ${this.definedAt.get(name)})`);
      this.definedAt.set(name, line);
      this.space(false);
      if (!this.text.startsWith('::=', this.pos)) throw this.error(`expected ::= after ${shown(name)}`);
      this.pos += 3;
      this.space(true);
      this.builder.define(this.rule(name), this.alternatives(false));
      if (this.pos < this.text.length && !/[\r\n]/.test(this.text[this.pos])) throw this.error(`unexpected ${shown(this.text[this.pos])}`);
      this.space(true);
    }
    for (const [name, line] of this.usedAt) {
      if (!this.definedAt.has(name)) throw grammarError(`grammar line ${line}`, `rule ${shown(name)} is used but never defined`);
    }
    if (!this.definedAt.has('root')) throw grammarError('grammar', 'no "root" rule (the rule the whole output must match)');
    return this.builder.build(this.rule('root'));
  }

  private rule(name: string): number {
    let id = this.ids.get(name);
    if (id === undefined) {
      id = this.builder.declare(`grammar rule ${shown(name)}`);
      this.ids.set(name, id);
    }
    return id;
  }

  private lineAt = { pos: 0, line: 1 }; // counted forward from the last ask: O(text) in all

  private line(): number {
    if (this.pos < this.lineAt.pos) this.lineAt = { pos: 0, line: 1 };
    for (let i = this.lineAt.pos; i < this.pos && i < this.text.length; i++) if (this.text.charCodeAt(i) === 10) this.lineAt.line++;
    this.lineAt.pos = this.pos;
    return this.lineAt.line;
  }

  private error(why: string): Error {
    return grammarError(`grammar line ${this.line()}`, why);
  }

  /** Skips spaces, tabs and comments, and newlines where `newlines`. */
  private space(newlines: boolean): void {
    while (this.pos < this.text.length) {
      const c = this.text[this.pos];
      if (c === '#') while (this.pos < this.text.length && !/[\r\n]/.test(this.text[this.pos])) this.pos++;
      else if (c === ' ' || c === '\t' || (newlines && (c === '\r' || c === '\n'))) this.pos++;
      else break;
    }
  }

  private name(): string {
    const m = /^[A-Za-z0-9_-]+/.exec(this.text.slice(this.pos, this.pos + 1024));
    if (!m) throw this.error(`expected a rule name, found ${shown(this.text.slice(this.pos, this.pos + 10))}`);
    this.pos += m[0].length;
    return m[0];
  }

  private alternatives(nested: boolean): Expr {
    const branches = [this.sequence(nested)];
    while (this.text[this.pos] === '|') {
      this.pos++;
      this.space(true);
      branches.push(this.sequence(nested));
    }
    return alt(...branches);
  }

  private sequence(nested: boolean): Expr {
    const items: Expr[] = [];
    for (;;) {
      const c = this.text[this.pos];
      if (c === undefined || c === '|' || c === ')' || c === '\r' || c === '\n') break;
      let item = this.item();
      this.space(nested);
      for (let q = this.quantifier(); q; q = this.quantifier()) {
        item = rep(item, q[0], q[1]);
        this.space(nested);
      }
      items.push(item);
    }
    return seq(...items);
  }

  private item(): Expr {
    const c = this.text[this.pos];
    if (c === '"') return this.literal();
    if (c === '[') return utf8Class(this.charClass());
    if (c === '.') {
      this.pos++;
      return utf8Class([[0, MAX_CODE_POINT]]);
    }
    if (c === '(') {
      if (++this.nesting > MAX_NESTING) throw this.error(`parentheses nested more than ${MAX_NESTING} deep`);
      this.pos++;
      this.space(true);
      const inner = this.alternatives(true);
      if (this.text[this.pos] !== ')') throw this.error('missing )');
      this.pos++;
      this.nesting--;
      return inner;
    }
    if (c === '<' || c === '!') throw this.error('token references (<[id]>, <token>, !<…>) are not supported');
    if (/[A-Za-z0-9_-]/.test(c)) {
      const line = this.line();
      const name = this.name();
      if (!this.usedAt.has(name)) this.usedAt.set(name, line);
      return ref(this.rule(name));
    }
    throw this.error(`unexpected ${shown(c)}`);
  }

  private quantifier(): [number, number] | null {
    const c = this.text[this.pos];
    if (c === '*' || c === '+' || c === '?') {
      this.pos++;
      return c === '*' ? [0, Infinity] : c === '+' ? [1, Infinity] : [0, 1];
    }
    if (c !== '{') return null;
    const m = /^\{\s*(\d+)\s*(,\s*(\d*)\s*)?\}/.exec(this.text.slice(this.pos, this.pos + 64));
    if (!m) throw this.error('expected {m}, {m,} or {m,n}');
    const min = Number(m[1]);
    const max = m[2] === undefined ? min : m[3] === '' ? Infinity : Number(m[3]);
    if (min > MAX_REPEAT || (Number.isFinite(max) && max > MAX_REPEAT)) throw this.error(`repetition count ${Math.max(min, Number.isFinite(max) ? max : 0)} is over the limit of ${MAX_REPEAT}`);
    if (max < min) throw this.error(`{${min},${max}}: the maximum is below the minimum`);
    this.pos += m[0].length;
    return [min, max];
  }

  private literal(): Expr {
    this.pos++; // "
    let out = '';
    for (;;) {
      const c = this.text[this.pos];
      if (c === undefined || c === '\n' || c === '\r') throw this.error('unterminated string literal');
      if (c === '"') break;
      out += String.fromCodePoint(this.char());
    }
    this.pos++;
    return literal(out);
  }

  private charClass(): CodeRanges {
    this.pos++; // [
    const negated = this.text[this.pos] === '^';
    if (negated) this.pos++;
    const ranges: CodeRanges = [];
    for (;;) {
      const c = this.text[this.pos];
      if (c === undefined || c === '\n' || c === '\r') throw this.error('unterminated character class');
      if (c === ']') break;
      const lo = this.char();
      let hi = lo;
      const after = this.text[this.pos + 1];
      if (this.text[this.pos] === '-' && after !== undefined && after !== ']' && after !== '\n' && after !== '\r') {
        this.pos++;
        hi = this.char();
        if (hi < lo) throw this.error('character range out of order');
      }
      ranges.push([lo, hi]);
    }
    this.pos++;
    return negated ? negate(ranges) : normalize(ranges);
  }

  /** One character of a literal or class: itself, or an escape. */
  private char(): number {
    const c = this.text.codePointAt(this.pos)!;
    if (c !== 0x5c) {
      this.pos += c > 0xffff ? 2 : 1;
      return c;
    }
    const e = this.text[this.pos + 1];
    const simple: Record<string, number> = { n: 10, r: 13, t: 9, '\\': 0x5c, '"': 0x22, '[': 0x5b, ']': 0x5d, '-': 0x2d, '^': 0x5e, '/': 0x2f };
    if (e in simple) {
      this.pos += 2;
      return simple[e];
    }
    const digits = e === 'x' ? 2 : e === 'u' ? 4 : e === 'U' ? 8 : 0;
    const hex = this.text.slice(this.pos + 2, this.pos + 2 + digits);
    if (digits === 0 || !new RegExp(`^[0-9a-fA-F]{${digits}}$`).test(hex) || parseInt(hex, 16) > MAX_CODE_POINT) {
      throw this.error(`bad escape ${shown(this.text.slice(this.pos, this.pos + 2 + digits))}`);
    }
    this.pos += 2 + digits;
    return parseInt(hex, 16);
  }
}

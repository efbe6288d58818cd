// A subset of ECMAScript regular expressions (with the `u` flag, as ajv compiles JSON Schema
// `pattern`s) → grammar IR. The pattern must match the WHOLE text: a leading `^` and a
// trailing `$` are accepted and change nothing. Supported: literals, `.`, classes with
// ranges and negation, \d \w \s and their negations, \n \r \t \f \v \0 \xHH \uHHHH \u{H…} \cX,
// groups ((…), (?:…), (?<name>…)), alternation, quantifiers * + ? {n} {n,} {n,m} (lazy forms
// too: they match the same strings). Refused, with the position: backreferences,
// lookaround, word boundaries, \p{…}, anchors anywhere else.
//
// Syntax follows ECMA-262 §22.2.1 (Patterns); class escapes as V8 defines them.

import { type CodeRanges, MAX_CODE_POINT, negate, normalize } from './codepoints.js';
import { type Expr, MAX_REPEAT, alt, grammarError, quote, rep, seq } from './expr.js';

export interface RegexOptions {
  /** Lowers one character (class) to bytes: plain UTF-8, or JSON-escaped inside a string. */
  chars: (ranges: CodeRanges) => Expr;
  /** Names the pattern in errors (`schema.properties.id.pattern`, `regex`). */
  where: string;
}

const DIGIT: CodeRanges = [[0x30, 0x39]];
const WORD: CodeRanges = [[0x30, 0x39], [0x41, 0x5a], [0x5f, 0x5f], [0x61, 0x7a]];
// ECMA-262 WhiteSpace and LineTerminator code points (what \s matches).
const SPACE: CodeRanges = normalize([
  [0x09, 0x0d], [0x20, 0x20], [0xa0, 0xa0], [0x1680, 0x1680], [0x2000, 0x200a],
  [0x2028, 0x2029], [0x202f, 0x202f], [0x205f, 0x205f], [0x3000, 0x3000], [0xfeff, 0xfeff],
]);
const LINE_TERMINATORS: CodeRanges = [[0x0a, 0x0a], [0x0d, 0x0d], [0x2028, 0x2029]];
const SYNTAX = '^$\\.*+?()[]{}|/-';
const MAX_NESTING = 100;

/** `pattern` → an expression matching exactly the strings the pattern matches in full. */
export function parseRegex(pattern: string, options: RegexOptions): Expr {
  return new RegexParser(pattern, options).parse();
}

class RegexParser {
  private readonly cps: number[];
  private pos = 0;

  constructor(
    private readonly pattern: string,
    private readonly options: RegexOptions,
  ) {
    this.cps = Array.from(pattern, (c) => c.codePointAt(0)!);
  }

  parse(): Expr {
    const e = this.alternation(0);
    if (this.pos < this.cps.length) throw this.error(`unmatched ${String.fromCodePoint(this.cps[this.pos])}`);
    return e;
  }

  private error(why: string): Error {
    return grammarError(this.options.where, `${why} at position ${this.pos} of pattern ${quote(this.pattern)}`);
  }

  private peek(offset = 0): number | undefined {
    return this.cps[this.pos + offset];
  }

  private eat(ch: string): boolean {
    if (this.peek() === ch.codePointAt(0)) {
      this.pos++;
      return true;
    }
    return false;
  }

  private alternation(depth: number): Expr {
    const branches = [this.sequence(depth)];
    while (this.eat('|')) branches.push(this.sequence(depth));
    return alt(...branches);
  }

  private sequence(depth: number): Expr {
    const items: Expr[] = [];
    const start = this.pos;
    for (;;) {
      const c = this.peek();
      if (c === undefined || c === 0x7c /* | */ || c === 0x29 /* ) */) break;
      if (c === 0x5e /* ^ */) {
        if (depth > 0 || this.pos !== start) throw this.error('^ is only supported at the start (the pattern always matches the whole string)');
        this.pos++;
        continue;
      }
      if (c === 0x24 /* $ */) {
        const next = this.peek(1);
        if (depth > 0 || (next !== undefined && next !== 0x7c)) throw this.error('$ is only supported at the end (the pattern always matches the whole string)');
        this.pos++;
        continue;
      }
      items.push(this.quantified(this.atom(depth)));
    }
    return seq(...items);
  }

  private atom(depth: number): Expr {
    const c = this.cps[this.pos++];
    switch (c) {
      case 0x28: // (
        return this.group(depth);
      case 0x5b: // [
        return this.options.chars(this.classBody());
      case 0x2e: // .
        return this.options.chars(negate(LINE_TERMINATORS));
      case 0x5c: // \
        return this.options.chars(this.escape(false));
      case 0x2a: case 0x2b: case 0x3f: // * + ?
        this.pos--;
        throw this.error('nothing to repeat');
      case 0x7b: case 0x7d: case 0x5d: // { } ]
        this.pos--;
        throw this.error(`lone ${String.fromCodePoint(c)} (escape it)`);
      default:
        return this.options.chars([[c, c]]);
    }
  }

  private group(depth: number): Expr {
    if (depth >= MAX_NESTING) throw this.error(`groups nested more than ${MAX_NESTING} deep`);
    if (this.eat('?')) {
      if (this.eat(':')) {
        // non-capturing
      } else if (this.peek() === 0x3c /* < */ && this.peek(1) !== 0x3d && this.peek(1) !== 0x21) {
        this.pos++;
        while (this.peek() !== undefined && this.peek() !== 0x3e) this.pos++;
        if (!this.eat('>')) throw this.error('unterminated group name');
      } else {
        throw this.error('lookahead and lookbehind are not supported');
      }
    }
    const inner = this.alternation(depth + 1);
    if (!this.eat(')')) throw this.error('missing )');
    return inner;
  }

  private quantified(atom: Expr): Expr {
    const bounds = this.quantifier();
    if (!bounds) return atom;
    this.eat('?'); // lazy: the same strings match
    const again = this.peek();
    if (again === 0x2a || again === 0x2b || again === 0x3f || (again === 0x7b && this.looksLikeBraces())) throw this.error('nothing to repeat');
    return rep(atom, bounds[0], bounds[1]);
  }

  private quantifier(): [number, number] | null {
    if (this.eat('*')) return [0, Infinity];
    if (this.eat('+')) return [1, Infinity];
    if (this.eat('?')) return [0, 1];
    if (this.peek() !== 0x7b || !this.looksLikeBraces()) return null;
    this.pos++;
    const min = this.count();
    let max = min;
    if (this.eat(',')) max = this.peek() === 0x7d ? Infinity : this.count();
    this.eat('}');
    if (max < min) throw this.error(`{${min},${max}}: the maximum is below the minimum`);
    return [min, max];
  }

  private looksLikeBraces(): boolean {
    const rest = String.fromCodePoint(...this.cps.slice(this.pos, this.pos + 40));
    return /^\{\d+(,\d*)?\}/.test(rest);
  }

  private count(): number {
    const start = this.pos;
    while (this.peek() !== undefined && this.peek()! >= 0x30 && this.peek()! <= 0x39) this.pos++;
    const n = Number(String.fromCodePoint(...this.cps.slice(start, this.pos)));
    if (n > MAX_REPEAT) throw this.error(`repetition count ${n} is over the limit of ${MAX_REPEAT}`);
    return n;
  }

  private classBody(): CodeRanges {
    const negated = this.eat('^');
    const ranges: CodeRanges = [];
    for (;;) {
      const c = this.peek();
      if (c === undefined) throw this.error('missing ]');
      if (c === 0x5d) break;
      const lo = this.classAtom();
      if (this.peek() === 0x2d /* - */ && this.peek(1) !== 0x5d && this.peek(1) !== undefined) {
        this.pos++;
        const hi = this.classAtom();
        if (lo.length !== 1 || hi.length !== 1 || lo[0][0] !== lo[0][1] || hi[0][0] !== hi[0][1]) throw this.error('a class range needs a single character at each end');
        if (hi[0][0] < lo[0][0]) throw this.error('class range out of order');
        ranges.push([lo[0][0], hi[0][0]]);
      } else {
        ranges.push(...lo);
      }
    }
    this.pos++;
    return negated ? negate(ranges) : normalize(ranges);
  }

  private classAtom(): CodeRanges {
    const c = this.cps[this.pos++];
    if (c !== 0x5c) return [[c, c]];
    return this.escape(true);
  }

  /** After a backslash: the characters the escape stands for. */
  private escape(inClass: boolean): CodeRanges {
    const c = this.peek();
    if (c === undefined) throw this.error('pattern ends with \\');
    this.pos++;
    const ch = String.fromCodePoint(c);
    switch (ch) {
      case 'd': return DIGIT;
      case 'D': return negate(DIGIT);
      case 'w': return WORD;
      case 'W': return negate(WORD);
      case 's': return SPACE;
      case 'S': return negate(SPACE);
      case 'n': return [[0x0a, 0x0a]];
      case 'r': return [[0x0d, 0x0d]];
      case 't': return [[0x09, 0x09]];
      case 'f': return [[0x0c, 0x0c]];
      case 'v': return [[0x0b, 0x0b]];
      case 'b':
        if (inClass) return [[0x08, 0x08]];
        this.pos--;
        throw this.error('word boundaries (\\b) are not supported');
      case 'B':
        this.pos--;
        throw this.error('word boundaries (\\B) are not supported');
      case '0':
        if (this.peek() !== undefined && this.peek()! >= 0x30 && this.peek()! <= 0x39) throw this.error('octal escapes are not supported');
        return [[0, 0]];
      case 'x': return this.single(this.hex(2));
      case 'u': return this.single(this.unicodeEscape());
      case 'c': {
        const letter = this.peek();
        if (letter === undefined || !/[A-Za-z]/.test(String.fromCodePoint(letter))) throw this.error('\\c needs a letter');
        this.pos++;
        return this.single(letter % 32);
      }
      case 'p': case 'P':
        this.pos--;
        throw this.error('Unicode property escapes (\\p{…}) are not supported');
      case 'k':
        this.pos--;
        throw this.error('backreferences are not supported');
      default:
        if (c >= 0x31 && c <= 0x39) {
          this.pos--;
          throw this.error('backreferences are not supported');
        }
        if (SYNTAX.includes(ch)) return [[c, c]];
        this.pos--;
        throw this.error(`unknown escape \\${ch}`);
    }
  }

  private single(c: number): CodeRanges {
    return [[c, c]];
  }

  private hex(digits: number): number {
    const text = String.fromCodePoint(...this.cps.slice(this.pos, this.pos + digits));
    if (text.length !== digits || !/^[0-9a-fA-F]+$/.test(text)) throw this.error(`expected ${digits} hex digits`);
    this.pos += digits;
    return parseInt(text, 16);
  }

  private unicodeEscape(): number {
    if (this.eat('{')) {
      const start = this.pos;
      while (this.peek() !== undefined && this.peek() !== 0x7d) this.pos++;
      const text = String.fromCodePoint(...this.cps.slice(start, this.pos));
      if (!this.eat('}') || !/^[0-9a-fA-F]{1,6}$/.test(text) || parseInt(text, 16) > MAX_CODE_POINT) throw this.error('bad \\u{…} escape');
      return parseInt(text, 16);
    }
    const hi = this.hex(4);
    // A surrogate pair written as two escapes is one character (as with the u flag).
    if (hi >= 0xd800 && hi <= 0xdbff && this.peek() === 0x5c && this.peek(1) === 0x75) {
      const save = this.pos;
      this.pos += 2;
      if (/^[dD][c-fC-F][0-9a-fA-F]{2}$/.test(String.fromCodePoint(...this.cps.slice(this.pos, this.pos + 4)))) {
        const lo = this.hex(4);
        return 0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00);
      }
      this.pos = save;
    }
    return hi;
  }
}

// A strict JSON parser for checkpoint headers and indexes. JSON.parse is not enough: it
// silently keeps the last of duplicate keys and rounds integers past 2^53, and both hide
// corrupt or malicious headers. This one refuses duplicates, keeps integers exact (as
// bigint when unsafe), refuses lone UTF-16 surrogate escapes (they are not Unicode text),
// and bounds what hostile text can cost:
//   - nesting depth, so `[[[[...` cannot overflow the stack;
//   - number literals' length, so a 100 M-digit number is not handed to BigInt (quadratic);
//   - the count of values and of objects/arrays built: a JS object costs 50-100× its
//     two bytes of `{}`, so a 100 MB header of `{},{},...` would otherwise take gigabytes.
//
// Two lower-level tools serve schema-driven readers (the safetensors header): a
// `JsonCursor` that reads one token at a time, so a reader can refuse a value of the wrong
// kind before building it, and `checkJsonSyntax`, which validates a whole text without
// building anything (memory bounded by the depth, not the size).

import { quote } from '../errors.js';

export type JsonValue = null | boolean | number | bigint | string | JsonFloat | JsonValue[] | JsonObject;
export interface JsonObject {
  [key: string]: JsonValue;
}

export class JsonSyntaxError extends Error {
  constructor(
    message: string,
    readonly position: number,
    readonly duplicateKey?: string,
  ) {
    super(message);
  }
}

/**
 * A number written with a fraction, an exponent or as `-0`. Only with `floats: 'wrap'`:
 * a format whose fields are unsigned integers (safetensors shapes and offsets) must refuse
 * `1.0` and `4e0` as the reference's serde does, which a plain JS number cannot tell apart.
 */
export class JsonFloat {
  constructor(readonly value: number) {}
}

export const MAX_DEPTH = 64;
/** Python's int() refuses longer decimal strings (sys.int_info.default_max_str_digits). */
export const MAX_NUMBER_LENGTH = 4300;
/** Objects and arrays one parse may build: ~1M × ~100 bytes. An index has a handful. */
export const MAX_CONTAINERS = 1_000_000;
/** Values of any kind one parse may build: ~10M × ~8-32 bytes. */
export const MAX_VALUES = 10_000_000;

export interface StrictJsonOptions {
  /** 'number' (default, as JSON.parse) or 'wrap' in JsonFloat. */
  floats?: 'number' | 'wrap';
  maxDepth?: number;
  maxNumberLength?: number;
  maxContainers?: number;
  maxValues?: number;
}

/** The kind of the next value, from its first character. */
export type JsonKind = 'object' | 'array' | 'string' | 'number' | 'literal' | 'end' | 'invalid';

/** A number token: its text is `text.slice(start, end)`; `integer` unless it has a fraction, an exponent or is `-0`. */
export interface NumberToken {
  start: number;
  end: number;
  integer: boolean;
}

const isDigit = (c: number) => c >= 0x30 && c <= 0x39;

/** Reads JSON one token at a time. Every method throws JsonSyntaxError on bad syntax. */
export class JsonCursor {
  pos = 0;

  constructor(
    readonly text: string,
    readonly maxDepth = MAX_DEPTH,
  ) {}

  fail(what: string, at = this.pos): never {
    throw new JsonSyntaxError(`${what} at position ${at}`, at);
  }

  skipWs(): void {
    const text = this.text;
    for (;;) {
      const c = text.charCodeAt(this.pos);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) this.pos++;
      else return;
    }
  }

  peek(): JsonKind {
    this.skipWs();
    const c = this.text[this.pos];
    if (c === undefined) return 'end';
    if (c === '{') return 'object';
    if (c === '[') return 'array';
    if (c === '"') return 'string';
    if (c === '-' || (c >= '0' && c <= '9')) return 'number';
    if (c === 't' || c === 'f' || c === 'n') return 'literal';
    return 'invalid';
  }

  private expect(ch: string): void {
    if (this.text[this.pos] !== ch) this.fail(`expected '${ch}'`);
    this.pos++;
  }

  /** After `{`: the next key (its `:` consumed), or undefined at the closing `}`. */
  nextKey(first: boolean): string | undefined {
    if (first) this.expect('{');
    this.skipWs();
    if (first && this.text[this.pos] === '}') {
      this.pos++;
      return undefined;
    }
    if (!first) {
      if (this.text[this.pos] === '}') {
        this.pos++;
        return undefined;
      }
      if (this.text[this.pos] !== ',') this.fail("expected ',' or '}'");
      this.pos++;
      this.skipWs();
    }
    const key = this.readString();
    this.skipWs();
    this.expect(':');
    return key;
  }

  /** After `[`: true when another item follows (its `,` consumed), false at the closing `]`. */
  nextItem(first: boolean): boolean {
    if (first) this.expect('[');
    this.skipWs();
    if (this.text[this.pos] === ']') {
      this.pos++;
      return false;
    }
    if (!first) {
      if (this.text[this.pos] !== ',') this.fail("expected ',' or ']'");
      this.pos++;
    }
    return true;
  }

  readString(): string {
    this.skipWs();
    const start = this.pos;
    const escaped = this.skipString();
    // With escapes, the validated token goes to JSON.parse: native, and one flat string,
    // where appending 16 M decoded escapes one by one builds a rope of ~800 MB.
    return escaped ? (JSON.parse(this.text.slice(start, this.pos)) as string) : this.text.slice(start + 1, this.pos - 1);
  }

  /** Validates a string token without building it; true when it holds escapes. */
  private skipString(): boolean {
    const text = this.text;
    this.expect('"');
    let escaped = false;
    for (;;) {
      if (this.pos >= text.length) this.fail('unterminated string');
      const c = text.charCodeAt(this.pos);
      if (c === 0x22) {
        this.pos++;
        return escaped;
      }
      if (c < 0x20) this.fail('control character in string');
      if (c !== 0x5c) {
        this.pos++;
        continue;
      }
      escaped = true;
      const e = text[this.pos + 1];
      this.pos += 2;
      if (e === 'u') {
        const unit = this.hexUnit(this.pos);
        this.pos += 4;
        if (unit >= 0xdc00 && unit <= 0xdfff) this.fail('lone low surrogate escape');
        if (unit >= 0xd800 && unit <= 0xdbff) {
          // A high surrogate must be followed by an escaped low one: together one code point.
          const low = text.startsWith('\\u', this.pos) ? this.hexUnit(this.pos + 2) : -1;
          if (low < 0xdc00 || low > 0xdfff) this.fail('lone high surrogate escape');
          this.pos += 6;
        }
      } else if (e === undefined || !'"\\/bfnrt'.includes(e)) {
        this.pos -= 1;
        this.fail('invalid escape');
      }
    }
  }

  private hexUnit(at: number): number {
    const hex = this.text.slice(at, at + 4);
    if (!/^[0-9a-fA-F]{4}$/.test(hex)) this.fail('invalid \\u escape');
    return parseInt(hex, 16);
  }

  /** A number token, scanned without building its text (which may be 100 MB long). */
  readNumber(): NumberToken {
    this.skipWs();
    const text = this.text;
    const start = this.pos;
    const digits = () => {
      const from = this.pos;
      while (isDigit(text.charCodeAt(this.pos))) this.pos++;
      if (this.pos === from) this.fail('invalid number', start);
    };
    if (text[this.pos] === '-') this.pos++;
    if (text[this.pos] === '0') this.pos++;
    else digits();
    let integer = true;
    if (text[this.pos] === '.') {
      this.pos++;
      digits();
      integer = false;
    }
    if (text[this.pos] === 'e' || text[this.pos] === 'E') {
      this.pos++;
      if (text[this.pos] === '+' || text[this.pos] === '-') this.pos++;
      digits();
      integer = false;
    }
    if (this.pos - start === 2 && text.startsWith('-0', start)) integer = false;
    return { start, end: this.pos, integer };
  }

  readLiteral(): true | false | null {
    this.skipWs();
    for (const [word, value] of [['true', true], ['false', false], ['null', null]] as const) {
      if (this.text.startsWith(word, this.pos)) {
        this.pos += word.length;
        return value;
      }
    }
    return this.fail('unexpected token');
  }

  /** Skips one value, validating its syntax, building nothing; `depth` is the value's own. */
  skipValue(depth: number): void {
    if (depth > this.maxDepth) this.fail(`nesting deeper than ${this.maxDepth}`);
    switch (this.peek()) {
      case 'object':
        for (let first = true; this.nextKey(first) !== undefined; first = false) this.skipValue(depth + 1);
        return;
      case 'array':
        for (let first = true; this.nextItem(first); first = false) this.skipValue(depth + 1);
        return;
      case 'string':
        this.skipString();
        return;
      case 'number':
        this.readNumber();
        return;
      case 'literal':
        this.readLiteral();
        return;
      default:
        this.unexpected();
    }
  }

  unexpected(): never {
    return this.fail(this.pos >= this.text.length ? 'unexpected end of input' : 'unexpected token');
  }

  /** Throws unless only whitespace is left. */
  end(): void {
    this.skipWs();
    if (this.pos !== this.text.length) this.fail('trailing characters after the JSON value');
  }
}

/** Validates `text` as one JSON value without building it. Throws JsonSyntaxError. */
export function checkJsonSyntax(text: string, maxDepth = MAX_DEPTH): void {
  const cursor = new JsonCursor(text, maxDepth);
  cursor.skipValue(0);
  cursor.end();
}

/** Parses `text` (whitespace allowed around the value). Throws JsonSyntaxError. */
export function parseStrictJson(text: string, options: StrictJsonOptions = {}): JsonValue {
  const wrapFloats = options.floats === 'wrap';
  const maxNumberLength = options.maxNumberLength ?? MAX_NUMBER_LENGTH;
  const maxContainers = options.maxContainers ?? MAX_CONTAINERS;
  const maxValues = options.maxValues ?? MAX_VALUES;
  const cursor = new JsonCursor(text, options.maxDepth ?? MAX_DEPTH);
  let containers = 0;
  let values = 0;

  const parseNumber = (): number | bigint | JsonFloat => {
    const { start, end, integer } = cursor.readNumber();
    if (end - start > maxNumberLength) cursor.fail(`number longer than ${maxNumberLength} characters`, start);
    const raw = text.slice(start, end);
    if (integer) {
      const n = Number(raw);
      return Number.isSafeInteger(n) ? n : BigInt(raw);
    }
    return wrapFloats ? new JsonFloat(Number(raw)) : Number(raw);
  };

  const parseValue = (depth: number): JsonValue => {
    if (depth > cursor.maxDepth) cursor.fail(`nesting deeper than ${cursor.maxDepth}`);
    const kind = cursor.peek();
    if (++values > maxValues) cursor.fail(`more than ${maxValues} values`);
    if ((kind === 'object' || kind === 'array') && ++containers > maxContainers) {
      cursor.fail(`more than ${maxContainers} objects and arrays`);
    }
    switch (kind) {
      case 'object':
        return parseObject(depth);
      case 'array': {
        const out: JsonValue[] = [];
        for (let first = true; cursor.nextItem(first); first = false) out.push(parseValue(depth + 1));
        return out;
      }
      case 'string':
        return cursor.readString();
      case 'number':
        return parseNumber();
      case 'literal':
        return cursor.readLiteral();
      default:
        return cursor.unexpected();
    }
  };

  const parseObject = (depth: number): JsonObject => {
    // A null-prototype object: keys like "__proto__" are plain data here.
    const out: JsonObject = Object.create(null);
    for (let first = true; ; first = false) {
      const before = cursor.pos;
      const key = cursor.nextKey(first);
      if (key === undefined) return out;
      if (Object.hasOwn(out, key)) {
        // Only `{` or `,` and whitespace lie between `before` and the key's opening quote.
        const at = text.indexOf('"', before);
        throw new JsonSyntaxError(`duplicate key ${quote(key)} at position ${at}`, at, key);
      }
      out[key] = parseValue(depth + 1);
    }
  };

  const value = parseValue(0);
  cursor.end();
  return value;
}

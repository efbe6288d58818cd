// A strict JSON parser for checkpoint headers. JSON.parse is not enough: it silently
// keeps the last of duplicate keys and rounds integers past 2^53, and both hide corrupt
// or malicious headers. This one refuses duplicates, keeps integers exact (as bigint when
// unsafe), refuses lone UTF-16 surrogate escapes (they are not Unicode text), and bounds
// nesting depth so a hostile `[[[[...` cannot overflow the stack.

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

export interface StrictJsonOptions {
  /** 'number' (default, as JSON.parse) or 'wrap' in JsonFloat. */
  floats?: 'number' | 'wrap';
}

const MAX_DEPTH = 64;

/** Parses `text` (whitespace allowed around the value). Throws JsonSyntaxError. */
export function parseStrictJson(text: string, options: StrictJsonOptions = {}): JsonValue {
  const wrapFloats = options.floats === 'wrap';
  let pos = 0;

  const fail = (what: string): never => {
    throw new JsonSyntaxError(`${what} at position ${pos}`, pos);
  };
  const skipWs = () => {
    for (;;) {
      const c = text.charCodeAt(pos);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) pos++;
      else return;
    }
  };
  const expect = (ch: string) => {
    if (text[pos] !== ch) fail(`expected '${ch}'`);
    pos++;
  };

  const parseString = (): string => {
    expect('"');
    let out = '';
    let start = pos;
    for (;;) {
      if (pos >= text.length) fail('unterminated string');
      const c = text.charCodeAt(pos);
      if (c === 0x22) {
        out += text.slice(start, pos);
        pos++;
        return out;
      }
      if (c < 0x20) fail('control character in string');
      if (c !== 0x5c) {
        pos++;
        continue;
      }
      out += text.slice(start, pos);
      const e = text[pos + 1];
      pos += 2;
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          const unit = hexUnit(pos);
          pos += 4;
          if (unit >= 0xdc00 && unit <= 0xdfff) fail('lone low surrogate escape');
          if (unit >= 0xd800 && unit <= 0xdbff) {
            // A high surrogate must be followed by an escaped low one: together one code point.
            const low = text.startsWith('\\u', pos) ? hexUnit(pos + 2) : -1;
            if (low < 0xdc00 || low > 0xdfff) fail('lone high surrogate escape');
            out += String.fromCharCode(unit, low);
            pos += 6;
          } else out += String.fromCharCode(unit);
          break;
        }
        default:
          pos -= 1;
          fail('invalid escape');
      }
      start = pos;
    }
  };

  const hexUnit = (at: number): number => {
    const hex = text.slice(at, at + 4);
    if (!/^[0-9a-fA-F]{4}$/.test(hex)) fail('invalid \\u escape');
    return parseInt(hex, 16);
  };

  const NUMBER = /-?(?:0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/y;
  const parseNumber = (): number | bigint | JsonFloat => {
    NUMBER.lastIndex = pos;
    const m = NUMBER.exec(text);
    if (!m || m[0] === '-') fail('invalid number');
    const raw = m![0];
    pos += raw.length;
    const integerSyntax = m![1] === undefined && m![2] === undefined && raw !== '-0';
    if (integerSyntax) {
      const n = Number(raw);
      return Number.isSafeInteger(n) ? n : BigInt(raw);
    }
    return wrapFloats ? new JsonFloat(Number(raw)) : Number(raw);
  };

  const parseLiteral = (word: string, value: JsonValue): JsonValue => {
    if (!text.startsWith(word, pos)) fail('unexpected token');
    pos += word.length;
    return value;
  };

  const parseValue = (depth: number): JsonValue => {
    if (depth > MAX_DEPTH) fail(`nesting deeper than ${MAX_DEPTH}`);
    skipWs();
    const c = text[pos];
    if (c === '{') return parseObject(depth);
    if (c === '[') return parseArray(depth);
    if (c === '"') return parseString();
    if (c === 't') return parseLiteral('true', true);
    if (c === 'f') return parseLiteral('false', false);
    if (c === 'n') return parseLiteral('null', null);
    if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) return parseNumber();
    return fail(pos >= text.length ? 'unexpected end of input' : 'unexpected token');
  };

  const parseArray = (depth: number): JsonValue[] => {
    expect('[');
    const out: JsonValue[] = [];
    skipWs();
    if (text[pos] === ']') {
      pos++;
      return out;
    }
    for (;;) {
      out.push(parseValue(depth + 1));
      skipWs();
      if (text[pos] === ',') pos++;
      else if (text[pos] === ']') {
        pos++;
        return out;
      } else fail("expected ',' or ']'");
    }
  };

  const parseObject = (depth: number): JsonObject => {
    expect('{');
    // A null-prototype object: keys like "__proto__" are plain data here.
    const out: JsonObject = Object.create(null);
    skipWs();
    if (text[pos] === '}') {
      pos++;
      return out;
    }
    for (;;) {
      skipWs();
      const keyAt = pos;
      const key = parseString();
      if (Object.hasOwn(out, key)) {
        throw new JsonSyntaxError(`duplicate key ${JSON.stringify(key)} at position ${keyAt}`, keyAt, key);
      }
      skipWs();
      expect(':');
      out[key] = parseValue(depth + 1);
      skipWs();
      if (text[pos] === ',') pos++;
      else if (text[pos] === '}') {
        pos++;
        return out;
      } else fail("expected ',' or '}'");
    }
  };

  const value = parseValue(0);
  skipWs();
  if (pos !== text.length) fail('trailing characters after the JSON value');
  return value;
}

// parseStrictJson: JSON.parse's results on valid JSON, except that duplicate keys are
// refused, unsafe integers come back exact as bigint, and nesting depth, number length
// and the count of values built are bounded. checkJsonSyntax and JsonCursor.skipValue
// accept and refuse exactly what parseStrictJson does (bar duplicates), building nothing.

import { describe, expect, it } from 'vitest';
import { JsonCursor, JsonSyntaxError, checkJsonSyntax, parseStrictJson } from '../../src/formats/strict-json.js';

/** Parses and, on a throw, says which sample it was. */
function parse(text: string): unknown {
  try {
    return parseStrictJson(text);
  } catch (e) {
    throw new Error(`parseStrictJson(${JSON.stringify(text.slice(0, 120))}) threw: ${(e as Error).message}`, { cause: e });
  }
}

function refuses(text: string, options?: Parameters<typeof parseStrictJson>[1]): JsonSyntaxError {
  let caught: unknown;
  try {
    parseStrictJson(text, options);
  } catch (e) {
    caught = e;
  }
  expect(caught, `expected ${JSON.stringify(text.slice(0, 120))} to be refused`).toBeInstanceOf(JsonSyntaxError);
  return caught as JsonSyntaxError;
}

const SAMPLES = [
  'null',
  'true',
  'false',
  '0',
  '-0',
  '1',
  '-1',
  '3.25',
  '-0.5e-3',
  '1E+2',
  '1e400',
  '9007199254740991',
  '-9007199254740991',
  '""',
  '"plain"',
  '"caf\u00e9 \u65e5\u672c \ud83d\ude00"',
  '[]',
  '{}',
  '[1, "two", [3, [4, {}]], null, true]',
  '{"a": 1, "b": [1, 2, {"c": null}], "d": {"e": {"f": "g"}}}',
  '{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}',
  '{"__metadata__":{"format":"pt"},"w":{"dtype":"BF16","shape":[],"data_offsets":[0,2]}}',
  '{"0": 1, "10": 2, "2": 3, "b": 4, "a": 5}',
  '{"": "empty key", " ": "space key"}',
  '\t\r\n {"spaced" :\n[ 1 ,\t2 ] }\n\t ',
  '[1.5, -2.25e10, 6.02e23, 1e-7]',
];

describe('parseStrictJson: valid JSON', () => {
  it('returns what JSON.parse returns on every sample', () => {
    for (const s of SAMPLES) expect(parse(s), s).toEqual(JSON.parse(s));
  });

  it('keeps key order as JSON.parse does', () => {
    for (const s of SAMPLES.filter((x) => x.includes('{'))) {
      const keys = (v: unknown): unknown =>
        v && typeof v === 'object' && !Array.isArray(v)
          ? Object.entries(v).map(([k, x]) => [k, keys(x)])
          : Array.isArray(v) ? v.map(keys) : v;
      expect(keys(parse(s)), s).toEqual(keys(JSON.parse(s)));
    }
  });

  it('allows leading and trailing whitespace (space, tab, CR, LF)', () => {
    expect(parse(' \t\r\n{"a":1} \t\r\n')).toEqual({ a: 1 });
    expect(parse('   7   ')).toBe(7);
  });

  it('round-trips JSON.stringify of nested values', () => {
    const v = { s: 'x"y\\z\n', n: [0, -1, 2.5, 1e21], o: { p: [[], {}, [null]] }, t: true };
    expect(parse(JSON.stringify(v))).toEqual(v);
    expect(parse(JSON.stringify(v, null, 2))).toEqual(v);
  });
});

describe('parseStrictJson: escapes', () => {
  it('decodes every simple escape', () => {
    expect(parse('"\\" \\\\ \\/ \\b \\f \\n \\r \\t"')).toBe('" \\ / \b \f \n \r \t');
  });

  it('decodes \\u escapes, upper and lower case hex, and surrogate pairs', () => {
    expect(parse('"\\u0041\\u00e9\\u00E9\\u65e5"')).toBe('A\u00e9\u00e9\u65e5');
    expect(parse('"\\ud83d\\ude00"')).toBe('\ud83d\ude00');
    expect(parse('"\\u0000"')).toBe('\u0000');
    expect(parse('{"\\u0061": 1}')).toEqual({ a: 1 });
  });

  it('refuses bad escapes and raw control characters', () => {
    for (const s of ['"\\x41"', '"\\u12"', '"\\u12G4"', '"\\', '"\\"', '"a\nb"', '"a\u0001b"', '"unterminated']) {
      refuses(s);
    }
  });
});

describe('parseStrictJson: duplicate keys', () => {
  it('refuses a duplicate key at the top level and names it', () => {
    const e = refuses('{"a": 1, "b": 2, "a": 3}');
    expect(e.duplicateKey).toBe('a');
    expect(e.position).toBe(17);
  });

  it('refuses a duplicate key in a nested object', () => {
    expect(refuses('{"x": {"y": {"k": 1, "k": 1}}}').duplicateKey).toBe('k');
    expect(refuses('[{"ok": 1}, {"d": 1, "d": 2}]').duplicateKey).toBe('d');
  });

  it('sees keys written with different escapes as the same key', () => {
    expect(refuses('{"a": 1, "\\u0061": 2}').duplicateKey).toBe('a');
  });

  it('allows the same key in sibling objects', () => {
    expect(parse('[{"k": 1}, {"k": 2}]')).toEqual([{ k: 1 }, { k: 2 }]);
  });
});

describe('parseStrictJson: integers', () => {
  it('returns safe integers as numbers', () => {
    expect(parse('9007199254740991')).toBe(Number.MAX_SAFE_INTEGER);
    expect(parse('-9007199254740991')).toBe(Number.MIN_SAFE_INTEGER);
  });

  it('returns integers past 2^53 as exact bigints', () => {
    for (const s of ['9007199254740992', '9007199254740993', '18446744073709551615', '18446744073709551616', '-9007199254740993', '123456789012345678901234567890']) {
      expect(parse(s), s).toBe(BigInt(s));
      expect(parse(`[${s}]`), s).toEqual([BigInt(s)]);
      expect(parse(`{"n": ${s}}`), s).toEqual({ n: BigInt(s) });
    }
  });

  it('keeps numbers with a fraction or exponent as (rounded) numbers', () => {
    expect(parse('9007199254740993.0')).toBe(9007199254740992);
    expect(parse('1e20')).toBe(1e20);
  });

  it('refuses malformed numbers', () => {
    for (const s of ['01', '-', '+1', '.5', '1.', '1e', '1e+', '0x10', 'NaN', 'Infinity', '-Infinity', '--1']) refuses(s);
  });
});

describe('parseStrictJson: depth bound', () => {
  it('refuses 10,000 nested arrays with a JsonSyntaxError, not a stack overflow', () => {
    const e = refuses('['.repeat(10_000) + ']'.repeat(10_000));
    expect(e.message).toMatch(/nesting/);
  });

  it('refuses 10,000 nested objects and an unterminated 1,000,000-deep array', () => {
    refuses('{"a":'.repeat(10_000) + '1' + '}'.repeat(10_000));
    refuses('['.repeat(1_000_000));
  });

  it('accepts the nesting a checkpoint header needs (and a good deal more)', () => {
    const deep = '['.repeat(32) + '1' + ']'.repeat(32);
    expect(parse(deep)).toEqual(JSON.parse(deep));
  });
});

describe('parseStrictJson: refused input', () => {
  it('refuses trailing garbage after the value', () => {
    for (const s of ['{} {}', '{"a":1}x', '[1] ]', '1 2', 'null,', 'true false', '"a" "b"', '{}\u0000']) refuses(s);
  });

  it('refuses empty and whitespace-only input', () => {
    refuses('');
    refuses('  \n ');
  });

  it('refuses structural errors', () => {
    const bad = ['{', '}', '[', '[1,]', '[,1]', '{"a":1,}', '{"a" 1}', '{a:1}', "{'a':1}", '{"a":}', '[1 2]', 'nul', 'tru', 'True', 'undefined', '\ufeff{}', '{"a":1}}'];
    for (const s of bad) refuses(s);
  });

  it('reports a position within the text', () => {
    const text = '{"a": [1, 2, oops]}';
    expect(refuses(text).position).toBe(text.indexOf('oops'));
  });
});

describe('parseStrictJson: __proto__ is plain data', () => {
  it('keeps a "__proto__" key as an own property and pollutes nothing', () => {
    const v = parse('{"__proto__": {"polluted": true}, "a": 1}') as Record<string, unknown>;
    expect(Object.keys(v)).toEqual(['__proto__', 'a']);
    expect(Object.getOwnPropertyDescriptor(v, '__proto__')?.value).toEqual({ polluted: true });
    expect((v as { polluted?: unknown }).polluted).toBeUndefined();
    expect(({} as { polluted?: unknown }).polluted).toBeUndefined();
  });

  it('refuses "__proto__" twice, and treats "constructor" and "toString" as ordinary keys', () => {
    expect(refuses('{"__proto__": 1, "__proto__": 2}').duplicateKey).toBe('__proto__');
    expect(parse('{"constructor": 1, "toString": 2, "hasOwnProperty": 3}')).toEqual({ constructor: 1, toString: 2, hasOwnProperty: 3 });
  });
});

describe('bounds on what hostile text costs', () => {
  it('refuses a number literal over 4300 characters (Python int()\'s limit) before converting it', () => {
    expect(parse(`${'9'.repeat(4300)}`)).toBe(BigInt('9'.repeat(4300)));
    const started = performance.now();
    expect(refuses('9'.repeat(10_000_000)).message).toMatch(/number longer than 4300 characters at position 0/);
    expect(refuses(`[1, 0.${'5'.repeat(5000)}]`).position).toBe(4);
    expect(performance.now() - started).toBeLessThan(2000);
  });

  it('refuses past 1 M objects and arrays, and past 10 M values', () => {
    // The defaults (1 M containers, 10 M values) on small inputs; the outer array counts.
    expect(parseStrictJson('[{}, [], {}]', { maxContainers: 4 })).toEqual([{}, [], {}]);
    expect(refuses('[{}, [], {}, []]', { maxContainers: 4 }).message).toMatch(/more than 4 objects and arrays at position 13/);
    expect(parseStrictJson('[1, "a", null, {"k": 2}]', { maxValues: 6 })).toHaveLength(4);
    expect(refuses('[1, "a", null, {"k": 2}, 3]', { maxValues: 6 }).message).toMatch(/more than 6 values/);
    expect(refuses(`[${'{},'.repeat(1_000_000)}{}]`).message).toMatch(/more than 1000000 objects and arrays/);
  });

  it('decodes a string of 1 M escapes as one flat string equal to JSON.parse', () => {
    const text = `"${'\\u00e9\\n\\ud83d\\ude00'.repeat(250_000)}"`;
    expect(parse(text)).toBe(JSON.parse(text));
  });
});

describe('checkJsonSyntax and JsonCursor', () => {
  const refusesSyntax = (text: string) => expect(() => checkJsonSyntax(text), text.slice(0, 80)).toThrow(JsonSyntaxError);

  it('accepts every valid sample and refuses the malformed ones parseStrictJson refuses', () => {
    for (const text of SAMPLES) checkJsonSyntax(text);
    for (const text of ['{', '[1,]', '{"a":1,}', '{"a" 1}', '"\\ud800"', '"\\x"', '01', '1.', '{} x', '', '"a\u0001"']) {
      refuses(text);
      refusesSyntax(text);
    }
    // The outermost value is at depth 0: 65 nested arrays reach depth 64, the bound.
    refusesSyntax('['.repeat(66) + ']'.repeat(66));
    checkJsonSyntax('['.repeat(65) + ']'.repeat(65));
  });

  it('checks 30 MB of {} without building it, in bounded time', () => {
    const text = `[${'{},'.repeat(10_000_000)}{}]`;
    const started = performance.now();
    checkJsonSyntax(text);
    expect(performance.now() - started).toBeLessThan(5000);
  });

  it('reads token by token: a reader can refuse a value by its first character', () => {
    const c = new JsonCursor('{"a": [1, -2.5e3, "x"], "b": {"c": null}}');
    expect(c.peek()).toBe('object');
    expect(c.nextKey(true)).toBe('a');
    expect(c.peek()).toBe('array');
    expect(c.nextItem(true)).toBe(true);
    expect(c.readNumber()).toEqual({ start: 7, end: 8, integer: true });
    expect(c.nextItem(false)).toBe(true);
    expect(c.readNumber()).toMatchObject({ integer: false });
    expect(c.nextItem(false)).toBe(true);
    expect(c.readString()).toBe('x');
    expect(c.nextItem(false)).toBe(false);
    expect(c.nextKey(false)).toBe('b');
    c.skipValue(1);
    expect(c.nextKey(false)).toBeUndefined();
    c.end();
  });
});

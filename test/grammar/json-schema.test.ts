// JSON Schema → grammar: a seeded random walk (any allowed token, until eos) over each
// schema must always produce text that parses and validates with ajv, at several seeds;
// known valid documents (compact, spaced, pretty-printed, unicode) are accepted token by
// token, and invalid ones refused.

import { describe, expect, it } from 'vitest';
import { compileGrammar } from '../../src/grammar/index.js';
import { mulberry32 } from '../support/safetensors-bytes.js';
import { firstRefused, makeAjv, randomWalk, testVocabulary } from './support.js';

const str = { type: 'string' };
const int = { type: 'integer' };
const closed = (properties: Record<string, unknown>, required = Object.keys(properties)) => ({ type: 'object', properties, required, additionalProperties: false });

export const SCHEMAS: Record<string, object> = {
  person: closed({ name: { type: 'string', maxLength: 20 }, age: { type: 'integer', minimum: 0, maximum: 120 } }),
  nested: closed({ user: closed({ id: int, profile: closed({ bio: str, tags: { type: 'array', items: str, maxItems: 3 } }) }) }),
  arrayOfObjects: { type: 'array', items: closed({ x: int, y: { type: 'boolean' } }), minItems: 1, maxItems: 3 },
  enums: closed({ color: { enum: ['red', 'green', 'blue sky'] }, size: { enum: [1, 2.5, null, true, 'xl'] } }),
  nullable: closed({ middle: { anyOf: [str, { type: 'null' }] }, count: { type: ['integer', 'null'] } }),
  patterns: closed({ code: { type: 'string', pattern: '^[A-Z]{2}-\\d{3}$' }, slug: { type: 'string', pattern: '^[a-z0-9]+(-[a-z0-9]+)*$' } }),
  numbers: closed({
    x: { type: 'number' },
    y: { type: 'number', minimum: -10.5, maximum: 20 },
    z: { type: 'integer', exclusiveMinimum: 0, exclusiveMaximum: 1000 },
    w: { type: 'number', exclusiveMaximum: 0 },
    v: { type: 'number', minimum: 3, exclusiveMaximum: 7.5 },
  }),
  unicodeKeys: closed({ 名前: str, ключ: int, 'emoji🙂': { type: 'boolean' }, 'quote"key': { type: 'null' } }),
  optional: closed({ a: str, b: int, c: { type: 'boolean' }, d: { type: 'null' } }, ['c']),
  allOptional: closed({ a: int, b: int, c: int }, []),
  formats: closed({ d: { type: 'string', format: 'date' }, t: { type: 'string', format: 'time' }, dt: { type: 'string', format: 'date-time' }, u: { type: 'string', format: 'uuid' }, e: { type: 'string', format: 'email' }, ip: { type: 'string', format: 'ipv4' } }),
  lengths: closed({ short: { type: 'string', minLength: 2, maxLength: 5 }, empty: { type: 'string', maxLength: 0 }, long: { type: 'string', minLength: 3 } }),
  tuple: { type: 'array', prefixItems: [str, int, { type: 'boolean' }], items: false, minItems: 2 },
  matrix: { type: 'array', items: { type: 'array', items: { type: 'number' }, minItems: 2, maxItems: 2 }, minItems: 1, maxItems: 3 },
  tree: { $ref: '#/$defs/node', $defs: { node: closed({ value: int, children: { type: 'array', items: { $ref: '#/$defs/node' }, maxItems: 2 } }) } },
  linkedList: closed({ head: { $ref: '#/definitions/item' } }, ['head']),
  oneOfShapes: closed({
    shape: { oneOf: [closed({ kind: { const: 'circle' }, r: { type: 'number', minimum: 0 } }), closed({ kind: { const: 'square' }, side: { type: 'number', minimum: 0 } })] },
  }),
  consts: closed({ ok: { const: true }, version: { const: '1.0' }, flags: { type: 'array', items: { type: 'boolean' } } }),
  map: { type: 'object', additionalProperties: { type: 'integer', minimum: 0 }, maxProperties: 3 },
  rootArray: { type: 'array', items: { enum: ['a', 'b'] }, maxItems: 4 },
  rootUnion: { anyOf: [{ type: 'integer', minimum: 5 }, { type: 'string', pattern: '^x+$' }, { type: 'boolean' }] },
  anything: {},
  anyObject: { type: 'object' },
  allOf: { allOf: [{ type: 'object', properties: { a: str, b: int }, additionalProperties: false }, { required: ['a'] }] },
  deep: closed({ a: closed({ b: closed({ c: closed({ d: closed({ e: closed({ f: { type: 'string', enum: ['end'] } }) }) }) }) }) }),
  escapes: closed({ s: { type: 'string', pattern: '^[a"\\\\\\n]{1,4}$' } }),
  integerOnly: closed({ n: { type: 'number', multipleOf: 1 }, big: { type: 'integer', minimum: 1e12 }, half: { type: 'integer', multipleOf: 0.5 } }),
  objectMemberNames: JSON.parse('{"type":"object","properties":{"__proto__":{"type":"integer"},"constructor":{"type":"string"}},"required":["__proto__","constructor","toString"]}'),
  siblingsIntoAnyOf: { type: 'object', properties: { a: str, b: int }, additionalProperties: false, anyOf: [{ required: ['a'] }, { required: ['b'] }] },
};
(SCHEMAS.linkedList as Record<string, unknown>).definitions = { item: closed({ v: str, next: { anyOf: [{ $ref: '#/definitions/item' }, { type: 'null' }] } }) };

const SEEDS = [1, 2, 3];

/** The characters of a JSON text that are not inside a string. */
function outsideStrings(text: string): string {
  let out = '';
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else out += c;
  }
  return out;
}

describe('random walks over JSON schemas validate with ajv', () => {
  const { vocab } = testVocabulary();
  const ajv = makeAjv();
  for (const [name, schema] of Object.entries(SCHEMAS)) {
    it(name, () => {
      const grammar = compileGrammar({ jsonSchema: schema }, vocab);
      const validate = ajv.compile(schema);
      for (const seed of SEEDS) {
        const text = randomWalk(grammar, mulberry32(seed * 7919 + name.length));
        let value: unknown;
        expect(() => (value = JSON.parse(text)), `seed ${seed}: ${text}`).not.toThrow();
        expect(validate(value), `seed ${seed}: ${text}\n${JSON.stringify(validate.errors)}`).toBe(true);
      }
    });
  }

  it('json_object: any object, compact or not', () => {
    const grammar = compileGrammar({ jsonObject: true }, vocab);
    for (const seed of [11, 12, 13, 14]) {
      const value = JSON.parse(randomWalk(grammar, mulberry32(seed)));
      expect(typeof value === 'object' && value !== null && !Array.isArray(value)).toBe(true);
    }
  });

  it("whitespace 'none' walks produce compact JSON", () => {
    const grammar = compileGrammar({ jsonSchema: SCHEMAS.nested }, vocab, { whitespace: 'none' });
    for (const seed of SEEDS) {
      const text = randomWalk(grammar, mulberry32(seed));
      JSON.parse(text);
      expect(outsideStrings(text)).not.toMatch(/\s/);
    }
  });
});

describe('known documents', () => {
  const { vocab } = testVocabulary();
  const accepts = (schema: object, text: string) => {
    const r = firstRefused(compileGrammar({ jsonSchema: schema }, vocab), text);
    return r.refusedAt === -1 && r.canEnd;
  };

  it('accepts valid documents written compactly, spaced, and pretty-printed', () => {
    const doc = { name: 'Zoë 🙂', age: 42 };
    expect(accepts(SCHEMAS.person, JSON.stringify(doc))).toBe(true);
    expect(accepts(SCHEMAS.person, '{"name": "Zoë 🙂", "age": 42}')).toBe(true);
    expect(accepts(SCHEMAS.person, JSON.stringify(doc, null, 2))).toBe(true);
    expect(accepts(SCHEMAS.person, JSON.stringify(doc, null, '\t'))).toBe(true);
    expect(accepts(SCHEMAS.unicodeKeys, JSON.stringify({ 名前: 'x', ключ: -7, 'emoji🙂': false, 'quote"key': null }))).toBe(true);
    expect(accepts(SCHEMAS.tree, JSON.stringify({ value: 1, children: [{ value: 2, children: [] }, { value: 3, children: [{ value: 4, children: [] }] }] }))).toBe(true);
    expect(accepts(SCHEMAS.formats, JSON.stringify({ d: '2024-12-31', t: '23:59:59.5Z', dt: '2000-01-01T00:00:00+05:30', u: '123e4567-e89b-12d3-a456-426614174000', e: 'a.b+c@mail.example.org', ip: '192.168.0.255' }))).toBe(true);
    expect(accepts(SCHEMAS.numbers, JSON.stringify({ x: -1.5e3, y: -9.25, z: 999, w: -1.5, v: 6.5 }))).toBe(true);
    expect(accepts(SCHEMAS.escapes, JSON.stringify({ s: 'a"\\\n' }))).toBe(true);
    expect(accepts(SCHEMAS.optional, '{"c": true}')).toBe(true);
    expect(accepts(SCHEMAS.optional, '{"a": "x", "c": false, "d": null}')).toBe(true);
    expect(accepts(SCHEMAS.allOptional, '{}')).toBe(true);
    expect(accepts(SCHEMAS.allOptional, '{"b": 1, "c": 2}')).toBe(true);
    expect(accepts({ type: 'string' }, JSON.stringify('\u0001 \\ / \u00e9 \ud83d\ude42'))).toBe(true);
    expect(accepts({ type: 'string' }, '"\\u00e9\\/\\b"')).toBe(true);
  });

  it('refuses documents that break the schema', () => {
    // Bounds that are not integers are rounded inwards for the integer part: -10.25 ≥ -10.5
    // is valid but not generated (the integer part -10 would also allow -10.9).
    expect(accepts(SCHEMAS.numbers, JSON.stringify({ x: 1, y: -10.25, z: 1, w: -1, v: 3 }))).toBe(false);
    expect(accepts(SCHEMAS.numbers, JSON.stringify({ x: 1, y: -10, z: 1, w: -1, v: 3 }))).toBe(true);
    expect(accepts(SCHEMAS.person, '{"name": "x"}')).toBe(false); // missing required
    expect(accepts(SCHEMAS.person, '{"name": "x", "age": 121}')).toBe(false); // over maximum
    expect(accepts(SCHEMAS.person, '{"name": "x", "age": 1, "z": 0}')).toBe(false); // extra property
    expect(accepts(SCHEMAS.person, '{"name": "123456789012345678901", "age": 1}')).toBe(false); // maxLength 20
    expect(accepts(SCHEMAS.person, '{"name": "x", "age": 012}')).toBe(false); // leading zero
    expect(accepts(SCHEMAS.person, `{"name": "x",${' '.repeat(30)}"age": 1}`)).toBe(false); // unbounded whitespace
    expect(accepts(SCHEMAS.person, ' {"name": "x", "age": 1}')).toBe(false); // leading whitespace
    expect(accepts(SCHEMAS.rootArray, '["a","b","a","b","a"]')).toBe(false); // maxItems 4
    expect(accepts(SCHEMAS.tuple, '["a"]')).toBe(false); // minItems 2
    expect(accepts(SCHEMAS.tuple, '["a", 1, true, 2]')).toBe(false); // items: false
    expect(accepts(SCHEMAS.patterns, '{"code": "AB-12", "slug": "a"}')).toBe(false);
    expect(accepts(SCHEMAS.formats, JSON.stringify({ d: '2023-02-30', t: '10:00:00Z', dt: '2000-01-01T00:00:00Z', u: '123e4567-e89b-12d3-a456-426614174000', e: 'a@b.co', ip: '1.2.3.4' }))).toBe(false);
    expect(accepts({ type: 'number' }, '1e999')).toBe(false); // would parse to Infinity
    expect(accepts({ type: 'integer' }, '1234567890123456')).toBe(false); // past 15 digits
    expect(accepts({ type: 'string' }, '"\\ud800"')).toBe(false); // lone surrogate escape
    expect(accepts({ type: 'string' }, '"a\nb"')).toBe(false); // raw control character
  });
});

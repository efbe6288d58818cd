// JSON Schema → grammar: a seeded random walk (any allowed token, until eos) over each
// schema must always produce text that parses and validates with ajv, at several seeds;
// known valid documents (compact, spaced, pretty-printed, unicode) are accepted token by
// token, and invalid ones refused.

import { describe, expect, it } from 'vitest';
import { compileGrammar } from '../../src/grammar/index.js';
import { readFileSync } from 'node:fs';
import { mulberry32 } from '../support/safetensors-bytes.js';
import { firstRefused, makeAjv, randomWalk, testVocabulary } from './support.js';


// The 29 schemas (nested objects, arrays with min/max items, enums, anyOf with null,
// patterns, numbers, unicode keys, formats, recursion) live in a fixture file that
// scripts/structured-validity.mjs also runs on a real model.
// JSON.parse, not a JSON import: bundlers turn JSON into object literals, where the
// `__proto__` member name of objectMemberNames would set the prototype instead.
export const SCHEMAS: Record<string, object> = JSON.parse(readFileSync('test/fixtures/grammar/schemas.json', 'utf8'));

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

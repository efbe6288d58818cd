// Malformed or unenforceable schemas, grammars and regexes: each fails with one USAGE line
// that names the keyword path, grammar line or pattern position — never a crash, a hang or
// a huge allocation. Strict mode refuses what it cannot enforce; strict: false ignores it.

import { describe, expect, it } from 'vitest';
import { type GrammarSource, compileGrammar } from '../../src/grammar/index.js';
import { isSluiceError } from '../../src/errors.js';
import { testVocabulary } from './support.js';

function errorOf(source: GrammarSource, options = {}): string {
  try {
    compileGrammar(source, testVocabulary().vocab, options);
  } catch (e) {
    if (!isSluiceError(e, 'USAGE')) throw e;
    expect(e.message).not.toContain('\n');
    return e.message;
  }
  throw new Error(`compiled: ${JSON.stringify(source).slice(0, 200)}`);
}

const compiles = (source: GrammarSource) => expect(() => compileGrammar(source, testVocabulary().vocab)).not.toThrow();

describe('JSON schema errors name the keyword', () => {
  const props = (p: Record<string, unknown>) => ({ type: 'object', properties: p, required: Object.keys(p), additionalProperties: false });
  const cases: Array<[string, unknown, RegExp]> = [
    ['unknown type', { type: 'strin' }, /^schema\.type: unknown type "strin"/],
    ['unknown format', props({ age: { type: 'string', format: 'foo' } }), /^schema\.properties\.age\.format: unknown format "foo" \(supported: date, time, date-time, uuid, email, ipv4\)$/],
    ['not a schema', props({ a: 42 }), /^schema\.properties\.a: a schema must be an object or a boolean/],
    ['remote $ref', { $ref: 'https://example.com/s.json' }, /^schema\.\$ref: only local references/],
    ['dangling $ref', { $ref: '#/$defs/missing' }, /^schema\.\$ref: "#\/\$defs\/missing" does not resolve$/],
    ['$ref cycle with no structure', { $ref: '#/$defs/a', $defs: { a: { $ref: '#/$defs/b' }, b: { $ref: '#/$defs/a' } } }, /^schema\.\$defs\.[ab]: can never finish/],
    ['$ref cycle with no base case', { $ref: '#/$defs/n', $defs: { n: props({ next: { $ref: '#/$defs/n' } }) } }, /^schema\.\$defs\.n: can never finish/],
    ['left-recursive $ref', { $ref: '#/$defs/a', $defs: { a: { anyOf: [{ $ref: '#/$defs/a' }, { type: 'string' }] } } }, /^schema\.\$defs\.a: left-recursive/],
    ['false schema', false, /^schema: can never be satisfied$/],
    ['required false property', props({ a: false }), /^schema\.properties\.a: can never be satisfied, and the property is required$/],
    ['required not listed, closed', { type: 'object', properties: {}, required: ['x'], additionalProperties: false }, /^schema\.required: "x" is not in properties/],
    ['empty enum', { enum: [] }, /^schema\.enum: must be a non-empty list$/],
    ['format named like an Object member', { type: 'string', format: 'constructor' }, /^schema\.format: unknown format "constructor"/],
    ['$ref into an Object member', { $ref: '#/constructor' }, /^schema\.\$ref: "#\/constructor" does not resolve$/],
    ['required named like an Object member', { type: 'object', properties: {}, required: ['toString'], additionalProperties: false }, /^schema\.required: "toString" is not in properties/],
    ['enum of no allowed type', { type: 'string', enum: [1, 2] }, /^schema\.enum: leaves no value/],
    ['bad pattern', { type: 'string', pattern: '(a' }, /^schema\.pattern: missing \) at position 2 of pattern "\(a"$/],
    ['lookahead', { type: 'string', pattern: '(?=a)b' }, /^schema\.pattern: lookahead and lookbehind are not supported/],
    ['backreference', { type: 'string', pattern: '(a)\\1' }, /^schema\.pattern: backreferences are not supported/],
    ['minLength over maxLength', { type: 'string', minLength: 5, maxLength: 2 }, /^schema: minLength 5 is over maxLength 2$/],
    ['huge minLength', { type: 'string', minLength: 1e6 }, /^schema\.minLength: 1000000 is over the limit of 10000$/],
    ['negative maxItems', { type: 'array', maxItems: -1 }, /^schema\.maxItems: must be a non-negative integer/],
    ['impossible minItems', { type: 'array', prefixItems: [{ type: 'string' }], items: false, minItems: 2 }, /^schema: minItems 2 cannot be met \(at most 1 items are possible\)$/],
    ['empty integer range', { type: 'integer', minimum: 10, maximum: 5 }, /^schema: no integer of at most 15 digits meets/],
    ['non-numeric bound', { type: 'number', minimum: '3' }, /^schema\.minimum: must be a number/],
    ['allOf of clashing schemas', { allOf: [{ type: 'string' }, { type: 'integer' }] }, /^schema\.allOf\[1\]\.type: cannot be merged/],
    ['overlapping oneOf', { oneOf: [{ type: 'integer' }, { type: 'number' }] }, /^schema\.oneOf: branches 0 and 1 may both match one value/],
    ['uniqueItems', { type: 'array', uniqueItems: true }, /^schema\.uniqueItems: cannot be enforced by a grammar \(strict mode refuses what it cannot enforce\)$/],
    ['not', { not: { type: 'string' } }, /^schema\.not: not supported/],
    ['unknown keyword', { type: 'string', maxLenght: 3 }, /^schema\.maxLenght: unknown keyword/],
    ['multipleOf', { type: 'number', multipleOf: 0.3 }, /^schema\.multipleOf: only multipleOf 1/],
    ['multipleOf 1/2 on a number', { type: 'number', multipleOf: 0.5 }, /^schema\.multipleOf: only multipleOf 1/],
    ['multipleOf 1/10 on an integer', { type: 'integer', multipleOf: 0.1 }, /^schema\.multipleOf: only multipleOf 1/],
    ['multipleOf 5', { type: 'integer', multipleOf: 5 }, /^schema\.multipleOf: only multipleOf 1/],
    ['pattern with length', { type: 'string', pattern: 'a+', maxLength: 3 }, /^schema\.maxLength: cannot be combined with pattern or format/],
    ['huge maxLength', { type: 'string', maxLength: 1e6 }, /^schema\.maxLength: 1000000 is over the limit of 10000/],
  ];
  for (const [name, schema, message] of cases) {
    it(name, () => expect(errorOf({ jsonSchema: schema })).toMatch(message));
  }

  it('strict: false ignores what it cannot enforce, still refuses what is malformed', () => {
    for (const schema of [{ type: 'array', uniqueItems: true }, { type: 'string', maxLenght: 3 }, { oneOf: [{ type: 'integer' }, { type: 'number' }] }, { type: 'string', maxLength: 1e6 }, { not: {} }]) {
      expect(() => compileGrammar({ jsonSchema: schema, strict: false }, testVocabulary().vocab)).not.toThrow();
    }
    expect(errorOf({ jsonSchema: { type: 'strin' }, strict: false })).toMatch(/unknown type/);
    expect(errorOf({ jsonSchema: { type: 'string', format: 'foo' }, strict: false })).toMatch(/unknown format/);
  });

  it('10⁴ properties and deep nesting are refused, bounded', () => {
    const many = Object.fromEntries(Array.from({ length: 10_000 }, (_, i) => [`p${i}`, { type: 'integer' }]));
    expect(errorOf({ jsonSchema: { type: 'object', properties: many } })).toMatch(/^schema: the schema has more than 5000 properties$/);
    let deep: object = { type: 'string' };
    for (let i = 0; i < 200; i++) deep = { type: 'array', items: deep };
    expect(errorOf({ jsonSchema: deep })).toMatch(/^schema(\.items)+: nested more than 64 levels deep$/);
  });

  it('huge values stay out of error lines and are refused before they are built', () => {
    const long = 'k'.repeat(2_000_000);
    const shortPath = errorOf({ jsonSchema: { type: 'object', properties: { [long]: { type: 'string', format: long } } } });
    expect(shortPath.length).toBeLessThan(300);
    expect(errorOf({ jsonSchema: { type: 'object', properties: { [long]: { type: 'string' } } } })).toMatch(/^schema: the schema's property names are over 1000000 characters long in all$/);
    expect(errorOf({ jsonSchema: { enum: [long] } })).toMatch(/^schema\.enum: too large to enforce \(2000002 characters of values\)$/);
    expect(errorOf({ jsonSchema: { type: [{ a: long }] } })).toMatch(/^schema\.type: unknown type an object/);
    expect(errorOf({ jsonSchema: { $ref: long } }).length).toBeLessThan(300);
  });

  it('a schema too big to enforce fails on the budget, naming where', () => {
    const big = { type: 'object', properties: { code: { type: 'string', pattern: '^(ab|cd){5000}$' } } };
    expect(errorOf({ jsonSchema: big }, { limits: { maxNfaStates: 10_000 } })).toMatch(/^schema: too large: it expands to about \d+ automaton states, over the limit of 10000/);
    // Repeated pieces (the string character, each item) are shared rules, not copies: this stays small.
    const wide = { type: 'array', items: { type: 'string', maxLength: 10_000 }, minItems: 20, maxItems: 20 };
    expect(compileGrammar({ jsonSchema: wide }, testVocabulary().vocab, { limits: { maxNfaStates: 100_000 } }).stats.states).toBeLessThan(50_000);
  });

  it('a GBNF chain of 3000 rules compiles without deep recursion', () => {
    const lines = Array.from({ length: 3000 }, (_, i) => `r${i} ::= "x" r${i + 1}`);
    compiles({ grammar: ['root ::= r0', ...lines, 'r3000 ::= "end"'].join('\n') });
  });
});

describe('regex errors name the position', () => {
  const cases: Array<[string, RegExp]> = [
    ['(a', /^regex: missing \) at position 2/],
    ['a)', /^regex: unmatched \) at position 1/],
    ['*a', /^regex: nothing to repeat at position 0/],
    ['a**', /^regex: nothing to repeat at position 2/],
    ['[b-a]', /^regex: class range out of order/],
    ['a{5,2}', /^regex: \{5,2\}: the maximum is below the minimum/],
    ['a{100000}', /^regex: repetition count 100000 is over the limit of 10000/],
    ['a^b', /^regex: \^ is only supported at the start/],
    ['a$b', /^regex: \$ is only supported at the end/],
    ['\\bfoo', /^regex: word boundaries/],
    ['\\p{L}', /^regex: Unicode property escapes/],
    ['\\q', /^regex: unknown escape \\q/],
    ['[]', /^regex: matches nothing$/],
    ['('.repeat(5000) + ')'.repeat(5000), /^regex: groups nested more than 100 deep/],
  ];
  for (const [pattern, message] of cases) it(JSON.stringify(pattern.slice(0, 20)), () => expect(errorOf({ regex: pattern })).toMatch(message));

  it('a huge but legal repetition fails on the automaton budget', () => {
    expect(errorOf({ regex: '(abc{1000}){1000}' })).toMatch(/^regex: too large: it expands to about \d+ automaton states/);
  });
});

describe('GBNF errors name the line', () => {
  const cases: Array<[string, RegExp]> = [
    ['item ::= "a"', /^grammar: no "root" rule/],
    ['root ::= item', /^grammar line 1: rule "item" is used but never defined$/],
    ['root ::= "a\n', /^grammar line 1: unterminated string literal$/],
    ['root ::= "\\q"', /^grammar line 1: bad escape "\\\\q"$/],
    ['root = "a"', /^grammar line 1: expected ::= after "root"$/],
    ['root ::= ("a"', /^grammar line 1: missing \)$/],
    ['root ::= "a" )', /^grammar line 1: unexpected "\)"$/],
    ['root ::= <think> "a"', /^grammar line 1: token references/],
    ['root ::= "a"\nroot ::= "b"', /^grammar line 2: rule "root" is defined twice \(first on line 1\)$/],
    ['root ::= "a"{3,1}', /^grammar line 1: \{3,1\}: the maximum is below the minimum$/],
    ['root ::= x\nx ::= x "a" | "b"', /^grammar rule "x": left-recursive \(grammar rule "x" → grammar rule "x"\)/],
    ['root ::= "a" root', /^grammar rule "root": matches nothing$/],
    ['root ::= "(" x ")"\nx ::= "a" x', /^grammar rule "x": can never finish/],
    ['root ::= [^\\x00-\\U0010FFFF]', /^grammar rule "root": matches nothing$/],
    ['root ::= [a-\n', /^grammar line 1: unterminated character class$/],
  ];
  for (const [text, message] of cases) it(JSON.stringify(text.slice(0, 30)), () => expect(errorOf({ grammar: text })).toMatch(message));
});

describe('API misuse', () => {
  it('refuses a source of the wrong shape and a bad whitespace option', () => {
    expect(errorOf({} as GrammarSource)).toMatch(/^compileGrammar: the source must be one of/);
    expect(errorOf({ regex: 'a', grammar: 'root ::= "a"' } as unknown as GrammarSource)).toMatch(/^compileGrammar: the source must be one of/);
    expect(errorOf({ jsonObject: true }, { whitespace: 'lots' })).toMatch(/whitespace must be "bounded" or "none"/);
    compiles({ jsonObject: true });
  });
});

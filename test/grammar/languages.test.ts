// The regex and GBNF front ends: which strings their grammars accept, checked against the
// JS RegExp engine (u flag, whole-string match) for the regex subset, and against examples
// and JSON.parse for a JSON grammar written in GBNF.

import { describe, expect, it } from 'vitest';
import { type GrammarSource, TokenVocabulary, compileGrammar } from '../../src/grammar/index.js';
import { mulberry32 } from '../support/safetensors-bytes.js';
import { randomWalk, testVocabulary } from './support.js';

// One token per byte: a text is accepted when every byte is and the grammar can end there.
const bytesVocab = TokenVocabulary.fromBytes(Array.from({ length: 256 }, (_, b) => Uint8Array.of(b)), { vocabSize: 257, eosIds: [256] });

function matcherFor(source: GrammarSource) {
  const grammar = compileGrammar(source, bytesVocab);
  return (text: string): boolean => {
    const m = grammar.start();
    for (const b of new TextEncoder().encode(text)) if (!m.accept(b)) return false;
    return m.canEnd;
  };
}

describe('regex subset agrees with RegExp', () => {
  const patterns = [
    '\\d{3}-\\w+', '[^a-c]+', '.{2}', '\\s*x\\S', 'colou?r|gr(e|a)y', '(?:ab)+(?<n>cd)?', '[\\u00e0-\\u00ff]+', '\\u{1F642}+',
    '\\uD83D\\uDE42', '[\\-\\]\\\\]+', '\\x41\\cJ', '^abc$', '[\\d.]+', 'a*?b', '[^]', '\\W\\D', '[a-z&&]{1,2}', 'x{2,}', '(a|ab)(c|bcd)',
    '[\\s\\S]{0,2}', '\\t\\n\\r\\f\\v\\0', 'é|日本語|🙂?', '\\.\\*\\+\\?\\(\\)\\[\\]\\{\\}\\|\\/\\^\\$',
  ];
  const strings = [
    '', 'abc', '123-x_9', '12-x', 'dd', 'd', 'é', 'ü', 'ÿ', 'Ā', '🙂', '🙂🙂', 'x y', ' \txZ', 'color', 'colour', 'grey', 'gray', 'graey',
    'ababcd', 'abcd', 'cd', '-]\\', 'A\n', '1.2.3', 'aab', 'b', '\n', 'a\nb', '!', '!a', 'a&', 'xx', 'xxxxx', 'x', 'abcd', 'abc',
    '\t\n\r\f\v\0', '日本語', '.*+?()[]{}|/^$', '\u2028', 'z',
  ];
  for (const pattern of patterns) {
    it(pattern, () => {
      const re = new RegExp(`^(?:${pattern})$`, 'u');
      const ours = matcherFor({ regex: pattern });
      for (const s of strings) expect(ours(s), `${JSON.stringify(s)}`).toBe(re.test(s));
    });
  }
});

const JSON_GBNF = String.raw`
# JSON in GBNF, after llama.cpp's grammars/json.gbnf
root   ::= value   # the whole output
value  ::= object | array | string | number | ("true" | "false" | "null")
object ::=
  "{" ws (
    string ":" ws value
    ("," ws string ":" ws value)*
  )? "}"
array  ::= "[" ws ( value ("," ws value)* )? "]"
string ::= "\"" ( [^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4}) )* "\""
number ::= "-"? ([0-9] | [1-9] [0-9]{1,15}) ("." [0-9]+)? ([eE] [-+]? [0-9]{1,2})?
ws     ::= | " " |
  "\n" [ \t]{0,20}
`;

describe('GBNF', () => {
  it('a JSON grammar accepts JSON and refuses the rest', () => {
    const json = matcherFor({ grammar: JSON_GBNF });
    for (const ok of ['{}', '[]', '{"a": [1, -2.5e3, true, null], "b":{"c":"\\u00e9\\n"}}', '"日本🙂"', '[\n  1,\n  2]', '0']) expect(json(ok), ok).toBe(true);
    for (const bad of ['{', '[1,]', '{"a" 1}', '01', '"\n"', '[1 2]', 'nul', '{"a":1} ', '"\\x"']) expect(json(bad), bad).toBe(false);
  });

  it('random walks over the JSON grammar parse', () => {
    const grammar = compileGrammar({ grammar: JSON_GBNF }, testVocabulary().vocab);
    for (const seed of [1, 2, 3, 4]) JSON.parse(randomWalk(grammar, mulberry32(seed)));
  });

  it('escapes, classes, any-character, repetition forms, comments and line rules', () => {
    const g = matcherFor({
      grammar: [
        'root ::= greeting " " name tail # comment after a rule',
        'greeting ::= "hi" | "hello" |',
        '  "\\x48\\u00e9\\U0001F642"',
        'name ::= [A-Z] [a-z]{1,} ("-" [A-Z][a-z]+)?',
        'tail ::= [.!]{0,3} . ?',
      ].join('\n'),
    });
    expect(g('hi Ann')).toBe(true);
    expect(g('Hé🙂 Ann-Lee!!?')).toBe(true);
    expect(g('hello Bo...x')).toBe(true);
    expect(g('hello B')).toBe(false);
    expect(g('hey Ann')).toBe(false);
    expect(g('hi Ann....x')).toBe(false);
  });

  it('exact, open and bounded repetition', () => {
    const g = matcherFor({ grammar: 'root ::= "a"{2} "b"{1,} "c"{0,2} "d"{3,4}' });
    expect(g('aabddd')).toBe(true);
    expect(g('aabbbccdddd')).toBe(true);
    expect(g('abddd')).toBe(false);
    expect(g('aabcccddd')).toBe(false);
    expect(g('aabddddd')).toBe(false);
  });
});

// The token mask against brute force: along seeded random walks, every token's bit must say
// exactly whether the text so far plus that token is still a prefix of some string of the
// language (checked by an independent oracle: the JS RegExp engine on every completion up to
// a length, or a hand-written prefix checker for the recursive grammars), and eos exactly
// whether the text is complete. Plus: special tokens and padding rows are never allowed,
// refused tokens change nothing, caches give the same masks as a fresh grammar.

import { describe, expect, it } from 'vitest';
import { type CompiledGrammar, TokenVocabulary, compileGrammar } from '../../src/grammar/index.js';
import { isSluiceError } from '../../src/errors.js';
import { mulberry32 } from '../support/safetensors-bytes.js';
import { allowedIds, randomWalk, testVocabulary } from './support.js';

/** Every string over `alphabet` of length 1..3 as a token, then eos, a special, and padding. */
function smallVocabulary(alphabet: string[]): { vocab: TokenVocabulary; texts: string[]; eos: number; special: number } {
  const texts: string[] = [];
  const grow = (prefix: string) => {
    for (const c of alphabet) {
      texts.push(prefix + c);
      if (prefix.length < 2) grow(prefix + c);
    }
  };
  grow('');
  const enc = new TextEncoder();
  const bytes: Array<Uint8Array | null> = texts.map((t) => enc.encode(t));
  const eos = bytes.push(enc.encode('</s>')) - 1;
  const special = bytes.push(enc.encode('<pad>')) - 1;
  return { vocab: TokenVocabulary.fromBytes(bytes, { vocabSize: bytes.length + 29, eosIds: [eos], specialIds: [special] }), texts, eos, special };
}

/** Compares each step's mask with `viable`/`complete` along random walks; returns steps checked. */
function checkMasks(grammar: CompiledGrammar, texts: string[], eos: number, viable: (s: string) => boolean, complete: (s: string) => boolean, seeds: number[], maxSteps = 12): number {
  const mask = new Uint32Array(grammar.vocab.maskWords);
  let checked = 0;
  for (const seed of seeds) {
    const rng = mulberry32(seed);
    const m = grammar.start();
    let text = '';
    for (let step = 0; step < maxSteps; step++) {
      m.fillMask(mask);
      const allowed = new Set(allowedIds(mask, grammar.vocab.vocabSize));
      texts.forEach((t, id) => expect(allowed.has(id), `after ${JSON.stringify(text)} token ${JSON.stringify(t)}`).toBe(viable(text + t)));
      expect(allowed.has(eos), `eos after ${JSON.stringify(text)}`).toBe(complete(text));
      expect(allowed.size, `allowed ids after ${JSON.stringify(text)}`).toBe([...allowed].filter((id) => id < texts.length || id === eos).length);
      checked++;
      const choices = [...allowed];
      if (choices.length === 0) throw new Error(`stuck after ${JSON.stringify(text)}`);
      const id = choices[Math.floor(rng() * choices.length)];
      expect(m.accept(id)).toBe(true);
      if (id === eos) break;
      text += texts[id];
    }
  }
  return checked;
}

/** Viability by the RegExp engine: some completion of at most `depth` characters matches in full. */
function regexOracle(source: string, alphabet: string[], depth: number) {
  const re = new RegExp(`^(?:${source})$`, 'u');
  const memo = new Map<string, boolean>();
  const viable = (s: string, left = depth): boolean => {
    const key = `${left}|${s}`;
    let v = memo.get(key);
    if (v === undefined) {
      v = re.test(s) || (left > 0 && alphabet.some((c) => viable(s + c, left - 1)));
      memo.set(key, v);
    }
    return v;
  };
  return { viable: (s: string) => viable(s), complete: (s: string) => re.test(s) };
}

describe('masks against brute force', () => {
  const abc = ['a', 'b', 'c'];
  const small = smallVocabulary(abc);

  for (const pattern of ['a(b|c)*a', '(ab|ba){1,3}c?', '(abc|ab)+', 'a{2,4}b?c{0,2}', '(a|b)*c(a|b){2}', '[ab]{0,3}', 'c|cab|cabc(a|bb)']) {
    it(`regex ${pattern}`, () => {
      const grammar = compileGrammar({ regex: pattern }, small.vocab);
      // Every viable prefix of these patterns completes within 3 characters: depth 4 is exact.
      const oracle = regexOracle(pattern, abc, 4);
      expect(checkMasks(grammar, small.texts, small.eos, oracle.viable, oracle.complete, [1, 2, 3, 4])).toBeGreaterThan(8);
    });
  }

  it('GBNF right recursion with an empty alternative (a stack that stays flat)', () => {
    const grammar = compileGrammar({ grammar: 'root ::= "a" root | "b" | ""' }, small.vocab);
    const oracle = regexOracle('a*b?', abc, 2);
    checkMasks(grammar, small.texts, small.eos, oracle.viable, oracle.complete, [5, 6, 7], 20);
  });

  it('GBNF centre recursion: (ⁿ x )ⁿ', () => {
    const parens = smallVocabulary(['(', ')', 'x']);
    const grammar = compileGrammar({ grammar: 'root ::= "(" root ")" | "x"' }, parens.vocab);
    expect(grammar.stats.rules).toBe(1);
    const shape = (s: string) => /^(\(*)(x(\)*))?$/.exec(s);
    const viable = (s: string) => {
      const m = shape(s);
      return m !== null && (m[2] === undefined || m[3].length <= m[1].length);
    };
    const complete = (s: string) => {
      const m = shape(s);
      return m !== null && m[2] !== undefined && m[3].length === m[1].length;
    };
    checkMasks(grammar, parens.texts, parens.eos, viable, complete, [1, 2, 3, 4, 5], 25);
  });

  it('GBNF mutual recursion: nested lists', () => {
    const lists = smallVocabulary(['[', ']', ',']);
    const grammar = compileGrammar({ grammar: 'root ::= "[" items? "]"\nitems ::= root ("," root)*' }, lists.vocab);
    // A prefix is viable when every ']' closes an open '[' that held something or nothing
    // (not a trailing ','), and every ',' follows a ']' inside an open list.
    const viable = (s: string) => {
      let depth = 0;
      for (let i = 0; i < s.length; i++) {
        const c = s[i];
        const prev = i > 0 ? s[i - 1] : '';
        if (c === '[') {
          if (i > 0 && prev === ']') return false;
          depth++;
        } else if (c === ']') {
          if (depth === 0 || prev === ',') return false;
          depth--;
        } else if (prev !== ']' || depth === 0) return false;
        if (depth === 0 && i < s.length - 1) return false;
      }
      return true;
    };
    const complete = (s: string) => viable(s) && s.length > 0 && [...s].filter((c) => c === '[').length === [...s].filter((c) => c === ']').length;
    checkMasks(grammar, lists.texts, lists.eos, viable, complete, [1, 2, 3, 4, 5, 6], 30);
  });

  it('stays exact after the caches are dropped (over 8192 configurations)', () => {
    const grammar = compileGrammar({ regex: '[ab]{0,9000}c' }, small.vocab);
    const m = grammar.start();
    const mask = new Uint32Array(small.vocab.maskWords);
    const a = small.texts.indexOf('aaa');
    // Each length is its own configuration: 9000 of them, so the caches are dropped on the way.
    for (let n = 1; n <= 3000; n++) {
      expect(m.accept(a)).toBe(true);
      if (n % 500 !== 0 && n < 2999) continue;
      m.fillMask(mask);
      const left = 9000 - 3 * n;
      const expected = small.texts.filter((t) => /^[ab]*c?$/.test(t) && t.replace('c', '').length <= left && (!t.includes('c') || t.endsWith('c')));
      expect(allowedIds(mask, small.vocab.vocabSize).map((id) => small.texts[id]).sort()).toEqual(expected.sort());
    }
    expect(m.accept(a)).toBe(false);
  });
});

describe('mask rules', () => {
  const { vocab, eos, special, tokenizerSize } = testVocabulary();

  it('never allows special tokens or padding ids; eos only when complete; only eos when done', () => {
    const grammar = compileGrammar({ jsonSchema: { type: 'object', properties: { a: { type: 'integer' } }, required: ['a'], additionalProperties: false } }, vocab);
    const m = grammar.start();
    const mask = new Uint32Array(vocab.maskWords);
    const rng = mulberry32(9);
    while (!m.done) {
      m.fillMask(mask);
      const allowed = allowedIds(mask, vocab.vocabSize);
      expect(allowed).not.toContain(special);
      expect(allowed.every((id) => id < tokenizerSize)).toBe(true);
      expect(allowed.includes(eos)).toBe(m.canEnd);
      expect(m.accept(allowed[Math.floor(rng() * allowed.length)])).toBe(true);
    }
    m.fillMask(mask);
    expect(allowedIds(mask, vocab.vocabSize)).toEqual([eos]);
    expect(m.accept(special)).toBe(false);
    expect(m.accept(vocab.vocabSize - 1)).toBe(false);
    expect(m.accept(eos)).toBe(true);
    expect(m.accept(eos)).toBe(false);
    m.fillMask(mask);
    expect(allowedIds(mask, vocab.vocabSize)).toEqual([]);
  });

  it('a refused token leaves the matcher where it was', () => {
    const grammar = compileGrammar({ regex: 'hello world' }, vocab);
    const m = grammar.start();
    const mask = new Uint32Array(vocab.maskWords);
    const before = new Uint32Array(vocab.maskWords);
    m.fillMask(before);
    expect(m.accept(vocab.eosIds[0])).toBe(false);
    expect(m.accept('z'.charCodeAt(0))).toBe(false);
    m.fillMask(mask);
    expect(mask).toEqual(before);
  });

  it('matchers of one grammar and a fresh grammar agree mask for mask (caches are exact)', () => {
    const schema = { type: 'array', items: { type: 'object', properties: { k: { type: 'string', maxLength: 3 }, v: { type: ['number', 'null'] } }, required: ['k'], additionalProperties: false }, maxItems: 3 };
    const shared = compileGrammar({ jsonSchema: schema }, vocab);
    randomWalk(shared, mulberry32(1)); // warm the caches
    for (const seed of [2, 3]) {
      const fresh = compileGrammar({ jsonSchema: schema }, vocab);
      const a = shared.start();
      const b = fresh.start();
      const ma = new Uint32Array(vocab.maskWords);
      const mb = new Uint32Array(vocab.maskWords);
      const rng = mulberry32(seed);
      while (!a.done) {
        a.fillMask(ma);
        b.fillMask(mb);
        expect(ma).toEqual(mb);
        const allowed = allowedIds(ma, vocab.vocabSize);
        const id = allowed[Math.floor(rng() * allowed.length)];
        expect(a.accept(id) && b.accept(id)).toBe(true);
      }
    }
  });

  it('clears the words of a longer buffer past the vocabulary, cached or not', () => {
    const grammar = compileGrammar({ regex: 'ab' }, vocab);
    for (let pass = 0; pass < 2; pass++) {
      const mask = new Uint32Array(vocab.maskWords + 3).fill(0xffffffff);
      grammar.start().fillMask(mask);
      expect(Array.from(mask.subarray(vocab.maskWords))).toEqual([0, 0, 0]);
      expect(allowedIds(mask, vocab.vocabSize).map((id) => new TextDecoder().decode(vocab.bytesOf(id)!)).sort()).toEqual(['a', 'ab']);
    }
  });

  it('refuses a mask too short for the vocabulary', () => {
    const m = compileGrammar({ regex: 'a' }, vocab).start();
    try {
      m.fillMask(new Uint32Array(vocab.maskWords - 1));
      throw new Error('no error');
    } catch (e) {
      expect(isSluiceError(e, 'USAGE')).toBe(true);
    }
  });
});

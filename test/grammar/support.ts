// Shared by the grammar tests: a small byte-level BPE-like vocabulary (all 256 bytes, tokens
// that span JSON structure like `":"` and `"},`, whole and partial UTF-8 characters, a
// special token, padding past the tokenizer), a seeded random walk that picks any allowed
// token until the grammar ends, greedy tokenization of a known text, and ajv.

import * as Ajv2020Module from 'ajv/dist/2020.js';
import * as addFormatsModule from 'ajv-formats';
import type { CompiledGrammar } from '../../src/grammar/index.js';
import { TokenVocabulary } from '../../src/grammar/index.js';

/** GPT-2's byte → printable-character map (openai/gpt-2 src/encoder.py bytes_to_unicode). */
const BYTE_CHARS: string[] = (() => {
  const out: string[] = [];
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    out.push(String.fromCodePoint(printable ? b : 256 + extra++));
  }
  return out;
})();

export const byteLevel = (bytes: Uint8Array | number[]): string => Array.from(bytes, (b) => BYTE_CHARS[b]).join('');
const utf8 = (text: string) => new TextEncoder().encode(text);

/** Multi-byte tokens, as text: JSON structure, words, numbers, unicode, escapes. */
const TEXT_TOKENS = [
  '{"', '":', '":"', '","', '"},', '"}', '},{"', '[{"', '}]', '"]', '["', '", "', '": ', ', "', '{\n  "', '\n  ', '  ', '\n',
  '}}', ']]', '],', '},', '":[', '":{"', '":true', '":null', '":-', '":"', '" ', ' "', '"\n', '{}', '[]',
  'true', 'false', 'null', 'nu', 'll', 'tr', 'ue', 'fal', 'se',
  '12', '-3', '.5', 'e+', 'E-1', '00', '99', '2024', '-0', '150', '0.', '1e5', '42',
  'name', 'age', '"name"', 'hello', ' world', 'the', ' and', 'ab', 'abc', 'AB', 'XY-', 'x.com', '@a', 'user', '.org',
  'é', '日本', '🙂', '名前', 'ключ', 'ñ', 'ü',
  '\\', '\\"', '\\n', '\\u00e9', '\\t', '\\\\',
  'T', 'Z', ':00', '12:30', '-01-', '-12-31', 'T10', '+01:00', 'ok', 'red', 'green', 'blue', ' sky', 'circle', 'square',
];
/** Pieces of multi-byte characters: 🙂 = F0 9F 99 82, 日 = E6 97 A5, é = C3 A9. */
const PARTIAL_TOKENS = [[0xf0, 0x9f], [0x99, 0x82], [0xe6], [0x97, 0xa5], [0xc3]];

export interface TestVocabulary {
  vocab: TokenVocabulary;
  eos: number;
  special: number;
  /** ids ≥ this are padding rows (no token). */
  tokenizerSize: number;
}

let shared: TestVocabulary | null = null;

/** The test vocabulary: ids 0..255 the single bytes, then the tokens above, then specials, then padding. */
export function testVocabulary(): TestVocabulary {
  if (shared) return shared;
  const tokens: string[] = BYTE_CHARS.slice();
  for (const t of TEXT_TOKENS) tokens.push(byteLevel(utf8(t)));
  for (const p of PARTIAL_TOKENS) tokens.push(byteLevel(p));
  const special = tokens.push('<|im_start|>') - 1;
  const eos = tokens.push('<|im_end|>') - 1;
  const vocab = TokenVocabulary.fromTokens(tokens, 'byte-level', { vocabSize: tokens.length + 37, eosIds: [eos], specialIds: [special] });
  shared = { vocab, eos, special, tokenizerSize: tokens.length };
  return shared;
}

export function allowedIds(mask: Uint32Array, vocabSize: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < vocabSize; i++) if ((mask[i >>> 5] >>> (i & 31)) & 1) out.push(i);
  return out;
}

const decoder = new TextDecoder('utf-8', { fatal: true });

/**
 * Picks a uniformly random allowed token until eos; returns the text (which must be valid
 * UTF-8). Throws when a step allows nothing, a pick is refused, or it runs past maxSteps.
 */
export function randomWalk(grammar: CompiledGrammar, rng: () => number, maxSteps = 5000): string {
  const { vocab } = grammar;
  const m = grammar.start();
  const mask = new Uint32Array(vocab.maskWords);
  const bytes: number[] = [];
  for (let step = 0; step < maxSteps; step++) {
    m.fillMask(mask);
    const allowed = allowedIds(mask, vocab.vocabSize);
    const sofar = () => JSON.stringify(new TextDecoder().decode(Uint8Array.from(bytes)).slice(-80));
    if (allowed.length === 0) throw new Error(`no token allowed after ${sofar()}`);
    if (m.done && (allowed.length !== vocab.eosIds.length || !vocab.eosIds.includes(allowed[0]))) throw new Error(`done, but more than eos allowed after ${sofar()}`);
    const id = allowed[Math.floor(rng() * allowed.length)];
    if (!m.accept(id)) throw new Error(`allowed token ${id} refused after ${sofar()}`);
    if (vocab.eosIds.includes(id)) {
      if (!m.done) throw new Error('eos accepted but the matcher is not done');
      return decoder.decode(Uint8Array.from(bytes));
    }
    bytes.push(...vocab.bytesOf(id)!);
  }
  throw new Error(`no eos within ${maxSteps} steps`);
}

/** `text` as token ids, longest token first (a stand-in for a BPE encoder). */
export function greedyTokens(vocab: TokenVocabulary, text: string): number[] {
  const bytes = utf8(text);
  const { trie } = vocab;
  const ids: number[] = [];
  let pos = 0;
  while (pos < bytes.length) {
    let node = 0;
    let best = -1;
    let bestLen = 0;
    for (let d = pos; d < bytes.length; d++) {
      // Children of `node` are the nodes after it at depth+1, until its subtree ends.
      let child = node + 1;
      let found = -1;
      while (child < trie.skip[node] && child < trie.size) {
        if (trie.byte[child] === bytes[d]) {
          found = child;
          break;
        }
        child = trie.skip[child];
      }
      if (found < 0) break;
      node = found;
      if (trie.tokenStart[node] < trie.tokenStart[node + 1]) {
        best = trie.tokenIds[trie.tokenStart[node]];
        bestLen = d - pos + 1;
      }
    }
    if (best < 0) throw new Error(`no token for byte ${bytes[pos]}`);
    ids.push(best);
    pos += bestLen;
  }
  return ids;
}

/** Feeds `text` token by token; the index of the first refused token, or -1 when all pass. */
export function firstRefused(grammar: CompiledGrammar, text: string): { refusedAt: number; canEnd: boolean } {
  const m = grammar.start();
  const ids = greedyTokens(grammar.vocab, text);
  for (let i = 0; i < ids.length; i++) if (!m.accept(ids[i])) return { refusedAt: i, canEnd: false };
  return { refusedAt: -1, canEnd: m.canEnd };
}

// ajv is CommonJS; its default export arrives as the module or as `.default` depending on the loader.
type AjvLike = { compile(schema: object): ((data: unknown) => boolean) & { errors?: unknown } };
const interop = <T>(m: unknown): T => ((m as { default?: T }).default ?? (m as T));

export function makeAjv(): AjvLike {
  const Ajv = interop<new (options: object) => AjvLike>(interop(Ajv2020Module));
  const ajv = new Ajv({ strict: false, allErrors: true });
  interop<(a: AjvLike) => void>(interop(addFormatsModule))(ajv);
  return ajv;
}

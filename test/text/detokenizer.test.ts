import { beforeAll, describe, expect, it } from 'vitest';
import { Detokenizer, type DetokenizerOptions } from '../../src/text/detokenizer.js';
import type { Tokenizer } from '../../src/text/tokenizer.js';
import { loadFixtureTokenizer } from './fixtures.js';
import { mulberry32 } from '../support/safetensors-bytes.js';

let byteLevel: Tokenizer;
let sentencePiece: Tokenizer;
beforeAll(async () => {
  byteLevel = await loadFixtureTokenizer('bytelevel');
  sentencePiece = await loadFixtureTokenizer('sentencepiece');
});

/** The deltas of feeding `ids` one by one, then the flush. */
function stream(tokenizer: Tokenizer, ids: readonly number[], options?: DetokenizerOptions): { deltas: string[]; flushed: string } {
  const d = new Detokenizer(tokenizer, options);
  const deltas = ids.map((id) => d.push(id));
  return { deltas, flushed: d.flush() };
}

const TEXTS = [
  'Hello world! The sluice gate opens.',
  'x😀y中z',
  '中文的文本和日本語のテキスト。你好，世界！',
  'Emoji: 😀 🎉 👍 🚀 😀🎉 ❤️ ✅ 👩‍👩‍👧',
  'Café, naïve, résumé, über, jalapeño',
  '  leading spaces, trailing   ',
  'line one\nline two\n\n  indented\ttab',
];

describe('byte-level BPE', () => {
  it('holds a character split across tokens until it is whole', () => {
    // x | ðŁ ĺĢ (😀 = F0 9F + 98 80) | y | ä¸ Ń (中 = E4 B8 + AD) | z
    const ids = byteLevel.encode('x😀y中z');
    expect(ids).toEqual([120, 268, 286, 121, 303, 173, 122]);
    expect(stream(byteLevel, ids)).toEqual({ deltas: ['x', '', '😀', 'y', '', '中', 'z'], flushed: '' });
  });

  it('handles a token that finishes one CJK character and holds the whole next one', () => {
    // ä¸ | Ńæĸĩ (AD + 文) | ĠðŁĺĢðŁİī (" 😀🎉")
    const ids = byteLevel.encode('中文 😀🎉');
    expect(ids.map((id) => byteLevel.idToToken(id))).toEqual(['ä¸', 'Ńæĸĩ', 'ĠðŁĺĢðŁİī']);
    expect(stream(byteLevel, ids).deltas).toEqual(['', '中文', ' 😀🎉']);
  });

  it('streams exactly decode(all ids), never showing U+FFFD', () => {
    for (const text of TEXTS) {
      const ids = byteLevel.encode(text);
      const { deltas, flushed } = stream(byteLevel, ids);
      expect(deltas.join('') + flushed, text).toBe(byteLevel.decode(ids));
      expect(deltas.join('') + flushed).toBe(text);
      expect(deltas.some((d) => d.includes('\uFFFD')), text).toBe(false);
    }
  });

  it('shows a truly invalid byte as U+FFFD once the next token proves it is not a character start', () => {
    // Ids 0..255 are the single bytes: 0xE4 alone starts a 3-byte character that never comes.
    expect(stream(byteLevel, [120, 0xe4, 120])).toEqual({ deltas: ['x', '', '\uFFFDx'], flushed: '' });
    expect(stream(byteLevel, [120, 0xe4])).toEqual({ deltas: ['x', ''], flushed: '\uFFFD' });
  });

  it('gives up waiting after 16 tokens of garbage, and still ends equal to decode', () => {
    const ids = new Array<number>(20).fill(0x80); // lone continuation bytes
    const { deltas, flushed } = stream(byteLevel, ids);
    expect(deltas.slice(0, 15).every((d) => d === '')).toBe(true);
    expect(deltas[15]).toBe('\uFFFD'.repeat(16));
    expect(flushed).toBe('\uFFFD'.repeat(4));
    expect(deltas.join('') + flushed).toBe(byteLevel.decode(ids));
  });

  it('keeps or skips special tokens', () => {
    const ids = byteLevel.encode('Hi 😀<|im_end|>\n<|im_start|>x');
    expect(stream(byteLevel, ids).deltas.join('')).toBe('Hi 😀<|im_end|>\n<|im_start|>x');
    const skipped = stream(byteLevel, ids, { skipSpecialTokens: true });
    expect(skipped.deltas.join('') + skipped.flushed).toBe('Hi 😀\nx');
    expect(skipped.deltas.join('') + skipped.flushed).toBe(byteLevel.decode(ids, { skipSpecialTokens: true }));
  });

  it('equals decode on random id sequences (seeded)', () => {
    for (let seed = 1; seed <= 20; seed++) {
      const random = mulberry32(seed);
      const ids = Array.from({ length: 200 }, () => Math.floor(random() * byteLevel.vocabSize));
      const { deltas, flushed } = stream(byteLevel, ids);
      expect(deltas.join('') + flushed, `seed ${seed}`).toBe(byteLevel.decode(ids));
    }
  });
});

describe('SentencePiece-style BPE', () => {
  it('keeps the leading space of every token after the first', () => {
    const ids = sentencePiece.encode('Hello world!', { addSpecialTokens: false });
    expect(ids.map((id) => sentencePiece.idToToken(id))).toEqual(['▁Hello', '▁world!']);
    expect(stream(sentencePiece, ids).deltas).toEqual(['Hello', ' world!']);
  });

  it('holds byte-fallback tokens until they make a character', () => {
    const ids = sentencePiece.encode('x😀y中z');
    expect(ids).toEqual([1, 322, 313, 243, 162, 155, 131, 314, 231, 187, 176, 315]);
    expect(stream(sentencePiece, ids, { skipSpecialTokens: true }).deltas).toEqual(['', '', 'x', '', '', '', '😀', 'y', '', '', '中', 'z']);
  });

  it('streams exactly decode(all ids), never showing U+FFFD', () => {
    for (const text of TEXTS) {
      const ids = sentencePiece.encode(text);
      for (const skipSpecialTokens of [false, true]) {
        const { deltas, flushed } = stream(sentencePiece, ids, { skipSpecialTokens });
        expect(deltas.join('') + flushed, text).toBe(sentencePiece.decode(ids, { skipSpecialTokens }));
        expect(deltas.some((d) => d.includes('\uFFFD')), text).toBe(false);
      }
    }
  });

  it('with the end of the prompt as context, the first generated token keeps its space', () => {
    const prompt = sentencePiece.encode('Hello'); // [<s>, ▁Hello]
    const [world] = sentencePiece.encode('world', { addSpecialTokens: false });
    expect(stream(sentencePiece, [world]).deltas).toEqual(['world']);
    expect(stream(sentencePiece, [world], { context: prompt }).deltas).toEqual([' world']);
    expect(stream(sentencePiece, [world], { context: prompt, skipSpecialTokens: true }).deltas).toEqual([' world']);
  });

  it('a skipped special token does not take the next token\'s space', () => {
    const ids = [...sentencePiece.encode('Hello', { addSpecialTokens: false }), 2, ...sentencePiece.encode('world', { addSpecialTokens: false })];
    const { deltas, flushed } = stream(sentencePiece, ids, { skipSpecialTokens: true });
    expect(deltas).toEqual(['Hello', '', ' world']);
    expect(deltas.join('') + flushed).toBe(sentencePiece.decode(ids, { skipSpecialTokens: true }));
  });
});

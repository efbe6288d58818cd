// Token strings → the bytes they add to the text: byte-level BPE (Ġ, Ċ, partial UTF-8),
// SentencePiece (▁, <0x0A>), added tokens as plain text; checked against the fixture
// tokenizers' own decode. The trie holds every token exactly once; specials and padding
// rows have no bytes.

import { describe, expect, it } from 'vitest';
import { TokenVocabulary } from '../../src/grammar/index.js';
import { tokenBytes } from '../../src/grammar/vocabulary.js';
import { isSluiceError } from '../../src/errors.js';
import { loadFixtureTokenizer } from '../text/fixtures.js';
import { byteLevel, testVocabulary } from './support.js';

const text = (b: Uint8Array | null) => (b ? new TextDecoder().decode(b) : null);

describe('token strings → bytes', () => {
  it('byte-level BPE', () => {
    expect(text(tokenBytes('Ġhello', 'byte-level'))).toBe(' hello');
    expect(text(tokenBytes('ĊĠĠ', 'byte-level'))).toBe('\n  ');
    expect(text(tokenBytes('Ã©', 'byte-level'))).toBe('é');
    expect(tokenBytes('ð', 'byte-level')).toEqual(Uint8Array.of(0xf0)); // a lone lead byte
    expect(tokenBytes(byteLevel([0x00, 0x7f, 0xad]), 'byte-level')).toEqual(Uint8Array.of(0x00, 0x7f, 0xad));
    expect(text(tokenBytes('<tool_call>', 'byte-level'))).toBe('<tool_call>'); // added token, plain text
    expect(text(tokenBytes('日本', 'byte-level'))).toBe('日本'); // not byte-level characters: plain text
    expect(tokenBytes('', 'byte-level')).toBeNull();
  });

  it('SentencePiece', () => {
    expect(text(tokenBytes('▁hello', 'sentencepiece'))).toBe(' hello');
    expect(tokenBytes('<0x0A>', 'sentencepiece')).toEqual(Uint8Array.of(0x0a));
    expect(tokenBytes('<0xE6>', 'sentencepiece')).toEqual(Uint8Array.of(0xe6));
    expect(text(tokenBytes('<0x0A>', 'raw'))).toBe('<0x0A>');
  });
});

describe('TokenVocabulary.fromTokenizer', () => {
  it('byte-level fixture: every token decodes to the bytes the tokenizer itself decodes to', async () => {
    const tok = await loadFixtureTokenizer('bytelevel');
    const vocab = TokenVocabulary.fromTokenizer(tok, { vocabSize: tok.vocabSize + 13 });
    expect(vocab.vocabSize).toBe(tok.vocabSize + 13);
    expect(vocab.eosIds).toEqual([tok.eos!.id]);
    let compared = 0;
    for (let id = 0; id < tok.vocabSize; id++) {
      const bytes = vocab.bytesOf(id);
      if (tok.specialIds.has(id)) {
        expect(bytes).toBeNull();
        continue;
      }
      const decoded = tok.decode([id]);
      if (decoded.includes('\ufffd')) continue; // a partial character: decode cannot show its bytes
      expect(text(bytes), `id ${id}`).toBe(decoded);
      compared++;
    }
    expect(compared).toBeGreaterThan(200);
    for (let id = tok.vocabSize; id < vocab.vocabSize; id++) expect(vocab.bytesOf(id)).toBeNull();
    expect(TokenVocabulary.fromTokenizer(tok, { vocabSize: tok.vocabSize + 13 })).toBe(vocab); // cached
  });

  it('SentencePiece fixture: ▁ is a space and <0x..> tokens are bytes, as the tokenizer decodes them', async () => {
    const tok = await loadFixtureTokenizer('sentencepiece');
    const vocab = TokenVocabulary.fromTokenizer(tok);
    const a = tok.tokenToId('a')!;
    let compared = 0;
    for (let id = 0; id < tok.vocabSize; id++) {
      if (tok.specialIds.has(id)) {
        expect(vocab.bytesOf(id)).toBeNull();
        continue;
      }
      // After another token, so the decoder's leading-space strip does not apply.
      const decoded = tok.decode([a, id]).slice(1);
      if (decoded.includes('\ufffd')) continue;
      expect(text(vocab.bytesOf(id)), `id ${id} ${tok.idToToken(id)}`).toBe(decoded);
      compared++;
    }
    expect(compared).toBeGreaterThan(200);
  });
});

describe('trie', () => {
  it('holds every token with bytes once, at the node its bytes lead to', () => {
    const { vocab } = testVocabulary();
    const { trie } = vocab;
    const seen = new Set<number>();
    const path: number[] = [];
    for (let node = 1; node < trie.size; node++) {
      path.length = trie.depth[node] - 1;
      path.push(trie.byte[node]);
      expect(trie.skip[node]).toBeGreaterThan(node);
      for (let k = trie.tokenStart[node]; k < trie.tokenStart[node + 1]; k++) {
        const id = trie.tokenIds[k];
        expect(seen.has(id)).toBe(false);
        seen.add(id);
        expect(Array.from(vocab.bytesOf(id)!)).toEqual(path);
      }
    }
    for (let id = 0; id < vocab.vocabSize; id++) expect(seen.has(id)).toBe(vocab.bytesOf(id) !== null);
  });

  it('refuses a vocabSize below the tokenizer and an eos outside it', () => {
    const bad = (f: () => unknown, message: RegExp) => {
      try {
        f();
        throw new Error('no error');
      } catch (e) {
        expect(isSluiceError(e, 'USAGE') && message.test(e.message)).toBe(true);
      }
    };
    const bytes = [Uint8Array.of(97), Uint8Array.of(98)];
    bad(() => TokenVocabulary.fromBytes(bytes, { vocabSize: 1 }), /vocabSize 1 is smaller than the tokenizer's 2 tokens/);
    bad(() => TokenVocabulary.fromBytes(bytes, { eosIds: [2] }), /eos id 2 is outside the vocabulary/);
  });
});

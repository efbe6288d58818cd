import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { isSluiceError } from '../../src/errors.js';
import { loadTokenizer, Tokenizer } from '../../src/text/tokenizer.js';
import { fixtureDir, loadFixtureTokenizer, readerFor } from './fixtures.js';

// Ids from the Rust `tokenizers` library (0.23.2, Tokenizer.from_file on the same
// tokenizer.json), so these check @huggingface/tokenizers against the reference, not
// against itself.
const REFERENCE = {
  bytelevel: [
    { text: 'Hello world!', ids: [72, 381, 332, 33] },
    { text: 'x😀y中z', ids: [120, 268, 286, 121, 303, 173, 122] },
    { text: "I'm fine, thanks. Isn't it?", ids: [73, 39, 109, 298, 261, 101, 44, 471, 46, 359, 373, 386, 351, 63] },
    { text: '1234 litres', ids: [49, 50, 51, 52, 544] },
    { text: '<|im_start|>user\nHi there<|im_end|>\n', ids: [557, 117, 115, 278, 10, 72, 105, 259, 262, 558, 10] },
  ],
  sentencepiece: [
    { text: 'Hello world!', ids: [417, 448] },
    { text: 'x😀y中z', ids: [322, 313, 243, 162, 155, 131, 314, 231, 187, 176, 315] },
    { text: "I'm fine, thanks. Isn't it?", ids: [414, 262, 302, 349, 328, 436, 483, 308, 267, 414, 427, 406, 282] },
    { text: '1234 litres', ids: [364, 271, 272, 273, 360, 298, 309, 329, 308] },
    { text: '<s>[INST] Hi there [/INST]', ids: [1, 322, 94, 287, 81, 86, 288, 96, 363, 298, 326, 329, 322, 94, 268, 287, 81, 86, 288, 96] },
  ],
};

const ROUND_TRIP = [
  'Hello world!',
  'The sluice gate opens; the river runs.',
  '中文的文本和日本語のテキスト。你好，世界！',
  'Emoji: 😀 🎉 👍 🚀 😀🎉 ❤️ ✅ 👩‍👩‍👧',
  'Café, naïve, résumé, über, jalapeño',
  'unseen: zebra quixotic ŽŠČ ΑΒΓ кириллица',
  '  leading spaces, trailing   ',
  'line one\nline two\n\n  indented\ttab',
];

let byteLevel: Tokenizer;
let sentencePiece: Tokenizer;
beforeAll(async () => {
  byteLevel = await loadFixtureTokenizer('bytelevel');
  sentencePiece = await loadFixtureTokenizer('sentencepiece');
});

async function fixtureFiles(name: 'bytelevel' | 'sentencepiece') {
  const dir = fixtureDir(name);
  return {
    tokenizerJson: JSON.parse(await readFile(join(dir, 'tokenizer.json'), 'utf8')) as Record<string, unknown>,
    tokenizerConfig: JSON.parse(await readFile(join(dir, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>,
  };
}

function sluiceError(fn: () => unknown): { code: string; message: string } {
  try {
    fn();
  } catch (e) {
    if (isSluiceError(e)) return { code: e.code, message: e.message };
    throw e;
  }
  throw new Error('expected a SluiceError');
}

describe('byte-level BPE (Qwen2 layout)', () => {
  it('reads the special tokens from tokenizer_config.json', () => {
    expect(byteLevel.bos).toBeNull(); // Qwen2 has "bos_token": null
    expect(byteLevel.eos).toEqual({ token: '<|im_end|>', id: 558 });
    expect(byteLevel.pad).toEqual({ token: '<|endoftext|>', id: 556 });
    expect(byteLevel.unk).toBeNull();
    expect([...byteLevel.specialIds].sort()).toEqual([556, 557, 558]);
    expect(byteLevel.vocabSize).toBe(559);
    expect(typeof byteLevel.config.chat_template).toBe('string');
  });

  it('encodes as the Rust library does', () => {
    for (const { text, ids } of REFERENCE.bytelevel) {
      expect(byteLevel.encode(text), text).toEqual(ids);
      expect(byteLevel.encode(text, { addSpecialTokens: false }), text).toEqual(ids); // no bos in Qwen2
    }
  });

  it('maps ids to vocabulary entries and back', () => {
    expect(byteLevel.idToToken(332)).toBe('Ġworld');
    expect(byteLevel.idToToken(268)).toBe('ðŁ'); // the first two bytes of 😀
    expect(byteLevel.idToToken(557)).toBe('<|im_start|>');
    expect(byteLevel.idToToken(559)).toBeUndefined();
    expect(byteLevel.idToToken(-1)).toBeUndefined();
    expect(byteLevel.idToToken(1.5)).toBeUndefined();
    expect(byteLevel.tokenToId('<|im_end|>')).toBe(558);
    expect(byteLevel.tokenToId('no such token')).toBeUndefined();
  });

  it('decodes what it encodes', () => {
    for (const text of ROUND_TRIP) expect(byteLevel.decode(byteLevel.encode(text))).toBe(text);
  });

  it('decodes a split character as U+FFFD, and whole once complete', () => {
    expect(byteLevel.decode([120, 268])).toBe('x\uFFFD');
    expect(byteLevel.decode([120, 268, 286])).toBe('x😀');
  });
});

describe('SentencePiece-style BPE (Llama 2 layout)', () => {
  it('reads special tokens written in the {"__type": "AddedToken", "content": ...} form', () => {
    expect(sentencePiece.bos).toEqual({ token: '<s>', id: 1 });
    expect(sentencePiece.eos).toEqual({ token: '</s>', id: 2 });
    expect(sentencePiece.unk).toEqual({ token: '<unk>', id: 0 });
    expect(sentencePiece.pad).toBeNull();
    expect([...sentencePiece.specialIds].sort()).toEqual([0, 1, 2]);
  });

  it('encodes as the Rust library does, adding <s> unless told not to', () => {
    for (const { text, ids } of REFERENCE.sentencepiece) {
      expect(sentencePiece.encode(text, { addSpecialTokens: false }), text).toEqual(ids);
      expect(sentencePiece.encode(text), text).toEqual([1, ...ids]);
    }
  });

  it('falls back to byte tokens for characters outside the vocabulary', () => {
    expect(sentencePiece.encode('中', { addSpecialTokens: false }).map((id) => sentencePiece.idToToken(id))).toEqual(['▁', '<0xE4>', '<0xB8>', '<0xAD>']);
  });

  it('decodes what it encodes (the leading ▁ of the first piece is stripped)', () => {
    for (const text of ROUND_TRIP) {
      expect(sentencePiece.decode(sentencePiece.encode(text), { skipSpecialTokens: true })).toBe(text);
    }
    expect(sentencePiece.decode([417, 448])).toBe('Hello world!');
    expect(sentencePiece.decode([448])).toBe('world!'); // why the detokenizer decodes windows
  });
});

describe('decode', () => {
  it('keeps or skips special tokens', () => {
    const ids = byteLevel.encode('<|im_start|>user\nHi<|im_end|>\n');
    expect(byteLevel.decode(ids)).toBe('<|im_start|>user\nHi<|im_end|>\n');
    expect(byteLevel.decode(ids, { skipSpecialTokens: true })).toBe('user\nHi\n');
    expect(sentencePiece.decode([1, 417, 448, 2])).toBe('<s> Hello world!</s>');
    expect(sentencePiece.decode([1, 417, 448, 2], { skipSpecialTokens: true })).toBe('Hello world!');
  });

  it('skips bos/eos/pad/unk too, as transformers does, even when not marked special in tokenizer.json', async () => {
    const files = await fixtureFiles('bytelevel');
    const odd = Tokenizer.fromJson({ ...files, tokenizerConfig: { eos_token: 'Ġworld' } }); // a plain vocabulary entry
    expect(odd.decode(odd.encode('Hello world!'), { skipSpecialTokens: true })).toBe('Hello!');
  });

  it('gives "" for no ids and skips ids outside the vocabulary, as the Rust library does', () => {
    expect(byteLevel.decode([])).toBe('');
    expect(byteLevel.decode([72, 99_999, 381, -3, 2.5])).toBe('Hello');
    expect(byteLevel.decode([99_999])).toBe('');
  });

  it('applies clean_up_tokenization_spaces only when the config asks for it', async () => {
    const ids = byteLevel.encode('Hello . world ?');
    expect(byteLevel.decode(ids)).toBe('Hello . world ?'); // transformers' default: off
    const files = await fixtureFiles('bytelevel');
    const cleaning = Tokenizer.fromJson({ ...files, tokenizerConfig: { ...files.tokenizerConfig, clean_up_tokenization_spaces: true } });
    expect(cleaning.decode(ids)).toBe('Hello. world?');
    expect(cleaning.decode(ids, { cleanUpSpaces: false })).toBe('Hello . world ?');
  });
});

describe('tokenizer_config.json', () => {
  it('registers tokens that only added_tokens_decoder declares', async () => {
    const files = await fixtureFiles('bytelevel');
    const config = {
      ...files.tokenizerConfig,
      added_tokens_decoder: {
        ...(files.tokenizerConfig.added_tokens_decoder as object),
        '559': { content: '<tool_call>', lstrip: false, normalized: false, rstrip: false, single_word: false, special: true },
      },
    };
    const t = Tokenizer.fromJson({ tokenizerJson: files.tokenizerJson, tokenizerConfig: config });
    expect(t.tokenToId('<tool_call>')).toBe(559);
    expect(t.encode('Hi<tool_call>')).toEqual([72, 105, 559]);
    expect(t.specialIds.has(559)).toBe(true);
    expect(t.vocabSize).toBe(560);
  });

  it('accepts eos_token in the {"content": ...} form and additional_special_tokens as objects', async () => {
    const files = await fixtureFiles('bytelevel');
    const t = Tokenizer.fromJson({
      tokenizerJson: files.tokenizerJson,
      tokenizerConfig: { eos_token: { content: '<|endoftext|>', special: true }, additional_special_tokens: [{ content: '<|im_start|>' }] },
    });
    expect(t.eos).toEqual({ token: '<|endoftext|>', id: 556 });
  });

  it('loads without tokenizer_config.json, with no named special tokens', async () => {
    const t = await loadTokenizer(readerFor(fixtureDir('sentencepiece'), { 'tokenizer_config.json': null }));
    expect(t.bos).toBeNull();
    expect(t.eos).toBeNull();
    expect(t.encode('Hello world!')).toEqual([1, 417, 448]); // tokenizer.json's post-processor still adds <s>
  });

  it('ignores a pad or unk token the vocabulary lacks, but not a missing bos or eos', async () => {
    const files = await fixtureFiles('bytelevel');
    const t = Tokenizer.fromJson({ ...files, tokenizerConfig: { ...files.tokenizerConfig, unk_token: '<unk>', pad_token: '<pad>' } });
    expect(t.unk).toBeNull();
    expect(t.pad).toBeNull();
    const e = sluiceError(() => Tokenizer.fromJson({ ...files, tokenizerConfig: { ...files.tokenizerConfig, eos_token: '</s>' }, where: '/m' }));
    expect(e).toEqual({ code: 'INVALID_JSON', message: `/m/tokenizer_config.json: eos_token "</s>" is not in /m/tokenizer.json's vocabulary` });
  });
});

describe('malformed files', () => {
  const where = '/models/broken';

  it('names tokenizer.json when it is missing', async () => {
    await expect(loadTokenizer(readerFor(fixtureDir('bytelevel'), { 'tokenizer.json': null }), where)).rejects.toMatchObject({
      code: 'NOT_FOUND',
      message: expect.stringMatching(/^\/models\/broken\/tokenizer\.json: not found/),
    });
  });

  it('refuses text that is not JSON, or JSON that is not an object', async () => {
    const files = await fixtureFiles('bytelevel');
    expect(sluiceError(() => Tokenizer.fromJson({ tokenizerJson: '{"model": ', where }))).toMatchObject({
      code: 'INVALID_JSON',
      message: expect.stringMatching(/^\/models\/broken\/tokenizer\.json: not valid JSON/),
    });
    expect(sluiceError(() => Tokenizer.fromJson({ tokenizerJson: '[1, 2]', where })).message).toBe('/models/broken/tokenizer.json: not a JSON object');
    expect(sluiceError(() => Tokenizer.fromJson({ tokenizerJson: files.tokenizerJson, tokenizerConfig: 'nope', where }))).toMatchObject({
      code: 'INVALID_JSON',
      message: expect.stringMatching(/^\/models\/broken\/tokenizer_config\.json: not valid JSON/),
    });
  });

  it('checks the parts of tokenizer.json the library trusts', async () => {
    const { tokenizerJson: json } = await fixtureFiles('bytelevel');
    const model = json.model as Record<string, unknown>;
    const cases: [Record<string, unknown>, string][] = [
      [{ ...json, model: undefined }, 'no "model" object (is this a tokenizer.json?)'],
      [{ ...json, model: { ...model, vocab: undefined } }, 'model.vocab is missing'],
      [{ ...json, model: { ...model, merges: 'a b' } }, 'model.merges must be a list for a BPE model'],
      [{ ...json, decoder: 'ByteLevel' }, 'decoder must be an object or null'],
      [{ ...json, added_tokens: {} }, 'added_tokens must be a list'],
      [{ ...json, added_tokens: [{ id: -1, content: 'x' }] }, 'added_tokens[0].id must be a non-negative integer'],
      [{ ...json, added_tokens: [{ id: 5, content: '' }] }, 'added_tokens[0].content must be a non-empty string'],
    ];
    for (const [tokenizerJson, why] of cases) {
      expect(sluiceError(() => Tokenizer.fromJson({ tokenizerJson, where }))).toEqual({ code: 'INVALID_JSON', message: `${where}/tokenizer.json: ${why}` });
    }
  });

  it('reports what the library cannot load as UNSUPPORTED_FORMAT', async () => {
    const { tokenizerJson: json } = await fixtureFiles('bytelevel');
    const e = sluiceError(() => Tokenizer.fromJson({ tokenizerJson: { ...json, decoder: { type: 'Telepathy' } }, where }));
    expect(e.code).toBe('UNSUPPORTED_FORMAT');
    expect(e.message).toMatch(/^\/models\/broken\/tokenizer\.json: @huggingface\/tokenizers cannot load it \(.*Telepathy/);
  });

  it('checks the token fields of tokenizer_config.json', async () => {
    const files = await fixtureFiles('bytelevel');
    const cases: [Record<string, unknown>, string][] = [
      [{ bos_token: 7 }, 'bos_token must be a string, {"content": ...} or null, not 7'],
      [{ eos_token: { text: '<|im_end|>' } }, 'eos_token must be a string, {"content": ...} or null, not {"text":"<|im_end|>"}'],
      [{ additional_special_tokens: '<|im_start|>' }, 'additional_special_tokens must be a list'],
      [{ clean_up_tokenization_spaces: 'yes' }, 'clean_up_tokenization_spaces must be true or false'],
      [{ added_tokens_decoder: [] }, 'added_tokens_decoder must be an object'],
      [{ added_tokens_decoder: { abc: { content: 'x' } } }, 'added_tokens_decoder["abc"].id must be a non-negative integer'],
      [{ added_tokens_decoder: { '558': { content: '<|eot|>' } } }, `added_tokens_decoder gives id 558 to "<|eot|>" but ${where}/tokenizer.json gives it to "<|im_end|>"`],
      [{ added_tokens_decoder: { '332': { content: '<x>' } } }, `added_tokens_decoder gives id 332 to "<x>" but ${where}/tokenizer.json's vocabulary gives it to "Ġworld"`],
    ];
    for (const [tokenizerConfig, why] of cases) {
      expect(sluiceError(() => Tokenizer.fromJson({ tokenizerJson: files.tokenizerJson, tokenizerConfig, where }))).toEqual({
        code: 'INVALID_JSON',
        message: `${where}/tokenizer_config.json: ${why}`,
      });
    }
  });
});

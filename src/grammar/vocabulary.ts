// A model's vocabulary as the grammar matcher sees it: each token id → the BYTES it adds to
// the text, laid out as a trie so one walk finds every token a grammar state allows.
//
// Token strings are not text: byte-level BPE (GPT-2, Llama 3, Qwen) writes each byte as one
// printable character (`Ġ` = space, `Ċ` = newline; openai/gpt-2 src/encoder.py
// bytes_to_unicode), SentencePiece writes a space as `▁` and raw bytes as `<0x0A>`
// (google/sentencepiece, byte_fallback). Special tokens (eos, <|im_start|>) are never part
// of the trie: the matcher only ever allows eos, and only when the grammar is complete. Ids
// past the tokenizer (models pad their embedding: Qwen2.5 has 151,936 rows for 151,665
// tokens) have no bytes and are never allowed.

import { SluiceError } from '../errors.js';
import type { Tokenizer } from '../text/tokenizer.js';

/** How token strings map to bytes. */
export type TokenDecoding = 'byte-level' | 'sentencepiece' | 'raw';

export interface VocabularyOptions {
  /** Rows of the model's logits (≥ the tokenizer's size); the mask has ceil(vocabSize/32) words. */
  vocabSize?: number;
  /** Ids allowed once the grammar is complete; default: the tokenizer's eos. */
  eosIds?: readonly number[];
  /** Ids never allowed as text (special tokens). */
  specialIds?: Iterable<number>;
}

/** Preorder trie of token byte strings; node 0 is the root (no byte). */
export interface TokenTrie {
  readonly size: number;
  /** (size) the byte on the edge into each node. */
  readonly byte: Uint8Array;
  /** (size) 0 for the root. */
  readonly depth: Uint16Array;
  /** (size) the first node after this node's subtree (where a walk jumps when it dies). */
  readonly skip: Int32Array;
  /** (size + 1) tokens ending at node i: tokenIds[tokenStart[i] .. tokenStart[i+1]). */
  readonly tokenStart: Int32Array;
  readonly tokenIds: Int32Array;
  readonly maxDepth: number;
}

// openai/gpt-2 encoder.py bytes_to_unicode: printable bytes stand for themselves, the
// others for U+0100 upward in byte order. Indexed by char code (all below U+0144); -1 = none.
const byteLevelTable = (() => {
  const table = new Int16Array(0x144).fill(-1);
  let next = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    table[printable ? b : 0x100 + next++] = b;
  }
  return table;
})();

const encoder = new TextEncoder();

/** A token string → its bytes under `decoding`; null for a token that adds nothing. */
export function tokenBytes(token: string, decoding: TokenDecoding): Uint8Array | null {
  let bytes: Uint8Array | null = null;
  if (decoding === 'byte-level') {
    bytes = new Uint8Array(token.length);
    for (let i = 0; i < token.length; i++) {
      const c = token.charCodeAt(i);
      const b = c < byteLevelTable.length ? byteLevelTable[c] : -1;
      if (b < 0) {
        // An added token ("<think>", "<tool_call>") is stored as plain text, not byte-level.
        bytes = encoder.encode(token);
        break;
      }
      bytes[i] = b;
    }
  } else {
    const hex = decoding === 'sentencepiece' ? /^<0x([0-9A-Fa-f]{2})>$/.exec(token) : null;
    bytes = hex ? Uint8Array.of(parseInt(hex[1], 16)) : encoder.encode(token.replaceAll('\u2581', ' '));
  }
  return bytes.length > 0 ? bytes : null;
}

const cache = new WeakMap<Tokenizer, Map<string, TokenVocabulary>>();

export class TokenVocabulary {
  private constructor(
    /** (vocabSize) each id's bytes; null where the id is special, missing or empty. */
    private readonly bytes: ReadonlyArray<Uint8Array | null>,
    readonly vocabSize: number,
    readonly eosIds: readonly number[],
    readonly trie: TokenTrie,
  ) {}

  /** Words of a mask: bit i of word i>>5 is token i. */
  get maskWords(): number {
    return Math.ceil(this.vocabSize / 32);
  }

  /** The bytes token `id` adds to the text, or null (special, padding, unknown). */
  bytesOf(id: number): Uint8Array | null {
    return this.bytes[id] ?? null;
  }

  /**
   * The vocabulary of a repo Tokenizer, built once per tokenizer and options (about 0.5 s for
   * a 150k vocabulary) and cached. Byte-level BPE is recognised by its `Ġ`/`Ċ` tokens,
   * SentencePiece by its `<0x0A>` byte tokens; anything else is read as plain text.
   */
  static fromTokenizer(tokenizer: Tokenizer, options: VocabularyOptions = {}): TokenVocabulary {
    const key = `${options.vocabSize ?? ''}|${options.eosIds?.join(',') ?? ''}|${options.specialIds ? [...options.specialIds].join(',') : ''}`;
    let perTokenizer = cache.get(tokenizer);
    const hit = perTokenizer?.get(key);
    if (hit) return hit;
    const decoding: TokenDecoding =
      tokenizer.tokenToId('<0x0A>') !== undefined ? 'sentencepiece' : tokenizer.tokenToId('Ċ') !== undefined || tokenizer.tokenToId('Ġ') !== undefined ? 'byte-level' : 'raw';
    const tokens: Array<string | undefined> = [];
    for (let id = 0; id < tokenizer.vocabSize; id++) tokens.push(tokenizer.idToToken(id));
    const vocab = TokenVocabulary.fromTokens(tokens, decoding, {
      vocabSize: options.vocabSize ?? tokenizer.vocabSize,
      eosIds: options.eosIds ?? (tokenizer.eos ? [tokenizer.eos.id] : []),
      specialIds: [...tokenizer.specialIds, ...(options.specialIds ?? [])],
    });
    if (!perTokenizer) cache.set(tokenizer, (perTokenizer = new Map()));
    perTokenizer.set(key, vocab);
    return vocab;
  }

  /** From token strings by id (undefined/null = no such id). */
  static fromTokens(tokens: ReadonlyArray<string | null | undefined>, decoding: TokenDecoding, options: VocabularyOptions = {}): TokenVocabulary {
    return TokenVocabulary.fromBytes(
      tokens.map((t) => (typeof t === 'string' ? tokenBytes(t, decoding) : null)),
      options,
    );
  }

  /** From each id's bytes directly (tests, and tokenizers decoded elsewhere). */
  static fromBytes(tokens: ReadonlyArray<Uint8Array | null | undefined>, options: VocabularyOptions = {}): TokenVocabulary {
    const vocabSize = options.vocabSize ?? tokens.length;
    if (!Number.isSafeInteger(vocabSize) || vocabSize < tokens.length) {
      throw new SluiceError('USAGE', `TokenVocabulary: vocabSize ${vocabSize} is smaller than the tokenizer's ${tokens.length} tokens`);
    }
    const eosIds = [...(options.eosIds ?? [])];
    for (const id of eosIds) {
      if (!Number.isInteger(id) || id < 0 || id >= vocabSize) throw new SluiceError('USAGE', `TokenVocabulary: eos id ${id} is outside the vocabulary (0..${vocabSize - 1})`);
    }
    const special = new Set<number>([...(options.specialIds ?? []), ...eosIds]);
    const bytes: Array<Uint8Array | null> = new Array(vocabSize).fill(null);
    tokens.forEach((b, id) => {
      if (b && b.length > 0 && !special.has(id)) bytes[id] = b;
    });
    return new TokenVocabulary(bytes, vocabSize, eosIds, buildTrie(bytes));
  }
}

/** Sorts the byte strings, then lays the trie out in preorder from the sorted list. */
function buildTrie(bytes: ReadonlyArray<Uint8Array | null>): TokenTrie {
  // One string per token, byte b as char b+1 then U+0000 and the id: the engine's native
  // string sort then orders tokens by bytes, a prefix before its extensions.
  const keyed: string[] = [];
  let total = 1;
  bytes.forEach((b, id) => {
    if (!b) return;
    let key = '';
    for (let i = 0; i < b.length; i++) key += String.fromCharCode(b[i] + 1);
    keyed.push(`${key}\u0000${id}`);
    total += b.length;
  });
  keyed.sort();

  const byte = new Uint8Array(total);
  const depth = new Uint16Array(total);
  const skip = new Int32Array(total);
  const tokenStart = new Int32Array(total + 1);
  const tokenIds = new Int32Array(keyed.length);
  const path = [0]; // node index at each depth of the current token
  let size = 1;
  let maxDepth = 0;
  let prev = '';
  keyed.forEach((entry, t) => {
    const cut = entry.indexOf('\u0000');
    const key = entry.slice(0, cut);
    const id = Number(entry.slice(cut + 1));
    if (key.length > 0xffff) throw new SluiceError('USAGE', `TokenVocabulary: token ${id} is ${key.length} bytes long`);
    let common = 0;
    while (common < key.length && common < prev.length && key.charCodeAt(common) === prev.charCodeAt(common)) common++;
    // Close the subtrees the new token leaves.
    while (path.length - 1 > common) skip[path.pop()!] = size;
    for (let d = common; d < key.length; d++) {
      byte[size] = key.charCodeAt(d) - 1;
      depth[size] = d + 1;
      tokenStart[size] = t; // no token ends at a node yet when it is created
      path.push(size++);
    }
    tokenIds[t] = id;
    tokenStart[size] = t + 1; // the last node (this token's) now ends at t + 1
    maxDepth = Math.max(maxDepth, key.length);
    prev = key;
  });
  while (path.length) skip[path.pop()!] = size;
  return { size, byte: byte.subarray(0, size), depth: depth.subarray(0, size), skip: skip.subarray(0, size), tokenStart: tokenStart.subarray(0, size + 1), tokenIds, maxDepth };
}

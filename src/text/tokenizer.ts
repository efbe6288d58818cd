// A model's tokenizer, from the two files the Hub serves: tokenizer.json (the Rust
// `tokenizers` serialization: normalizer, pre-tokenizer, model, decoder) and
// tokenizer_config.json (transformers' view: which tokens are bos/eos/pad/unk, the chat
// template). The work is done by @huggingface/tokenizers; this file checks the files first,
// so a malformed one fails with a message that names it instead of a TypeError deep inside
// the library, and smooths over the library's few differences from transformers (noted
// where they are handled).
//
// Browser-safe: no file access here. Callers pass the files' text (or parsed JSON), or a
// `ReadModelFile` callback that fetches them by name.

import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { SluiceError } from '../errors.js';

/** Reads one file of a model directory by name (`tokenizer.json`); null when it does not exist. */
export type ReadModelFile = (name: string) => Promise<string | null>;

export interface SpecialToken {
  token: string;
  id: number;
}

export interface TokenizerFiles {
  /** tokenizer.json, as text or already parsed. */
  tokenizerJson: string | object;
  /** tokenizer_config.json, as text or parsed; absent for the few models without one. */
  tokenizerConfig?: string | object | null;
  /** Where the files came from (a directory or URL): errors name `${where}/tokenizer.json`. */
  where?: string;
}

export interface EncodeOptions {
  /** Add what the post-processor adds (bos for Llama 2/3, nothing for Qwen2). Default true,
   *  as in transformers; false for text that already holds them (a rendered chat template). */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** Drop special tokens (`<|im_end|>`, `<s>`: every id in `specialIds`) from the text. Default false. */
  skipSpecialTokens?: boolean;
  /** transformers' `clean_up_tokenization_spaces` (" ." → "." and the like). Default: the
   *  config's value, else false (transformers' default since 4.45). */
  cleanUpSpaces?: boolean;
}

/** `where/name`, or `name` alone: how every error in src/text names a file. */
export function fileLabel(where: string | undefined, name: string): string {
  return where ? `${where.replace(/\/+$/, '')}/${name}` : name;
}

/** JSON text (or an already parsed value) → a plain object, or INVALID_JSON naming `label`. */
export function jsonObject(input: string | object, label: string): Record<string, unknown> {
  let value: unknown = input;
  if (typeof input === 'string') {
    try {
      value = JSON.parse(input);
    } catch (e) {
      throw new SluiceError('INVALID_JSON', `${label}: not valid JSON (${(e as Error).message})`);
    }
  }
  if (!isObject(value)) throw new SluiceError('INVALID_JSON', `${label}: not a JSON object`);
  return value;
}

export class Tokenizer {
  /** Special tokens named by tokenizer_config.json; null when it names none (Qwen2 has no bos). */
  readonly bos: SpecialToken | null;
  readonly eos: SpecialToken | null;
  readonly pad: SpecialToken | null;
  readonly unk: SpecialToken | null;
  /** Ids of every special token: added tokens marked special, and bos/eos/pad/unk. */
  readonly specialIds: ReadonlySet<number>;
  /** tokenizer_config.json as parsed (chat_template lives here); {} when there was none. */
  readonly config: Readonly<Record<string, unknown>>;
  /** One past the largest token id, added tokens included. */
  readonly vocabSize: number;
  /** As given to fromJson, for error messages of the modules built on this one. */
  readonly where: string | undefined;

  private constructor(
    private readonly hf: HfTokenizer,
    fields: Pick<Tokenizer, 'bos' | 'eos' | 'pad' | 'unk' | 'specialIds' | 'config' | 'vocabSize' | 'where'>,
    private readonly cleanUpDefault: boolean,
  ) {
    this.bos = fields.bos;
    this.eos = fields.eos;
    this.pad = fields.pad;
    this.unk = fields.unk;
    this.specialIds = fields.specialIds;
    this.config = fields.config;
    this.vocabSize = fields.vocabSize;
    this.where = fields.where;
  }

  static fromJson(files: TokenizerFiles): Tokenizer {
    const jsonLabel = fileLabel(files.where, 'tokenizer.json');
    const configLabel = fileLabel(files.where, 'tokenizer_config.json');
    const json = checkTokenizerJson(jsonObject(files.tokenizerJson, jsonLabel), jsonLabel);
    const config = files.tokenizerConfig == null ? {} : jsonObject(files.tokenizerConfig, configLabel);
    const tokens = specialTokenNames(config, configLabel);
    const addedTokens = mergeAddedTokens(json, config, jsonLabel, configLabel);
    const cleanUp = config.clean_up_tokenization_spaces ?? false;
    if (typeof cleanUp !== 'boolean') {
      throw new SluiceError('INVALID_JSON', `${configLabel}: clean_up_tokenization_spaces must be true or false`);
    }

    // The library reads a few config keys itself (eos_token for Unigram, the others for its
    // "Legacy" model) and expects plain strings where transformers also writes {"content"}.
    const { additional, ...named } = tokens;
    const libConfig = { ...config, ...named, additional_special_tokens: additional, clean_up_tokenization_spaces: cleanUp };
    let hf: HfTokenizer;
    try {
      hf = new HfTokenizer({ ...json, added_tokens: addedTokens }, libConfig);
    } catch (e) {
      throw new SluiceError('UNSUPPORTED_FORMAT', `${jsonLabel}: @huggingface/tokenizers cannot load it (${(e as Error).message})`, { cause: e });
    }

    const resolve = (which: 'bos' | 'eos' | 'pad' | 'unk'): SpecialToken | null => {
      const token = tokens[`${which}_token`];
      if (token === null) return null;
      const id = hf.token_to_id(token);
      if (id !== undefined) return { token, id };
      // A missing bos/eos would silently break prompts and stopping; a missing pad/unk is
      // harmless (sluice neither pads nor maps to unk), and some real configs name one.
      if (which === 'pad' || which === 'unk') return null;
      throw new SluiceError('INVALID_JSON', `${configLabel}: ${which}_token ${JSON.stringify(token)} is not in ${jsonLabel}'s vocabulary`);
    };
    const [bos, eos, pad, unk] = [resolve('bos'), resolve('eos'), resolve('pad'), resolve('unk')];
    const specialIds = new Set<number>(addedTokens.filter((t) => t.special).map((t) => t.id));
    for (const t of [bos, eos, pad, unk]) if (t) specialIds.add(t.id);
    for (const name of tokens.additional) {
      const id = hf.token_to_id(name);
      if (id !== undefined) specialIds.add(id);
    }
    const vocabSize = hf.model?.vocab.length ?? 0;
    return new Tokenizer(hf, { bos, eos, pad, unk, specialIds, config, vocabSize, where: files.where }, cleanUp);
  }

  /** Text → token ids. */
  encode(text: string, options: EncodeOptions = {}): number[] {
    if (typeof text !== 'string') throw new TypeError('Tokenizer.encode: text must be a string');
    const ids: Array<number | undefined> = this.hf.encode(text, { add_special_tokens: options.addSpecialTokens ?? true }).ids;
    // The library yields undefined for a piece it cannot map when the model has no unk token.
    if (ids.some((id) => id === undefined)) {
      throw new SluiceError('UNSUPPORTED_FORMAT', `${fileLabel(this.where, 'tokenizer.json')}: cannot encode ${JSON.stringify(text.slice(0, 40))} (a piece is not in the vocabulary and there is no unk token)`);
    }
    return ids as number[];
  }

  /**
   * Token ids → text. Ids outside the vocabulary are skipped, as the Rust library does
   * (a model's embedding is often padded past the tokenizer's vocabulary, and a sampler can
   * pick such a row). An empty list gives '' (the library throws on it).
   */
  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    // Special tokens are skipped here, by id, rather than by the library, which only knows
    // the added tokens marked special: transformers also skips bos/eos/pad/unk.
    const skip = options.skipSpecialTokens ?? false;
    const kept = ids.filter((id) => this.idToToken(id) !== undefined && !(skip && this.specialIds.has(id)));
    if (kept.length === 0) return '';
    return this.hf.decode(kept, { clean_up_tokenization_spaces: options.cleanUpSpaces ?? this.cleanUpDefault });
  }

  /** The vocabulary entry for `id` (byte-level `Ġhello`, SentencePiece `▁hello`), or undefined. */
  idToToken(id: number): string | undefined {
    return Number.isInteger(id) && id >= 0 ? this.hf.id_to_token(id) : undefined;
  }

  tokenToId(token: string): number | undefined {
    return this.hf.token_to_id(token);
  }
}

/** Reads tokenizer.json (required) and tokenizer_config.json (optional) through `readFile`. */
export async function loadTokenizer(readFile: ReadModelFile, where?: string): Promise<Tokenizer> {
  const [tokenizerJson, tokenizerConfig] = await Promise.all([readFile('tokenizer.json'), readFile('tokenizer_config.json')]);
  if (tokenizerJson === null) {
    throw new SluiceError('NOT_FOUND', `${fileLabel(where, 'tokenizer.json')}: not found (sluice needs the "fast" tokenizer file; a model with only tokenizer.model must be converted with transformers first)`);
  }
  return Tokenizer.fromJson({ tokenizerJson, tokenizerConfig, where });
}

// ── checks ──────────────────────────────────────────────────────────────────────────────

interface AddedToken {
  id: number;
  content: string;
  special?: boolean;
  [key: string]: unknown;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The shape the library assumes without checking; missing optional stages become null. */
function checkTokenizerJson(json: Record<string, unknown>, label: string): Record<string, unknown> {
  const bad = (why: string) => new SluiceError('INVALID_JSON', `${label}: ${why}`);
  if (!isObject(json.model)) throw bad('no "model" object (is this a tokenizer.json?)');
  const vocab = json.model.vocab;
  if (!isObject(vocab) && !Array.isArray(vocab)) throw bad('model.vocab is missing');
  if (json.model.type === 'BPE' && !Array.isArray(json.model.merges)) throw bad('model.merges must be a list for a BPE model');
  for (const stage of ['normalizer', 'pre_tokenizer', 'post_processor', 'decoder']) {
    if (json[stage] !== undefined && json[stage] !== null && !isObject(json[stage])) throw bad(`${stage} must be an object or null`);
  }
  const added = json.added_tokens ?? [];
  if (!Array.isArray(added)) throw bad('added_tokens must be a list');
  added.forEach((t, i) => checkAddedToken(t, `added_tokens[${i}]`, bad));
  const stages = { normalizer: json.normalizer ?? null, pre_tokenizer: json.pre_tokenizer ?? null, post_processor: json.post_processor ?? null, decoder: json.decoder ?? null };
  return { ...json, ...stages, added_tokens: added };
}

function checkAddedToken(t: unknown, where: string, bad: (why: string) => SluiceError): asserts t is AddedToken {
  if (!isObject(t)) throw bad(`${where} must be an object`);
  if (!Number.isSafeInteger(t.id) || (t.id as number) < 0) throw bad(`${where}.id must be a non-negative integer`);
  if (typeof t.content !== 'string' || t.content === '') throw bad(`${where}.content must be a non-empty string`);
  if (t.special !== undefined && typeof t.special !== 'boolean') throw bad(`${where}.special must be true or false`);
}

/** A token field of tokenizer_config.json: "<s>", {"content": "<s>", ...} (the older
 *  AddedToken form, Llama 2 and Mistral), or null. */
function tokenName(value: unknown, key: string, label: string): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value === 'string') return value;
  if (isObject(value) && typeof value.content === 'string') return value.content;
  throw new SluiceError('INVALID_JSON', `${label}: ${key} must be a string, {"content": ...} or null, not ${JSON.stringify(value).slice(0, 80)}`);
}

function specialTokenNames(config: Record<string, unknown>, label: string) {
  const extra = config.additional_special_tokens ?? [];
  if (!Array.isArray(extra)) throw new SluiceError('INVALID_JSON', `${label}: additional_special_tokens must be a list`);
  return {
    bos_token: tokenName(config.bos_token, 'bos_token', label),
    eos_token: tokenName(config.eos_token, 'eos_token', label),
    pad_token: tokenName(config.pad_token, 'pad_token', label),
    unk_token: tokenName(config.unk_token, 'unk_token', label),
    additional: extra.map((t, i) => tokenName(t, `additional_special_tokens[${i}]`, label) ?? '').filter((t) => t !== ''),
  };
}

/**
 * tokenizer.json's added_tokens plus any token that only tokenizer_config.json's
 * `added_tokens_decoder` ({"151643": {"content": ..., "special": true}}) declares, which
 * transformers registers too. The two files must agree on the ids they share.
 */
function mergeAddedTokens(json: Record<string, unknown>, config: Record<string, unknown>, jsonLabel: string, configLabel: string): AddedToken[] {
  const added = [...(json.added_tokens as AddedToken[])];
  const decoder = config.added_tokens_decoder;
  if (decoder === undefined || decoder === null) return added;
  const bad = (why: string) => new SluiceError('INVALID_JSON', `${configLabel}: ${why}`);
  if (!isObject(decoder)) throw bad('added_tokens_decoder must be an object');
  const byId = new Map(added.map((t) => [t.id, t]));
  let vocabById: Map<number, string> | undefined; // built only when a token is new
  for (const [key, value] of Object.entries(decoder)) {
    const id = /^\d+$/.test(key) ? Number(key) : NaN;
    const token: unknown = isObject(value) ? { ...value, id } : value;
    checkAddedToken(token, `added_tokens_decoder["${key}"]`, bad);
    const known = byId.get(id);
    if (known) {
      if (known.content !== token.content) {
        throw bad(`added_tokens_decoder gives id ${id} to ${JSON.stringify(token.content)} but ${jsonLabel} gives it to ${JSON.stringify(known.content)}`);
      }
      continue;
    }
    vocabById ??= vocabIds(json.model as Record<string, unknown>);
    const inVocab = vocabById.get(id);
    if (inVocab !== undefined && inVocab !== token.content) {
      throw bad(`added_tokens_decoder gives id ${id} to ${JSON.stringify(token.content)} but ${jsonLabel}'s vocabulary gives it to ${JSON.stringify(inVocab)}`);
    }
    const entry: AddedToken = { single_word: false, lstrip: false, rstrip: false, normalized: false, special: false, ...token };
    added.push(entry);
    byId.set(id, entry);
  }
  return added;
}

function vocabIds(model: Record<string, unknown>): Map<number, string> {
  const out = new Map<number, string>();
  const vocab = model.vocab;
  if (Array.isArray(vocab)) vocab.forEach((entry, id) => Array.isArray(entry) && out.set(id, String(entry[0]))); // Unigram [piece, score]
  else if (isObject(vocab)) for (const [piece, id] of Object.entries(vocab)) if (typeof id === 'number') out.set(id, piece);
  return out;
}

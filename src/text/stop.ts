// When generation stops: on an end-of-sequence id, or when the text contains a stop string.
//
// Stop strings are matched on the streamed text, not on token ids: "###" may come as one
// token, or as "#" "##", or inside " ###\n". So the matcher holds back the longest tail of
// the text that could still grow into a stop string, emits the rest, and on a match emits
// only what came before it (the stop string itself is not part of the reply, as in the
// OpenAI API and transformers' stop_strings).
//
// End-of-sequence ids come from three files that each know part of the truth: the
// tokenizer's eos_token (Llama 3 Instruct: <|eot_id|>), config.json's eos_token_id and
// generation_config.json's (Llama 3.1/3.2 list <|end_of_text|>, <|eom_id|> and <|eot_id|>).
// Any of them ends the reply.

import { SluiceError } from '../errors.js';
import { fileLabel, jsonObject, type ReadModelFile, type Tokenizer } from './tokenizer.js';

export interface StopResult {
  /** Text that is safe to show now. */
  text: string;
  /** The stop string that matched (the text above ends where it began), or null. */
  stop: string | null;
}

export class StopMatcher {
  private readonly stops: string[];
  private held = '';
  private matched: string | null = null;

  /** Empty strings are ignored (they would stop before the first character). */
  constructor(stops: readonly string[]) {
    this.stops = [...new Set(stops.filter((s) => typeof s === 'string' && s !== ''))];
  }

  /** True once a stop string has matched; later pushes return nothing. */
  get stopped(): boolean {
    return this.matched !== null;
  }

  /** Feeds a text delta (from the detokenizer); returns what can be shown. */
  push(delta: string): StopResult {
    if (this.matched !== null) return { text: '', stop: this.matched };
    const text = this.held + delta;
    // The earliest match wins; at the same place, the longest stop string.
    let at = -1;
    let found: string | null = null;
    for (const stop of this.stops) {
      const i = text.indexOf(stop);
      if (i >= 0 && (found === null || i < at || (i === at && stop.length > found.length))) {
        at = i;
        found = stop;
      }
    }
    if (found !== null) {
      this.matched = found;
      this.held = '';
      return { text: text.slice(0, at), stop: found };
    }
    const keep = this.partialTail(text);
    this.held = text.slice(text.length - keep);
    return { text: text.slice(0, text.length - keep), stop: null };
  }

  /** At the end of generation: the held tail, which turned out not to be a stop string. */
  flush(): string {
    const rest = this.matched === null ? this.held : '';
    this.held = '';
    return rest;
  }

  /** The length of the longest suffix of `text` that is a proper prefix of a stop string. */
  private partialTail(text: string): number {
    let best = 0;
    for (const stop of this.stops) {
      for (let k = Math.min(stop.length - 1, text.length); k > best; k--) {
        if (text.endsWith(stop.slice(0, k))) {
          best = k;
          break;
        }
      }
    }
    return best;
  }
}

export interface EosSources {
  tokenizer?: Tokenizer | null;
  /** config.json, as text or parsed. */
  modelConfig?: string | object | null;
  /** generation_config.json, as text or parsed. */
  generationConfig?: string | object | null;
  /** Named in errors, as `${where}/config.json`. */
  where?: string;
}

/** Every id that ends generation, sorted, without repeats. */
export function eosTokenIds(sources: EosSources): number[] {
  const ids = new Set<number>();
  if (sources.tokenizer?.eos) ids.add(sources.tokenizer.eos.id);
  for (const [name, input] of [['config.json', sources.modelConfig], ['generation_config.json', sources.generationConfig]] as const) {
    if (input === undefined || input === null) continue;
    const label = fileLabel(sources.where, name);
    for (const id of eosField(jsonObject(input, label).eos_token_id, label)) ids.add(id);
  }
  return [...ids].sort((a, b) => a - b);
}

/** eosTokenIds over config.json and generation_config.json read through `readFile` (either may be missing). */
export async function loadEosTokenIds(readFile: ReadModelFile, tokenizer: Tokenizer | null, where = tokenizer?.where): Promise<number[]> {
  const [modelConfig, generationConfig] = await Promise.all([readFile('config.json'), readFile('generation_config.json')]);
  return eosTokenIds({ tokenizer, modelConfig, generationConfig, where });
}

/** `eos_token_id`: absent, null, an id, or a list of ids. */
function eosField(value: unknown, label: string): number[] {
  if (value === undefined || value === null) return [];
  const list = Array.isArray(value) ? value : [value];
  for (const id of list) {
    if (!Number.isSafeInteger(id) || (id as number) < 0) {
      throw new SluiceError('INVALID_JSON', `${label}: eos_token_id must be a token id or a list of them, not ${JSON.stringify(value)}`);
    }
  }
  return list as number[];
}

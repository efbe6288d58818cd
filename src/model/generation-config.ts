// generation_config.json → the sampling defaults a model ships with (HF semantics:
// do_sample false means greedy, whatever temperature says).

import { SluiceError } from '../errors.js';
import type { SamplingParams } from '../ops/sample.js';

export interface GenerationDefaults extends Partial<SamplingParams> {
  maxTokens?: number;
}

export function parseGenerationConfig(text: string | null, file: string): GenerationDefaults {
  if (text === null) return {};
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(text) as Record<string, unknown>;
  } catch (e) {
    throw new SluiceError('INVALID_JSON', `${file}: not valid JSON (${(e as Error).message})`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new SluiceError('INVALID_JSON', `${file}: not a JSON object`);
  const number = (key: string): number | undefined => {
    const v = raw[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new SluiceError('INVALID_JSON', `${file}: ${key} must be a non-negative number, not ${JSON.stringify(v)}`);
    return v;
  };
  const out: GenerationDefaults = {};
  const set = <K extends keyof GenerationDefaults>(key: K, value: GenerationDefaults[K] | undefined) => {
    if (value !== undefined) out[key] = value;
  };
  set('temperature', raw.do_sample === false ? 0 : number('temperature'));
  set('topK', number('top_k'));
  set('topP', number('top_p'));
  set('minP', number('min_p'));
  set('repetitionPenalty', number('repetition_penalty'));
  set('maxTokens', number('max_new_tokens'));
  return out;
}

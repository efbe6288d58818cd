// The sampling parameters of a request and their per-row record in the sample kernel's
// `rows` storage buffer (struct Row in shaders/sample.wgsl): the TypeScript side of one
// layout, packed without allocating, so a decode step stages every row and uploads them
// with one writeBuffer.

/** Sampling parameters of a request, HF transformers' meanings. */
export interface SamplingParams {
  /** 0 → greedy (argmax of the penalised logits, ties → lowest id). */
  temperature: number;
  /** Keep the k most probable ids; 0 (or ≥ vocab) → off. */
  topK: number;
  /** Keep the smallest most-probable set with mass ≥ topP (of the top-k renormalised); 1 → off. */
  topP: number;
  /** Keep ids with p ≥ minP · p_max; 0 → off. */
  minP: number;
  /** Ids in the history: logit > 0 → logit / penalty, else logit · penalty; 1 → off. */
  repetitionPenalty: number;
  /** RNG stream, a u32. */
  seed: number;
}

/**
 * OpenAI's additive penalties with vLLM's semantics (vllm-project/vllm
 * vllm/model_executor/layers/utils.py, apply_penalties): logit −= c · frequencyPenalty +
 * (c > 0) · presencePenalty, c = how often the id was generated in this request (prompt ids
 * do not count). Each in [−2, 2]; 0 → off.
 */
export interface PenaltyParams {
  frequencyPenalty: number;
  presencePenalty: number;
}

/** What changes every token. */
export interface SampleStep {
  /** RNG counter, a u32: the draw is a function of (seed, step) and the logits. */
  step: number;
  /** How many ids of the history buffer the penalty sees. */
  historyLength: number;
}

/** Where one row finds its request's history and logit bias in the op's shared buffers. */
export interface RowPlacement {
  /** First u32 of the row's ids in the history buffer. */
  historyBase: number;
  /** History ids from this index (relative to historyBase) on are this request's generated
   *  ids: the frequency and presence penalties count those. */
  generatedFrom: number;
  /** First (id, bias) entry of the row's logit bias in the bias buffer. */
  biasBase: number;
  /** Bias entries (0 → none). */
  biasCount: number;
}

/** Everything a row needs that stays fixed for a request. */
export interface SampleRowConfig extends SamplingParams, PenaltyParams, RowPlacement {}

export const DEFAULT_SAMPLING: Readonly<SamplingParams> = { temperature: 1, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1, seed: 0 };
export const NO_PENALTIES: Readonly<PenaltyParams> = { frequencyPenalty: 0, presencePenalty: 0 };

/** Bytes of one struct Row: 16 four-byte scalars (a storage array packs them with no padding). */
export const SAMPLE_ROW_BYTES = 64;
/** Bytes before row 0 in the rows buffer: struct Rows' `count`, then the array (align 4). */
export const SAMPLE_ROWS_HEADER = 4;
/** History ids a row may have: its marks keep counts in 30 bits. */
export const SAMPLE_HISTORY_MAX = 2 ** 30 - 1;

/**
 * Packs row `row` at its place in a staging buffer, field by field in struct Row's order.
 * `masked`: the row draws only ids its row of the mask buffer allows. `appends`: the drawn
 * id also lands at history[historyBase + historyLength], where it is fed next.
 * Throws (before writing) on a value the shader would misread.
 */
export function writeRow(view: DataView, row: number, p: SampleRowConfig, step: number, historyLength: number, limits: RowLimits, label: string, masked = false, appends = false): void {
  checkRow(label, p, step, historyLength, limits);
  if (masked && !limits.mask) throw new Error(`${label}: sample row ${row} is masked but the op has no mask buffer`);
  if (appends && !(p.historyBase + historyLength < limits.historyCapacity)) {
    throw new Error(`${label}: sample row ${row} appends at history id ${p.historyBase + historyLength}, past the history buffer's ${limits.historyCapacity} ids`);
  }
  const o = SAMPLE_ROWS_HEADER + row * SAMPLE_ROW_BYTES;
  view.setFloat32(o, p.temperature, true);
  view.setUint32(o + 4, p.topK, true);
  view.setFloat32(o + 8, Math.min(p.topP, 1), true);
  view.setFloat32(o + 12, p.minP, true);
  view.setFloat32(o + 16, p.repetitionPenalty, true);
  view.setFloat32(o + 20, p.frequencyPenalty, true);
  view.setFloat32(o + 24, p.presencePenalty, true);
  view.setUint32(o + 28, p.seed, true);
  view.setUint32(o + 32, step, true);
  view.setUint32(o + 36, p.historyBase, true);
  view.setUint32(o + 40, historyLength, true);
  view.setUint32(o + 44, Math.min(p.generatedFrom, historyLength), true);
  view.setUint32(o + 48, p.biasBase, true);
  view.setUint32(o + 52, p.biasCount, true);
  view.setUint32(o + 56, masked ? 1 : 0, true);
  view.setUint32(o + 60, appends ? 1 : 0, true);
}

/** The sizes of the buffers a row's placement must stay within. */
export interface RowLimits {
  /** u32 ids the history buffer holds (0: no history bound). */
  historyCapacity: number;
  /** (id, bias) entries the bias buffer holds (0: no bias bound). */
  biasCapacity: number;
  /** A (rows, ceil(vocab / 32)) u32 allowed-token mask is bound (rows may be masked). */
  mask?: boolean;
}

const isU32 = (v: number) => Number.isInteger(v) && v >= 0 && v < 2 ** 32;

/** Throws on a parameter the shader would misread (a negative k, a fractional seed, …). */
export function checkRow(label: string, p: SampleRowConfig, step: number, historyLength: number, limits: RowLimits): void {
  if (!(p.temperature >= 0 && Number.isFinite(p.temperature))) throw rowError(label, `temperature must be finite and ≥ 0, got ${p.temperature}`);
  if (!isU32(p.topK)) throw rowError(label, `topK must be an integer ≥ 0, got ${p.topK}`);
  if (!(p.topP >= 0)) throw rowError(label, `topP must be ≥ 0, got ${p.topP}`);
  if (!(p.minP >= 0 && p.minP <= 1)) throw rowError(label, `minP must be in [0, 1], got ${p.minP}`);
  if (!(p.repetitionPenalty > 0 && Number.isFinite(p.repetitionPenalty))) throw rowError(label, `repetitionPenalty must be finite and > 0, got ${p.repetitionPenalty}`);
  if (!(p.frequencyPenalty >= -2 && p.frequencyPenalty <= 2)) throw rowError(label, `frequencyPenalty must be in [-2, 2], got ${p.frequencyPenalty}`);
  if (!(p.presencePenalty >= -2 && p.presencePenalty <= 2)) throw rowError(label, `presencePenalty must be in [-2, 2], got ${p.presencePenalty}`);
  if (!isU32(p.seed) || !isU32(step)) throw rowError(label, `seed and step must be u32, got ${p.seed} and ${step}`);
  if (!(isU32(p.historyBase) && Number.isInteger(historyLength) && historyLength >= 0 && historyLength <= SAMPLE_HISTORY_MAX && p.historyBase + historyLength <= limits.historyCapacity)) {
    throw rowError(label, `historyLength ${historyLength} at ${p.historyBase} is not within the history buffer's ${limits.historyCapacity} ids`);
  }
  if (!isU32(p.generatedFrom)) throw rowError(label, `generatedFrom must be a u32, got ${p.generatedFrom}`);
  if (!(isU32(p.biasBase) && isU32(p.biasCount) && p.biasBase + p.biasCount <= limits.biasCapacity)) {
    throw rowError(label, `bias entries [${p.biasBase}, +${p.biasCount}) are not within the bias buffer's ${limits.biasCapacity}`);
  }
}

// A function of the module, not a closure made in checkRow: checkRow runs for every row of
// every decode step, and must allocate nothing unless it throws.
function rowError(label: string, what: string): Error {
  return new Error(`${label}: sample ${what}`);
}

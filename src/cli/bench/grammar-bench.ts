// `bench generate --json-schema FILE | --grammar FILE | --regex | --json-object`: what
// constrained decoding costs on the host. The vocabulary (once per tokenizer) and the
// compile are timed; then `tokens` steps decode under the grammar at temperature 1 on the
// one-sequence GpuSampler (a random model's choices reach many grammar states, so the
// masks are far from all cached), each mask's fillMask and upload timed apart, and their
// sum per token set against the unconstrained decode step measured just before.

import { SluiceError } from '../../errors.js';
import type { GpuSampler } from '../../generate/sampler.js';
import { compileGrammar, TokenVocabulary } from '../../grammar/index.js';
import { ModelFolder } from '../../io/model-folder.js';
import { MAX_SIDE_FILE_BYTES } from '../../model/open-model.js';
import type { OpenedModel } from '../../model/open-model.js';
import { loadEosTokenIds } from '../../text/stop.js';
import { loadTokenizer, type Tokenizer } from '../../text/tokenizer.js';
import type { GrammarFlag } from '../grammar-args.js';

export interface GrammarBenchOptions {
  flag: GrammarFlag;
  /** A directory with tokenizer.json (a synthetic model has none); default: the model's. */
  tokenizerDir?: string;
}

export interface GrammarBenchResult {
  source: string;
  tokenizer: string;
  /** Token ids of the tokenizer, and rows of the model's logits (the mask's bits). */
  tokenizer_tokens: number;
  vocab_size: number;
  vocabulary_ms: number;
  compile_ms: number;
  automaton_states: number;
  tokens: number;
  /** Documents the grammar completed within those tokens (a new one starts after each). */
  completed: number;
  fill_ms_per_token: number;
  upload_ms_per_token: number;
  /** fill + upload: the host time a constrained token adds. */
  mask_ms_per_token: number;
  mask_ms_median: number;
  mask_ms_max: number;
  /** The whole constrained step (pass, mask filled meanwhile, sample, read back) and the unconstrained one. */
  constrained_step_ms: number;
  step_ms: number;
  /** mask_ms_per_token / step_ms: the mask's host time, were none of it hidden behind the pass; goal ≤ 0.15. */
  mask_over_step: number;
  /** constrained_step_ms / step_ms − 1: what the grammar adds to a step as measured (overlap, second submit; noisy). */
  step_overhead: number;
}

interface Decoding {
  /** The id to feed first, at `position`. */
  firstId: number;
  position: number;
  tokens: number;
  /** Unconstrained ms per decode step, measured in the same run. */
  stepMs: number;
  onStep: (what: string) => void;
}

export async function benchGrammar(opened: OpenedModel, sampler: GpuSampler, options: GrammarBenchOptions, run: Decoding): Promise<GrammarBenchResult> {
  const { tokenizer, eosIds, where } = await tokenizerOf(opened, options.tokenizerDir);
  const vocabSize = opened.model.config.vocabSize;
  run.onStep(`grammar: vocabulary of ${where}`);
  const vocabStart = performance.now();
  const vocab = TokenVocabulary.fromTokenizer(tokenizer, { vocabSize, eosIds });
  const vocabularyMs = performance.now() - vocabStart;
  run.onStep(`grammar: compile ${options.flag.label}`);
  let grammar;
  try {
    grammar = compileGrammar(options.flag.source, vocab);
  } catch (e) {
    if (e instanceof SluiceError) throw new SluiceError(e.code, `bench generate: ${options.flag.label}: ${e.message}`, { cause: e });
    throw e;
  }

  run.onStep(`grammar: decode ${run.tokens} constrained tokens`);
  sampler.configure({ temperature: 1, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1, seed: 1 });
  const mask = new Uint32Array(vocab.maskWords);
  const masks: number[] = [];
  let fill = 0;
  let upload = 0;
  let completed = 0;
  let matcher = grammar.start();
  let id = run.firstId;
  const started = performance.now();
  let fillMs = 0;
  const fillMask = () => {
    const t = performance.now();
    matcher.fillMask(mask);
    fillMs = performance.now() - t;
    return mask;
  };
  for (let i = 0; i < run.tokens; i++) {
    id = await sampler.next([id], run.position + i, fillMask); // filled while the GPU runs the pass
    fill += fillMs;
    upload += sampler.lastMaskMs;
    masks.push(fillMs + sampler.lastMaskMs);
    if (!matcher.accept(id)) throw new Error(`internal error: bench generate: the sampler drew token ${id}, which the grammar does not allow`);
    if (matcher.done) {
      completed++;
      matcher = grammar.start(); // decode on into a new document: the cost per token is what counts
      if (eosIds.includes(id)) id = run.firstId; // eos is never fed back
    }
  }
  const constrainedMs = (performance.now() - started) / run.tokens;
  masks.sort((a, b) => a - b);
  const maskMs = (fill + upload) / run.tokens;
  return {
    source: options.flag.label,
    tokenizer: where,
    tokenizer_tokens: tokenizer.vocabSize,
    vocab_size: vocabSize,
    vocabulary_ms: round(vocabularyMs),
    compile_ms: round(grammar.stats.compileMs),
    automaton_states: grammar.stats.states,
    tokens: run.tokens,
    completed,
    fill_ms_per_token: round(fill / run.tokens),
    upload_ms_per_token: round(upload / run.tokens),
    mask_ms_per_token: round(maskMs),
    mask_ms_median: round(masks[masks.length >> 1]),
    mask_ms_max: round(masks[masks.length - 1]),
    constrained_step_ms: round(constrainedMs),
    step_ms: round(run.stepMs),
    mask_over_step: round(maskMs / run.stepMs),
    step_overhead: round(constrainedMs / run.stepMs - 1),
  };
}

/** The tokenizer and eos ids of `dir` (tokenizer.json, with config files where present), else the model's own. */
async function tokenizerOf(opened: OpenedModel, dir: string | undefined): Promise<{ tokenizer: Tokenizer; eosIds: number[]; where: string }> {
  if (dir === undefined) {
    if (!opened.tokenizer) throw new SluiceError('USAGE', `bench generate: ${opened.dir} has no tokenizer.json; a grammar needs one: give --tokenizer DIR`);
    return { tokenizer: opened.tokenizer, eosIds: opened.eosIds, where: opened.dir };
  }
  const folder = await ModelFolder.open(dir);
  const read = (name: string) => folder.readText(name, MAX_SIDE_FILE_BYTES);
  const tokenizer = await loadTokenizer(read, dir);
  const eosIds = await loadEosTokenIds(read, tokenizer, dir);
  if (!eosIds.length) throw new SluiceError('USAGE', `bench generate: ${dir}: the tokenizer names no eos token, so a constrained document could not end`);
  return { tokenizer, eosIds, where: dir };
}

const round = (x: number) => Math.round(x * 1000) / 1000;

// Launcher of shaders/sample.wgsl: one token id drawn from f32 logits on the GPU (repetition
// penalty, temperature, top-k, top-p, min-p, seeded counter-based RNG), written as a u32 to
// a small buffer: the only thing a decode step reads back. The shader header explains the
// design (one workgroup, threshold searches instead of a sort) and its cost.
//
// Per token: the caller rewrites the Params buffer with PreparedSample.write(); `step` (the
// RNG counter: same seed + same step → same id) and `historyLength` (ids the penalty sees)
// change every token, the rest once per request. The history buffer (u32 ids) is the
// caller's, appended to by the caller. The logits buffer is never written; the op owns a
// scratch buffer of n f32 (or shares one given to prepare: dispatches run in order).
//
// Measured on lavapipe (2-core CPU, one core per workgroup), per draw, seeded logits with a
// realistic spread: vocab 128256: greedy 0.6–0.8 ms, no filter or min-p only ~0.9 ms, top-k
// 40 ~4.5 ms, top-p 0.9 ~5.4 ms, both ~8.7 ms; vocab 32000: 0.2 / 0.3 / 1.2 / 2.4 / 2.1 ms;
// vocab 256: 0.1–0.3 ms (barriers dominate). Noisy: other work shared the cores.

import { ParamsLayout } from '../gpu/params.js';
import { pipelineCache, type PipelineSpec } from '../gpu/pipeline-cache.js';
import { bindBuffers, type ComputeDtype, type PreparedOp } from './op.js';

/** Threads of the one workgroup (WebGPU's default limit is 256); a power of two. */
export const SAMPLE_WORKGROUP = 256;

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

/** What changes every token. */
export interface SampleStep {
  /** RNG counter, a u32: the draw is a function of (seed, step) and the logits. */
  step: number;
  /** How many ids of the history buffer the penalty sees. */
  historyLength: number;
}

export const DEFAULT_SAMPLING: Readonly<SamplingParams> = { temperature: 1, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1, seed: 0 };

const PARAMS = new ParamsLayout([
  ['n', 'u32'], // logits (the vocabulary)
  ['history_len', 'u32'], // ids of history to penalise (per token)
  ['temperature', 'f32'], // 0 → argmax
  ['top_k', 'u32'], // 0 or ≥ n → off
  ['top_p', 'f32'], // ≥ 1 → off
  ['min_p', 'f32'], // 0 → off
  ['repetition_penalty', 'f32'], // 1 → off
  ['seed', 'u32'], // RNG stream
  ['step', 'u32'], // RNG counter (per token)
  ['out_index', 'u32'], // element of out that receives the id
] as const);

const VARIANT = {
  key: `sample_f32_wg${SAMPLE_WORKGROUP}`,
  spec: { shader: 'sample', constants: { WORKGROUP_SIZE: SAMPLE_WORKGROUP } } satisfies PipelineSpec,
};

/** Every variant of the shader: one, as logits are F32 in every compute dtype. */
export function sampleVariants(_dtypes: readonly ComputeDtype[], _features: ReadonlySet<string>): { key: string; spec: PipelineSpec }[] {
  return [VARIANT];
}

export interface SampleBuffers {
  /** (vocab,) f32, read only. */
  logits: GPUBuffer;
  /** (capacity,) u32 token ids the penalty sees (the first historyLength); omitted → no history. */
  history?: GPUBuffer;
  /** (> outIndex,) u32: receives the sampled id at outIndex. */
  out: GPUBuffer;
  /** Which u32 of out (fixed at prepare time; 0 for the model, one per draw in batches). */
  outIndex?: number;
  /** (vocab,) f32 work space to share between prepared draws; omitted → the op makes one. */
  scratch?: GPUBuffer;
}

/** A prepared draw whose Params the caller rewrites per token. */
export interface PreparedSample extends PreparedOp {
  /** Rewrites Params on the queue timeline (in order with submits); validates first. */
  write(params: SamplingParams & SampleStep): void;
}

export class Sample {
  private constructor(
    private readonly device: GPUDevice,
    private readonly pipeline: GPUComputePipeline,
  ) {}

  /** Logits are F32 in every compute dtype, so there is no dtype to choose. */
  static async create(device: GPUDevice): Promise<Sample> {
    return new Sample(device, await pipelineCache(device).get(VARIANT.key, VARIANT.spec));
  }

  /** One dispatch of one workgroup; `params` are the initial values (write() changes them). */
  prepare(label: string, vocab: number, buffers: SampleBuffers, params: SamplingParams & SampleStep): PreparedSample {
    const { logits, out } = buffers;
    const outIndex = buffers.outIndex ?? 0;
    // Counts are summed as f32 in the shader: exact below 2^24.
    if (!(Number.isInteger(vocab) && vocab >= 1 && vocab < 2 ** 24)) throw new Error(`${label}: sample needs a vocabulary in [1, 2^24), got ${vocab}`);
    if (logits.size < vocab * 4) throw new Error(`${label}: logits hold ${logits.size} B < ${vocab} f32`);
    if (!(Number.isInteger(outIndex) && outIndex >= 0 && out.size >= (outIndex + 1) * 4)) {
      throw new Error(`${label}: out (${out.size} B) has no u32 at index ${outIndex}`);
    }
    if (buffers.scratch && buffers.scratch.size < vocab * 4) throw new Error(`${label}: scratch holds ${buffers.scratch.size} B < ${vocab} f32`);
    const owned: GPUBuffer[] = [];
    const make = (name: string, size: number): GPUBuffer => {
      const buffer = this.device.createBuffer({ label: `${label}.${name}`, size, usage: GPUBufferUsage.STORAGE });
      owned.push(buffer);
      return buffer;
    };
    const history = buffers.history ?? make('history', 16); // (4,) u32, never read: historyLength 0
    const scratch = buffers.scratch ?? make('scratch', Math.ceil((vocab * 4) / 16) * 16); // (vocab,) f32
    const capacity = Math.floor(history.size / 4);
    const pack = (p: SamplingParams & SampleStep): Record<(typeof PARAMS.fields)[number][0], number> => {
      checkParams(label, p, buffers.history ? capacity : 0);
      return {
        n: vocab,
        history_len: p.historyLength,
        temperature: p.temperature,
        top_k: p.topK,
        top_p: Math.min(p.topP, 1),
        min_p: p.minP,
        repetition_penalty: p.repetitionPenalty,
        seed: p.seed,
        step: p.step,
        out_index: outIndex,
      };
    };
    const paramsBuffer = PARAMS.createBuffer(this.device, label, pack(params));
    owned.push(paramsBuffer);
    const staged = new ArrayBuffer(PARAMS.byteSize); // reused by write(): nothing allocated per token but the record
    const bindGroup = bindBuffers(this.device, this.pipeline, label, [paramsBuffer, logits, history, scratch, out]);
    return {
      label,
      dispatches: [{ label, pipeline: this.pipeline, bindGroup, workgroups: [1] }],
      write: (p) => this.device.queue.writeBuffer(paramsBuffer, 0, PARAMS.pack(pack(p), staged)),
      destroy: () => owned.forEach((b) => b.destroy()),
    };
  }
}

/** Throws on a parameter the shader would misread (a negative k, a fractional seed, …). */
function checkParams(label: string, p: SamplingParams & SampleStep, historyCapacity: number): void {
  const u32 = (v: number) => Number.isInteger(v) && v >= 0 && v < 2 ** 32;
  const bad = (what: string) => new Error(`${label}: sample ${what}`);
  if (!(p.temperature >= 0 && Number.isFinite(p.temperature))) throw bad(`temperature must be finite and ≥ 0, got ${p.temperature}`);
  if (!u32(p.topK)) throw bad(`topK must be an integer ≥ 0, got ${p.topK}`);
  if (!(p.topP >= 0)) throw bad(`topP must be ≥ 0, got ${p.topP}`);
  if (!(p.minP >= 0 && p.minP <= 1)) throw bad(`minP must be in [0, 1], got ${p.minP}`);
  if (!(p.repetitionPenalty > 0 && Number.isFinite(p.repetitionPenalty))) throw bad(`repetitionPenalty must be finite and > 0, got ${p.repetitionPenalty}`);
  if (!u32(p.seed) || !u32(p.step)) throw bad(`seed and step must be u32, got ${p.seed} and ${p.step}`);
  if (!(Number.isInteger(p.historyLength) && p.historyLength >= 0 && p.historyLength <= historyCapacity)) {
    throw bad(`historyLength ${p.historyLength} is not within the history buffer's ${historyCapacity} ids`);
  }
}

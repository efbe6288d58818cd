// What every attention launcher shares, whichever kernel family it runs (attention.ts for
// software GPUs, attention-tiled.ts for real ones): the checks made before preparing (shape,
// score options, the caller's buffers and step), with one set of messages, so every family
// refuses the same inputs the same way, by name (SHAPE_MISMATCH); flash-decoding's scratch;
// the dispatches over the bindings both shaders declare alike (0 params, 1 step, 2 q,
// 3 kCache, 4 vCache, then 5 out, or 5 partial O, 6 partial (max, sum), 7 out); the
// pipelines by variant key (compiled ahead or built on first use); and prepareAttention,
// which puts those together for a family's AttentionKernel.

import { SluiceError } from '../errors.js';
import { workgroups1d } from '../gpu/dispatch.js';
import type { PipelineSpec } from '../gpu/pipeline-cache.js';
import { pipelineCache } from '../gpu/pipeline-cache.js';
import { stepProblem } from '../gpu/step.js';
import type { AttentionBuffers, AttentionFeatures, AttentionShape, DecodeScratch } from './attention.js';
import { type ComputeDtype, computeBytes, type PreparedDispatch, type PreparedOp } from './op.js';

export function attentionFail(label: string, why: string): never {
  throw new SluiceError('SHAPE_MISMATCH', `${label}: attention ${why}`);
}

/** The shape's score options, checked: the Params values and the variant features they need. */
export function attentionScoreOptions(
  label: string,
  s: AttentionShape,
): { scale: number; softcap: number; window: number; features: Required<AttentionFeatures> } {
  const scale = s.scale ?? 1 / Math.sqrt(s.headDim);
  if (!Number.isFinite(scale) || scale <= 0) attentionFail(label, `scale must be a positive number, got ${scale}`);
  const softcap = s.softcap ?? 0;
  if (s.softcap != null && !(Number.isFinite(softcap) && softcap > 0)) attentionFail(label, `softcap must be a positive number or null, got ${s.softcap}`);
  if (s.window != null && !(Number.isInteger(s.window) && s.window >= 1)) attentionFail(label, `window must be an integer ≥ 1 or null, got ${s.window}`);
  // A window reaching every position of the cache masks nothing: the plain variant.
  const window = s.window != null && s.window < s.maxSeq ? s.window : 0;
  return { scale, softcap, window, features: { softcap: softcap > 0, window: window > 0 } };
}

/** Throws unless the shape's sizes are positive integers, nHeads a multiple of nKvHeads and headDim a multiple of 4 up to maxHeadDim. */
export function checkAttentionShape(label: string, s: AttentionShape, maxTokens: number, maxHeadDim: number): void {
  const { nHeads, nKvHeads, headDim, maxSeq, slots = 1 } = s;
  for (const [name, v] of Object.entries({ nHeads, nKvHeads, headDim, maxSeq, slots, maxTokens })) {
    if (!Number.isInteger(v) || v < 1) attentionFail(label, `${name} = ${v} is not a positive integer`);
  }
  if (nHeads % nKvHeads !== 0) attentionFail(label, `needs nHeads (${nHeads}) a multiple of nKvHeads (${nKvHeads})`);
  if (headDim % 4 !== 0 || headDim > maxHeadDim) attentionFail(label, `supports headDim a multiple of 4 up to ${maxHeadDim}, got ${headDim}`);
}

export function checkAttentionBuffer(label: string, name: string, buffer: GPUBuffer, bytes: number): void {
  if (buffer.size < bytes) attentionFail(label, `${name} holds ${buffer.size} bytes, needs ${bytes}`);
}

/** The step fits the shape (rows, positions, slots) and q, out and both caches hold what the shape needs in `dtype`. */
export function checkAttentionBuffers(label: string, shape: AttentionShape, buffers: AttentionBuffers, dtype: ComputeDtype): void {
  const { nHeads, nKvHeads, headDim, maxSeq, slots = 1 } = shape;
  const maxTokens = buffers.step.maxRows;
  const problem = stepProblem(buffers.step, maxTokens, maxSeq, slots);
  if (problem) attentionFail(label, problem);
  const bytes = computeBytes(dtype);
  checkAttentionBuffer(label, 'q', buffers.q, maxTokens * nHeads * headDim * bytes);
  checkAttentionBuffer(label, 'out', buffers.out, maxTokens * nHeads * headDim * bytes);
  checkAttentionBuffer(label, 'kCache', buffers.kCache, slots * nKvHeads * maxSeq * headDim * bytes);
  checkAttentionBuffer(label, 'vCache', buffers.vCache, slots * nKvHeads * maxSeq * headDim * bytes);
}

/** Splits of flash-decoding over a cache of `maxSeq` positions. */
export function decodeSplits(shape: AttentionShape, splitKeys: number): number {
  return Math.ceil(shape.maxSeq / splitKeys);
}

/** f32 partials of `splits` splits for `rows` query rows: splits · rows · nHeads · (headDim + 2) f32. */
export function createDecodeScratch(device: GPUDevice, label: string, shape: AttentionShape, rows: number, splits: number): DecodeScratch {
  const make = (name: string, size: number): GPUBuffer =>
    device.createBuffer({ label: `${label}.${name}`, size: Math.ceil(size / 16) * 16, usage: GPUBufferUsage.STORAGE });
  const o = make('partial_o', splits * rows * shape.nHeads * shape.headDim * 4);
  const ml = make('partial_ml', splits * rows * shape.nHeads * 8);
  return { o, ml, destroy: () => (o.destroy(), ml.destroy()) };
}

export function checkDecodeScratch(label: string, shape: AttentionShape, rows: number, splits: number, scratch: DecodeScratch): void {
  checkAttentionBuffer(label, 'scratch.o', scratch.o, splits * rows * shape.nHeads * shape.headDim * 4);
  checkAttentionBuffer(label, 'scratch.ml', scratch.ml, splits * rows * shape.nHeads * 8);
}

/** A variant's pipeline built now, synchronously (a variant create() did not compile ahead). */
export function createPipelineNow(device: GPUDevice, key: string, spec: PipelineSpec): GPUComputePipeline {
  return device.createComputePipeline({
    label: key,
    layout: 'auto',
    compute: { module: pipelineCache(device).module(spec.shader, spec.flags), entryPoint: spec.entryPoint ?? 'main', constants: { ...spec.constants } },
  });
}

/** The pipelines of one prepared attention: `plain` alone, or flash-decoding's `split` and `combine`. */
export type AttentionPipelines = { plain: GPUComputePipeline } | { split: GPUComputePipeline; combine: GPUComputePipeline; scratch: DecodeScratch };

/**
 * The dispatches of a prepared attention: the main kernel over (blocks, nKvHeads, splits)
 * workgroups, and with splits, combine over one invocation per output vec4 of the step's
 * maxRows rows (`workgroupSize` per workgroup).
 */
export function attentionDispatches(
  device: GPUDevice,
  label: string,
  params: GPUBuffer,
  shape: AttentionShape,
  buffers: AttentionBuffers,
  pipelines: AttentionPipelines,
  grid: { blocks: number; splits: number; workgroupSize: number },
): PreparedDispatch[] {
  const bind = (pipeline: GPUComputePipeline, entries: [number, GPUBuffer][]): GPUBindGroup =>
    device.createBindGroup({ label, layout: pipeline.getBindGroupLayout(0), entries: entries.map(([binding, buffer]) => ({ binding, resource: { buffer } })) });
  const step = buffers.step.buffer;
  const inputs: [number, GPUBuffer][] = [[0, params], [1, step], [2, buffers.q], [3, buffers.kCache], [4, buffers.vCache]];
  const workgroups = [grid.blocks, shape.nKvHeads, grid.splits] as const;
  if ('plain' in pipelines) {
    return [{ label, pipeline: pipelines.plain, bindGroup: bind(pipelines.plain, [...inputs, [5, buffers.out]]), workgroups }];
  }
  const { split, combine, scratch } = pipelines;
  const outputVecs = buffers.step.maxRows * shape.nHeads * (shape.headDim / 4);
  return [
    { label: `${label}.split`, pipeline: split, bindGroup: bind(split, [...inputs, [5, scratch.o], [6, scratch.ml]]), workgroups },
    {
      label: `${label}.combine`,
      pipeline: combine,
      bindGroup: bind(combine, [[0, params], [1, step], [5, scratch.o], [6, scratch.ml], [7, buffers.out]]),
      workgroups: workgroups1d(outputVecs, grid.workgroupSize, device.limits.maxComputeWorkgroupsPerDimension),
    },
  ];
}

/** The Params fields every attention shader declares alike (a launcher may add its own). */
export interface AttentionFixedParams {
  n_heads: number;
  group: number; // nHeads / nKvHeads
  head_vecs: number; // headDim / 4
  max_seq: number;
  n_kv_heads: number;
  block_rows: number; // query rows (token, head) per workgroup
  token_rows: number; // block rows per token: group (packed) or group padded to whole blocks
  split_keys: number; // keys per split; maxSeq when unsplit
  scale: number;
  softcap: number; // SOFTCAP variant: the cap (0 otherwise, unused)
  window: number; // WINDOW variant: the window (0 otherwise, unused)
}

/** What one attention family fixes about its kernel, for prepareAttention. */
export interface AttentionKernel {
  /** Largest headDim it takes (a multiple of 4). */
  readonly maxHeadDim: number;
  /** Keys per split of flash-decoding. */
  readonly splitKeys: number;
  /** Invocations per workgroup of combine. */
  readonly workgroupSize: number;
  /** Query rows per block for `rowCount` rows (tokens · group) of a head size. */
  blockRows(headDim: number, rowCount: number): number;
  /** The Params buffer, labelled `label`, from the shared fields. */
  params(label: string, fixed: AttentionFixedParams): GPUBuffer;
  /** The pipeline of a pass over `shape` (`decode`: a block per token) for its score options. */
  pipeline(kind: 'plain' | 'split' | 'combine', features: Required<AttentionFeatures>, decode: boolean, shape: AttentionShape): GPUComputePipeline;
}

/**
 * One prepared attention: every check, then the Params, the pipelines and the dispatches.
 * Prefill (`decode` false) packs blocks of rows across tokens; decode gives each token its
 * blocks (its group padded to whole blocks) and splits the keys past one split
 * (flash-decoding), into `scratch` or scratch of its own, made once every check passed.
 */
export function prepareAttention(
  device: GPUDevice,
  kernel: AttentionKernel,
  dtype: ComputeDtype,
  label: string,
  shape: AttentionShape,
  buffers: AttentionBuffers,
  decode: boolean,
  scratch?: DecodeScratch,
): PreparedOp {
  const maxTokens = buffers.step.maxRows;
  checkAttentionShape(label, shape, maxTokens, kernel.maxHeadDim);
  checkAttentionBuffers(label, shape, buffers, dtype);
  const options = attentionScoreOptions(label, shape);
  const splits = decode ? decodeSplits(shape, kernel.splitKeys) : 1;
  const { nHeads, nKvHeads, headDim, maxSeq } = shape;
  const group = nHeads / nKvHeads;
  // With a single row both layouts are the same.
  const rows = kernel.blockRows(headDim, decode ? group : maxTokens * group);
  const tokenRows = decode ? Math.ceil(group / rows) * rows : group;
  const blocks = Math.ceil((maxTokens * tokenRows) / rows);
  const maxGroups = device.limits.maxComputeWorkgroupsPerDimension;
  if (blocks > maxGroups || nKvHeads > maxGroups) attentionFail(label, `of ${maxTokens} tokens × ${nHeads} heads needs more than ${maxGroups} workgroups`);
  const ownScratch = splits > 1 && !scratch ? createDecodeScratch(device, label, shape, maxTokens, splits) : undefined;
  const useScratch = scratch ?? ownScratch;
  if (splits > 1) checkDecodeScratch(label, shape, maxTokens, splits, useScratch!);
  const params = kernel.params(label, {
    n_heads: nHeads,
    group,
    head_vecs: headDim / 4,
    max_seq: maxSeq,
    n_kv_heads: nKvHeads,
    block_rows: rows,
    token_rows: tokenRows,
    split_keys: splits > 1 ? kernel.splitKeys : maxSeq,
    scale: options.scale,
    softcap: options.softcap,
    window: options.window,
  });
  const pipelines: AttentionPipelines =
    splits > 1
      ? { split: kernel.pipeline('split', options.features, decode, shape), combine: kernel.pipeline('combine', options.features, decode, shape), scratch: useScratch! }
      : { plain: kernel.pipeline('plain', options.features, decode, shape) };
  const grid = { blocks, splits, workgroupSize: kernel.workgroupSize };
  return {
    label,
    dispatches: attentionDispatches(device, label, params, shape, buffers, pipelines, grid),
    destroy(): void {
      params.destroy();
      ownScratch?.destroy();
    },
  };
}

/** Every combination of the score options that pick a variant. */
export const ATTENTION_FEATURE_SETS: readonly Required<AttentionFeatures>[] = [
  { softcap: false, window: false },
  { softcap: true, window: false },
  { softcap: false, window: true },
  { softcap: true, window: true },
];

/** Compiles, by key, the variants of `kinds` for each feature set `options` asks for ahead (all without softcap and window, and those with what it names). */
export async function compileAttentionVariants<K extends string>(
  device: GPUDevice,
  options: AttentionFeatures,
  kinds: readonly K[],
  variantOf: (kind: K, features: Required<AttentionFeatures>) => { key: string; spec: PipelineSpec },
): Promise<Map<string, GPUComputePipeline>> {
  const cache = pipelineCache(device);
  const sets = ATTENTION_FEATURE_SETS.filter((f) => (!f.softcap || options.softcap) && (!f.window || options.window));
  const built = await Promise.all(
    sets.flatMap((f) =>
      kinds.map(async (kind): Promise<[string, GPUComputePipeline]> => {
        const { key, spec } = variantOf(kind, f);
        return [key, await cache.get(key, spec)];
      }),
    ),
  );
  return new Map(built);
}

/** The pipeline of a variant from `built`; one create did not compile is built now (synchronously) and kept there. */
export function pipelineOnce(device: GPUDevice, built: Map<string, GPUComputePipeline>, v: { key: string; spec: PipelineSpec }): GPUComputePipeline {
  let pipeline = built.get(v.key);
  if (!pipeline) {
    pipeline = createPipelineNow(device, v.key, v.spec);
    built.set(v.key, pipeline);
  }
  return pipeline;
}

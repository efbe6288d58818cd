// Launcher of shaders/kv_store.wgsl: appends the new tokens' K and V (T, nKvHeads, headDim),
// as the k_proj/v_proj matmuls produce them, to one layer's head-major cache
// (nKvHeads, maxSeq, headDim) at positions [start, start + T).
//
// Per-call values — `start` and `tokens` — live in the op's Params buffer: call
// `op.setRange(start, tokens)` (ParamsLayout.write on the queue) before submitting. The
// dispatch covers `maxTokens` tokens; threads past this call's T exit. A bit-exact copy of
// 8-byte units, so one pipeline serves F32 and F16 (headDim a multiple of 4).

import { SluiceError } from '../errors.js';
import { workgroups1d } from '../gpu/dispatch.js';
import { ParamsLayout } from '../gpu/params.js';
import { pipelineCache, type PipelineSpec } from '../gpu/pipeline-cache.js';
import { bindBuffers, type ComputeDtype, computeBytes, type RangedOp, rangeProblem } from './op.js';

export const KV_STORE_WORKGROUP = 256;
/** Bytes moved per thread and buffer (a vec2<u32>). */
const UNIT_BYTES = 8;

const PARAMS = new ParamsLayout([
  ['start', 'u32'], // cache position of the first new token (per call)
  ['tokens', 'u32'], // T, ≤ maxTokens (per call)
  ['n_kv_heads', 'u32'],
  ['row_units', 'u32'], // headDim · bytes / 8
  ['max_seq', 'u32'],
] as const);

/** The shape an op is prepared for. */
export interface KvStoreShape {
  readonly nKvHeads: number;
  readonly headDim: number;
  /** Positions the cache holds per head. */
  readonly maxSeq: number;
}

/** The caller's buffers, all in the compute dtype. */
export interface KvStoreBuffers {
  readonly k: GPUBuffer; // (maxTokens, nKvHeads, headDim) new keys (after RoPE)
  readonly v: GPUBuffer; // (maxTokens, nKvHeads, headDim) new values
  readonly kCache: GPUBuffer; // (nKvHeads, maxSeq, headDim)
  readonly vCache: GPUBuffer; // (nKvHeads, maxSeq, headDim)
}

/** A prepared store: tokens [0, tokens) of k and v → cache positions [start, start + tokens). */
export type KvStoreOp = RangedOp;

const KEY = `kv_store_wg${KV_STORE_WORKGROUP}`;
const SPEC: PipelineSpec = { shader: 'kv_store', constants: { WORKGROUP_SIZE: KV_STORE_WORKGROUP } };

/** Every variant of the shader (one: a byte copy is the same in every dtype). */
export function kvStoreVariants(dtypes: readonly ComputeDtype[], _features: ReadonlySet<string>): { key: string; spec: PipelineSpec }[] {
  return dtypes.length ? [{ key: KEY, spec: SPEC }] : [];
}

function fail(label: string, why: string): never {
  throw new SluiceError('SHAPE_MISMATCH', `${label}: kv_store ${why}`);
}

export class KvStore {
  private constructor(
    private readonly device: GPUDevice,
    readonly dtype: ComputeDtype,
    private readonly pipeline: GPUComputePipeline,
  ) {}

  static async create(device: GPUDevice, dtype: ComputeDtype): Promise<KvStore> {
    return new KvStore(device, dtype, await pipelineCache(device).get(KEY, SPEC));
  }

  prepare(label: string, shape: KvStoreShape, maxTokens: number, buffers: KvStoreBuffers): KvStoreOp {
    const { nKvHeads, headDim, maxSeq } = shape;
    for (const [name, v] of Object.entries({ nKvHeads, headDim, maxSeq, maxTokens })) {
      if (!Number.isInteger(v) || v < 1) fail(label, `${name} = ${v} is not a positive integer`);
    }
    if (headDim % 4 !== 0) fail(label, `needs headDim a multiple of 4, got ${headDim}`);
    const bytes = computeBytes(this.dtype);
    const sizes = { k: maxTokens, v: maxTokens, kCache: maxSeq, vCache: maxSeq };
    for (const [name, rows] of Object.entries(sizes)) {
      const need = rows * nKvHeads * headDim * bytes;
      const have = buffers[name as keyof KvStoreBuffers].size;
      if (have < need) fail(label, `${name} holds ${have} bytes, needs ${need}`);
    }
    const rowUnits = (headDim * bytes) / UNIT_BYTES;
    const fixed = { n_kv_heads: nKvHeads, row_units: rowUnits, max_seq: maxSeq };
    const params = PARAMS.createBuffer(this.device, label, { start: 0, tokens: maxTokens, ...fixed });
    const entries = [params, buffers.k, buffers.v, buffers.kCache, buffers.vCache];
    const bindGroup = bindBuffers(this.device, this.pipeline, label, entries);
    const workgroups = workgroups1d(maxTokens * nKvHeads * rowUnits, KV_STORE_WORKGROUP, this.device.limits.maxComputeWorkgroupsPerDimension);
    const device = this.device;
    return {
      label,
      dispatches: [{ label, pipeline: this.pipeline, bindGroup, workgroups }],
      params,
      maxTokens,
      setRange(start: number, tokens: number): void {
        const problem = rangeProblem(start, tokens, maxTokens, maxSeq);
        if (problem) fail(label, problem);
        PARAMS.write(device, params, { start, tokens, ...fixed });
      },
      destroy: () => params.destroy(),
    };
  }
}

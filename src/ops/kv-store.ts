// Launcher of shaders/kv_store.wgsl: appends the new rows' K and V (T, nKvHeads, headDim),
// as the k_proj/v_proj matmuls produce them, to one layer's head-major cache
// (slots, nKvHeads, maxSeq, headDim), row r at its step slot and position.
//
// Per-call values — the row count and each row's slot and position — come from the pass's Step
// (src/gpu/step.ts), written once per call for every layer; the Params hold only the
// shape. The dispatch covers the step's maxRows; threads past this call's rows exit. A
// bit-exact copy of 8-byte units, so one pipeline serves F32 and F16 (headDim a multiple
// of 4).

import { SluiceError } from '../errors.js';
import { workgroups1d } from '../gpu/dispatch.js';
import { ParamsLayout } from '../gpu/params.js';
import { pipelineCache, type PipelineSpec } from '../gpu/pipeline-cache.js';
import { type Step, stepProblem } from '../gpu/step.js';
import { bindBuffers, type ComputeDtype, computeBytes, type PreparedOp } from './op.js';

export const KV_STORE_WORKGROUP = 256;
/** Bytes moved per thread and buffer (a vec2<u32>). */
const UNIT_BYTES = 8;

const PARAMS = new ParamsLayout([
  ['n_kv_heads', 'u32'],
  ['row_units', 'u32'], // headDim · bytes / 8
  ['max_seq', 'u32'],
  ['slots', 'u32'],
] as const);

/** The shape an op is prepared for. */
export interface KvStoreShape {
  readonly nKvHeads: number;
  readonly headDim: number;
  /** Positions the cache holds per head. */
  readonly maxSeq: number;
  /** Sequences the cache holds, each its own (nKvHeads, maxSeq, headDim) (default 1). */
  readonly slots?: number;
}

/** The caller's buffers, all in the compute dtype, and the pass's step. */
export interface KvStoreBuffers {
  /** Rows and positions of each call; k and v hold its maxRows rows. */
  readonly step: Step;
  readonly k: GPUBuffer; // (maxRows, nKvHeads, headDim) new keys (after RoPE)
  readonly v: GPUBuffer; // (maxRows, nKvHeads, headDim) new values
  readonly kCache: GPUBuffer; // (slots, nKvHeads, maxSeq, headDim)
  readonly vCache: GPUBuffer; // (slots, nKvHeads, maxSeq, headDim)
}

/** A prepared store: rows [0, step.rows) of k and v → cache slot step.row[r].slot, position step.row[r].position. */
export type KvStoreOp = PreparedOp;

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

  prepare(label: string, shape: KvStoreShape, buffers: KvStoreBuffers): KvStoreOp {
    const { nKvHeads, headDim, maxSeq, slots = 1 } = shape;
    const rows = buffers.step.maxRows;
    for (const [name, v] of Object.entries({ nKvHeads, headDim, maxSeq, slots })) {
      if (!Number.isInteger(v) || v < 1) fail(label, `${name} = ${v} is not a positive integer`);
    }
    if (headDim % 4 !== 0) fail(label, `needs headDim a multiple of 4, got ${headDim}`);
    const problem = stepProblem(buffers.step, rows, maxSeq, slots);
    if (problem) fail(label, problem);
    const bytes = computeBytes(this.dtype);
    const sizes = { k: rows, v: rows, kCache: slots * maxSeq, vCache: slots * maxSeq };
    for (const [name, n] of Object.entries(sizes)) {
      const need = n * nKvHeads * headDim * bytes;
      const have = buffers[name as keyof typeof sizes].size;
      if (have < need) fail(label, `${name} holds ${have} bytes, needs ${need}`);
    }
    const rowUnits = (headDim * bytes) / UNIT_BYTES;
    const params = PARAMS.createBuffer(this.device, label, { n_kv_heads: nKvHeads, row_units: rowUnits, max_seq: maxSeq, slots });
    const entries = [params, buffers.step.buffer, buffers.k, buffers.v, buffers.kCache, buffers.vCache];
    const bindGroup = bindBuffers(this.device, this.pipeline, label, entries);
    const workgroups = workgroups1d(rows * nKvHeads * rowUnits, KV_STORE_WORKGROUP, this.device.limits.maxComputeWorkgroupsPerDimension);
    return {
      label,
      dispatches: [{ label, pipeline: this.pipeline, bindGroup, workgroups }],
      destroy: () => params.destroy(),
    };
  }
}

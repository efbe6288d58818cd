// The Llama-family forward pass on the GPU: weights, KV cache, activations and every op's
// pipeline and bind groups made once at load; a token then costs one command buffer,
// one submit and (with sampling on the GPU) a 4-byte read back.
//
// Prepared passes share the weights and the cache:
//   prefill  up to PREFILL_CHUNK tokens at a time: matmul + flash attention, prepared for
//            each of PREFILL_ROWS row counts so a short turn costs its rows, not 64
//   decode   one token: gemv + flash-decoding over the cache
//   batched  with `parallel` slots, one row per sequence (continuous batching): gemvs over
//            the rows (or small matmuls) and per-row flash-decoding, prepared for each
//            decodeRowCounts count so a step costs the smallest that holds its sequences
// A dense decode layer is 5 dispatches (Llama, Qwen2, Phi-3: test/model/dispatches.test.ts
// counts every family): q/k/v and gate/up joined at load into one projection each, the
// layer norms folded into them (RMS_NORM), the rope and K/V store in the q/k/v projection's
// epilogue (ROPE_STORE; with q/k norms qkv_rope_store after it), the activation in gate/up's
// (GLU), o_proj and down_proj adding into the residual stream (Gemma: norm_add_norm for its
// sandwich norms).
// Shapes: T = tokens in the pass, h = hidden, q = nHeads·headDim, kv = nKvHeads·headDim,
// I = intermediate, V = vocab.

import type { Checkpoint } from '../checkpoint/types.js';
import { SluiceError } from '../errors.js';
import { destroyTensor, type GpuTensor } from '../gpu/gpu-tensor.js';
import { readPackedIndices } from '../gpu/load-prequantized.js';
import { type DtypeChoice, type GpuTensors, loadTensors, resolveComputeDtype } from '../gpu/load-tensors.js';
import { readBuffer } from '../gpu/read-back.js';
import { destroyQuantized, type QuantKind } from '../gpu/quantized-tensor.js';
import { concatQuantizedRows, rowsWordAligned } from '../gpu/concat-quantized.js';
import { concatRows, concatVectors } from '../gpu/concat-rows.js';
import { splitRows } from '../gpu/split-rows.js';
import { quietWait } from '../gpu/quiet-wait.js';
import { Step } from '../gpu/step.js';
import type { RowView } from '../ops/qkv-rope-store.js';
import { QGemv } from '../ops/qgemv.js';
import { type ComputeDtype, computeBytes, encodeOp, type PreparedOp, runOps, submitOne } from '../ops/op.js';
import type { ModelConfig } from './config.js';
import { compileKernels, isGemv, type Kernels, type RopeTable, SMALL_PREFILL_ROWS } from './kernels.js';
import { type KernelChoice, type KernelFamily, kernelFamily } from './kernel-family.js';
import type { ModelProgress } from './progress.js';
import type { RopeScaling } from './rope-scaling.js';
import { type WeightNames, weightNames } from './weights.js';

/** The sequence length past which a rope's table changes (RopeTable.update), Infinity when it never does. */
function switchesPast(rope: RopeScaling): number {
  if (rope.type === 'dynamic') return rope.maxPositionEmbeddings;
  if (rope.type === 'longrope') return rope.originalMaxPositionEmbeddings;
  return Infinity;
}

/** Most sequences one model decodes at once (LoadModelOptions.parallel). */
export const MAX_PARALLEL = 64;

/** Prompt tokens per prefill pass: longer prompts run in several passes over the cache. */
export const PREFILL_CHUNK = 64;

/**
 * Row counts a prefill pass is prepared for: a chunk runs the smallest that holds it.
 * Every op of a pass dispatches for its prepared rows, so without this an 8-token turn did
 * the work of 64 (TTFT(8) was 0.83 × TTFT(64) on a SmolLM2-135M shape). Four prepared
 * passes cost bind groups and small Params buffers, not activations (they share them).
 */
export const PREFILL_ROWS = [SMALL_PREFILL_ROWS, 16, 32, PREFILL_CHUNK] as const;

export interface LoadModelOptions {
  dtype?: DtypeChoice;
  /**
   * Quantize the projections (and an untied LM head) on the GPU as they stream in: 'q8'
   * (symmetric, group 32) or 'q4' (asymmetric, group 32), and the embedding table in the
   * same kind (gathered by row, and a tied model's LM head). Norms and biases stay dense. Default: none. A pre-quantized checkpoint (GPTQ, AWQ,
   * compressed-tensors) is loaded as quantized without it, and refuses it.
   */
  quantize?: QuantKind;
  /** KV cache positions (default min(max_position_embeddings, 4096)). */
  contextLength?: number;
  /**
   * Sequences decoded at once (continuous batching): KV cache slots, each of contextLength
   * positions, and a decode pass over up to that many rows (default 1).
   */
  parallel?: number;
  /**
   * The designs of the gemv, matmul and attention kernels (kernel-family.ts): 'software'
   * (tuned for CPU renderers), 'gpu' (for real GPUs), or 'auto' (default: by the adapter).
   */
  kernels?: KernelChoice;
  signal?: AbortSignal;
  onProgress?: (p: ModelProgress) => void;
}

/**
 * The ops of one pass, in order, and its step: the row count and each row's (slot,
 * position), which rope, kv_store and attention of every layer read (src/gpu/step.ts).
 * A call writes the step once; nothing else of the pass changes per call.
 */
interface Pass {
  ops: PreparedOp[];
  step: Step; // (1 + 2·rows) u32: rows, per row (slot, position); then the rows' token ids at an aligned offset
}

/** The decode passes' encoder and pass descriptors, by label. */
const DECODE_DESCRIPTORS = { 'model.decode': { label: 'model.decode' }, 'model.decode_rows': { label: 'model.decode_rows' } } as const;
type DecodeLabel = keyof typeof DECODE_DESCRIPTORS;

/** A 1-D tensor of ones shaped and typed like `like` (F16 or F32), in one buffer. */
function unitVector(device: GPUDevice, name: string, like: GpuTensor): GpuTensor & { destroy(): void } {
  const [n] = like.shape;
  const values = like.dtype === 'F16' ? new Uint16Array(n).fill(0x3c00) : new Float32Array(n).fill(1);
  const buffer = device.createBuffer({ label: name, size: Math.max(16, Math.ceil(values.byteLength / 16) * 16), usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
  device.queue.writeBuffer(buffer, 0, values);
  const chunk = { buffer, firstRow: 0, rows: n, byteLength: values.byteLength };
  return { name, shape: [n], storageDtype: like.dtype, dtype: like.dtype, chunks: [chunk], rowsPerChunk: n, byteLength: values.byteLength, destroy: () => buffer.destroy() };
}

export class LlamaModel {
  private readonly owned: { destroy(): void }[] = [];
  private prefill!: Map<number, Pass>; // by prepared rows (PREFILL_ROWS)
  private decode!: Pass; // one row: gemv
  private decodeBatch = new Map<number, Pass>(); // by rows (decodeRowCounts), one row per sequence
  private batchRowCounts: number[] = []; // decodeBatch's keys, ascending
  private readonly oneId = [0]; // decodeRows' one-row id
  // [n]: a view of n rows' token ids for decodeRows, reused every step (f64: a bad id reaches the step's check unwrapped)
  private readonly rowIds = ((ids) => Array.from({ length: MAX_PARALLEL + 1 }, (_, n) => ids.subarray(0, n)))(new Float64Array(MAX_PARALLEL));
  private decodeStep!: PreparedOp[]; // decode pass + head, in order: encoded every token
  private decodeBatchStep = new Map<number, PreparedOp[]>(); // each batched decode pass + its head, by rows
  private hidden!: GPUBuffer; // (PREFILL_CHUNK, h) the residual stream of prefill
  private lastRow!: GPUBuffer; // (1, h) the residual stream of decode (prefill's last row lands here)
  private head!: PreparedOp[]; // final norm + LM head (+ soft-cap) on lastRow → logits
  private readonly rowPositions: Uint32Array[]; // [n]: a view of n rows' positions, reused every step
  private readonly rowSlots: Uint32Array[];
  private ropeTables: RopeTable[] = []; // one per distinct rope, switched by sequence length
  private history!: Uint32Array; // (contextLength,) the id at each cached position, for a re-run
  private readonly joinedGateUp = new Map<number, string>(); // layer → its [gate; up] tensor (joinGateUp)
  private readonly joinedQkv = new Map<number, { weight: string; bias: string | null }>(); // layer → its [q; k; v] tensors (joinQkv)
  private readonly foldedNorms = new Set<string>(); // norm weights folded into the linears after them (foldNorms)
  private readonly qgemvNorms = new Set<string>(); // norms the quantized decode gemvs after them apply themselves (foldNorms)
  private unitNorm: GpuTensor | null = null; // (hidden,) ones: the weight of a folded norm in a pass of several rows
  /** (slots, V) f32: row r the logits of the r-th row of the last decodeRows (row 0 after forward). */
  logits!: GPUBuffer;

  private constructor(
    readonly device: GPUDevice,
    readonly config: ModelConfig,
    readonly dtype: ComputeDtype,
    readonly contextLength: number,
    readonly weights: GpuTensors,
    private readonly names: WeightNames,
    /** KV cache slots: sequences that decode together (LoadModelOptions.parallel). */
    readonly slots: number,
    /** The kernel designs this model runs (LoadModelOptions.kernels). */
    readonly kernelFamily: KernelFamily,
  ) {
    const positions = new Uint32Array(slots);
    const slotIds = new Uint32Array(slots);
    this.rowPositions = Array.from({ length: slots + 1 }, (_, n) => positions.subarray(0, n));
    this.rowSlots = Array.from({ length: slots + 1 }, (_, n) => slotIds.subarray(0, n));
  }

  static async load(checkpoint: Checkpoint, config: ModelConfig, device: GPUDevice, options: LoadModelOptions = {}): Promise<LlamaModel> {
    const where = checkpoint.files[0] ?? 'checkpoint';
    const q = config.quantization;
    if (q && options.quantize) {
      const scheme = `${q.format === q.method ? q.method : `${q.method} ${q.format}`}, ${q.bits}-bit, ${q.groupSize === null ? 'per channel' : `group ${q.groupSize}`}`;
      throw new SluiceError('USAGE', `${where}: the weights are already quantized (${scheme}); quantize ${options.quantize} applies to float checkpoints only (drop --quantize)`);
    }
    const names = weightNames(config, checkpoint.tensors(), where);
    const contextLength = options.contextLength ?? Math.min(config.maxPositionEmbeddings, 4096);
    if (!Number.isInteger(contextLength) || contextLength < 1) throw new SluiceError('USAGE', `context length must be a positive integer, not ${contextLength}`);
    const slots = options.parallel ?? 1;
    if (!Number.isInteger(slots) || slots < 1 || slots > MAX_PARALLEL) throw new SluiceError('USAGE', `parallel must be a whole number in [1, ${MAX_PARALLEL}], not ${slots}`);
    // Dynamic NTK and longrope pick their table by the sequence length, past a threshold:
    // one table per pass cannot serve sequences on both sides of it. Below it (the default
    // context of such models) the table never changes.
    const switching = config.features.layers.map((l) => l.rope).find((r) => r && contextLength > switchesPast(r));
    if (slots > 1 && switching) {
      const past = switchesPast(switching);
      throw new SluiceError('USAGE', `${where}: rope_scaling ${switching.type} switches tables past ${past} positions, and the context is ${contextLength}: decode one sequence at a time (parallel 1, not ${slots}), or keep the context ≤ ${past}`);
    }
    // The kernels compile while the weights stream in: both take seconds on some GPUs
    // (shader compilation is CPU work in the browser's GPU process, the upload is copies).
    const dtype = resolveComputeDtype(device, options.dtype);
    const family = kernelFamily(device, options.kernels);
    // A pre-quantized checkpoint's g_idx (act-order) and weight_shape values, checked before anything is built.
    const packed = names.packed;
    const perms = packed.length ? await readPackedIndices(checkpoint, packed, where) : new Map<string, Uint32Array>();
    const kernels = compileKernels(device, dtype, config, {
      quantized: options.quantize ?? (packed.length ? (packed[0].bits === 4 ? 'q4' : 'q8') : null),
      bias: names.layers.some((l) => [l.qBias, l.kBias, l.vBias, l.oBias, l.gateBias, l.upBias, l.downBias].some((b) => b !== null)),
      permute: perms.size > 0,
      decodeRows: slots,
      family,
    }, options.onProgress);
    // A kernel that cannot be built (an unsupported rope, a shader error) stops the upload
    // rather than letting it run to the end for nothing.
    const stopUpload = new AbortController();
    kernels.catch(() => stopUpload.abort());
    const signal = options.signal ? AbortSignal.any([options.signal, stopUpload.signal]) : stopUpload.signal;
    let weights: GpuTensors;
    try {
      // The embedding table too: a tied model's LM head is the largest matrix (Llama-3.2-1B: 525 MB in f16).
      const quantize = options.quantize ? { kind: options.quantize, select: (t: { name: string }) => names.linear.has(t.name) || t.name === names.embed } : undefined;
      const prequantized = packed.length ? { linears: packed, perms } : undefined;
      weights = await loadTensors(checkpoint, device, { dtype: options.dtype, filter: (t) => names.all.has(t.name), quantize, prequantized, signal, onProgress: options.onProgress });
    } catch (e) {
      const kernelError = await kernels.then((k) => (k.destroy(), null), (err: unknown) => err);
      throw kernelError ?? e;
    }
    const model = new LlamaModel(device, config, weights.computeDtype, contextLength, weights, names, slots, family);
    try {
      const ops = model.own(await kernels);
      model.splitFused();
      await model.joinGateUp(ops);
      await model.joinQkv();
      await model.foldNorms(ops);
      model.build(ops);
    } catch (e) {
      model.dispose();
      throw e;
    }
    return model;
  }

  /** Frees every GPU buffer the model made (weights, cache, activations, params). */
  dispose(): void {
    for (const o of this.owned.splice(0).reverse()) o.destroy();
    this.weights.destroy();
  }

  private weight(name: string | null): GpuTensor {
    const t = name === null ? undefined : this.weights.get(name);
    if (!t) throw new Error(`model: weight ${name} was not loaded`);
    return t;
  }

  private buffer(label: string, bytes: number): GPUBuffer {
    const buffer = this.device.createBuffer({
      label,
      size: Math.max(16, Math.ceil(bytes / 16) * 16),
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
    });
    this.owned.push(buffer);
    return buffer;
  }

  private own<T extends { destroy(): void }>(x: T): T {
    this.owned.push(x);
    return x;
  }

  /**
   * gate_proj and up_proj of a layer → one (2I, h) tensor of rows [gate; up] by GPU
   * copies, so the MLP runs one linear into [gate | up] per token row and the fused
   * activation (Phi-3's layout): one dispatch fewer per layer. Biased gate/up stay apart.
   */
  private async joinGateUp(ops: Kernels): Promise<void> {
    if (!ops.mlpActJoined) return;
    for (const [i, l] of this.names.layers.entries()) {
      if ('fused' in l.gateUp || l.gateBias !== null || l.upBias !== null) continue;
      const name = `${l.gateUp.gate}+${l.gateUp.up}`;
      if (await this.joinRows([l.gateUp.gate, l.gateUp.up], name)) this.joinedGateUp.set(i, name);
    }
  }

  /**
   * Linears `names` (all dense, or all quantized with one input permutation and rows of
   * whole words) → one tensor `joined` of their rows in order, and `biases` (all three or
   * none) likewise, by GPU copies; the parts are freed once copied. One layer at a time,
   * so device memory peaks at one layer's parts more than the loaded weights. False, and
   * nothing done, where the parts cannot join.
   */
  private async joinRows(names: readonly string[], joined: string, biases?: { names: readonly string[]; joined: string }): Promise<boolean> {
    const dense = names.map((n) => this.weights.get(n));
    const packed = names.map((n) => this.weights.quantized.get(n));
    const perm = this.weights.inputPerms.get(names[0]);
    let free: () => void;
    if (dense.every((t) => t !== undefined)) {
      this.weights.set(joined, concatRows(this.device, joined, dense));
      free = () => dense.forEach(destroyTensor);
    } else if (packed.every((t) => t !== undefined) && packed.every(rowsWordAligned) && names.every((n) => this.weights.inputPerms.get(n) === perm)) {
      this.weights.quantized.set(joined, concatQuantizedRows(this.device, joined, packed));
      if (perm) this.weights.inputPerms.set(joined, perm);
      names.forEach((n) => this.weights.inputPerms.delete(n));
      free = () => packed.forEach(destroyQuantized);
    } else {
      return false;
    }
    const biasParts = biases ? biases.names.map((n) => this.weight(n)) : [];
    if (biases) this.weights.set(biases.joined, concatVectors(this.device, biases.joined, biasParts));
    for (const n of [...names, ...(biases?.names ?? [])]) {
      this.weights.delete(n);
      this.weights.quantized.delete(n);
    }
    await quietWait(this.device, () => this.device.queue.onSubmittedWorkDone()); // as the loader waits
    free();
    biasParts.forEach(destroyTensor);
    return true;
  }

  /**
   * Each layer's input_norm and pre_mlp_norm into the linears that read the norm's output
   * (q/k/v and gate/up, joined or not), so a decode row needs no norm dispatch: the RMS_NORM
   * gemvs normalise the residual stream themselves. Where the norm's weight w multiplies
   * (compileKernels compiled the ops: canFoldNorms, canFuseQuantizedNorms):
   * - dense linears: w goes into their columns, W ← W·diag(w), once, on the GPU
   *   (ScaleColumns); a pass of several rows norms with a unit weight before its matmuls.
   *   In f16, W·w rounds once where HF rounds the normed row twice (x·s, then w·): the same
   *   size of error, in another place.
   * - quantized linears (w cannot scale quantized columns): the RMS_NORM qgemv applies w to
   *   x itself, and other passes norm as before. Not where an act-order input permutation
   *   comes first (x would need w permuted too).
   */
  private async foldNorms(ops: Kernels): Promise<void> {
    const folds: PreparedOp[] = [];
    for (const [i, l] of this.names.layers.entries()) {
      const qkv = this.joinedQkv.get(i);
      const gateUp = 'fused' in l.gateUp ? [l.gateUp.fused] : this.joinedGateUp.has(i) ? [this.joinedGateUp.get(i)!] : [l.gateUp.gate, l.gateUp.up];
      const readers: [norm: string, linears: string[]][] = [[l.inputNorm, qkv ? [qkv.weight] : [l.q, l.k, l.v]], [l.preMlpNorm, gateUp]];
      for (const [norm, linears] of readers) {
        const dense = linears.every((n) => this.weights.has(n));
        if (dense && ops.scaleColumns) {
          for (const name of linears) folds.push(ops.scaleColumns.prepare(`model.fold.${name}`, this.weight(name), this.weight(norm)));
          this.foldedNorms.add(norm);
        } else if (ops.qGemvRms && linears.every((n) => this.weights.quantized.has(n) && !this.weights.inputPerms.has(n))) {
          this.qgemvNorms.add(norm);
        }
      }
    }
    if (!folds.length) return;
    const like = this.weight(this.names.layers[0].inputNorm);
    this.unitNorm = this.own(unitVector(this.device, 'model.unit_norm', like));
    try {
      await runOps(this.device, folds, 'model.fold_norms');
    } finally {
      folds.forEach((op) => op.destroy());
    }
    // Nothing reads a folded norm's weight again (passes of several rows take unitNorm).
    for (const norm of this.foldedNorms) {
      destroyTensor(this.weight(norm));
      this.weights.delete(norm);
    }
  }

  /** Phi-3's fused qkv_proj → q, k, v by GPU copies (the fused tensor is freed after); joinQkv then joins dense ones again. */
  private splitFused(): void {
    for (const split of this.names.splits) {
      const fused = this.weight(split.from);
      splitRows(this.device, fused, split.parts).forEach((t) => this.weights.set(t.name, t));
      this.weights.delete(split.from);
      void this.device.queue.onSubmittedWorkDone().then(() => fused.chunks.forEach((c) => c.buffer.destroy()));
    }
  }

  /**
   * q_proj, k_proj and v_proj of a layer (and their biases, when all three have one) → one
   * ((nHeads + 2·nKvHeads)·headDim, h) tensor of rows [q; k; v] (joinRows), so each token
   * row takes one linear into [q | k | v], which qkv_rope_store reads as three views: two
   * dispatches fewer per layer.
   */
  private async joinQkv(): Promise<void> {
    for (const [i, l] of this.names.layers.entries()) {
      const biasNames = [l.qBias, l.kBias, l.vBias];
      if (biasNames.some((b) => b !== null) && biasNames.some((b) => b === null)) continue; // some biased, some not: apart
      const weight = `${l.q}+${l.k}+${l.v}`;
      const bias = biasNames.every((b) => b !== null) ? { names: biasNames as string[], joined: `${l.qBias}+${l.kBias}+${l.vBias}` } : undefined;
      if (await this.joinRows([l.q, l.k, l.v], weight, bias)) this.joinedQkv.set(i, { weight, bias: bias?.joined ?? null });
    }
  }

  private build(ops: Kernels): void {
    const { device, config, dtype } = this;
    const { hiddenSize: h, intermediateSize: inter, numHeads, numKvHeads, headDim, vocabSize, features: f } = config;
    const qDim = numHeads * headDim;
    const kvDim = numKvHeads * headDim;
    const w = computeBytes(dtype);
    const P = PREFILL_CHUNK;
    const maxSeq = this.contextLength;
    const perms = this.weights.inputPerms;
    // The widest input an act-order linear has (its permuted copy's row width).
    const permutedWidth = Math.max(0, ...[...perms.keys()].map((name) => this.weights.quantized.get(name)!.shape[1]));

    // ─── buffers ───
    this.history = new Uint32Array(maxSeq);
    this.hidden = this.buffer('model.hidden', P * h * w); // (P, h)
    const S = this.slots;
    this.lastRow = this.buffer('model.last_row', S * h * w); // (S, h): decode rows (prefill's last row lands in row 0)
    this.logits = this.buffer('model.logits', S * vocabSize * 4); // (S, V) f32
    const [joined, L] = [this.joinedGateUp.size, this.names.layers.length];
    const qkvWidth = qDim + 2 * kvDim;
    const act = (name: string, rows: number) => ({
      normed: this.buffer(`model.${name}.normed`, rows * h * w), // (T, h)
      // q, k, v straight out of their projections: one joined [q | k | v] per row (joinQkv), or three
      qkv: this.joinedQkv.size ? this.buffer(`model.${name}.qkv`, rows * qkvWidth * w) : null, // (T, q + 2·kv)
      qIn: this.joinedQkv.size < L ? this.buffer(`model.${name}.q_in`, rows * qDim * w) : null, // (T, nHeads, headDim)
      kIn: this.joinedQkv.size < L ? this.buffer(`model.${name}.k_in`, rows * kvDim * w) : null, // (T, nKvHeads, headDim)
      vIn: this.joinedQkv.size < L ? this.buffer(`model.${name}.v_in`, rows * kvDim * w) : null, // (T, nKvHeads, headDim)
      q: this.buffer(`model.${name}.q`, rows * qDim * w), // (T, nHeads, headDim) normed and rotated: attention's queries
      attn: this.buffer(`model.${name}.attn`, rows * qDim * w), // (T, nHeads, headDim)
      proj: this.buffer(`model.${name}.proj`, rows * h * w), // (T, h) o_proj / down_proj output
      gateUp: this.buffer(`model.${name}.gate_up`, rows * (f.fused || joined > 0 ? 2 : 1) * inter * w), // (T, 2I) [gate | up] per row (fused or joined), else (T, I) gate
      up: f.fused || joined === L ? null : this.buffer(`model.${name}.up`, rows * inter * w), // (T, I)
      mlp: this.buffer(`model.${name}.mlp`, rows * inter * w), // (T, I) act(gate)·up
      // an act-order linear's input, its columns in the order its weight was repacked to
      permuted: perms.size ? this.buffer(`model.${name}.permuted`, rows * permutedWidth * w) : null, // (T, K)
    });
    const bufs = { prefill: act('prefill', P), decode: act('decode', S) };
    // KV cache: per layer (slots, nKvHeads, maxSeq, headDim) for K and for V.
    const cache = this.names.layers.map((_, i) => ({
      k: this.buffer(`model.layers.${i}.k_cache`, S * numKvHeads * maxSeq * headDim * w),
      v: this.buffer(`model.layers.${i}.v_cache`, S * numKvHeads * maxSeq * headDim * w),
    }));
    const attnShape = { nHeads: numHeads, nKvHeads: numKvHeads, headDim, maxSeq, slots: S };
    const decodeScratch = maxSeq > 256 ? this.own(ops.attention.decodeScratch('model.decode.attention', attnShape, S)) : undefined;

    // ─── the two passes: the forward pass, top to bottom ───
    const pass = (kind: 'prefill' | 'decode', rows: number, x: GPUBuffer): Pass => {
      const b = bufs[kind];
      const tag = kind === 'prefill' ? `prefill${rows}` : rows > 1 ? `decode${rows}` : kind; // labels: prefill8.layers.0.q_proj
      // the token ids ride in the step buffer too: one writeBuffer per call (issue 21)
      const step = this.own(new Step(device, `model.${tag}`, { rows, positions: maxSeq, slots: S, ids: true }));
      // One row: gemv. A batched decode: gemvs over its rows where they can (batch.gemv),
      // else, and for a prefill chunk, a matmul, its tile by the rows.
      const gemv = rows === 1;
      const batch = kind === 'decode' && rows > 1 ? ops.decodeBatch.get(rows)! : null;
      const gemvRows = batch?.gemv ?? null;
      // A layer norm the linears after it apply themselves (foldNorms): `inLinear` where they
      // normalise their input here (the RMS_NORM gemvs: folded ones in one row or a batched
      // pass's, quantized ones in one row); `weight`, what a norm dispatch or a quantized
      // RMS_NORM gemv takes: null for a folded norm (a unit weight, as W carries it).
      const rmsGemv = gemv ? ops.gemvRms !== null : (gemvRows?.rms ?? null) !== null;
      const normPlan = (name: string): { inLinear: boolean; weight: string | null } =>
        this.foldedNorms.has(name) ? { inLinear: rmsGemv, weight: null } : { inLinear: gemv && this.qgemvNorms.has(name), weight: name };
      const small = rows <= SMALL_PREFILL_ROWS;
      const out: Pass = { ops: [], step };
      // What b.permuted holds: `input` gathered by `perm`, valid until any other op runs.
      let permuted: { input: GPUBuffer; perm: GPUBuffer } | null = null;
      const add = <T extends PreparedOp>(op: T): T => ((permuted = null), out.ops.push(this.own(op)), op);
      // A residual kernel may be absent (the caller adds on its own); a plain one may not.
      const missing = (label: string, residual: boolean): false => {
        if (residual) return false;
        throw new Error(`${label}: no kernel was compiled for this linear`);
      };
      // output = W·input (+ b); with `residual`, output += W·input (+ b) (output is the residual
      // stream) where the weight's kind has a residual kernel here, else nothing is added and
      // the answer is false (project() then adds on its own). With `glu` (one row, or a
      // batched decode pass's after a folded norm), W is the MLP's [gate; up] and output =
      // act(gate·input) · (up·input), one dispatch, where a GLU gemv of the weight's kind is
      // here and its rows are one chunk; else the answer is false (the caller projects, then
      // runs the activation).
      const linear = (label: string, weight: string, bias: string | null, input: GPUBuffer, output: GPUBuffer, { residual = false, glu = false, normed = true, norm = null as string | null } = {}): boolean => {
        const bt = bias === null ? undefined : this.weight(bias);
        const qt = this.weights.quantized.get(weight);
        // a batched decode pass's GLU gemv takes a folded norm's input (gemvRows.rmsGlu) only
        if (glu && !((gemv || (!normed && !qt && gemvRows?.rmsGlu)) && bt === undefined && !residual && (qt ?? this.weight(weight)).chunks.length === 1)) return false;
        // !normed: input is the residual stream and the norm before this linear is in it
        // (foldNorms): the RMS_NORM gemv normalises it (one row, or a batched pass's); a
        // quantized one takes the norm's weight too.
        if (!normed && qt) {
          const op = residual ? null : glu ? ops.qGemvRmsGlu : bt ? ops.qGemvRmsBias : ops.qGemvRms;
          if (!op || norm === null || (glu && op.glu !== f.act)) throw new Error(`${label}: no RMS_NORM qgemv was compiled for this linear`);
          add(op.prepare(label, qt, input, output, bt, this.weight(norm)));
          return true;
        }
        if (!normed) {
          const rms = gemv ? { plain: ops.gemvRms, bias: ops.gemvRmsBias } : { plain: gemvRows?.rms, bias: gemvRows?.rmsBias };
          const op = residual ? null : glu ? (gemv ? ops.gemvRmsGlu : gemvRows?.rmsGlu) : bt ? rms.bias : rms.plain;
          if (!op || (glu && op.glu !== f.act)) throw new Error(`${label}: no RMS_NORM gemv was compiled for this folded linear`);
          add(op.prepare(label, this.weight(weight), input, output, bt));
          return true;
        }
        if (qt) {
          // [weight kind][compute dtype]: the quantized ops, chosen once the weight says so
          const op = glu ? (ops.qGemvGlu?.glu === f.act ? ops.qGemvGlu : null)
            : gemv ? (residual ? (bt ? ops.qGemvResidualBias : ops.qGemvResidual) : bt ? ops.qGemvBias : ops.qGemv)
            : small ? (residual ? (bt ? ops.qMatmulSmallResidualBias : ops.qMatmulSmallResidual) : bt ? ops.qMatmulSmallBias : ops.qMatmulSmall)
            : residual ? (bt ? ops.qMatmulResidualBias : ops.qMatmulResidual) : bt ? ops.qMatmulBias : ops.qMatmul;
          if (!op) return missing(label, residual || glu);
          // act-order: x' = x[:, perm], once for the linears that share an input and a perm (q/k/v, gate/up)
          const perm = perms.get(weight);
          const before = permuted;
          if (perm && !(before?.input === input && before.perm === perm)) add(ops.permute!.prepare(`${label}.permute`, rows, qt.shape[1], perm, input, b.permuted!));
          const x = perm ? b.permuted! : input;
          add(op instanceof QGemv ? op.prepare(label, qt, x, output, bt) : op.prepare(label, rows, qt, x, output, bt));
          // A linear writes only `output`: the gathered copy stays valid unless that was its input.
          permuted = perm ? { input, perm } : before?.input !== output ? before : null;
          return true;
        }
        const wt = this.weight(weight);
        const op = glu ? (ops.gemvGlu.glu === f.act ? ops.gemvGlu : null)
          : gemv ? (residual ? (bt ? ops.gemvResidualBias : ops.gemvResidual) : bt ? ops.gemvBias : ops.gemv)
          : gemvRows ? (residual ? (bt ? gemvRows.residualBias : gemvRows.residual) : bt ? gemvRows.bias : gemvRows.plain)
          : small ? (residual ? (bt ? ops.matmulSmallResidualBias : ops.matmulSmallResidual) : bt ? ops.matmulSmallBias : ops.matmulSmall)
          : residual ? (bt ? ops.matmulResidualBias : ops.matmulResidual) : bt ? ops.matmulBias : ops.matmul;
        if (!op) return missing(label, residual || glu);
        add(isGemv(op) ? op.prepare(label, wt, input, output, bt) : op.prepare(label, rows, wt, input, output, bt));
        return true;
      };
      // weight null: a unit weight (the norm's own is folded into the linears after it)
      const norm = (label: string, weight: string | null, input: GPUBuffer, output: GPUBuffer, normRows = rows, width = h) =>
        add(ops.norm.prepare(label, normRows, width, input, weight === null ? this.unitNorm! : this.weight(weight), output));
      // x = x + post_norm?(W·input (+ b)) for o_proj and down_proj. A linear with no
      // post-norm adds into x in its epilogue (one dispatch, not two). Gemma's post-normed
      // blocks project into b.proj, then one norm_add_norm adds post_norm(b.proj) into x and
      // writes `next`'s norm of the new x (the following pre-norm) into b.normed: returns
      // whether it did.
      const project = (label: string, weight: string, bias: string | null, input: GPUBuffer, residualLabel: string, postNorm: string | null, next: string | null): boolean => {
        if (postNorm !== null) {
          linear(label, weight, bias, input, b.proj);
          const nextNorm = next === null ? null : { weight: this.weight(next), out: b.normed };
          add(ops.normAddNorm!.prepare(residualLabel, rows, h, b.proj, this.weight(postNorm), x, nextNorm));
          return next !== null;
        }
        if (!linear(label, weight, bias, input, x, { residual: true })) {
          linear(label, weight, bias, input, b.proj);
          add(ops.add.prepare(residualLabel, rows * h, x, b.proj));
        }
        return false;
      };
      // x = embed_tokens(ids) · embed_scale (Gemma: √hidden)
      const qEmbed = this.weights.quantized.get(this.names.embed);
      const embedOptions = { scale: f.embedScale ?? undefined };
      add(qEmbed
        ? ops.qEmbedding!.prepare(`${tag}.embed`, rows, step.ids!, qEmbed, x, embedOptions)
        : ops.embedding.prepare(`${tag}.embed`, rows, step.ids!, this.weight(this.names.embed), x, embedOptions));
      let inputNormed = false; // b.normed holds this layer's input_norm(x): the previous layer's norm_add_norm wrote it
      this.names.layers.forEach((l, i) => {
        const p = `${tag}.layers.${i}`;
        const kindOf = f.layers[i];
        // ── attention: x = x + post?(o_proj(attn(rope(q_norm?(q_proj(rms(x)))), rope(k_norm?(k_proj(rms(x)))), v_proj(rms(x)))))
        // A norm folded into the linears after it (foldNorms): the RMS_NORM gemvs normalise
        // (no dispatch here); a prefill's matmuls take rows normed with a unit weight, as W
        // carries the norm's.
        const inputPlan = normPlan(l.inputNorm);
        const normedIn = inputPlan.inLinear ? x : b.normed;
        if (!inputNormed && !inputPlan.inLinear) norm(`${p}.input_norm`, inputPlan.weight, x, b.normed);
        const inOpts = { normed: !inputPlan.inLinear, norm: inputPlan.weight };
        const joinedQkv = this.joinedQkv.get(i);
        const rope = kindOf.rope === null ? null : ops.ropeOf.get(kindOf.rope)!.op;
        const scaled = rope !== null && Math.fround(rope.attentionFactor) !== 1;
        const glueShape = { nHeads: numHeads, nKvHeads: numKvHeads, headDim, maxSeq, slots: S, rows };
        // A decode pass's gemvs: the joined q/k/v projection rotates q and k and stores k and
        // v itself (the ROPE_STORE gemv: no dispatch for the glue), where this layer has no
        // q/k norm and a kernel that normalises its input as inputPlan says. Quantized q/k/v:
        // one row's qgemv, where the device binds its buffers (not an act-order one, whose
        // input is gathered first).
        const qkvQuantized = joinedQkv && this.weights.quantized.get(joinedQkv.weight);
        const ropeStores = kind !== 'decode' || !joinedQkv ? null
          : qkvQuantized ? (gemv && !perms.has(joinedQkv.weight) ? ops.qRopeStore : null)
          : gemv ? ops.ropeStore : gemvRows?.ropeStore ?? null;
        const ropeStore = ropeStores && l.qNorm === null && l.kNorm === null
          ? ropeStores[scaled ? (joinedQkv!.bias ? 'scaledBias' : 'scaled') : joinedQkv!.bias ? 'bias' : 'plain']
          : null;
        if (ropeStore && joinedQkv && (ropeStore.rmsNorm !== null) === inputPlan.inLinear) {
          const label = `${p}.qkv_proj_rope_store`;
          const targets = { shape: glueShape, step, qOut: b.q, kCache: cache[i].k, vCache: cache[i].v, rope };
          const bias = joinedQkv.bias === null ? undefined : this.weight(joinedQkv.bias);
          add(ropeStore instanceof QGemv
            ? ropeStore.prepareRopeStore(label, qkvQuantized!, normedIn, targets, bias, inputPlan.inLinear ? this.weight(inputPlan.weight!) : undefined)
            : ropeStore.prepareRopeStore(label, this.weight(joinedQkv.weight), normedIn, targets, bias));
        } else {
          let views: { q: RowView; k: RowView; v: RowView };
          if (joinedQkv) {
            linear(`${p}.qkv_proj`, joinedQkv.weight, joinedQkv.bias, normedIn, b.qkv!, inOpts);
            const view = (offset: number): RowView => ({ buffer: b.qkv!, offset, stride: qkvWidth });
            views = { q: view(0), k: view(qDim), v: view(qDim + kvDim) };
          } else {
            linear(`${p}.q_proj`, l.q, l.qBias, normedIn, b.qIn!, inOpts);
            linear(`${p}.k_proj`, l.k, l.kBias, normedIn, b.kIn!, inOpts);
            linear(`${p}.v_proj`, l.v, l.vBias, normedIn, b.vIn!, inOpts);
            views = { q: { buffer: b.qIn!, offset: 0, stride: qDim }, k: { buffer: b.kIn!, offset: 0, stride: kvDim }, v: { buffer: b.vIn!, offset: 0, stride: kvDim } };
          }
          // q_norm/k_norm per head (modeling_qwen3.py), rope, and k, v into the cache: one dispatch
          const glue = scaled ? ops.qkvRopeStoreScaled! : ops.qkvRopeStore;
          add(glue.prepare(`${p}.qkv_rope_store`, glueShape, {
            step, ...views, qOut: b.q, kCache: cache[i].k, vCache: cache[i].v, rope,
            ...(l.qNorm !== null && l.kNorm !== null ? { qNorm: this.weight(l.qNorm), kNorm: this.weight(l.kNorm) } : {}),
          }));
        }
        const shape = { ...attnShape, scale: f.attnScale, softcap: f.attnSoftcap, window: kindOf.window };
        const attnBuffers = { step, q: b.q, kCache: cache[i].k, vCache: cache[i].v, out: b.attn };
        add(kind === 'decode'
          ? ops.attention.prepareDecode(`${p}.attention`, shape, attnBuffers, decodeScratch)
          : ops.attention.prepare(`${p}.attention`, shape, attnBuffers));
        const mlpNormed = project(`${p}.o_proj`, l.o, l.oBias, b.attn, `${p}.attn_residual`, l.postAttnNorm, l.preMlpNorm);
        // ── MLP: x = x + post?(down_proj(act(gate_proj(rms(x))) · up_proj(rms(x))))
        const mlpPlan = normPlan(l.preMlpNorm);
        const normedMlp = mlpPlan.inLinear ? x : b.normed;
        if (!mlpNormed && !mlpPlan.inLinear) norm(`${p}.pre_mlp_norm`, mlpPlan.weight, x, b.normed);
        const mlpOpts = { normed: !mlpPlan.inLinear, norm: mlpPlan.weight };
        const joinedGateUp = this.joinedGateUp.get(i);
        const gateUp = 'fused' in l.gateUp ? l.gateUp.fused : joinedGateUp;
        if (gateUp !== undefined && linear(`${p}.gate_up_act`, gateUp, null, normedMlp, b.mlp, { ...mlpOpts, glu: true })) {
          // gate_up_proj and the activation in one decode dispatch (the GLU gemv)
        } else if ('fused' in l.gateUp) {
          // gate_up_proj's rows are [gate; up]: each output row is [gate | up] (modeling_phi3.py chunk(2))
          linear(`${p}.gate_up_proj`, l.gateUp.fused, null, normedMlp, b.gateUp, mlpOpts);
          add(ops.mlpAct.prepare(`${p}.mlp_act`, rows, inter, [b.gateUp], b.mlp));
        } else if (joinedGateUp !== undefined) {
          // gate_proj and up_proj joined at load (joinGateUp): the same [gate | up] rows
          linear(`${p}.gate_up_proj`, joinedGateUp, null, normedMlp, b.gateUp, mlpOpts);
          add(ops.mlpActJoined!.prepare(`${p}.mlp_act`, rows, inter, [b.gateUp], b.mlp));
        } else {
          linear(`${p}.gate_proj`, l.gateUp.gate, l.gateBias, normedMlp, b.gateUp, mlpOpts);
          linear(`${p}.up_proj`, l.gateUp.up, l.upBias, normedMlp, b.up!, mlpOpts);
          add(ops.mlpAct.prepare(`${p}.mlp_act`, rows, inter, [b.gateUp, b.up!], b.mlp));
        }
        const nextLayer = this.names.layers[i + 1];
        inputNormed = project(`${p}.down_proj`, l.down, l.downBias, b.mlp, `${p}.mlp_residual`, l.postMlpNorm, nextLayer?.inputNorm ?? null);
      });
      return out;
    };
    this.prefill = new Map(PREFILL_ROWS.map((rows) => [rows, pass('prefill', rows, this.hidden)]));
    this.decode = pass('decode', 1, this.lastRow);
    this.batchRowCounts = [...ops.decodeBatch.keys()].sort((a, b) => a - b);
    for (const rows of this.batchRowCounts) this.decodeBatch.set(rows, pass('decode', rows, this.lastRow));
    // logits = softcap?(lm_head(rms(x_last))), f32, for the first `rows` rows of lastRow
    const qHead = this.weights.quantized.get(this.names.lmHead);
    const headPerm = perms.get(this.names.lmHead); // GPTQModel's lm_head: true with desc_act
    const headInput = headPerm ? bufs.decode.permuted! : bufs.decode.normed;
    const head = (rows: number): PreparedOp[] => {
      const tag = rows > 1 ? `head${rows}` : 'head';
      const lmHead = (): PreparedOp => {
        if (rows === 1) {
          return qHead
            ? ops.qLmHead!.prepare(`${tag}.lm_head`, qHead, headInput, this.logits)
            : ops.lmHead.prepare(`${tag}.lm_head`, this.weight(this.names.lmHead), bufs.decode.normed, this.logits);
        }
        const batch = ops.decodeBatch.get(rows)!;
        if (qHead) return batch.qLmHead!.prepare(`${tag}.lm_head`, rows, qHead, headInput, this.logits);
        const headRows = batch.lmHead;
        const weight = this.weight(this.names.lmHead);
        return isGemv(headRows)
          ? headRows.prepare(`${tag}.lm_head`, weight, bufs.decode.normed, this.logits)
          : headRows.prepare(`${tag}.lm_head`, rows, weight, bufs.decode.normed, this.logits);
      };
      return [
        this.own(ops.norm.prepare(`${tag}.norm`, rows, h, this.lastRow, this.weight(this.names.norm), bufs.decode.normed)),
        ...(headPerm ? [this.own(ops.permute!.prepare(`${tag}.permute`, rows, h, headPerm, bufs.decode.normed, headInput))] : []),
        this.own(lmHead()),
        ...(f.finalSoftcap !== null ? [this.own(ops.softcap!.prepare(`${tag}.softcap`, rows * vocabSize, this.logits, f.finalSoftcap))] : []),
      ];
    };
    this.head = head(1);
    this.decodeStep = [...this.decode.ops, ...this.head];
    for (const [rows, batchPass] of this.decodeBatch) this.decodeBatchStep.set(rows, [...batchPass.ops, ...head(rows)]);
    this.ropeTables = [...ops.ropeOf.values()];
  }

  /**
   * Runs `ids` at positions [start, start + ids.length) of the sequence in KV slot `slot`
   * through the model, writing their keys and values to the cache, and (unless `head` is
   * false) leaves the last token's logits in row 0 of `logits`. `after` may encode more
   * work (sampling) into the same command buffer as the head.
   */
  async forward(ids: readonly number[], start: number, after?: (encoder: GPUCommandEncoder) => void, slot = 0, head = true): Promise<void> {
    if (ids.length === 0) throw new SluiceError('USAGE', 'forward: no tokens');
    if (start + ids.length > this.contextLength) {
      throw new SluiceError('USAGE', `the context is full: positions [${start}, ${start + ids.length}) exceed the KV cache (${this.contextLength})`);
    }
    if (!(Number.isInteger(slot) && slot >= 0 && slot < this.slots)) throw new SluiceError('USAGE', `forward: slot ${slot} is not in [0, ${this.slots})`);
    const { device } = this;
    const h = this.config.hiddenSize;
    const w = computeBytes(this.dtype);
    // The call's rope tables, as transformers picks them: by its highest position + 1. A
    // switch that invalidates the cached keys re-runs the whole sequence from position 0.
    // (A model with several slots never switches: load checks the context against the threshold.)
    this.history.set(ids, start);
    let rerotate = false;
    for (const table of this.ropeTables) rerotate = table.update(start, start + ids.length) || rerotate;
    if (rerotate) {
      ids = Array.from(this.history.subarray(0, start + ids.length));
      start = 0;
    }
    if (ids.length === 1 && head) {
      this.decode.step.writeRange(start, 1, slot, ids); // the one upload of a decode token
      this.submitDecode(this.decodeStep, 'model.decode', after);
      return;
    }
    // Prefill in chunks; the queue orders each chunk's step write (rows and ids) with its submit.
    for (let at = 0; at < ids.length; at += PREFILL_CHUNK) {
      const chunk = ids.slice(at, at + PREFILL_CHUNK);
      const prefill = this.prefill.get(PREFILL_ROWS.find((rows) => rows >= chunk.length)!)!;
      prefill.step.writeRange(start + at, chunk.length, slot, chunk);
      const encoder = device.createCommandEncoder({ label: 'model.prefill' });
      const passEncoder = encoder.beginComputePass({ label: 'model.prefill' });
      for (const op of prefill.ops) encodeOp(passEncoder, op);
      passEncoder.end();
      if (head && at + PREFILL_CHUNK >= ids.length) {
        // The last token's row of the residual stream → the decode row, for the LM head.
        encoder.copyBufferToBuffer(this.hidden, (chunk.length - 1) * h * w, this.lastRow, 0, h * w);
        const headPass = encoder.beginComputePass({ label: 'model.head' });
        for (const op of this.head) encodeOp(headPass, op);
        headPass.end();
        after?.(encoder);
      }
      device.queue.submit([encoder.finish()]);
    }
  }

  /**
   * Where the one-row decode pass reads its token id, (1,) u32 in its step: a sampler may
   * copy the id it draws there on the GPU, for forwardFed.
   */
  get decodeIdSlot(): Readonly<GPUBufferBinding> {
    return this.decode.step.ids!;
  }

  /**
   * One decode row at `position` of `slot` whose token id the GPU already put in
   * decodeIdSlot (a sampler's copy of the id it drew: nothing is written for it), so the
   * host can submit it before it has read that id. Returns false and submits nothing where
   * the call would need the id on the host: past the context, or a rope table switch that
   * rotates the cache again (forward() re-runs the sequence from its history then). Call
   * recordFed(id, position) once the id is known.
   */
  forwardFed(position: number, slot: number, after?: (encoder: GPUCommandEncoder) => void): boolean {
    if (!(Number.isInteger(position) && position >= 0 && position < this.contextLength)) return false;
    for (const table of this.ropeTables) if (table.wouldRerotate(position, position + 1)) return false;
    for (const table of this.ropeTables) table.update(position, position + 1);
    this.decode.step.writeRange(position, 1, slot); // positions only: the id is the GPU's
    this.submitDecode(this.decodeStep, 'model.decode', after);
    return true;
  }

  /** The id a forwardFed call at `position` ran on, once read back: the host's copy of the sequence (for a re-run). */
  recordFed(id: number, position: number): void {
    this.history[position] = id;
  }

  /** Writes the keys and values of `ids` at [start, …) of `slot`, without the LM head (a prompt's chunks before its last id). */
  async prefillSlot(slot: number, ids: readonly number[], start: number): Promise<void> {
    await this.forward(ids, start, undefined, slot, false);
  }

  /**
   * One decode pass over `rows`, each the next id of the sequence in its own slot at its
   * own position: row r's logits land in row r of `logits`; `after` encodes the sampling.
   * One row runs the gemv pass; more run the batched pass (small matmuls read each weight
   * once for all rows).
   */
  async decodeRows(rows: readonly { slot: number; id: number; position: number }[], after?: (encoder: GPUCommandEncoder) => void): Promise<void> {
    const n = rows.length;
    if (n === 1) {
      this.oneId[0] = rows[0].id; // forward reads it before it returns: reused, nothing allocated per token
      return this.forward(this.oneId, rows[0].position, after, rows[0].slot);
    }
    // The smallest batched pass that holds the rows: its step says how many run.
    let rowsOf: number | undefined;
    for (let i = 0; i < this.batchRowCounts.length && rowsOf === undefined; i++) if (this.batchRowCounts[i] >= n) rowsOf = this.batchRowCounts[i];
    if (!(n >= 1) || rowsOf === undefined) throw new SluiceError('USAGE', `decodeRows: ${n} rows, this model decodes 1 to ${this.slots}`);
    const batchPass = this.decodeBatch.get(rowsOf)!;
    const positions = this.rowPositions[n];
    const slots = this.rowSlots[n];
    const ids = this.rowIds[n];
    for (let r = 0; r < n; r++) {
      positions[r] = rows[r].position;
      slots[r] = rows[r].slot;
      ids[r] = rows[r].id;
    }
    batchPass.step.write(positions, slots, ids); // checks positions, slots and ids; the one upload
    this.submitDecode(this.decodeBatchStep.get(rowsOf)!, 'model.decode_rows', after);
  }

  private submitDecode(ops: readonly PreparedOp[], label: DecodeLabel, after?: (encoder: GPUCommandEncoder) => void): void {
    const descriptor = DECODE_DESCRIPTORS[label]; // made once: nothing allocated per token
    const encoder = this.device.createCommandEncoder(descriptor);
    const pass = encoder.beginComputePass(descriptor);
    for (const op of ops) encodeOp(pass, op);
    pass.end();
    after?.(encoder);
    submitOne(this.device, encoder);
  }

  /** Bytes of the KV cache (all slots and layers, keys and values). */
  get kvCacheBytes(): number {
    const { numLayers, numKvHeads, headDim } = this.config;
    return 2 * numLayers * this.slots * numKvHeads * this.contextLength * headDim * computeBytes(this.dtype);
  }

  /** Dispatches one decode step encodes (all layers and the LM head; sampling not included). */
  get decodeDispatches(): number {
    return [...this.decode.ops, ...this.head].reduce((n, op) => n + op.dispatches.length, 0);
  }

  /** Dispatches a batched decode step of `rows` rows encodes (a row count of decodeRows' passes), or undefined where there is no such pass. */
  decodeRowsDispatches(rows: number): number | undefined {
    return this.decodeBatchStep.get(rows)?.reduce((n, op) => n + op.dispatches.length, 0);
  }

  /**
   * Weight bytes one decode step reads: every matrix and norm once (a folded norm lives in
   * its linears' columns), the LM head whole; the embedding table only for its one row
   * (unless it is also the tied LM head).
   */
  get weightBytesPerToken(): number {
    let bytes = 0;
    for (const [name, t] of this.weights) if (name !== this.names.embed || this.names.lmHead === name) bytes += t.byteLength;
    for (const [name, t] of this.weights.quantized) if (name !== this.names.embed || this.names.lmHead === name) bytes += t.byteLength; // packed data + scales + zeros
    return bytes + this.config.hiddenSize * computeBytes(this.dtype);
  }

  /** The last forward's logits, read back (tests, `--json` debugging; not per token). */
  async readLogits(): Promise<Float32Array> {
    const bytes = await readBuffer(this.device, this.logits, 0, this.config.vocabSize * 4);
    return new Float32Array(bytes.buffer, bytes.byteOffset, this.config.vocabSize);
  }
}

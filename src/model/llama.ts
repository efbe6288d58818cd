// The Llama-family forward pass on the GPU: weights, KV cache, activations and every op's
// pipeline and bind groups made once at load; a token then costs one command buffer,
// one submit and (with sampling on the GPU) a 4-byte read back.
//
// Two prepared passes share the weights and the cache:
//   prefill  up to PREFILL_CHUNK tokens at a time: matmul + flash attention
//   decode   one token: gemv + flash-decoding over the cache
// Shapes: T = tokens in the pass, h = hidden, q = nHeads·headDim, kv = nKvHeads·headDim,
// I = intermediate, V = vocab.

import type { Checkpoint } from '../checkpoint/types.js';
import { SluiceError } from '../errors.js';
import type { GpuTensor } from '../gpu/gpu-tensor.js';
import { type DtypeChoice, type GpuTensors, loadTensors, resolveComputeDtype } from '../gpu/load-tensors.js';
import { readBuffer } from '../gpu/read-back.js';
import { Add } from '../ops/add.js';
import { Attention, type AttentionOp } from '../ops/attention.js';
import { Embedding } from '../ops/embedding.js';
import { Gemv } from '../ops/gemv.js';
import { KvStore, type KvStoreOp } from '../ops/kv-store.js';
import { Matmul } from '../ops/matmul.js';
import { type ComputeDtype, computeBytes, encodeOp, type PreparedOp } from '../ops/op.js';
import { RmsNorm } from '../ops/rms-norm.js';
import { Rope, type PreparedRope, UnsupportedRopeError } from '../ops/rope.js';
import { Swiglu } from '../ops/swiglu.js';
import type { ModelConfig, RopeScaling } from './config.js';
import type { ModelProgress } from './progress.js';
import { type WeightNames, weightNames } from './weights.js';

/** Prompt tokens per prefill pass: longer prompts run in several passes over the cache. */
export const PREFILL_CHUNK = 64;

export interface LoadModelOptions {
  dtype?: DtypeChoice;
  /** KV cache positions (default min(max_position_embeddings, 4096)). */
  contextLength?: number;
  signal?: AbortSignal;
  onProgress?: (p: ModelProgress) => void;
}

/** The ops of one pass, in order, and the ones whose positions move per call. */
interface Pass {
  ops: PreparedOp[];
  ropes: PreparedRope[];
  stores: KvStoreOp[];
  attentions: AttentionOp[];
}

export class LlamaModel {
  private readonly owned: { destroy(): void }[] = [];
  private prefill!: Pass;
  private decode!: Pass;
  private ids!: GPUBuffer; // (PREFILL_CHUNK,) u32 token ids of the pass
  private readonly idScratch = new Uint32Array(PREFILL_CHUNK); // host copy, reused every pass
  private decodeStep!: PreparedOp[]; // decode pass + head, in order: encoded every token
  private hidden!: GPUBuffer; // (PREFILL_CHUNK, h) the residual stream of prefill
  private lastRow!: GPUBuffer; // (1, h) the residual stream of decode (prefill's last row lands here)
  private head!: PreparedOp[]; // final norm + LM head on lastRow → logits
  /** (V,) f32 logits of the last token of the last pass. */
  logits!: GPUBuffer;

  private constructor(
    readonly device: GPUDevice,
    readonly config: ModelConfig,
    readonly dtype: ComputeDtype,
    readonly contextLength: number,
    readonly weights: GpuTensors,
    private readonly names: WeightNames,
  ) {}

  static async load(checkpoint: Checkpoint, config: ModelConfig, device: GPUDevice, options: LoadModelOptions = {}): Promise<LlamaModel> {
    const where = checkpoint.files[0] ?? 'checkpoint';
    const names = weightNames(config, checkpoint.tensors(), where);
    const contextLength = options.contextLength ?? Math.min(config.maxPositionEmbeddings, 4096);
    if (!Number.isInteger(contextLength) || contextLength < 1) throw new SluiceError('USAGE', `context length must be a positive integer, not ${contextLength}`);
    checkRunnable(config, contextLength, where);
    // The kernels compile while the weights stream in: both take seconds on some GPUs
    // (shader compilation is CPU work in the browser's GPU process, the upload is copies).
    const dtype = resolveComputeDtype(device, options.dtype);
    const kernels = compileKernels(device, dtype, config, options.onProgress);
    // A kernel that cannot be built (an unsupported rope, a shader error) stops the upload
    // rather than letting it run to the end for nothing.
    const stopUpload = new AbortController();
    kernels.catch(() => stopUpload.abort());
    const signal = options.signal ? AbortSignal.any([options.signal, stopUpload.signal]) : stopUpload.signal;
    let weights: GpuTensors;
    try {
      weights = await loadTensors(checkpoint, device, { dtype: options.dtype, filter: (t) => names.all.has(t.name), signal, onProgress: options.onProgress });
    } catch (e) {
      const kernelError = await kernels.then((k) => (k.destroy(), null), (err: unknown) => err);
      throw kernelError ?? e;
    }
    const model = new LlamaModel(device, config, weights.computeDtype, contextLength, weights, names);
    try {
      model.build(model.own(await kernels));
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

  private build(ops: Kernels): void {
    const { device, config, dtype } = this;
    const { hiddenSize: h, intermediateSize: inter, numHeads, numKvHeads, headDim, vocabSize } = config;
    const qDim = numHeads * headDim;
    const kvDim = numKvHeads * headDim;
    const w = computeBytes(dtype);
    const P = PREFILL_CHUNK;
    const maxSeq = this.contextLength;

    // ─── buffers ───
    this.ids = this.buffer('model.ids', P * 4); // (P,) u32
    this.hidden = this.buffer('model.hidden', P * h * w); // (P, h)
    this.lastRow = this.buffer('model.last_row', h * w); // (1, h)
    this.logits = this.buffer('model.logits', vocabSize * 4); // (V,) f32
    const act = (name: string, rows: number) => ({
      normed: this.buffer(`model.${name}.normed`, rows * h * w), // (T, h)
      q: this.buffer(`model.${name}.q`, rows * qDim * w), // (T, nHeads, headDim)
      k: this.buffer(`model.${name}.k`, rows * kvDim * w), // (T, nKvHeads, headDim)
      v: this.buffer(`model.${name}.v`, rows * kvDim * w), // (T, nKvHeads, headDim)
      attn: this.buffer(`model.${name}.attn`, rows * qDim * w), // (T, nHeads, headDim)
      proj: this.buffer(`model.${name}.proj`, rows * h * w), // (T, h) o_proj / down_proj output
      gate: this.buffer(`model.${name}.gate`, rows * inter * w), // (T, I)
      up: this.buffer(`model.${name}.up`, rows * inter * w), // (T, I)
      mlp: this.buffer(`model.${name}.mlp`, rows * inter * w), // (T, I) silu(gate)·up
    });
    const bufs = { prefill: act('prefill', P), decode: act('decode', 1) };
    // KV cache: per layer (nKvHeads, maxSeq, headDim) for K and for V.
    const cache = this.names.layers.map((_, i) => ({
      k: this.buffer(`model.layers.${i}.k_cache`, numKvHeads * maxSeq * headDim * w),
      v: this.buffer(`model.layers.${i}.v_cache`, numKvHeads * maxSeq * headDim * w),
    }));
    const shape = { nHeads: numHeads, nKvHeads: numKvHeads, headDim, maxSeq };
    const decodeScratch = maxSeq > 256 ? this.own(ops.attention.decodeScratch('model.decode.attention', shape)) : undefined;

    // ─── the two passes: the forward pass, top to bottom ───
    const pass = (kind: 'prefill' | 'decode', rows: number, x: GPUBuffer): Pass => {
      const b = bufs[kind];
      const out: Pass = { ops: [], ropes: [], stores: [], attentions: [] };
      const add = <T extends PreparedOp>(op: T): T => (out.ops.push(this.own(op)), op);
      const linear = (label: string, weight: string, bias: string | null, input: GPUBuffer, output: GPUBuffer) => {
        const wt = this.weight(weight);
        const bt = bias === null ? undefined : this.weight(bias);
        if (kind === 'decode') add((bt ? ops.gemvBias! : ops.gemv).prepare(label, wt, input, output, bt));
        else add((bt ? ops.matmulBias! : ops.matmul).prepare(label, rows, wt, input, output, bt));
      };
      // x = embed_tokens(ids)
      add(ops.embedding.prepare(`${kind}.embed`, rows, this.ids, this.weight(this.names.embed), x));
      this.names.layers.forEach((l, i) => {
        const p = `${kind}.layers.${i}`;
        // ── attention block: x = x + o_proj(attn(rope(q_proj(rms(x))), rope(k_proj(rms(x))), v_proj(rms(x))))
        add(ops.norm.prepare(`${p}.input_norm`, rows, h, x, this.weight(l.inputNorm), b.normed));
        linear(`${p}.q_proj`, l.q, l.qBias, b.normed, b.q);
        linear(`${p}.k_proj`, l.k, l.kBias, b.normed, b.k);
        linear(`${p}.v_proj`, l.v, l.vBias, b.normed, b.v);
        out.ropes.push(add(ops.rope.prepare(`${p}.rope`, { tokens: rows, nHeads: numHeads, nKvHeads: numKvHeads }, b.q, b.k)));
        out.stores.push(add(ops.store.prepare(`${p}.kv_store`, { nKvHeads: numKvHeads, headDim, maxSeq }, rows, { k: b.k, v: b.v, kCache: cache[i].k, vCache: cache[i].v })));
        const attnBuffers = { q: b.q, kCache: cache[i].k, vCache: cache[i].v, out: b.attn };
        out.attentions.push(add(kind === 'decode'
          ? ops.attention.prepareDecode(`${p}.attention`, shape, attnBuffers, decodeScratch)
          : ops.attention.prepare(`${p}.attention`, shape, rows, attnBuffers)));
        linear(`${p}.o_proj`, l.o, l.oBias, b.attn, b.proj);
        add(ops.add.prepare(`${p}.attn_residual`, rows * h, x, b.proj));
        // ── MLP block: x = x + down_proj(silu(gate_proj(rms(x))) * up_proj(rms(x)))
        add(ops.norm.prepare(`${p}.post_norm`, rows, h, x, this.weight(l.preMlpNorm), b.normed));
        if (!('gate' in l.gateUp)) throw new Error('fused gate_up_proj: not wired yet');
        linear(`${p}.gate_proj`, l.gateUp.gate, null, b.normed, b.gate);
        linear(`${p}.up_proj`, l.gateUp.up, null, b.normed, b.up);
        add(ops.swiglu.prepare(`${p}.swiglu`, rows, inter, [b.gate, b.up], b.mlp));
        linear(`${p}.down_proj`, l.down, null, b.mlp, b.proj);
        add(ops.add.prepare(`${p}.mlp_residual`, rows * h, x, b.proj));
      });
      return out;
    };
    this.prefill = pass('prefill', P, this.hidden);
    this.decode = pass('decode', 1, this.lastRow);
    // logits = lm_head(rms(x_last)), f32
    this.head = [
      this.own(ops.norm.prepare('head.norm', 1, h, this.lastRow, this.weight(this.names.norm), bufs.decode.normed)),
      this.own(ops.lmHead.prepare('head.lm_head', this.weight(this.names.lmHead), bufs.decode.normed, this.logits)),
    ];
    this.decodeStep = [...this.decode.ops, ...this.head];
  }

  /**
   * Runs `ids` at positions [start, start + ids.length) through the model, writing their
   * keys and values to the cache, and leaves the last token's logits in `logits`.
   * `after` may encode more work (sampling) into the same command buffer.
   */
  async forward(ids: readonly number[], start: number, after?: (encoder: GPUCommandEncoder) => void): Promise<void> {
    if (ids.length === 0) throw new SluiceError('USAGE', 'forward: no tokens');
    if (start + ids.length > this.contextLength) {
      throw new SluiceError('USAGE', `the context is full: positions [${start}, ${start + ids.length}) exceed the KV cache (${this.contextLength})`);
    }
    const { device } = this;
    const h = this.config.hiddenSize;
    const w = computeBytes(this.dtype);
    if (ids.length === 1) {
      this.setPositions(this.decode, start, 1);
      this.writeIds(ids);
      const encoder = device.createCommandEncoder({ label: 'model.decode' });
      const passEncoder = encoder.beginComputePass({ label: 'model.decode' });
      for (const op of this.decodeStep) encodeOp(passEncoder, op);
      passEncoder.end();
      after?.(encoder);
      device.queue.submit([encoder.finish()]);
      return;
    }
    // Prefill in chunks; the queue orders each chunk's Params writes with its submit.
    for (let at = 0; at < ids.length; at += PREFILL_CHUNK) {
      const chunk = ids.slice(at, at + PREFILL_CHUNK);
      this.setPositions(this.prefill, start + at, chunk.length);
      this.writeIds(chunk);
      const encoder = device.createCommandEncoder({ label: 'model.prefill' });
      const passEncoder = encoder.beginComputePass({ label: 'model.prefill' });
      for (const op of this.prefill.ops) encodeOp(passEncoder, op);
      passEncoder.end();
      const last = at + PREFILL_CHUNK >= ids.length;
      if (last) {
        // The last token's row of the residual stream → the decode row, for the LM head.
        encoder.copyBufferToBuffer(this.hidden, (chunk.length - 1) * h * w, this.lastRow, 0, h * w);
        const head = encoder.beginComputePass({ label: 'model.head' });
        for (const op of this.head) encodeOp(head, op);
        head.end();
        after?.(encoder);
      }
      device.queue.submit([encoder.finish()]);
    }
  }

  /** Dispatches one decode step encodes (all layers and the LM head; sampling not included). */
  get decodeDispatches(): number {
    return [...this.decode.ops, ...this.head].reduce((n, op) => n + op.dispatches.length, 0);
  }

  /**
   * Weight bytes one decode step reads: every matrix and norm once, the LM head whole; the
   * embedding table only for its one row (unless it is also the tied LM head).
   */
  get weightBytesPerToken(): number {
    let bytes = 0;
    for (const [name, t] of this.weights) if (name !== this.names.embed || this.names.lmHead === name) bytes += t.byteLength;
    return bytes + this.config.hiddenSize * computeBytes(this.dtype);
  }

  /** At most PREFILL_CHUNK ids into the ids buffer, through the reused host copy. */
  private writeIds(ids: readonly number[]): void {
    this.idScratch.set(ids);
    this.device.queue.writeBuffer(this.ids, 0, this.idScratch, 0, ids.length);
  }

  private setPositions(pass: Pass, start: number, tokens: number): void {
    for (const rope of pass.ropes) rope.setPositions(start, tokens);
    for (const store of pass.stores) store.setRange(start, tokens);
    for (const attention of pass.attentions) attention.setRange(start, tokens);
  }

  /** The last forward's logits, read back (tests, `--json` debugging; not per token). */
  async readLogits(): Promise<Float32Array> {
    const bytes = await readBuffer(this.device, this.logits, 0, this.config.vocabSize * 4);
    return new Float32Array(bytes.buffer, bytes.byteOffset, this.config.vocabSize);
  }
}

type Kernels = Awaited<ReturnType<typeof compileKernels>>;

/**
 * Until the layer builder reads every feature, models that need one it does not read
 * yet are refused by name (not run wrongly).
 */
function checkRunnable(config: ModelConfig, contextLength: number, where: string): void {
  const f = config.features;
  const missing = [
    f.norm !== 'w' && 'RMSNorm x·(1+w)',
    f.qkNorm && 'q/k norms',
    f.act !== 'silu' && 'GeGLU',
    f.embedScale !== null && 'embedding scale',
    f.sandwichNorms && 'sandwich norms',
    (f.attnSoftcap !== null || f.finalSoftcap !== null) && 'soft-capping',
    f.fused && 'fused qkv/gate_up',
    f.rotaryDim !== config.headDim && 'partial rotary',
    f.layers.some((l) => l.rope !== 'global') && 'per-layer rope',
  ].filter(Boolean);
  if (missing.length) throw new SluiceError('UNSUPPORTED_ARCH', `${where}: ${config.family} needs ${missing.join(', ')}, which this build does not run yet`);
  const window = f.layers.find((l) => l.window !== null)?.window ?? null;
  if (window !== null && contextLength > window) {
    throw new SluiceError('UNSUPPORTED_ARCH', `${where}: this model uses sliding-window attention (${window} positions), which sluice does not implement; use a context of at most ${window}`);
  }
}

/**
 * Every pipeline the two passes use, compiled in parallel; reports each one built. The
 * result owns the rope's inv_freq buffer: destroy() frees it.
 */
async function compileKernels(device: GPUDevice, dtype: ComputeDtype, config: ModelConfig, onProgress?: (p: ModelProgress) => void) {
  const bias = config.features.qkvBias || config.features.oBias;
  const pending = {
    embedding: Embedding.create(device, dtype),
    norm: RmsNorm.create(device, dtype, { eps: config.rmsNormEps }),
    matmul: Matmul.create(device, dtype),
    matmulBias: bias ? Matmul.create(device, dtype, { bias: true }) : null,
    gemv: Gemv.create(device, dtype),
    gemvBias: bias ? Gemv.create(device, dtype, { bias: true }) : null,
    lmHead: Gemv.create(device, dtype, { outF32: true }),
    rope: createRope(device, dtype, config),
    store: KvStore.create(device, dtype),
    attention: Attention.create(device, dtype),
    swiglu: Swiglu.create(device, dtype),
    add: Add.create(device, dtype, { inPlace: true }),
  };
  const entries = Object.entries(pending);
  const kernelsTotal = entries.filter(([, p]) => p !== null).length;
  let kernelsDone = 0;
  const report = () => onProgress?.({ phase: 'kernels', kernelsDone, kernelsTotal });
  report();
  let values: unknown[];
  try {
    // Fails at the first failure, so the caller can stop the upload at once.
    values = await Promise.all(entries.map(([, p]) => p?.then((x) => (kernelsDone++, report(), x)) ?? null));
  } catch (e) {
    void pending.rope.then((r) => r.destroy(), () => {});
    throw e;
  }
  const ops = Object.fromEntries(entries.map(([name], i) => [name, values[i]])) as { [K in keyof typeof pending]: Awaited<(typeof pending)[K]> };
  return { ...ops, destroy: () => ops.rope.destroy() };
}

async function createRope(device: GPUDevice, dtype: ComputeDtype, config: ModelConfig): Promise<Rope> {
  try {
    return await Rope.create(device, dtype, { config: { headDim: config.headDim, ropeTheta: config.ropeTheta, ropeScaling: ropeScalingJson(config.ropeScaling) } });
  } catch (e) {
    if (e instanceof UnsupportedRopeError) throw new SluiceError('UNSUPPORTED_ARCH', e.message);
    throw e;
  }
}

/** ModelConfig's rope scaling back in config.json's spelling, as ropeInvFreq reads it. */
function ropeScalingJson(s: RopeScaling): Record<string, unknown> | null {
  if (s.type === 'default') return null;
  if (s.type === 'linear') return { rope_type: 'linear', factor: s.factor };
  return {
    rope_type: 'llama3',
    factor: s.factor,
    low_freq_factor: s.lowFreqFactor,
    high_freq_factor: s.highFreqFactor,
    original_max_position_embeddings: s.originalMaxPositionEmbeddings,
  };
}

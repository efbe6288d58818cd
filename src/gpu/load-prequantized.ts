// Pre-quantized checkpoints (GPTQ, AWQ, compressed-tensors): the loader's path for packed
// linears. Each one streams its packed tensors through the staging ring like any tensor, as
// stored (int32 words, int8 values, f16/bf16/f32 scales), into temporary device buffers; one
// GPU kernel per source layout (src/ops/repack.ts) then rewrites them into sluice's
// QuantizedTensor layout, and the packed buffers are freed:
//
//   staging slot ──copy──▶ qweight, scales, [zeros] ──Repack──▶ QuantizedTensor (q4/q8, group scales, [zeros])
//                          (as stored; one linear's)              (one per output range: Phi-3's qkv_proj → q, k, v)
//
// GPTQ act-order (desc_act): g_idx is read on the host before anything is allocated, and
// turned into the column permutation that makes each group contiguous (repack-layout.ts
// actOrderPerm); the repack permutes the weight's input columns by it, so the forward pass
// must gather the linear's input the same way (GpuTensors.inputPerms; src/ops/permute.ts).
// Identical permutations (q/k/v, gate/up: one input, one g_idx order) share one buffer.
//
// Device memory, peak: the kept tensors + the packed sources of at most two linears (the one
// streaming in, the one whose repack the GPU may still run: a linear's sources are allocated
// only once the repack of the one two before it is done) + the staging ring and scratches.
// Host memory: the staging ring, plus each g_idx (4·K bytes) while it is checked.

import type { Checkpoint } from '../checkpoint/types.js';
import { SluiceError } from '../errors.js';
import { Repack } from '../ops/repack.js';
import { actOrderPerm, type PackedFormat } from '../ops/repack-layout.js';
import { destroyTensor, type GpuTensor } from './gpu-tensor.js';
import { quantizedBufferBytes } from './quantize-on-load.js';
import { destroyQuantized, type QuantizedLayout, type QuantizedTensor, type ScaleDtype } from './quantized-tensor.js';

/** One packed linear of a checkpoint and the QuantizedTensors it becomes. */
export interface PackedLinear {
  /** The module, e.g. model.layers.0.self_attn.q_proj. */
  module: string;
  format: PackedFormat;
  bits: 4 | 8;
  /** Inputs per group along K (K when per channel). */
  groupSize: number;
  /** K inputs, N outputs of the stored tensor. */
  k: number;
  n: number;
  /** The tensors it is stored as. */
  qweight: string;
  scales: string;
  zeros?: string;
  gIdx?: string;
  /** compressed-tensors' weight_shape ([N, K], checked when read). */
  shape?: string;
  /** The QuantizedTensors it becomes, each a range of output rows, named as the forward pass reads them. */
  outputs: Array<{ name: string; firstOutput: number; rows: number }>;
}

export interface PrequantizedLoad {
  linears: readonly PackedLinear[];
  /** The act-order permutations by module, when the caller already read them (readPackedIndices); else the loader does. */
  perms?: ReadonlyMap<string, Uint32Array>;
}

/** The layout a packed linear's output range is repacked into. */
export function repackedLayout(linear: PackedLinear, rows: number, scaleDtype: ScaleDtype): QuantizedLayout & { groupSize: number } {
  return { kind: linear.bits === 4 ? 'q4' : 'q8', shape: [rows, linear.k], groupSize: linear.groupSize, scaleDtype, hasZeros: linear.zeros !== undefined };
}

/** Whole tensors these checks read on the host: a g_idx is 4·K bytes, a weight_shape 8 or 16. */
const MAX_INDEX_BYTES = 4 * 1024 * 1024;

/**
 * Reads every linear's g_idx and weight_shape, before any device buffer exists, and returns
 * each act-order linear's input permutation (module → perm; none where g_idx is already in
 * group order). Throws one error naming every bad tensor: a g_idx value out of range, a
 * group without exactly groupSize columns, a weight_shape other than [N, K].
 */
export async function readPackedIndices(checkpoint: Checkpoint, linears: readonly PackedLinear[], where: string): Promise<Map<string, Uint32Array>> {
  const perms = new Map<string, Uint32Array>();
  const problems: string[] = [];
  for (const l of linears) {
    try {
      if (l.shape) {
        const info = checkpoint.info(l.shape);
        const bytes = await readSmall(checkpoint, l.shape, info.byteLength);
        const values = info.dtype === 'I64' ? Array.from(new BigInt64Array(bytes.buffer), Number) : Array.from(new Int32Array(bytes.buffer));
        if (values.length !== 2 || values[0] !== l.n || values[1] !== l.k) problems.push(`${l.shape} is [${values.join(', ')}], expected [${l.n}, ${l.k}]`);
      }
      if (l.gIdx) {
        const bytes = await readSmall(checkpoint, l.gIdx, 4 * l.k);
        const perm = actOrderPerm(l.gIdx, new Int32Array(bytes.buffer), l.groupSize);
        if (perm) perms.set(l.module, perm);
      }
    } catch (e) {
      problems.push((e as Error).message);
    }
  }
  if (problems.length) {
    const shown = problems.slice(0, 5).join('; ');
    throw new SluiceError('INVALID_INDEX', `${where}: ${shown}${problems.length > 5 ? `; and ${problems.length - 5} more` : ''}`);
  }
  return perms;
}

/** A whole small tensor, aligned for typed-array views; its size was checked against the header. */
async function readSmall(checkpoint: Checkpoint, name: string, bytes: number): Promise<Uint8Array> {
  if (bytes > MAX_INDEX_BYTES) throw new SluiceError('SHAPE_MISMATCH', `${name} has ${bytes} bytes, more than an index tensor may (${MAX_INDEX_BYTES})`);
  const out = new Uint8Array(bytes);
  out.set(await checkpoint.read(name));
  return out;
}

/**
 * Uploads the permutations, one (K,) u32 buffer per distinct one, and returns the buffer of
 * each module: linears with the same permutation get the same buffer, which is how the
 * forward pass knows it may gather their shared input once.
 */
export function uploadPerms(device: GPUDevice, perms: ReadonlyMap<string, Uint32Array>, label: string): Map<string, GPUBuffer> {
  const byModule = new Map<string, GPUBuffer>();
  const distinct: Array<{ perm: Uint32Array; buffer: GPUBuffer }> = [];
  for (const [module, perm] of perms) {
    let found = distinct.find((d) => d.perm.length === perm.length && d.perm.every((v, i) => v === perm[i]));
    if (!found) {
      const buffer = device.createBuffer({ label: `${label}.${module}.perm`, size: Math.max(16, Math.ceil(perm.byteLength / 16) * 16), usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
      device.queue.writeBuffer(buffer, 0, new Uint32Array(perm));
      found = { perm, buffer };
      distinct.push(found);
    }
    byModule.set(module, found.buffer);
  }
  return byModule;
}

/** One line for GpuTensors.notes: what the checkpoint's linears became. */
export function prequantizedNote(linears: readonly PackedLinear[], perms: ReadonlyMap<string, GPUBuffer>, scaleDtype: ScaleDtype): string {
  const l = linears[0];
  const groups = [...new Set(linears.map((x) => (x.groupSize === x.k ? 'per channel' : `group ${x.groupSize}`)))].join(', ');
  const zeros = linears.some((x) => x.zeros) ? ', zero points' : '';
  const permuted = perms.size ? `; act-order: ${perms.size} with their input permuted (${new Set(perms.values()).size} distinct permutations)` : '';
  return `pre-quantized ${l.format} ${l.bits}-bit (${groups}): ${linears.length} linears repacked on the GPU to ${l.bits === 4 ? 'q4' : 'q8'} (${scaleDtype} scales${zeros})${permuted}`;
}

/** What the loader lends the packed path: its streaming upload and its checked allocation. */
export interface PackedIo {
  /**
   * Allocates one checkpoint tensor's buffers (as stored), hands them to `own` at once (so a
   * failure frees them), and streams it in; resolves once every piece's copy is submitted.
   */
  uploadAsStored(name: string, own: (t: GpuTensor) => void): Promise<GpuTensor>;
  /** Creates a QuantizedTensor, a device error becoming OUT_OF_MEMORY naming it. */
  allocate(name: string, layout: QuantizedLayout): Promise<QuantizedTensor>;
}

/**
 * The packed linears of one load: load() streams and repacks one linear; what it made is in
 * `quantized` and `inputPerms`; destroy() frees it all (a failed load).
 */
export class PackedLoader {
  readonly quantized = new Map<string, QuantizedTensor>();
  readonly inputPerms = new Map<string, GPUBuffer>();
  /** Device bytes kept: the repacked tensors and the permutations (padding included). */
  keptBytes: number;
  /** The most packed-source bytes the device may hold at once (two linears' sources). */
  peakSourceBytes = 0;
  private readonly sources = new Set<GpuTensor>(); // alive until their repack is submitted
  private previous = { bytes: 0, done: Promise.resolve() }; // the last linear's repack
  private beforePrevious = Promise.resolve();

  private constructor(
    private readonly device: GPUDevice,
    private readonly repack: Repack,
    private readonly perms: Map<string, GPUBuffer>, // by module
    private readonly scaleDtype: ScaleDtype,
    private readonly label: string,
  ) {
    this.keptBytes = [...new Set(perms.values())].reduce((sum, b) => sum + b.size, 0);
  }

  /** Checks the index tensors (host), builds the repack pipeline, uploads the permutations. */
  static async create(checkpoint: Checkpoint, device: GPUDevice, load: PrequantizedLoad, scaleDtype: ScaleDtype, where: string, label: string): Promise<PackedLoader> {
    const { format, bits } = load.linears[0];
    const mixed = load.linears.find((l) => l.format !== format || l.bits !== bits);
    if (mixed) throw new SluiceError('UNSUPPORTED_FORMAT', `${where}: ${mixed.module} is ${mixed.format} ${mixed.bits}-bit, the others ${format} ${bits}-bit; one scheme per checkpoint is supported`);
    const perms = load.perms ?? (await readPackedIndices(checkpoint, load.linears, where));
    const repack = await Repack.create(device, format, bits);
    return new PackedLoader(device, repack, uploadPerms(device, perms, label), scaleDtype, label);
  }

  async load(linear: PackedLinear, io: PackedIo): Promise<void> {
    // Two linears' sources at most: this one's, and the previous one's while the GPU repacks them.
    await this.beforePrevious;
    const upload = (name: string) => io.uploadAsStored(name, (t) => this.sources.add(t));
    const src = { qweight: await upload(linear.qweight), scales: await upload(linear.scales), zeros: linear.zeros ? await upload(linear.zeros) : undefined };
    const parts = [src.qweight, src.scales, ...(src.zeros ? [src.zeros] : [])];
    const bytes = parts.reduce((sum, t) => sum + t.chunks.reduce((s, c) => s + c.buffer.size, 0), 0);
    this.peakSourceBytes = Math.max(this.peakSourceBytes, this.previous.bytes + bytes);
    const perm = this.perms.get(linear.module);
    const encoder = this.device.createCommandEncoder({ label: `${this.label}.${linear.module}.repack` });
    const frees: Array<() => void> = [];
    try {
      for (const out of linear.outputs) {
        const dst = { ...(await io.allocate(out.name, repackedLayout(linear, out.rows, this.scaleDtype))), name: out.name };
        this.quantized.set(out.name, dst);
        this.keptBytes += quantizedBufferBytes(dst);
        if (perm) this.inputPerms.set(out.name, perm);
        const spec = { format: linear.format, bits: linear.bits, groupSize: linear.groupSize, k: linear.k, n: linear.n, firstOutput: out.firstOutput, perm };
        frees.push(this.repack.encode(encoder, `${this.label}.${out.name}`, spec, src, dst));
      }
      this.device.queue.submit([encoder.finish()]);
    } finally {
      frees.forEach((free) => free());
      // Destroyed once submitted: the device frees them when the repack has run.
      for (const t of parts) this.freeSource(t);
    }
    this.beforePrevious = this.previous.done;
    this.previous = { bytes, done: this.device.queue.onSubmittedWorkDone() };
  }

  /** After the last repack's submit: throws naming the zero-point tensor if a zero point did not fit (Repack.check). */
  check(): Promise<void> {
    return this.repack.check();
  }

  private freeSource(t: GpuTensor): void {
    destroyTensor(t);
    this.sources.delete(t);
  }

  /** Frees everything it made: sources still alive, repacked tensors, permutations. */
  destroy(): void {
    for (const t of this.sources) this.freeSource(t);
    for (const t of this.quantized.values()) destroyQuantized(t);
    for (const b of new Set(this.perms.values())) b.destroy();
    this.quantized.clear();
    this.inputPerms.clear();
  }

  /** The note for GpuTensors.notes. */
  note(linears: readonly PackedLinear[]): string {
    return prequantizedNote(linears, this.perms, this.scaleDtype);
  }
}

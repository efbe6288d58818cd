// Launcher of shaders/repack.wgsl: a pre-quantized Linear as the checkpoint packs it (GPTQ,
// AWQ GEMM, compressed-tensors; layouts and reference code in repack-layout.ts) → sluice's
// quantized layout (src/gpu/quantized-tensor.ts), on the GPU, no dense weight anywhere.
//
// Exact, bit for bit (repack-reference.ts is the TypeScript twin of the kernel):
//   - integers: 4-bit values as stored (CT's q + 8 is sluice's symmetric q4, zero 8); 8-bit
//     unsigned ones (GPTQ, CT pack-quantized's q + 128) become signed q8 as q − 128, their
//     zero points zero − 128: the same weight, w = s·(q − z).
//   - zero points are kept whenever the source has them (GPTQ, AWQ always); GPTQ v1's
//     stored zero − 1 gets its 1 back. A zero that fits no b-bit value (a v1 field of 2^b − 1,
//     i.e. a zero of 0 that v1 cannot store; an out-of-range CT int8 zero) is recorded by the
//     kernel and reported by check() as a one-line error naming the zero-point tensor.
//   - scales go to the destination's storage: f16 scales are copied; bf16 and f32 ones are
//     rounded to f16 half-to-even (torch's .half()) when stored as f16, exact when stored as f32.
//   - act-order (GPTQ g_idx not k / G): spec.perm from actOrderPerm gathers each group's
//     columns together; the model permutes that Linear's input alike (src/ops/permute.ts).
//   - fused checkpoints (Phi-3 qkv_proj, gate_up_proj): spec.firstOutput picks the source
//     outputs [firstOutput, firstOutput + dst rows), so one source fills several destinations.
// Sources are GpuTensors as loadTensors stores them (packed ints as stored; scales F16, BF16
// or F32, whatever the loader converted them to), each in one buffer: a packed tensor larger
// than a binding (128 MiB: a 405B-class down_proj) is refused naming it. The destination may
// be row-chunked; one dispatch per chunk.
//
// Napkin math: reads and writes ~0.5 (q4) or ~1 (q8) byte per weight: a few ms per GB on a
// GPU. On lavapipe (2 loaded cores, 4096 × 4096, group 128; a plain 8 MiB copy ran at 13-20
// GB/s) the word-moving variants ran at 0.3-1.1 GB/s of packed bytes read + written (GPTQ
// and CT 15-45 ms, AWQ's transpose ~100 ms), the act-order gather at 0.05-0.17 GB/s (one
// scattered read per value): a 1B-class q4 model (0.5 GB packed) repacks in ~1-2 s,
// act-order in ~10 s.

import type { Dtype } from '../formats/dtypes.js';
import { SluiceError } from '../errors.js';
import { workgroups1d } from '../gpu/dispatch.js';
import type { GpuTensor } from '../gpu/gpu-tensor.js';
import { ParamsLayout } from '../gpu/params.js';
import { pipelineCache, type PipelineSpec } from '../gpu/pipeline-cache.js';
import { ELEMENTS_PER_WORD, type QuantizedTensor } from '../gpu/quantized-tensor.js';
import { readBuffer } from '../gpu/read-back.js';
import { checkFormatBits, checkPackedShapes, type PackedFormat, zeroOffset, zeroPointError } from './repack-layout.js';

export { actOrderPerm, checkPackedShapes, type PackedFormat, type PackedShapes, type PackedTensorInfo } from './repack-layout.js';
export { repackReference, type HostPackedSources, type HostRepackSpec } from './repack-reference.js';

/** Threads per workgroup: each writes REPACK_WORDS_PER_THREAD data words or four groups' scales and zeros. */
export const REPACK_WORKGROUP = 64;
export const REPACK_WORDS_PER_THREAD = 8;

/** GPTQ and AWQ names map onto these: qweight/weight_packed/weight, scales/weight_scale, qzeros/weight_zero_point. */
export interface PackedSources {
  qweight: GpuTensor;
  scales: GpuTensor;
  zeros?: GpuTensor;
}

export interface RepackSpec {
  format: PackedFormat;
  bits: 4 | 8;
  /** Input columns per group; K when per channel (GPTQ group_size −1, CT channel strategy). */
  groupSize: number;
  /** Inputs K and outputs N of the source tensor. */
  k: number;
  n: number;
  /** The source output that becomes the destination's row 0 (fused tensors); default 0. */
  firstOutput?: number;
  /** (K,) u32: destination column j takes source input column perm[j] (actOrderPerm). */
  perm?: GPUBuffer;
}

type Layout = 'gptq' | 'awq' | 'ct';
const LAYOUT: Readonly<Record<PackedFormat, Layout>> = { gptq: 'gptq', gptq_v2: 'gptq', 'awq-gemm': 'awq', 'pack-quantized': 'ct', 'int-quantized': 'ct' };
const FORMAT_BITS: readonly [PackedFormat, 4 | 8][] = [
  ['gptq', 4], ['gptq', 8], ['awq-gemm', 4], ['pack-quantized', 4], ['pack-quantized', 8],
];
const SCALE_CODE: Partial<Record<Dtype, number>> = { F16: 0, BF16: 1, F32: 2 };

const PARAMS = new ParamsLayout([
  ['rows', 'u32'],
  ['k', 'u32'],
  ['n', 'u32'],
  ['firstOutput', 'u32'],
  ['firstRow', 'u32'],
  ['groups', 'u32'],
  ['scaleDtype', 'u32'],
  ['scalesF16', 'u32'],
  ['dataXor', 'u32'],
  ['zeroOffset', 'u32'],
  ['zeroInt8', 'u32'],
  ['statusSlot', 'u32'],
  ['dataThreads', 'u32'],
  ['threads', 'u32'],
] as const);

function variant(layout: Layout, bits: 4 | 8, zeros: boolean, perm: boolean): { key: string; spec: PipelineSpec } {
  return {
    key: `repack_${layout}_q${bits}${zeros ? '_zeros' : ''}${perm ? '_perm' : ''}_wg${REPACK_WORKGROUP}`,
    spec: {
      shader: 'repack',
      flags: [layout.toUpperCase(), ...(bits === 8 ? ['Q8'] : []), ...(zeros ? ['ZEROS'] : []), ...(perm ? ['PERM'] : [])],
      constants: { WORKGROUP_SIZE: REPACK_WORKGROUP, WORDS_PER_THREAD: REPACK_WORDS_PER_THREAD },
    },
  };
}

/** The variants one format needs: zero points optional only in compressed-tensors, act-order not in AWQ. */
function formatVariants(format: PackedFormat, bits: 4 | 8) {
  const layout = LAYOUT[format];
  const zeros = layout === 'ct' ? [false, true] : [true];
  const perms = layout === 'awq' ? [false] : [false, true];
  return zeros.flatMap((z) => perms.map((p) => ({ zeros: z, perm: p, ...variant(layout, bits, z, p) })));
}

/** Every variant (all read words as u32: none needs shader-f16). */
export function repackVariants(): { key: string; spec: PipelineSpec }[] {
  return FORMAT_BITS.flatMap(([format, bits]) => formatVariants(format, bits).map(({ key, spec }) => ({ key, spec })));
}

/** Status words (one per repack with zero points): the kernel's record of an unrepresentable zero. */
const STATUS_SLOTS = 256;
interface StatusEntry {
  buffer: GPUBuffer;
  slot: number;
  tensor: string;
  groups: number;
  firstOutput: number;
}

export class Repack {
  private status: GPUBuffer | null = null;
  private slotsUsed = STATUS_SLOTS;
  private pending: StatusEntry[] = [];

  private constructor(
    private readonly device: GPUDevice,
    private readonly pipelines: ReadonlyMap<string, GPUComputePipeline>,
    readonly format: PackedFormat,
    readonly bits: 4 | 8,
  ) {}

  /** Compiles the format's variants (with/without zero points and act-order) once. */
  static async create(device: GPUDevice, format: PackedFormat, bits: 4 | 8): Promise<Repack> {
    checkFormatBits('repack', format, bits);
    const list = formatVariants(format, bits);
    const built = await Promise.all(list.map(({ key, spec }) => pipelineCache(device).get(key, spec)));
    return new Repack(device, new Map(list.map((v, i) => [`${v.zeros}/${v.perm}`, built[i]])), format, bits);
  }

  /**
   * Encodes the repack of `src` (N = spec.n outputs, K inputs) into `dst` ([rows, K], rows ≤
   * N − firstOutput, kind q4/q8 from bits, spec's group size, zero points iff src has them)
   * as one compute pass of `encoder`. Returns what frees its temporaries once submitted.
   * After the submit, check() says whether every zero point fit.
   */
  encode(encoder: GPUCommandEncoder, label: string, spec: RepackSpec, src: PackedSources, dst: QuantizedTensor): () => void {
    const { format, bits, groupSize, k, n } = spec;
    const firstOutput = spec.firstOutput ?? 0;
    if (format !== this.format || bits !== this.bits) throw new Error(`${label}: this repack was made for ${this.format} ${this.bits}-bit, the spec is ${format} ${bits}-bit`);
    checkPackedShapes(label, format, bits, groupSize, k, n, src);
    const [rows, dk] = dst.shape;
    const kind = bits === 8 ? 'q8' : 'q4';
    if (dst.kind !== kind || dk !== k || dst.groupSize !== groupSize) {
      throw new SluiceError('SHAPE_MISMATCH', `${label}: ${dst.name} is ${dst.kind} [${rows}, ${dk}] in groups of ${dst.groupSize}; the source is ${kind} with K = ${k} in groups of ${groupSize}`);
    }
    if (!Number.isInteger(firstOutput) || firstOutput < 0 || firstOutput + rows > n) {
      throw new SluiceError('SHAPE_MISMATCH', `${label}: ${dst.name} takes outputs ${firstOutput}..${firstOutput + rows - 1}, the source has ${n}`);
    }
    const hasZeros = src.zeros !== undefined;
    if (dst.hasZeros !== hasZeros) throw new Error(`${label}: the source has ${hasZeros ? '' : 'no '}zero points, ${dst.name} was made ${dst.hasZeros ? 'with' : 'without'}`);
    const perm = spec.perm;
    if (perm && LAYOUT[format] === 'awq') throw new Error(`${label}: awq-gemm has no act-order; no perm`);
    if (perm && perm.size < 4 * k) throw new Error(`${label}: perm holds ${perm.size} bytes, (K = ${k}) u32 needs ${4 * k}`);
    const pipeline = this.pipelines.get(`${hasZeros}/${perm !== undefined}`)!;
    const groups = k / groupSize;
    const slot = src.zeros ? this.statusSlot(src.zeros.name, groups, firstOutput) : null;
    const fixed: Record<number, GPUBuffer> = { 1: single(src.qweight), 2: single(src.scales) };
    if (src.zeros) fixed[3] = single(src.zeros);
    if (perm) fixed[4] = perm;
    if (slot) fixed[8] = slot.buffer;
    const unsigned8 = bits === 8 && format !== 'int-quantized';
    const epw = ELEMENTS_PER_WORD[kind];
    const temporaries: GPUBuffer[] = [];
    const pass = encoder.beginComputePass({ label });
    pass.setPipeline(pipeline);
    for (const [i, chunk] of dst.chunks.entries()) {
      const name = dst.chunks.length > 1 ? `${label}.chunk${i}` : label;
      const first = firstOutput + chunk.firstRow;
      // AWQ: a thread per (word, block of 8 outputs); else per run of words of a row.
      const dataThreads =
        format === 'awq-gemm' ? (k / epw) * (Math.ceil((first + chunk.rows) / 8) - Math.floor(first / 8)) : chunk.rows * Math.ceil(k / epw / REPACK_WORDS_PER_THREAD);
      const threads = dataThreads + Math.ceil((chunk.rows * groups) / 4);
      const params = PARAMS.createBuffer(this.device, name, {
        rows: chunk.rows,
        k,
        n,
        firstOutput: first,
        firstRow: chunk.firstRow,
        groups,
        scaleDtype: SCALE_CODE[src.scales.dtype]!,
        scalesF16: dst.scaleDtype === 'F16' ? 1 : 0,
        dataXor: unsigned8 ? 0x80808080 : 0,
        zeroOffset: zeroOffset(format, bits, src.zeros?.dtype),
        zeroInt8: src.zeros?.dtype === 'I8' ? 1 : 0,
        statusSlot: slot?.slot ?? 0,
        dataThreads,
        threads,
      });
      temporaries.push(params);
      const buffers: Record<number, GPUBuffer> = { ...fixed, 0: params, 5: chunk.data, 6: chunk.scales };
      if (chunk.zeros) buffers[7] = chunk.zeros;
      const bindGroup = this.device.createBindGroup({
        label: name,
        layout: pipeline.getBindGroupLayout(0),
        entries: Object.entries(buffers).map(([binding, buffer]) => ({ binding: Number(binding), resource: { buffer } })),
      });
      pass.setBindGroup(0, bindGroup);
      const [x, y] = workgroups1d(threads, REPACK_WORKGROUP, this.device.limits.maxComputeWorkgroupsPerDimension);
      pass.dispatchWorkgroups(x, y);
    }
    pass.end();
    return () => temporaries.forEach((b) => b.destroy());
  }

  /**
   * After the encoders are submitted: throws, naming the zero-point tensor, output and group,
   * if any repack since the last check met a zero point its destination cannot hold (its
   * weights are then wrong and must not be used). One read-back for all of them.
   */
  async check(): Promise<void> {
    const entries = this.pending;
    this.pending = [];
    this.status = null;
    this.slotsUsed = STATUS_SLOTS;
    const buffers = [...new Set(entries.map((e) => e.buffer))];
    try {
      const words = new Map<GPUBuffer, Uint32Array>();
      for (const b of buffers) {
        const bytes = await readBuffer(this.device, b);
        words.set(b, new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4));
      }
      for (const e of entries) {
        const v = words.get(e.buffer)![e.slot];
        if (v === 0) continue;
        const at = 0xffffffff - v; // the kernel's max of ~(row·groups + group): the first bad one
        throw zeroPointError(e.tensor, this.format, this.bits, e.firstOutput + Math.floor(at / e.groups), at % e.groups);
      }
    } finally {
      buffers.forEach((b) => b.destroy());
    }
  }

  private statusSlot(tensor: string, groups: number, firstOutput: number): StatusEntry {
    if (!this.status || this.slotsUsed === STATUS_SLOTS) {
      const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC;
      this.status = this.device.createBuffer({ label: `repack.${this.format}.status`, size: 4 * STATUS_SLOTS, usage });
      this.slotsUsed = 0;
    }
    const entry = { buffer: this.status, slot: this.slotsUsed++, tensor, groups, firstOutput };
    this.pending.push(entry);
    return entry;
  }
}

/** A packed source's only buffer; a tensor chunked by rows (over one binding) is refused. */
function single(tensor: GpuTensor): GPUBuffer {
  if (tensor.chunks.length !== 1) {
    throw new SluiceError('TENSOR_TOO_LARGE', `${tensor.name} is stored in ${tensor.chunks.length} chunks (${tensor.byteLength} bytes, over one GPU binding); repack reads each packed tensor from one buffer`);
  }
  return tensor.chunks[0].buffer;
}

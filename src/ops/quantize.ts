// Launcher of shaders/quantize.wgsl: dense rows (F32, or F16 as the loader stores weights)
// → sluice's quantized layout (src/gpu/quantized-tensor.ts), on the GPU, as weights stream in.
//
// The scheme (group size 32 by default, any multiple of 8 accepted):
//   q8, symmetric per group, as llama.cpp's Q8_0 (ggml-quants.c quantize_row_q8_0_ref:
//       d = amax/127, q = round(x/d)) but with round half to even (torch.round, GPTQ/AWQ) and
//       q clamped to [−127, 127]; no zero points.
//   q4, asymmetric per group with an integer zero point, as GPTQ's Quantizer.find_params
//       (IST-DASLab/gptq quant.py: xmin = min(x.min, 0), xmax = max(x.max, 0), scale =
//       (xmax − xmin)/15, zero = round(−xmin/scale); q = clamp(round(x/scale) + zero, 0, 15)),
//       which AutoAWQ's pseudo_quantize_tensor also is but for the range: AWQ takes the bare
//       min/max, so a constant group (max = min) has no scale and dequantizes to 0; with 0
//       inside the range a constant group keeps its value within scale/2. torch.round is half
//       to even.
// Rounding, exactly (the kernel and quantizeReference agree bit for bit):
//   - scale = fl16(fl32(range · fl32(1/127 or 1/15))): the f32 product correctly rounded, then
//     rounded to f16 half-to-even (clamped to 65504). The scale is an f16 value even where it
//     is stored as f32 (no shader-f16): the same weights on every device, and q·s exact in f32.
//   - rne(x / scale) is the exact quotient rounded half to even (found without division,
//     see the shader), then clamped; a scale of 0 (an all-zero group) stores q = 0 (and zero 0).
// Inputs are assumed finite and normal or zero (denormal f32 weights may flush on some GPUs).
//
// Napkin math: reads 2 (f16) or 4 bytes and writes ~0.6 (q4) or ~1.1 bytes per weight; a
// Llama-3.2-1B's 1.24 G weights are a few seconds of lavapipe's ~7 GB/s, less than the upload.

import { workgroups1d } from '../gpu/dispatch.js';
import type { GpuTensor } from '../gpu/gpu-tensor.js';
import { ParamsLayout } from '../gpu/params.js';
import { pipelineCache, type PipelineSpec } from '../gpu/pipeline-cache.js';
import { DEFAULT_ZERO, ELEMENTS_PER_WORD, f16BitsRne, f16Value, type HostQuantized, type QuantKind, type QuantizedTensor } from '../gpu/quantized-tensor.js';
import { bindBuffers, type ComputeDtype, type PreparedDispatch, type PreparedOp } from './op.js';

/** Threads per workgroup; each quantizes 4 groups (128 weights at G = 32). */
export const QUANTIZE_WORKGROUP = 64;

const PARAMS = new ParamsLayout([
  ['groups', 'u32'], // groups this dispatch quantizes
  ['firstGroup', 'u32'], // flat index in the destination chunk of the first one
  ['srcOffset', 'u32'], // element of src where it starts
  ['groupSize', 'u32'],
  ['scalesF16', 'u32'], // 1 when scales are stored as f16
  ['threads', 'u32'], // quads of groups touched
] as const);

function variant(kind: QuantKind, src: ComputeDtype): { key: string; spec: PipelineSpec } {
  return {
    key: `quantize_${kind}_from_${src.toLowerCase()}_wg${QUANTIZE_WORKGROUP}`,
    spec: { shader: 'quantize', flags: [...(kind === 'q4' ? ['Q4'] : []), ...(src === 'F16' ? ['SRC_F16'] : [])], constants: { WORKGROUP_SIZE: QUANTIZE_WORKGROUP } },
  };
}

/** Every variant (the source dtype is read as u32 words: no shader-f16 needed). */
export function quantizeVariants(): { key: string; spec: PipelineSpec }[] {
  return (['q8', 'q4'] as const).flatMap((kind) => (['F32', 'F16'] as const).map((src) => variant(kind, src)));
}

export class Quantize {
  private constructor(
    private readonly device: GPUDevice,
    private readonly pipeline: GPUComputePipeline,
    readonly kind: QuantKind,
    readonly srcDtype: ComputeDtype,
  ) {}

  /** q8 writes no zero points, q4 always does: the destination must be made that way. */
  static async create(device: GPUDevice, kind: QuantKind, srcDtype: ComputeDtype): Promise<Quantize> {
    const { key, spec } = variant(kind, srcDtype);
    return new Quantize(device, await pipelineCache(device).get(key, spec), kind, srcDtype);
  }

  /** Quantizes a whole dense (N, K) tensor (any chunking) into `dst` (any chunking). */
  prepare(label: string, src: GpuTensor, dst: QuantizedTensor): PreparedOp {
    if (src.dtype !== this.srcDtype) throw new Error(`${label}: quantize was created for ${this.srcDtype} rows, ${src.name} is ${src.dtype}`);
    const same = src.shape.length === 2 && src.shape[0] === dst.shape[0] && src.shape[1] === dst.shape[1];
    if (!same) throw new Error(`${label}: quantize ${src.name} [${src.shape.join(', ')}] into ${dst.name} [${dst.shape.join(', ')}]: shapes differ`);
    const ops = src.chunks.map((c, i) => this.prepareRows(src.chunks.length > 1 ? `${label}.src${i}` : label, c.buffer, c.firstRow, c.rows, dst));
    return { label, dispatches: ops.flatMap((o) => o.dispatches), destroy: () => ops.forEach((o) => o.destroy()) };
  }

  /**
   * Quantizes rows [firstRow, firstRow + rows) of `dst` from `src`, which holds exactly those
   * rows, (rows, K) in the source dtype: what a streaming loader has in a staging buffer.
   */
  prepareRows(label: string, src: GPUBuffer, firstRow: number, rows: number, dst: QuantizedTensor): PreparedOp {
    const [n, k] = dst.shape;
    if (dst.kind !== this.kind) throw new Error(`${label}: quantize was created for ${this.kind}, ${dst.name} is ${dst.kind}`);
    if (k % dst.groupSize !== 0) throw new Error(`${label}: K = ${k} of ${dst.name} is not a multiple of the group size ${dst.groupSize}`);
    if (dst.hasZeros !== (this.kind === 'q4')) throw new Error(`${label}: quantize ${this.kind} ${this.kind === 'q4' ? 'writes' : 'has no'} zero points; ${dst.name} was made ${dst.hasZeros ? 'with' : 'without'}`);
    if (!Number.isInteger(firstRow) || !Number.isInteger(rows) || firstRow < 0 || rows < 1 || firstRow + rows > n) throw new Error(`${label}: rows ${firstRow}..${firstRow + rows} are outside ${dst.name}'s ${n}`);
    const srcBytes = rows * k * (this.srcDtype === 'F16' ? 2 : 4);
    if (src.size < srcBytes) throw new Error(`${label}: quantize src holds ${src.size} bytes, (${rows}, ${k}) ${this.srcDtype} needs ${srcBytes}`);
    const groupsPerRow = k / dst.groupSize;
    const paramBuffers: GPUBuffer[] = [];
    const dispatches: PreparedDispatch[] = [];
    for (const [i, chunk] of dst.chunks.entries()) {
      const from = Math.max(firstRow, chunk.firstRow);
      const to = Math.min(firstRow + rows, chunk.firstRow + chunk.rows);
      if (from >= to) continue;
      const name = dst.chunks.length > 1 ? `${label}.chunk${i}` : label;
      const firstGroup = (from - chunk.firstRow) * groupsPerRow;
      const groups = (to - from) * groupsPerRow;
      const threads = Math.floor((firstGroup + groups - 1) / 4) - Math.floor(firstGroup / 4) + 1;
      const params = PARAMS.createBuffer(this.device, name, {
        groups,
        firstGroup,
        srcOffset: (from - firstRow) * k,
        groupSize: dst.groupSize,
        scalesF16: dst.scaleDtype === 'F16' ? 1 : 0,
        threads,
      });
      paramBuffers.push(params);
      const buffers = [params, src, chunk.data, chunk.scales, ...(chunk.zeros ? [chunk.zeros] : [])];
      const bindGroup = bindBuffers(this.device, this.pipeline, name, buffers);
      const workgroups = workgroups1d(threads, QUANTIZE_WORKGROUP, this.device.limits.maxComputeWorkgroupsPerDimension);
      dispatches.push({ label: name, pipeline: this.pipeline, bindGroup, workgroups });
    }
    return { label, dispatches, destroy: () => paramBuffers.forEach((b) => b.destroy()) };
  }
}

// ── the TypeScript reference, bit-exact with the kernel ──

const INV = { q8: Math.fround(1 / 127), q4: Math.fround(1 / 15) };

/** rne(x / s) exactly (s > 0 an f16 value): the same guess-and-correct as the shader. */
function rneDiv(x: number, s: number): number {
  const t = x / s;
  if (Math.abs(t) > 256) return t;
  let q = Math.round(t);
  if (q - t === 0.5) q -= 1; // Math.round rounds half up; the guess only needs to be near
  const odd = Math.abs(q % 2) === 1;
  const hi = (2 * q + 1) * s * 0.5;
  const lo = (2 * q - 1) * s * 0.5;
  if (x > hi || (x === hi && odd)) q += 1;
  else if (x < lo || (x === lo && odd)) q -= 1;
  return q;
}

/**
 * The scheme above on the host: (N, K) values (as f32: f16 ones already rounded) → the
 * packed words, f16-valued scales and (q4) zero points the kernel writes.
 */
export function quantizeReference(kind: QuantKind, values: Float32Array, [n, k]: readonly [number, number], groupSize = 32): HostQuantized {
  if (k % groupSize !== 0) throw new Error(`quantize: K = ${k} is not a multiple of the group size ${groupSize}`);
  const epw = ELEMENTS_PER_WORD[kind];
  const groups = (n * k) / groupSize;
  const data = new Uint32Array((n * k) / epw);
  const scales = new Float32Array(groups);
  const zeros = kind === 'q4' ? new Int32Array(groups) : undefined;
  for (let e = 0; e < groups; e++) {
    const g = values.subarray(e * groupSize, (e + 1) * groupSize);
    let lo = g[0];
    let hi = g[0];
    for (const v of g) {
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
    if (kind === 'q4') {
      lo = Math.min(lo, 0);
      hi = Math.max(hi, 0);
    }
    const range = kind === 'q4' ? Math.fround(hi - lo) : Math.max(Math.abs(lo), Math.abs(hi));
    const s = f16Value(f16BitsRne(Math.fround(range * INV[kind])));
    scales[e] = s;
    const zero = kind === 'q4' && s > 0 ? Math.min(15, Math.max(0, rneDiv(-lo, s))) : kind === 'q4' ? 0 : DEFAULT_ZERO.q8;
    if (zeros) zeros[e] = zero;
    for (let i = 0; i < groupSize; i++) {
      const q = s === 0 ? 0 : kind === 'q4' ? Math.min(15, Math.max(0, rneDiv(g[i], s) + zero)) : Math.min(127, Math.max(-127, rneDiv(g[i], s)));
      const at = e * groupSize + i;
      const bits = kind === 'q4' ? 4 : 8;
      data[Math.floor(at / epw)] |= ((q & ((1 << bits) - 1)) << (bits * (at % epw))) >>> 0;
    }
  }
  return { data, scales, zeros };
}

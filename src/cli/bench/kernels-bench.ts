// `sluice bench kernels`: the kernels that dominate a forward pass, each against a limit
// measured on the same adapter in the same run.
//   read limit  the faster of two read-only streaming reductions over up to 256 MiB (and a copy)
//   gemv        weight bytes / time for Llama shapes, F32 and F16: goal ≥ 0.8× the read limit
//   qgemv       q8 and q4 weights (G = 32, device scales; q4 with zero points as quantize
//               writes them), same shapes, in the decode compute dtype: GB/s of packed bytes
//               (data + scales + zeros) over the read limit, and speed over the dense gemv of
//               the same shape and dtype (its ms / ours). Napkin: q4 reads 0.5 + 3/32 ≈ 0.59
//               bytes/weight, q8 1 + 2/32 ≈ 1.06 (f16 scales), so at equal GB/s q4 would run
//               2/0.59 ≈ 3.4× the f16 gemv; on lavapipe both are instruction-bound and q4's
//               unpacking costs ALU, so the ratio is the figure to watch.
//   matmul      GFLOP/s at prefill shapes against a naive one-thread-per-output kernel:
//               goal ≥ 3× on a software GPU, ≥ 5× on a real one
//   attention   prefill of 512 tokens, decode at 512 and 2048 positions (ms)
// Timing: timestamp queries where the device has them, else the wall clock over repeats
// in one pass (src/gpu/profiler.ts).

import { type GpuContext } from '../../gpu/device.js';
import type { GpuTensor } from '../../gpu/gpu-tensor.js';
import { repeatsFor, timeOps } from '../../gpu/profiler.js';
import { Step } from '../../gpu/step.js';
import { NaiveMatmul } from '../../ops/matmul.js';
import { familyKernels, type KernelFamily } from '../../model/kernel-family.js';
import { QGemv } from '../../ops/qgemv.js';
import { createQuantizedTensor, deviceScaleDtype, destroyQuantized, type QuantKind, type QuantizedTensor } from '../../gpu/quantized-tensor.js';
import { type ComputeDtype, computeBytes, type PreparedOp } from '../../ops/op.js';
import { measureReadLimit } from './read-limit.js';
import { weightBlock } from './synthetic-checkpoint.js';

export const KERNEL_GOALS = { gemvOverRead: 0.8, matmulOverNaiveSoftware: 3, matmulOverNaiveHardware: 5 };

export interface KernelsBenchOptions {
  /** Smaller shapes (a quick check, and the test). */
  quick?: boolean;
  /** Whose gemv, matmul and attention to time (kernel-family.ts; default 'software'). */
  family?: KernelFamily;
  onStep?: (what: string) => void;
}

export interface KernelsBenchResult {
  adapter: string;
  software_adapter: boolean;
  /** The kernel family timed. */
  kernels: KernelFamily;
  timing: 'timestamp' | 'wall';
  read_limit: { bytes: number; read_gbps: number; strided_gbps: number; segmented_gbps: number; copy_gbps: number };
  gemv: { dtype: ComputeDtype; n: number; k: number; chunks: number; ms: number; gbps: number; over_read: number; pass: boolean }[];
  qgemv: { kind: QuantKind; dtype: ComputeDtype; n: number; k: number; chunks: number; bytes_per_weight: number; ms: number; gbps: number; over_read: number; over_gemv: number }[];
  matmul: { dtype: ComputeDtype; m: number; n: number; k: number; gflops: number; naive_gflops: number; over_naive: number; goal: number; pass: boolean }[];
  attention: { dtype: ComputeDtype; kind: 'prefill' | 'decode'; tokens: number; context: number; heads: number; kv_heads: number; head_dim: number; ms: number }[];
  goals: typeof KERNEL_GOALS;
}

const MiB = 2 ** 20;

export async function benchKernels(gpu: GpuContext, options: KernelsBenchOptions = {}): Promise<KernelsBenchResult> {
  const { device } = gpu;
  const step = options.onStep ?? (() => {});
  const quick = options.quick ?? false;
  const family = options.family ?? 'software';
  const designs = familyKernels(family);
  const dtypes: ComputeDtype[] = device.features.has('shader-f16') ? ['F32', 'F16'] : ['F32'];
  let method: 'timestamp' | 'wall' = 'wall';
  const time = async (ops: PreparedOp[], bytesOrWork: number, perSecond: number) => {
    const t = await timeOps(device, ops, { repeat: repeatsFor(bytesOrWork / perSecond) });
    method = t.method;
    return t.seconds;
  };

  // ── read limit ──
  step('read limit');
  const limit = await measureReadLimit(device, (quick ? 32 : 256) * MiB);
  const readGbps = limit.readGbps;

  // ── gemv ──
  const gemvShapes: [number, number][] = quick
    ? [[1024, 1024], [4096, 1024], [1024, 4096], [32000, 1024]]
    : [[2048, 2048], [8192, 2048], [2048, 8192], [128256, 2048]];
  const gemv: KernelsBenchResult['gemv'] = [];
  for (const dtype of dtypes) {
    const op = await designs.gemv(device, dtype);
    for (const [n, k] of gemvShapes) {
      step(`gemv ${dtype} ${n}×${k}`);
      const weight = syntheticWeight(device, `bench.gemv.${n}x${k}`, [n, k], dtype);
      const x = filledBuffer(device, 'bench.gemv.x', k * computeBytes(dtype), dtype);
      const y = filledBuffer(device, 'bench.gemv.y', n * computeBytes(dtype), dtype);
      const prepared = op.prepare(`bench.gemv.${n}x${k}`, weight, x, y);
      const bytes = n * k * computeBytes(dtype);
      const seconds = await time([prepared], bytes, readGbps * 1e9);
      const gbps = bytes / seconds / 1e9;
      gemv.push({ dtype, n, k, chunks: weight.chunks.length, ms: round(seconds * 1e3), gbps: round(gbps), over_read: round(gbps / readGbps), pass: gbps / readGbps >= KERNEL_GOALS.gemvOverRead });
      prepared.destroy();
      for (const c of weight.chunks) c.buffer.destroy();
      x.destroy();
      y.destroy();
    }
  }

  // ── qgemv ──
  const qgemv: KernelsBenchResult['qgemv'] = [];
  const decodeDtype: ComputeDtype = dtypes[dtypes.length - 1];
  for (const kind of ['q8', 'q4'] as const) {
    const op = await QGemv.create(device, kind, decodeDtype);
    for (const [n, k] of gemvShapes) {
      step(`qgemv ${kind} ${decodeDtype} ${n}×${k}`);
      const weight = syntheticQuantized(device, `bench.qgemv.${kind}.${n}x${k}`, kind, [n, k]);
      const x = filledBuffer(device, 'bench.qgemv.x', k * computeBytes(decodeDtype), decodeDtype);
      const y = filledBuffer(device, 'bench.qgemv.y', n * computeBytes(decodeDtype), decodeDtype);
      const prepared = op.prepare(`bench.qgemv.${kind}.${n}x${k}`, weight, x, y);
      const bytes = weight.byteLength;
      const seconds = await time([prepared], bytes, readGbps * 1e9);
      const gbps = bytes / seconds / 1e9;
      const dense = gemv.find((g) => g.dtype === decodeDtype && g.n === n && g.k === k)!;
      qgemv.push({
        kind,
        dtype: decodeDtype,
        n,
        k,
        chunks: weight.chunks.length,
        bytes_per_weight: round(bytes / (n * k)),
        ms: round(seconds * 1e3),
        gbps: round(gbps),
        over_read: round(gbps / readGbps),
        over_gemv: round(dense.ms / (seconds * 1e3)),
      });
      prepared.destroy();
      destroyQuantized(weight);
      x.destroy();
      y.destroy();
    }
  }

  // ── matmul ──
  const size = quick ? 256 : 2048;
  const goal = gpu.adapterInfo.isSoftware ? KERNEL_GOALS.matmulOverNaiveSoftware : KERNEL_GOALS.matmulOverNaiveHardware;
  const matmul: KernelsBenchResult['matmul'] = [];
  for (const dtype of dtypes) {
    const tiled = await designs.matmul(device, dtype);
    const naive = await NaiveMatmul.create(device, dtype);
    for (const m of quick ? [16, 64] : [128, 512]) {
      step(`matmul ${dtype} ${m}×${size}×${size}`);
      const weight = syntheticWeight(device, 'bench.matmul.w', [size, size], dtype);
      const x = filledBuffer(device, 'bench.matmul.x', m * size * computeBytes(dtype), dtype);
      const y = filledBuffer(device, 'bench.matmul.y', m * size * computeBytes(dtype), dtype);
      const flops = 2 * m * size * size;
      const fast = tiled.prepare(`bench.matmul.${m}`, m, weight, x, y);
      const slow = naive.prepare(`bench.matmul.naive.${m}`, m, weight, x, y);
      const gflops = flops / (await time([fast], flops, 5e9)) / 1e9;
      const naiveGflops = flops / (await time([slow], flops, 0.7e9)) / 1e9;
      matmul.push({ dtype, m, n: size, k: size, gflops: round(gflops), naive_gflops: round(naiveGflops), over_naive: round(gflops / naiveGflops), goal, pass: gflops / naiveGflops >= goal });
      for (const p of [fast, slow]) p.destroy();
      for (const c of weight.chunks) c.buffer.destroy();
      x.destroy();
      y.destroy();
    }
  }

  // ── attention ──
  const shape = quick ? { nHeads: 8, nKvHeads: 2, headDim: 64 } : { nHeads: 32, nKvHeads: 8, headDim: 64 };
  const attention: KernelsBenchResult['attention'] = [];
  for (const dtype of dtypes) {
    const op = await designs.attention(device, dtype);
    const prefillTokens = quick ? 64 : 512;
    for (const [kind, tokens, context] of [
      ['prefill', prefillTokens, prefillTokens],
      ['decode', 1, quick ? 64 : 512],
      ['decode', 1, quick ? 256 : 2048],
    ] as const) {
      step(`attention ${dtype} ${kind} ${tokens} tokens at context ${context}`);
      const maxSeq = context;
      const width = computeBytes(dtype);
      const cache = (name: string) => filledBuffer(device, `bench.attention.${name}`, shape.nKvHeads * maxSeq * shape.headDim * width, dtype);
      const buffers = {
        q: filledBuffer(device, 'bench.attention.q', tokens * shape.nHeads * shape.headDim * width, dtype),
        kCache: cache('k'),
        vCache: cache('v'),
        out: filledBuffer(device, 'bench.attention.out', tokens * shape.nHeads * shape.headDim * width, dtype),
      };
      const full = { ...shape, maxSeq };
      const attnStep = new Step(device, 'bench.attention', { rows: tokens, positions: maxSeq });
      const prepared = kind === 'prefill' ? op.prepare('bench.attention', full, { ...buffers, step: attnStep }) : op.prepareDecode('bench.attention', full, { ...buffers, step: attnStep });
      attnStep.writeRange(context - tokens, tokens);
      // Work ~ reading the cache once per query group: a rough guess to pick the repeat count.
      const seconds = await time([prepared], tokens * context * shape.nHeads * shape.headDim * 4, 2e9);
      attention.push({ dtype, kind, tokens, context, heads: shape.nHeads, kv_heads: shape.nKvHeads, head_dim: shape.headDim, ms: round(seconds * 1e3) });
      prepared.destroy();
      attnStep.destroy();
      for (const b of Object.values(buffers)) b.destroy();
    }
  }

  // A dispatch that fails validation does nothing, and would time as infinitely fast.
  const { errors } = gpu.takeErrors();
  if (errors.length) throw new Error(`bench kernels: GPU errors: ${errors.map((e) => e.message.replace(/\s*\n\s*/g, ' ')).join('; ')}`);
  return {
    adapter: gpu.adapterInfo.description || gpu.adapterInfo.device,
    software_adapter: gpu.adapterInfo.isSoftware,
    kernels: family,
    timing: method,
    read_limit: { bytes: limit.bytes, read_gbps: round(readGbps), strided_gbps: round(limit.stridedGbps), segmented_gbps: round(limit.segmentedGbps), copy_gbps: round(limit.copyGbps) },
    gemv,
    qgemv,
    matmul,
    attention,
    goals: KERNEL_GOALS,
  };
}

const round = (x: number) => Math.round(x * 1000) / 1000;

/** A buffer of `bytes` (padded to 16) filled with realistic weights of `dtype`. */
function filledBuffer(device: GPUDevice, label: string, bytes: number, dtype: ComputeDtype): GPUBuffer {
  const size = Math.max(16, Math.ceil(bytes / 16) * 16);
  const buffer = device.createBuffer({ label, size, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
  const data = weightBlock(dtype);
  for (let at = 0; at < size; at += data.length) device.queue.writeBuffer(buffer, at, data, 0, Math.min(data.length, size - at));
  return buffer;
}

/** A (rows, cols) weight in the compute dtype, row-chunked at the binding limit as the loader would. */
function syntheticWeight(device: GPUDevice, name: string, shape: [number, number], dtype: ComputeDtype): GpuTensor {
  const [rows, cols] = shape;
  const rowBytes = cols * computeBytes(dtype);
  const rowsPerChunk = Math.min(rows, Math.floor(Math.floor(device.limits.maxStorageBufferBindingSize / 16) * 16 / rowBytes));
  const chunks = [];
  for (let firstRow = 0; firstRow < rows; firstRow += rowsPerChunk) {
    const n = Math.min(rowsPerChunk, rows - firstRow);
    chunks.push({ buffer: filledBuffer(device, `${name}#${chunks.length}`, n * rowBytes, dtype), firstRow, rows: n, byteLength: n * rowBytes });
  }
  return { name, shape, storageDtype: dtype, dtype, chunks, rowsPerChunk, byteLength: rows * rowBytes };
}

/** A (rows, cols) q8 (symmetric) or q4 (with zero points) weight, G = 32, filled with plausible bytes. */
function syntheticQuantized(device: GPUDevice, name: string, kind: QuantKind, shape: [number, number]): QuantizedTensor {
  const scaleDtype = deviceScaleDtype(device);
  const t = createQuantizedTensor(device, name, { kind, shape, scaleDtype, hasZeros: kind === 'q4' });
  const fill = (buffer: GPUBuffer, word: (i: number) => number) => {
    const block = new Uint32Array(1 << 14).map((_, i) => word(i));
    for (let at = 0; at < buffer.size; at += block.byteLength) device.queue.writeBuffer(buffer, at, block, 0, Math.min(block.length, (buffer.size - at) / 4));
  };
  for (const c of t.chunks) {
    fill(c.data, (i) => Math.imul(i + 1, 0x9e3779b1) >>> 0);
    fill(c.scales, () => (scaleDtype === 'F16' ? 0x211f211f : 0x3c23d70a)); // 0.01
    if (c.zeros) fill(c.zeros, () => 0x08080808);
  }
  return t;
}

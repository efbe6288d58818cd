// Times qkv_rope_store's one dispatch against the 2 to 4 it replaces (rms_norm q, rms_norm k,
// rope, kv_store), at Llama-3.2-1B's attention shape (32 heads, 8 KV heads, head 64), for a
// decode row and a 64-row prefill chunk, with and without the per-head q/k norm (Qwen3's
// case at this shape). A measurement, not a test: it prints a table, asserts nothing.
//
//   npx esbuild scripts/bench-qkv-rope-store.ts --bundle --platform=node --format=esm \
//     --external:webgpu --outfile=node_modules/.cache/bench-qkv-rope-store.mjs \
//     && node node_modules/.cache/bench-qkv-rope-store.mjs
//
// Each figure: the fastest of 15 runs of profiler.ts timeOps (timestamps where the device
// has them, else the wall clock), each of 10 repetitions in one pass, the two alternating:
// on a loaded machine the fastest run is the one least disturbed.
//
// Measured on lavapipe (llvmpipe, Mesa 25.0.7, 2 shared cores under load), µs, unfused → fused:
//   F32 rows 1:  no norm 2 dispatches 52–85 → 33–66;   qk-norm 4: 630–940 → 130–190
//   F32 rows 64: no norm 1590–1930 → 1720–1930 (≈0.9×); qk-norm 72k–133k → 15k–16k
//   F16 rows 1:  no norm 46–52 → 39;                    qk-norm 680–930 → 140–240
//   F16 rows 64: no norm 1160–1340 → 1270–1490 (≈0.9×); qk-norm 74k–167k → 16k–26k
// (the fused op also copies q into qOut, which the in-place rope does not.)

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { acquireNodeDevice } from '../src/gpu/node-gpu.js';
import { timeOps } from '../src/gpu/profiler.js';
import { setShaderLoader } from '../src/gpu/shader-library.js';
import { Step } from '../src/gpu/step.js';
import type { GpuTensor } from '../src/gpu/gpu-tensor.js';
import { parseRope, ropeTables } from '../src/model/rope-scaling.js';
import { KvStore } from '../src/ops/kv-store.js';
import { type ComputeDtype, computeBytes, type PreparedOp } from '../src/ops/op.js';
import { QkvRopeStore } from '../src/ops/qkv-rope-store.js';
import { RmsNorm } from '../src/ops/rms-norm.js';
import { Rope } from '../src/ops/rope.js';

const [nHeads, nKvHeads, headDim, maxSeq] = [32, 8, 64, 512];
const [qDim, kvDim] = [nHeads * headDim, nKvHeads * headDim];

const context = await acquireNodeDevice({ label: 'bench.qkv_rope_store' });
const { device } = context;
// The bundle lives elsewhere than src/: read the shaders from the working tree.
setShaderLoader((name) => readFileSync(join(process.cwd(), 'shaders', `${name}.wgsl`), 'utf8'));

const storage = (bytes: number, label: string): GPUBuffer =>
  device.createBuffer({ label, size: Math.ceil(bytes / 16) * 16, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC });

function normWeight(name: string, dtype: ComputeDtype): GpuTensor {
  const byteLength = headDim * computeBytes(dtype);
  const buffer = storage(byteLength, name); // zeros: timing only
  return { name, shape: [headDim], storageDtype: dtype, dtype, chunks: [{ buffer, firstRow: 0, rows: headDim, byteLength }], rowsPerChunk: headDim, byteLength };
}

/** The fastest of 15 alternating runs of each (10 repetitions in one pass): on a shared CPU, the least disturbed. */
async function fastest(a: readonly PreparedOp[], b: readonly PreparedOp[]): Promise<[number, number]> {
  let best: [number, number] = [Infinity, Infinity];
  for (let i = 0; i < 15; i++) {
    const ta = (await timeOps(device, a, { repeat: 10, warmup: 1 })).seconds;
    const tb = (await timeOps(device, b, { repeat: 10, warmup: 1 })).seconds;
    best = [Math.min(best[0], ta), Math.min(best[1], tb)];
  }
  return best;
}

const invFreq = ropeTables(parseRope({ head_dim: headDim, rope_theta: 500_000 }).rope).invFreq;
const dtypes: ComputeDtype[] = device.features.has('shader-f16') ? ['F32', 'F16'] : ['F32'];
console.log(`device: ${context.adapterInfo.description}; timing: ${device.features.has('timestamp-query') ? 'timestamps' : 'wall clock'}`);
console.log('dtype rows qk-norm | unfused dispatches  µs | fused µs | saved');
for (const dtype of dtypes) {
  const bytes = computeBytes(dtype);
  const rope = await Rope.create(device, dtype, { invFreq });
  const store = await KvStore.create(device, dtype);
  for (const rows of [1, 64]) {
    for (const qkNorm of [false, true]) {
      const step = new Step(device, 'bench.step', { rows, positions: maxSeq });
      step.writeRange(100, rows);
      const [q, k, v, qN, kN] = [qDim, kvDim, kvDim, qDim, kvDim].map((w, i) => storage(rows * w * bytes, `bench.${i}`));
      const joined = storage(rows * (qDim + 2 * kvDim) * bytes, 'bench.qkv');
      const [kCache, vCache, qOut] = [storage(maxSeq * kvDim * bytes, 'bench.k_cache'), storage(maxSeq * kvDim * bytes, 'bench.v_cache'), storage(rows * qDim * bytes, 'bench.q_out')];
      const [qW, kW] = [normWeight('q_norm', dtype), normWeight('k_norm', dtype)];
      const unfused: PreparedOp[] = [];
      if (qkNorm) {
        const norm = await RmsNorm.create(device, dtype, { eps: 1e-6, onePlusWeight: false });
        unfused.push(norm.prepare('bench.q_norm', rows * nHeads, headDim, q, qW, qN), norm.prepare('bench.k_norm', rows * nKvHeads, headDim, k, kW, kN));
      }
      const [qIn, kIn] = qkNorm ? [qN, kN] : [q, k];
      unfused.push(rope.prepare('bench.rope', { nHeads, nKvHeads, headDim }, { step, q: qIn, k: kIn }));
      unfused.push(store.prepare('bench.kv_store', { nKvHeads, headDim, maxSeq }, { step, k: kIn, v, kCache, vCache }));
      const op = await QkvRopeStore.create(device, dtype, { qkNorm: qkNorm ? { eps: 1e-6, onePlusWeight: false } : null });
      const stride = qDim + 2 * kvDim;
      const fused = op.prepare('bench.qkv_rope_store', { nHeads, nKvHeads, headDim, maxSeq, slots: 1, rows }, {
        step, rope, qOut, kCache, vCache,
        q: { buffer: joined, offset: 0, stride }, k: { buffer: joined, offset: qDim, stride }, v: { buffer: joined, offset: qDim + kvDim, stride },
        ...(qkNorm ? { qNorm: qW, kNorm: kW } : {}),
      });
      const [a, b] = await fastest(unfused, [fused]);
      const us = (s: number) => (s * 1e6).toFixed(0).padStart(6);
      console.log(`${dtype}   ${String(rows).padStart(3)}  ${qkNorm ? 'yes' : 'no '}    | ${unfused.length}             ${us(a)} | ${us(b)}   | ${(a / b).toFixed(2)}×`);
      for (const o of [...unfused, fused]) o.destroy();
      for (const x of [step, q, k, v, qN, kN, joined, kCache, vCache, qOut, qW.chunks[0].buffer, kW.chunks[0].buffer]) x.destroy();
    }
  }
  rope.destroy();
}
context.destroy();

// repack: pre-quantized Linears as GPTQ, AWQ and compressed-tensors pack them (fixtures made
// by test/fixtures/quantized_packers.py, written from each project's code) → sluice's layout
// on the GPU. Each fixture: dequantized == the packer's own dequantized weight exactly
// (permuted for act-order; f16-rounded scales where stored as f16), GPU == repackReference
// bit for bit, f32 and f16 scale storage, row-chunked destinations, fused splits by
// firstOutput, the real loader's tensors; seeded random packed words (every bit pattern,
// odd shapes) against the reference; every malformed input's one-line error.

import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openCheckpoint } from '../../src/checkpoint/open-path.js';
import type { Dtype } from '../../src/formats/dtypes.js';
import type { GpuTensor } from '../../src/gpu/gpu-tensor.js';
import { loadTensors } from '../../src/gpu/load-tensors.js';
import { pipelineCache } from '../../src/gpu/pipeline-cache.js';
import {
  createQuantizedTensor, dequantizeHost, destroyQuantized, ELEMENTS_PER_WORD, type QuantizedTensor, type ScaleDtype,
} from '../../src/gpu/quantized-tensor.js';
import {
  actOrderPerm, checkPackedShapes, type HostPackedSources, type PackedFormat, Repack, repackReference, repackVariants, type RepackSpec,
} from '../../src/ops/repack.js';
import { permuteVariants } from '../../src/ops/permute.js';
import { PACKED_TENSOR_NAMES, type PackedShapes } from '../../src/ops/repack-layout.js';
import type { HostPackedTensor } from '../../src/ops/repack-reference.js';
import { useGpuTestDevice } from '../support/gpu-helpers.js';
import { uploadArray } from '../support/op-helpers.js';
import { arrayMismatch, hostMismatch, readQuantized } from '../support/read-quantized.js';
import { mulberry32 } from '../support/safetensors-bytes.js';

const gpu = useGpuTestDevice('test.repack');
const DIR = join(__dirname, '../fixtures/quantized/layouts');
const FIXTURES = [
  'gptq4_sym_g32', 'gptq4_asym_actorder_g32', 'gptq4_asym_v2_actorder_g32', 'gptq8_asym_v2_g32', 'gptq8_asym_g32', 'gptq8_sym_channel',
  'awq4_g32', 'awq4_g64', 'ct4_sym_g32_bf16', 'ct4_asym_g32_f16', 'ct4_asym_channel_bf16', 'ct4_asym_g32_int8zp_f32',
  'ct8_sym_g32_bf16', 'ct8_asym_channel_f32', 'ct8_asym_g32_int8zp_bf16', 'int8_channel_bf16', 'int8_channel_f16',
];

interface Fixture {
  name: string;
  spec: Omit<RepackSpec, 'perm'>;
  src: HostPackedSources;
  gIdx?: Int32Array;
  expected: Float32Array;
  /** With every scale rounded to f16 first (sources whose scales are not f16). */
  expectedF16?: Float32Array;
}

const f32s = (b: Uint8Array) => new Float32Array(b.slice().buffer);

async function readFixture(name: string): Promise<Fixture> {
  const ckpt = await openCheckpoint(join(DIR, `${name}.safetensors`));
  try {
    const m = ckpt.metadata;
    const format = m.format as PackedFormat;
    const bits = Number(m.bits) as 4 | 8;
    const host = async (role: keyof PackedShapes): Promise<HostPackedTensor | undefined> => {
      const tensor = PACKED_TENSOR_NAMES[format][role];
      if (!ckpt.has(tensor)) return undefined;
      const info = ckpt.info(tensor);
      return { name: `${name}.${tensor}`, dtype: info.dtype, shape: info.shape, bytes: await ckpt.read(tensor) };
    };
    const gIdx = await host('gIdx');
    return {
      name,
      spec: { format, bits, groupSize: Number(m.group_size), k: Number(m.k), n: Number(m.n) },
      src: { qweight: (await host('qweight'))!, scales: (await host('scales'))!, zeros: await host('zeros') },
      gIdx: gIdx && new Int32Array(gIdx.bytes.slice().buffer),
      expected: f32s(await ckpt.read('expected')),
      expectedF16: ckpt.has('expected_f16') ? f32s(await ckpt.read('expected_f16')) : undefined,
    };
  } finally {
    await ckpt.close();
  }
}

/** A packed tensor on the GPU as loadTensors stores an integer tensor: its bytes, one buffer. */
function upload(t: HostPackedTensor): GpuTensor {
  const buffer = gpu.device.createBuffer({ label: t.name, size: Math.max(16, Math.ceil(t.bytes.byteLength / 16) * 16), usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
  const padded = new Uint8Array(Math.ceil(t.bytes.byteLength / 4) * 4);
  padded.set(t.bytes);
  gpu.device.queue.writeBuffer(buffer, 0, padded);
  const rows = t.shape[0];
  return { name: t.name!, shape: t.shape, storageDtype: t.dtype, dtype: t.dtype, chunks: [{ buffer, firstRow: 0, rows, byteLength: t.bytes.byteLength }], rowsPerChunk: rows, byteLength: t.bytes.byteLength };
}

const repacks = new Map<string, Promise<Repack>>();
function repackFor(format: PackedFormat, bits: 4 | 8): Promise<Repack> {
  const key = `${format}/${bits}`;
  if (!repacks.has(key)) repacks.set(key, Repack.create(gpu.device, format, bits));
  return repacks.get(key)!;
}

interface RunOptions {
  rows?: number;
  firstOutput?: number;
  scaleDtype: ScaleDtype;
  chunked?: boolean;
  perm?: Uint32Array | null;
  /** Sources already on the GPU (else uploaded from src). */
  gpuSources?: { qweight: GpuTensor; scales: GpuTensor; zeros?: GpuTensor };
}

/** Repacks on the GPU into a new destination, checks zero points, reads it back; frees all but what it returns. */
async function runRepack(name: string, spec: Omit<RepackSpec, 'perm'>, src: HostPackedSources, o: RunOptions) {
  const rows = o.rows ?? spec.n;
  const kind = spec.bits === 8 ? 'q8' : 'q4';
  const wordsPerRow = spec.k / ELEMENTS_PER_WORD[kind];
  const maxChunkBytes = o.chunked ? 32 + Math.ceil(rows / 3) * wordsPerRow * 4 : undefined; // about three chunks
  const dst = createQuantizedTensor(gpu.device, `${name}.q`, { kind, shape: [rows, spec.k], groupSize: spec.groupSize, scaleDtype: o.scaleDtype, hasZeros: src.zeros !== undefined }, maxChunkBytes);
  const sources = o.gpuSources ?? { qweight: upload(src.qweight), scales: upload(src.scales), zeros: src.zeros && upload(src.zeros) };
  const perm = o.perm ? uploadArray(gpu.device, o.perm, 'U32', `${name}.perm`) : undefined;
  try {
    const repack = await repackFor(spec.format, spec.bits);
    const encoder = gpu.device.createCommandEncoder({ label: name });
    const done = repack.encode(encoder, name, { ...spec, firstOutput: o.firstOutput, perm }, sources, dst);
    gpu.device.queue.submit([encoder.finish()]);
    await gpu.device.queue.onSubmittedWorkDone();
    done();
    await repack.check();
    return { dst, got: await readQuantized(gpu.device, dst) };
  } catch (e) {
    destroyQuantized(dst);
    throw e;
  } finally {
    perm?.destroy();
    if (!o.gpuSources) for (const t of [sources.qweight, sources.scales, sources.zeros]) t?.chunks[0].buffer.destroy();
  }
}

/** expected (N, K) with columns permuted (x'[j] = x[perm[j]]) and rows [first, first + rows). */
function expectedRows(f: Fixture, scaleDtype: ScaleDtype, perm: Uint32Array | null, first = 0, rows = f.spec.n): Float32Array {
  const full = scaleDtype === 'F16' && f.expectedF16 ? f.expectedF16 : f.expected;
  const k = f.spec.k;
  const out = new Float32Array(rows * k);
  for (let r = 0; r < rows; r++) for (let j = 0; j < k; j++) out[r * k + j] = full[(first + r) * k + (perm ? perm[j] : j)];
  return out;
}

/** Repack rows [first, first + rows) and compare with the reference and the packer's weights. */
async function checkFixture(f: Fixture, o: RunOptions): Promise<void> {
  const perm = f.gIdx ? actOrderPerm(`${f.name}.g_idx`, f.gIdx, f.spec.groupSize) : null;
  const rows = o.rows ?? f.spec.n;
  const { dst, got } = await runRepack(f.name, f.spec, f.src, { ...o, perm });
  destroyQuantized(dst);
  const want = repackReference(f.name, { ...f.spec, firstOutput: o.firstOutput, perm: perm ?? undefined }, f.src, { rows, scaleDtype: o.scaleDtype });
  const where = `${f.name} ${o.scaleDtype} scales, rows ${o.firstOutput ?? 0}+${rows}${o.chunked ? ', chunked' : ''}`;
  expect(hostMismatch(got, want), where).toBeNull();
  const weights = dequantizeHost(dst.kind, [rows, f.spec.k], f.spec.groupSize, got);
  expect(arrayMismatch(where, weights, expectedRows(f, o.scaleDtype, perm, o.firstOutput, rows)), where).toBeNull();
}

describe('fixtures packed by the reference packers', () => {
  it.each(FIXTURES)('%s: f32 and f16 scales, whole and row-chunked, equal the packer\'s weights and the reference', async (name) => {
    const f = await readFixture(name);
    await checkFixture(f, { scaleDtype: 'F32' });
    await checkFixture(f, { scaleDtype: 'F16', chunked: true });
  });

  it.each(['gptq4_asym_actorder_g32', 'awq4_g32', 'ct4_asym_g32_f16', 'ct4_asym_channel_bf16', 'int8_channel_f16'])('%s: a fused source split by firstOutput fills two destinations', async (name) => {
    const f = await readFixture(name);
    const cut = 16; // a multiple of 8: every layout's packing word boundary stays inside a part
    await checkFixture(f, { scaleDtype: 'F16', firstOutput: 0, rows: cut });
    await checkFixture(f, { scaleDtype: 'F16', firstOutput: cut, rows: f.spec.n - cut - 3, chunked: true });
  });

  it('act-order g_idx gives a non-trivial stable permutation; a static one none', async () => {
    const f = await readFixture('gptq4_asym_actorder_g32');
    const perm = actOrderPerm('g_idx', f.gIdx!, 32)!;
    expect(perm).not.toBeNull();
    for (let j = 0; j < perm.length; j++) {
      expect(f.gIdx![perm[j]], `column ${j}`).toBe(Math.floor(j / 32));
      if (j % 32 > 0) expect(perm[j]).toBeGreaterThan(perm[j - 1]);
    }
    expect(actOrderPerm('g_idx', (await readFixture('gptq4_sym_g32')).gIdx!, 32)).toBeNull();
  });

  it('sources as loadTensors stores them (scales converted to the compute dtype) repack alike', async () => {
    for (const name of ['gptq8_asym_g32', 'ct4_sym_g32_bf16', 'int8_channel_bf16']) {
      const f = await readFixture(name);
      const ckpt = await openCheckpoint(join(DIR, `${name}.safetensors`));
      const loaded = await loadTensors(ckpt, gpu.device, { filter: (t) => !t.name.startsWith('expected') && t.name !== 'weight_shape' && t.name !== 'g_idx' });
      await ckpt.close();
      try {
        const names = PACKED_TENSOR_NAMES[f.spec.format];
        const gpuSources = { qweight: loaded.get(names.qweight)!, scales: loaded.get(names.scales)!, zeros: loaded.get(names.zeros) };
        const { dst, got } = await runRepack(name, f.spec, f.src, { scaleDtype: 'F16', gpuSources });
        destroyQuantized(dst);
        const weights = dequantizeHost(dst.kind, [f.spec.n, f.spec.k], f.spec.groupSize, got);
        expect(arrayMismatch(name, weights, expectedRows(f, 'F16', null)), name).toBeNull();
      } finally {
        loaded.destroy();
      }
    }
  });
});

// ── seeded random packed tensors: every bit pattern, odd shapes, all scale dtypes ──

const rng = mulberry32(0x7e9ac);
const int = (lo: number, hi: number) => lo + Math.floor(rng() * (hi - lo + 1));

function randomBytes(count: number): Uint8Array {
  return Uint8Array.from({ length: count }, () => int(0, 255));
}

/** Scale bits of every kind: normal, f16-subnormal, below f16, past f16 (overflow), negative, f16 ties. */
function randomScales(count: number, dtype: Dtype): Uint8Array {
  const out = new DataView(new ArrayBuffer(count * (dtype === 'F32' ? 4 : 2)));
  for (let i = 0; i < count; i++) {
    const magnitude = [2 ** -30, 2 ** -20, 2 ** -8, 1, 2 ** 17][int(0, 4)] * (1 + rng());
    const v = new Float32Array([rng() < 0.1 ? -magnitude : magnitude]);
    let bits = new Uint32Array(v.buffer)[0];
    // f32: a third are exact halfway cases between two f16 values (round half to even), or next to one.
    if (rng() < 0.33) bits = ((bits & ~0x1fff) | [0x0fff, 0x1000, 0x1001][int(0, 2)]) >>> 0;
    if (dtype === 'F32') out.setUint32(4 * i, bits, true);
    else out.setUint16(2 * i, dtype === 'BF16' ? bits >>> 16 : int(0, 0xffff) & 0x7bff, true); // F16: any finite bits
  }
  return new Uint8Array(out.buffer);
}

/** Random zero points that fit: GPTQ v1 fields below 2^b − 1, CT int8 zeros in range. */
function randomZeros(format: PackedFormat, bits: 4 | 8, dtype: Dtype, shape: number[]): Uint8Array {
  const count = shape.reduce((a, b) => a * b, 1);
  if (dtype === 'I8') return Uint8Array.from({ length: count }, () => int(-(1 << (bits - 1)), (1 << (bits - 1)) - 1) & 0xff);
  const words = new Uint32Array(count);
  const pf = 32 / bits;
  for (let i = 0; i < count; i++) for (let f = 0; f < pf; f++) words[i] |= int(0, (1 << bits) - (format === 'gptq' ? 2 : 1)) << (bits * f);
  return new Uint8Array(words.buffer);
}

function randomCase(format: PackedFormat, bits: 4 | 8, zeros: boolean, int8Zeros: boolean, scaleDtype: 'F16' | 'BF16' | 'F32') {
  const groupSize = 8 * int(1, 6);
  const k = groupSize * int(1, 5);
  const n = (format === 'awq-gemm' ? 8 : format.startsWith('gptq') ? 32 / bits : 1) * int(1, 50 / (bits === 4 ? 8 : 4));
  const pf = 32 / bits;
  const groups = k / groupSize;
  const ct = format === 'pack-quantized' || format === 'int-quantized';
  const words = (shape: number[]) => ({ dtype: 'I32' as const, shape, bytes: randomBytes(shape.reduce((a, b) => a * b, 4)) });
  const qweight = format === 'int-quantized' ? { dtype: 'I8' as const, shape: [n, k], bytes: randomBytes(n * k) } : words(ct ? [n, k / pf] : format === 'awq-gemm' ? [k, n / 8] : [k / pf, n]);
  const scaleShape = ct ? [n, groups] : [groups, n];
  const zeroShape = !ct ? [groups, n / (format === 'awq-gemm' ? 8 : pf)] : int8Zeros ? [n, groups] : [Math.ceil(n / pf), groups];
  const zeroDtype = int8Zeros ? 'I8' : 'I32';
  const src: HostPackedSources = {
    qweight: { name: 'rand.qweight', ...qweight },
    scales: { name: 'rand.scales', dtype: scaleDtype, shape: scaleShape, bytes: randomScales(n * groups, scaleDtype) },
    zeros: zeros ? { name: 'rand.zeros', dtype: zeroDtype, shape: zeroShape, bytes: randomZeros(format, bits, zeroDtype, zeroShape) } : undefined,
  };
  const withPerm = format !== 'awq-gemm' && rng() < 0.5;
  const perm = withPerm ? Uint32Array.from({ length: k }, (_, i) => i).sort(() => rng() - 0.5) : null;
  const firstOutput = int(0, Math.floor(n / 3));
  return { spec: { format, bits, groupSize, k, n }, src, perm, firstOutput, rows: n - firstOutput - int(0, Math.floor((n - firstOutput - 1) / 2)) };
}

const RANDOM: [PackedFormat, 4 | 8, boolean, boolean][] = [
  ['gptq', 4, true, false], ['gptq', 8, true, false], ['gptq_v2', 4, true, false], ['gptq_v2', 8, true, false], ['awq-gemm', 4, true, false],
  ['pack-quantized', 4, false, false], ['pack-quantized', 4, true, false], ['pack-quantized', 4, true, true], ['pack-quantized', 8, false, false],
  ['pack-quantized', 8, true, false], ['pack-quantized', 8, true, true], ['int-quantized', 8, false, false], ['int-quantized', 8, true, true],
];

it.each(RANDOM)('%s %d-bit (zeros %s, int8 zeros %s): seeded random words, shapes, perms, scale bits: GPU == reference', async (format, bits, zeros, int8Zeros) => {
  // Source → destination scales: f32 → f16 (rounding), bf16 → f32 (row-chunked), f16 → f16.
  const runs = [['F32', 'F16'], ['BF16', 'F32'], ['F16', 'F16']] as const;
  for (const [i, [from, scaleDtype]] of runs.entries()) {
    const c = randomCase(format, bits, zeros, int8Zeros, from);
    if (format === 'int-quantized') c.spec.groupSize = c.spec.k;
    if (format === 'int-quantized') c.src.scales = { ...c.src.scales, shape: [c.spec.n, 1], bytes: randomScales(c.spec.n, c.src.scales.dtype) };
    if (c.src.zeros && format === 'int-quantized') c.src.zeros = { ...c.src.zeros, shape: [c.spec.n, 1], bytes: randomZeros(format, bits, 'I8', [c.spec.n, 1]) };
    const where = `${format} ${bits}-bit K=${c.spec.k} N=${c.spec.n} G=${c.spec.groupSize} ${c.src.scales.dtype}→${scaleDtype} rows ${c.firstOutput}+${c.rows}${c.perm ? ' perm' : ''}`;
    const { dst, got } = await runRepack('rand', c.spec, c.src, { scaleDtype, perm: c.perm, firstOutput: c.firstOutput, rows: c.rows, chunked: i === 1 });
    destroyQuantized(dst);
    const want = repackReference('rand', { ...c.spec, firstOutput: c.firstOutput, perm: c.perm ?? undefined }, c.src, { rows: c.rows, scaleDtype });
    expect(hostMismatch(got, want), where).toBeNull();
  }
});

it('every repack and permute variant compiles with no message and builds a pipeline', async () => {
  const dtypes = gpu.device.features.has('shader-f16') ? (['F32', 'F16'] as const) : (['F32'] as const);
  const variants = [...repackVariants(), ...permuteVariants(dtypes)];
  expect(variants.length).toBe(13 + dtypes.length); // gptq 2 + 2, awq 1, ct 4 + 4 (zeros × perm); permute per dtype
  for (const { key, spec } of variants) {
    const info = await pipelineCache(gpu.device).module(spec.shader, spec.flags).getCompilationInfo();
    expect(info.messages.map((m) => `${m.type} ${spec.shader}.wgsl:${m.lineNum}: ${m.message}`), key).toEqual([]);
    expect((await pipelineCache(gpu.device).get(key, spec)).label).toBe(key);
  }
});

// ── malformed input: one line naming the tensor ──

describe('malformed', () => {
  const info = (shape: number[], dtype: Dtype = 'I32') => ({ shape, dtype });
  const gptq = (over: Partial<PackedShapes> = {}): PackedShapes => ({ qweight: info([16, 96]), scales: info([4, 96], 'F16'), zeros: info([4, 12]), ...over });

  it.each([
    ['gptq', 4, 32, 96, gptq({ qweight: info([8, 96]) }), 'm.q_proj.qweight is [8, 96]; with 4 bits, K = 128 and N = 96 expected [16, 96]'],
    ['gptq', 4, 32, 96, gptq({ scales: info([2, 96], 'F16') }), 'm.q_proj.scales is [2, 96]; with group size 32, K = 128 and N = 96 expected [4, 96]'],
    ['gptq', 4, 32, 96, gptq({ zeros: info([4, 96]) }), 'm.q_proj.qzeros is [4, 96]; with 4 bits, group size 32, K = 128 and N = 96 expected [4, 12]'],
    ['gptq', 4, 32, 96, gptq({ zeros: undefined }), 'm.q_proj.qzeros is missing; gptq stores it'],
    ['gptq', 4, 32, 96, gptq({ scales: info([4, 96], 'I32') }), 'm.q_proj.scales is I32; gptq stores it as F16 or BF16 or F32'],
    ['gptq', 4, 32, 96, gptq({ gIdx: info([96]) }), 'm.q_proj.g_idx is [96]; with K = 128 expected [128]'],
    ['gptq', 4, 48, 96, gptq(), 'm.q_proj: K = 128 is not a multiple of the group size 48'],
    ['gptq', 4, 12, 96, gptq(), 'm.q_proj: the group size must be a multiple of 8, got 12'],
    ['awq-gemm', 8, 32, 96, gptq(), 'm.q_proj: awq-gemm packs 4-bit weights only, not 8'],
    ['awq-gemm', 4, 32, 100, { qweight: info([128, 12]), scales: info([4, 96], 'F16'), zeros: info([4, 12]) }, 'm.q_proj: N = 100 is not a multiple of 8, the outputs awq-gemm packs in one m.q_proj.qzeros word'],
    ['pack-quantized', 4, 32, 96, { qweight: info([96, 16]), scales: info([96, 4], 'BF16'), zeros: info([96, 4]) }, 'm.q_proj.weight_zero_point is [96, 4]; with 4 bits, group size 32, K = 128 and N = 96 expected [12, 4]'],
    ['int-quantized', 8, 32, 96, { qweight: info([96, 128], 'I8'), scales: info([96, 1], 'F16') }, 'm.q_proj: int-quantized weights have one scale per row (group size K = 128), not groups of 32'],
  ] as const)('%s %d-bit, group %d, N = %d: %j', (format, bits, groupSize, n, shapes, message) => {
    expect(() => checkPackedShapes('m.q_proj', format, bits, groupSize, 128, n, shapes)).toThrow(message);
  });

  it('g_idx out of range or uneven groups', () => {
    const gIdx = Int32Array.from({ length: 320 }, (_, c) => Math.floor(c / 32));
    gIdx[17] = 40;
    expect(() => actOrderPerm('model.layers.3.mlp.down_proj.g_idx', gIdx, 32)).toThrow('model.layers.3.mlp.down_proj.g_idx: value 40 at column 17 is out of range (10 groups)');
    gIdx[17] = -1;
    expect(() => actOrderPerm('x.g_idx', gIdx, 32)).toThrow('x.g_idx: value -1 at column 17 is out of range (10 groups)');
    gIdx[17] = 3;
    expect(() => actOrderPerm('x.g_idx', gIdx, 32)).toThrow('x.g_idx: group 0 has 31 columns, expected 32 (K = 320)');
    expect(() => actOrderPerm('x.g_idx', new Int32Array(100), 32)).toThrow('x.g_idx: 100 columns are not a whole number of groups of 32');
  });

  /** A GPTQ/CT source whose zero point at (output 5, group 1) is `bad`, the rest valid. */
  function badZero(format: 'gptq' | 'pack-quantized', bits: 4 | 8) {
    const [k, n, g] = [64, 16, 32];
    const pf = 32 / bits;
    const src: HostPackedSources = {
      qweight: { name: 'l.qweight', dtype: 'I32', shape: format === 'gptq' ? [k / pf, n] : [n, k / pf], bytes: randomBytes((k * n * bits) / 8) },
      scales: { name: 'l.scales', dtype: 'F16', shape: format === 'gptq' ? [2, n] : [n, 2], bytes: randomScales(2 * n, 'F16') },
    };
    if (format === 'gptq') {
      const words = new Uint32Array((2 * n) / pf); // all fields 0: zero 1
      words[(1 * n + 5) / pf | 0] |= ((1 << bits) - 1) << (bits * (5 % pf)); // zero − 1 = 2^b − 1
      src.zeros = { name: 'model.layers.0.mlp.up_proj.qzeros', dtype: 'I32', shape: [2, n / pf], bytes: new Uint8Array(words.buffer) };
    } else {
      const bytes = new Uint8Array(2 * n);
      bytes[5 * 2 + 1] = 9; // zp 9: outside −8..7
      src.zeros = { name: 'model.layers.0.mlp.up_proj.weight_zero_point', dtype: 'I8', shape: [n, 2], bytes };
    }
    return { spec: { format, bits, groupSize: g, k, n }, src };
  }

  it.each([
    ['gptq', 4, 'model.layers.0.mlp.up_proj.qzeros: the zero point of output 5, group 1 is stored as 15 (GPTQ v1 stores zero − 1), so it reads as 16, which 4-bit weights cannot hold (a zero of 0 that v1 cannot store)'],
    ['gptq', 8, 'model.layers.0.mlp.up_proj.qzeros: the zero point of output 5, group 1 is stored as 255 (GPTQ v1 stores zero − 1), so it reads as 256, which 8-bit weights cannot hold (a zero of 0 that v1 cannot store)'],
    ['pack-quantized', 4, 'model.layers.0.mlp.up_proj.weight_zero_point: the zero point of output 5, group 1 is outside the 4-bit range -8..7'],
  ] as const)('an unrepresentable zero point: %s %d-bit, on the GPU (check) and in the reference', async (format, bits, message) => {
    const { spec, src } = badZero(format, bits);
    expect(() => repackReference('l', spec, src, { rows: spec.n, scaleDtype: 'F16' })).toThrow(message);
    await expect(runRepack('l', spec, src, { scaleDtype: 'F16' })).rejects.toThrow(message);
    // The next check starts clean: a valid repack after the failed one passes.
    const ok = badZero(format, bits);
    ok.src.zeros = { ...ok.src.zeros!, bytes: new Uint8Array(ok.src.zeros!.bytes.length) };
    const { dst } = await runRepack('l', spec, ok.src, { scaleDtype: 'F16' });
    destroyQuantized(dst);
  });

  it('encode refuses a mismatched destination, outputs past N and a chunked source', async () => {
    const f = await readFixture('gptq4_sym_g32');
    const repack = await repackFor('gptq', 4);
    const sources = { qweight: upload(f.src.qweight), scales: upload(f.src.scales), zeros: upload(f.src.zeros!) };
    const make = (kind: 'q4' | 'q8', rows: number, hasZeros = true): QuantizedTensor =>
      createQuantizedTensor(gpu.device, 'd', { kind, shape: [rows, f.spec.k], groupSize: 32, scaleDtype: 'F16', hasZeros });
    const encoder = gpu.device.createCommandEncoder();
    const cases: [QuantizedTensor, Partial<RepackSpec>, string][] = [
      [make('q8', 40), {}, 't: d is q8 [40, 96] in groups of 32; the source is q4 with K = 96 in groups of 32'],
      [make('q4', 30), { firstOutput: 20 }, 't: d takes outputs 20..49, the source has 40'],
      [make('q4', 40, false), {}, 't: the source has zero points, d was made without'],
    ];
    for (const [dst, over, message] of cases) {
      expect(() => repack.encode(encoder, 't', { ...f.spec, ...over }, sources, dst)).toThrow(message);
      destroyQuantized(dst);
    }
    const twoChunks: GpuTensor = { ...sources.qweight, chunks: [sources.qweight.chunks[0], { ...sources.qweight.chunks[0], firstRow: 6 }] };
    const dst = make('q4', 40);
    expect(() => repack.encode(encoder, 't', f.spec, { ...sources, qweight: twoChunks }, dst)).toThrow(
      'gptq4_sym_g32.qweight is stored in 2 chunks (1920 bytes, over one GPU binding); repack reads each packed tensor from one buffer',
    );
    destroyQuantized(dst);
    for (const t of Object.values(sources)) t.chunks[0].buffer.destroy();
  });
});

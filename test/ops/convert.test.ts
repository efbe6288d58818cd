// The convert kernel (shaders/convert.wgsl via src/ops/convert.ts), bit for bit against the
// TypeScript reference (test/support/dtype-reference.ts, itself checked against torch):
// every f16 and bf16 pattern, and ~280k f32 patterns chosen around every f16 rounding
// boundary plus seeded random bits. Driven end to end through loadTensors from an
// in-memory safetensors file, and once through Converter directly for what the loader never
// reaches here (a dispatch spilling into a second dimension, a piece at an offset).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { openCheckpointSource } from '../../src/checkpoint/open.js';
import type { Checkpoint } from '../../src/checkpoint/types.js';
import type { GpuContext } from '../../src/gpu/device.js';
import { loadTensors } from '../../src/gpu/load-tensors.js';
import { acquireNodeDevice } from '../../src/gpu/node-gpu.js';
import { pipelineCache } from '../../src/gpu/pipeline-cache.js';
import { readBuffer, readTensor } from '../../src/gpu/read-back.js';
import { serializeSafetensors } from '../../src/formats/safetensors/writer.js';
import { MemorySource } from '../../src/io/memory-source.js';
import { type ComputeDtype, Converter, convertPipelineKey, needsConversion } from '../../src/ops/convert.js';
import { root } from '../support/build.js';
import { convertArray, f16ToF32Bits, type SrcDtype } from '../support/dtype-reference.js';
import { firstMismatch, spyDevice } from '../support/gpu-helpers.js';
import { mulberry32 } from '../support/safetensors-bytes.js';

const PAIRS: Array<[SrcDtype, ComputeDtype]> = [['BF16', 'F32'], ['F16', 'F32'], ['BF16', 'F16'], ['F32', 'F16']];
const SIZE = { F32: 4, F16: 2, BF16: 2 } as const;

/** Every 16-bit pattern, 0 … 0xffff, little-endian. */
function all16(): Uint8Array {
  return new Uint8Array(Uint16Array.from({ length: 65536 }, (_, i) => i).buffer);
}

/** torch's f32 → f16 fixture: its 8192 inputs and torch's outputs. */
function torchF32ToF16(): { inputs: Uint32Array; outputs: Uint16Array } {
  const file = readFileSync(join(root, 'test/fixtures/dtype/f32-to-f16.bin'));
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const n = view.getUint32(0, true);
  const inputs = Uint32Array.from({ length: n }, (_, i) => view.getUint32(4 + 4 * i, true));
  const outputs = Uint16Array.from({ length: n }, (_, i) => view.getUint16(4 + 4 * n + 2 * i, true));
  return { inputs, outputs };
}

/**
 * f32 bit patterns where f32 → f16 can go wrong: each finite f16 value exactly, the
 * midpoint to the next f16 (ties) and its neighbours, both signs; specials; torch's chosen
 * inputs; seeded random bits.
 */
function f32Patterns(): Uint32Array {
  const out: number[] = [];
  for (let h = 0; h < 0x7c00; h++) {
    const a = f16ToF32Bits(h);
    const e = (a >>> 23) & 0xff;
    // Half an f16 ulp in f32 ulps: 2^12 for normal f16, 2^(125 - e) for subnormal ones; above 0 from 2^-25.
    const half = h === 0 ? 0x33000000 : e >= 113 ? 0x1000 : 2 ** (125 - e);
    const mid = a + half;
    for (const v of [a, mid - 1, mid, mid + 1]) out.push(v, (v | 0x80000000) >>> 0);
  }
  const specials = [0, 0x80000000, 0x7f800000, 0xff800000, 0x7f800001, 0x7fc00000, 0x7fffffff, 0xffffffff, 0xffc00001,
    0x00000001, 0x007fffff, 0x807fffff, 0x00800000, 0x7f7fffff, 0xff7fffff, 0x477fe000, 0x477fefff, 0x477ff000,
    0x477fffff, 0x47800000, 0x387fc000, 0x387fe000, 0x33000000, 0x33000001, 0x32ffffff, 0x33c00000, 0x34200000];
  out.push(...specials, ...torchF32ToF16().inputs);
  const rng = mulberry32(0xc0417e27);
  for (let i = 0; i < 20000; i++) out.push((rng() * 2 ** 32) >>> 0);
  return Uint32Array.from(out);
}

const F32_PATTERNS = f32Patterns();

let context: GpuContext;
let device: GPUDevice;
let checkpoint: Checkpoint;
const inputs: Record<string, { dtype: SrcDtype; bytes: Uint8Array }> = {};

beforeAll(async () => {
  context = await acquireNodeDevice({ label: 'test.convert' });
  device = context.device;
  inputs.f16_all = { dtype: 'F16', bytes: all16() };
  inputs.bf16_all = { dtype: 'BF16', bytes: all16() };
  inputs.f32_patterns = { dtype: 'F32', bytes: new Uint8Array(F32_PATTERNS.buffer) };
  const file = await serializeSafetensors(
    Object.entries(inputs).map(([name, t]) => ({ name, dtype: t.dtype, shape: [t.bytes.byteLength / SIZE[t.dtype]], data: t.bytes })),
  );
  checkpoint = await openCheckpointSource(new MemorySource(file, 'patterns.safetensors'));
});

afterAll(async () => {
  await checkpoint?.close();
  context?.destroy();
});

afterEach(async () => {
  await device.queue.onSubmittedWorkDone();
  expect(context.takeErrors().errors).toEqual([]);
});

describe('convert kernel variants', () => {
  it('every (from, to) variant compiles with no message at all', async () => {
    for (const [from, to] of PAIRS) {
      const flags = [`SRC_${from}`, ...(to === 'F16' ? ['DST_F16'] : [])];
      const info = await pipelineCache(device).module('convert', flags).getCompilationInfo();
      const messages = info.messages.map((m) => `${m.type} ${m.lineNum}:${m.linePos} ${m.message}`);
      expect([from, to, messages]).toEqual([from, to, []]);
      const converter = await Converter.create(device, from, to);
      expect([converter.from, converter.to]).toEqual([from, to]);
    }
    // Cached: the same pipeline promise for the same key.
    const cache = pipelineCache(device);
    const spec = { shader: 'convert', flags: ['SRC_F16'], constants: { WORKGROUP_SIZE: 256 } };
    expect(cache.get(convertPipelineKey('F16', 'F32'), spec)).toBe(cache.get(convertPipelineKey('F16', 'F32'), spec));
  });

  it('pairs without a kernel are refused', async () => {
    expect(needsConversion('F16', 'F16')).toBe(false);
    expect(needsConversion('I32', 'F32')).toBe(false);
    await expect(Converter.create(device, 'I32', 'F32')).rejects.toThrow(/no kernel for I32 → F32/);
    await expect(Converter.create(device, 'F32', 'F32')).rejects.toThrow(/no kernel/);
  });
});

describe('bit-exact conversion through loadTensors', () => {
  /** Loads `name` as `dtype` and compares it with the reference, naming the first bad input in hex. */
  async function check(name: string, dtype: 'f16' | 'f32', extra: { stagingBytes?: number } = {}): Promise<Uint8Array> {
    const loaded = await loadTensors(checkpoint, device, { dtype, filter: (t) => t.name === name, ...extra });
    try {
      const tensor = loaded.get(name)!;
      const to = dtype === 'f16' ? 'F16' : 'F32';
      const { dtype: from, bytes } = inputs[name];
      expect([tensor.storageDtype, tensor.dtype, tensor.chunks.length]).toEqual([from, to, 1]);
      const got = await readTensor(device, tensor);
      const want = convertArray(bytes, from, to);
      expect(firstMismatch(got, want, SIZE[to], { bytes, size: SIZE[from] }), `${name} ${from} → ${to}`).toBeNull();
      return got;
    } finally {
      loaded.destroy();
    }
  }

  it('all 65536 f16 patterns → f32', async () => {
    await check('f16_all', 'f32');
  });

  it('all 65536 bf16 patterns → f32', async () => {
    await check('bf16_all', 'f32');
  });

  it('all 65536 bf16 patterns → f16, also in many small pieces', async () => {
    await check('bf16_all', 'f16');
    await check('bf16_all', 'f16', { stagingBytes: 4 * 1008 }); // 1008-byte slots: 504-element pieces
  });

  it(`${F32_PATTERNS.length} f32 patterns → f16, and torch's own outputs for its inputs`, async () => {
    const got = await check('f32_patterns', 'f16');
    // The torch fixture's inputs sit after the 8·31744 boundary cases and 27 specials.
    const { inputs: torchIn, outputs } = torchF32ToF16();
    const at = 8 * 0x7c00 + 27;
    const view = new DataView(got.buffer, got.byteOffset, got.byteLength);
    const patterns = new DataView(inputs.f32_patterns.bytes.buffer);
    for (let i = 0; i < torchIn.length; i++) {
      expect(patterns.getUint32(4 * (at + i), true)).toBe(torchIn[i]);
      const gpu = view.getUint16(2 * (at + i), true);
      if (gpu !== outputs[i]) {
        expect.fail(`f32 0x${torchIn[i].toString(16)}: GPU 0x${gpu.toString(16)}, torch 0x${outputs[i].toString(16)}`);
      }
    }
  });
});

describe('Converter directly', () => {
  const SENTINEL = 0xabababab;

  /** A dst buffer of `words` u32 filled with SENTINEL, and a src buffer holding `src`. */
  function buffers(src: Uint8Array, words: number) {
    const usage = GPUBufferUsage;
    const padded = new Uint8Array(Math.ceil(src.byteLength / 16) * 16);
    padded.set(src);
    const srcBuf = device.createBuffer({ label: 'test.src', size: padded.byteLength, usage: usage.STORAGE | usage.COPY_DST });
    device.queue.writeBuffer(srcBuf, 0, padded);
    const dst = device.createBuffer({ label: 'test.dst', size: words * 4, usage: usage.STORAGE | usage.COPY_SRC, mappedAtCreation: true });
    new Uint32Array(dst.getMappedRange()).fill(SENTINEL);
    dst.unmap();
    const params = device.createBuffer({ label: 'test.params', size: 16, usage: usage.UNIFORM | usage.COPY_DST });
    return { srcBuf, dst, params, destroy: () => [srcBuf, dst, params].forEach((b) => b.destroy()) };
  }

  /**
   * Runs one encode into a SENTINEL-filled dst and checks: elements [at, at + count) are
   * the reference conversion; nothing before `at` or from the next 16-byte boundary after
   * the piece on is touched; between the piece's end and that boundary (the chunk's
   * padding when the piece ends a chunk) only zeros or SENTINEL.
   */
  async function checkEncode(converterDevice: GPUDevice, from: SrcDtype, to: ComputeDtype, at: number, src: Uint8Array): Promise<void> {
    const converter = await Converter.create(converterDevice, from, to);
    const count = src.byteLength / SIZE[from];
    const outSize = SIZE[to];
    const words = Math.ceil(((at + count) * outSize) / 16) * 4 + 64;
    const b = buffers(src, words);
    const encoder = device.createCommandEncoder();
    converter.encode(encoder, b.srcBuf, b.dst, at, count, b.params);
    device.queue.submit([encoder.finish()]);
    const got = await readBuffer(device, b.dst);
    b.destroy();
    const start = at * outSize;
    const end = start + count * outSize;
    const boundary = Math.ceil(end / 16) * 16;
    const sentinel = new Uint8Array(new Uint32Array(got.byteLength / 4).fill(SENTINEL).buffer);
    expect(firstMismatch(got.subarray(0, start), sentinel.subarray(0, start), 4), 'before the piece').toBeNull();
    expect(firstMismatch(got.subarray(start, end), convertArray(src, from, to), outSize, { bytes: src, size: SIZE[from] })).toBeNull();
    for (let i = end; i < boundary; i++) expect([0, 0xab], `tail byte ${i}`).toContain(got[i]);
    expect(firstMismatch(got.subarray(boundary), sentinel.subarray(boundary), 4), 'after the piece').toBeNull();
  }

  const halves = (n: number, seed: number) => {
    const rng = mulberry32(seed);
    return new Uint8Array(Uint16Array.from({ length: n }, () => (rng() * 65536) >>> 0).buffer);
  };

  it('spills into a second dispatch dimension past maxComputeWorkgroupsPerDimension', async () => {
    // At most 2 workgroups per dimension: 40001 elements need more, so y > 1.
    const spy = spyDevice(device, { limits: { maxComputeWorkgroupsPerDimension: 2 } });
    await checkEncode(spy.device, 'F16', 'F32', 0, halves(40001, 3));
    await checkEncode(spy.device, 'BF16', 'F16', 0, halves(40001, 4));
  });

  it('a piece at an element offset, odd counts: neighbours untouched, the tail only zeroed', async () => {
    for (const [from, to] of PAIRS) {
      for (const count of [1, 7, 8, 9, 1001]) {
        const src = from === 'F32' ? new Uint8Array(new Uint32Array(Array.from({ length: count }, (_, i) => (i * 0x9e3779b9) >>> 0)).buffer) : halves(count, count);
        await checkEncode(device, from, to, 16, src);
      }
    }
  });

  it('refuses a piece that does not start where the kernel can write it', async () => {
    const converter = await Converter.create(device, 'BF16', 'F16');
    const b = buffers(new Uint8Array(16), 16);
    expect(() => converter.encode(device.createCommandEncoder(), b.srcBuf, b.dst, 5, 2, b.params)).toThrow(/element 5/);
    b.destroy();
  });
});

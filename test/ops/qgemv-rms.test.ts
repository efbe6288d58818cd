// qgemv's RMS_NORM variant: x is the un-normalised row and the kernel applies the RMSNorm,
// its weight g included: y = s·Σ_k W[n,k]·(x[k]·g[k]) (+ b), s = 1/sqrt(mean(x²) + eps);
// plain, with a bias and with the GLU epilogue (silu), q8 and q4, F32 and F16, x shared by
// subgroups or loaded by every invocation, block and per-word paths, zero points or not, on
// seeded shapes, against a float64 reference over the dequantized weights and the stored x,
// g; eps where it dominates; close to rms_norm.wgsl (weight g) then the plain qgemv; the
// refusals; every RMS_NORM variant compiles.

import { describe, expect, it } from 'vitest';
import { dequantizeHost, destroyQuantized, type QuantKind } from '../../src/gpu/quantized-tensor.js';
import { pipelineCache } from '../../src/gpu/pipeline-cache.js';
import { runOps, type ComputeDtype } from '../../src/ops/op.js';
import { canShareX, QGEMV_GLU_PAIRS_PER_WORKGROUP, QGEMV_ROWS_PER_WORKGROUP, QGemv, qgemvPath, qgemvVariants } from '../../src/ops/qgemv.js';
import { RmsNorm } from '../../src/ops/rms-norm.js';
import { useGpuTestDevice } from '../support/gpu-helpers.js';
import { asDtype, linearReference, nmse, outputBuffer, randomValues, readArray, roundF16, uploadArray, uploadWeights } from '../support/op-helpers.js';
import { randomQuantized, uploadQuantized } from '../support/quantized-weights.js';
import { mulberry32 } from '../support/safetensors-bytes.js';

const gpu = useGpuTestDevice('test.qgemv-rms');
const rng = mulberry32(0x7e5);

// (rows, K, G): rows of y (GLU: I, the weight has 2I). Block path (G a power of two ≥ 32, K a
// multiple of 128) and per-word path (K no multiple of 128, or G < 32); rows of 1 and past one
// workgroup (128 rows, 64 GLU pairs), none a multiple of it; then seeded ones.
const NAMED: [number, number, number][] = [
  [1, 128, 32],
  [QGEMV_ROWS_PER_WORKGROUP + 2, 256, 64],
  [QGEMV_GLU_PAIRS_PER_WORKGROUP + 3, 96, 32],
  [5, 40, 8],
  [3, 384, 128],
];
const SEEDED_K: [number, number][] = [[128, 32], [256, 128], [192, 64], [168, 24]];
const shapes = (): [number, number, number][] => [
  ...NAMED,
  ...Array.from({ length: 2 }, (): [number, number, number] => {
    const [k, g] = SEEDED_K[Math.floor(rng() * SEEDED_K.length)];
    let rows = 1 + Math.floor(rng() * 150);
    if (rows % QGEMV_GLU_PAIRS_PER_WORKGROUP === 0) rows++;
    return [rows, k, g];
  }),
];

type Mode = 'plain' | 'bias' | 'silu';

const noF16 = (dtype: ComputeDtype): boolean => dtype === 'F16' && !gpu.device.features.has('shader-f16');
const round = (v: number, dtype: ComputeDtype): number => (dtype === 'F16' ? roundF16(v) : Math.fround(v));

/** s = 1/sqrt(mean(x²) + eps) in float64, over x as stored. */
const rmsScale = (x: Float32Array, eps: number): number => 1 / Math.sqrt(x.reduce((a, v) => a + v * v, 0) / x.length + eps);

/** The kernel's result in float64: round_T(s·Σ W·(x·g) (+ b)), or common/glu.wgsl's roundings of s·gate, s·up. */
function reference(mode: Mode, w: Float32Array, x: Float32Array, g: Float32Array, b: Float32Array | undefined, [n, k]: [number, number], eps: number, dtype: ComputeDtype): Float64Array {
  const s = rmsScale(x, eps);
  const sums = linearReference(x.map((v, i) => v * g[i]), w, [1, n, k]).map((v) => v * s);
  if (mode !== 'silu') return sums.map((v, j) => round(v + (b ? b[j] : 0), dtype));
  const i = n / 2;
  return Float64Array.from({ length: i }, (_, r) => {
    const gate = round(sums[r], dtype);
    return round(round(gate / (1 + Math.exp(-gate)), dtype) * round(sums[i + r], dtype), dtype);
  });
}

/**
 * NMSE against the reference. F32: f32 sums of s·(Σq·x − z·Σx) per group, two terms up to
 * ~15× their difference (as qgemv.test.ts), times s's few ulps: 1e-9 (GLU: act' ≤ 1.2 and the
 * product pass it on, 1e-8). F16: a sum may round to the f16 next to float64's (one ulp,
 * ≤ 2^-10 relative: NMSE ≤ 2^-20); the GLU passes that on through the act and the product
 * (2^-18, as gemv-rms.test.ts).
 */
const tolerance = (dtype: ComputeDtype, mode: Mode): number => (dtype === 'F32' ? (mode === 'silu' ? 1e-8 : 1e-9) : mode === 'silu' ? 2 ** -18 : 2 ** -20 + 1e-9);

interface Case {
  op: QGemv;
  shape: [rows: number, k: number, g: number];
  zeros: boolean;
  scaleDtype: 'F16' | 'F32';
  eps: number;
  /** x's span: ±xSpan. */
  xSpan: number;
}

/** Runs one case: y's rows, its 8 elements past them (filled with 7 first), the reference and the path taken. */
async function runCase({ op, shape: [rows, k, g], zeros, scaleDtype, eps, xSpan }: Case) {
  const { device } = gpu;
  const { kind, dtype } = op;
  const mode: Mode = op.glu ? 'silu' : op.bias ? 'bias' : 'plain';
  const n = op.glu ? 2 * rows : rows;
  const host = randomQuantized(rng, kind, n, k, g, zeros);
  const weight = uploadQuantized(device, host, { kind, n, k, groupSize: g, scaleDtype }, false);
  const x = asDtype(randomValues(rng, k, -xSpan, xSpan), dtype);
  // The normed row has rms 1 whatever x's size: g sets the projections' size, |gate|, |up| of a
  // few units where silu bends (q8's weights are ~16× q4's). Signs mixed.
  const gSpan = kind === 'q8' ? 1 / 8 : 2;
  const gv = asDtype(randomValues(rng, k, -gSpan, gSpan), dtype);
  const b = mode === 'bias' ? asDtype(randomValues(rng, n), dtype) : undefined;
  const tensors = await uploadWeights(device, { g: { shape: [k], values: gv }, ...(b ? { b: { shape: [n], values: b } } : {}) }, dtype);
  const xBuf = uploadArray(device, x, dtype, 'test.qgemv-rms.x');
  const y = uploadArray(device, new Float32Array(rows + 8).fill(7), dtype, 'test.qgemv-rms.y');
  const prepared = op.prepare(`test.qgemv-rms.${n}x${k}`, weight, xBuf, y, tensors.tensors.get('b'), tensors.tensors.get('g'));
  await runOps(device, [prepared]);
  const all = await readArray(device, y, rows + 8, dtype);
  const want = reference(mode, dequantizeHost(kind, [n, k], g, host), x, gv, b, [n, k], eps, dtype);
  const path = qgemvPath(weight);
  prepared.destroy();
  destroyQuantized(weight);
  tensors.destroy();
  xBuf.destroy();
  y.destroy();
  return { got: all.subarray(0, rows), past: all.subarray(rows), want, path, mode };
}

for (const kind of ['q8', 'q4'] as QuantKind[]) {
  describe.each(['F32', 'F16'] as const)(`qgemv RMS_NORM ${kind} %s`, (dtype: ComputeDtype) => {
    it.each([
      ['plain', true],
      ['bias', true],
      ['silu', true],
      ['plain', false],
      ['bias', false],
      ['silu', false],
    ] as const)('%s, subgroups %s: seeded shapes on both paths against the float64 reference', async (mode, subgroups) => {
      const { device } = gpu;
      if (noF16(dtype)) return expect(noF16(dtype)).toBe(true); // said, not silent: no F16 on this adapter
      if (subgroups && !canShareX(device)) return expect(canShareX(device)).toBe(false); // said: x cannot be shared here
      const op = await QGemv.create(device, kind, dtype, { rmsNorm: { eps: 1e-5 }, subgroups, bias: mode === 'bias', glu: mode === 'silu' ? 'silu' : undefined });
      expect(op.rmsNorm).toEqual({ eps: 1e-5 });
      const paths = new Set<string>();
      for (const [s, shape] of shapes().entries()) {
        const zeros = s % 2 === 0;
        const scaleDtype = s % 3 === 2 ? 'F32' : 'F16';
        const { got, past, want, path } = await runCase({ op, shape, zeros, scaleDtype, eps: 1e-5, xSpan: 3 });
        paths.add(path);
        const what = `${kind} ${dtype} ${mode} rows=${shape[0]} K=${shape[1]} G=${shape[2]} path=${path} subgroups=${subgroups} zeros=${zeros} scales=${scaleDtype}`;
        const err = nmse(got, want);
        expect(err, `${what} nmse=${err}`).toBeLessThan(tolerance(dtype, mode));
        expect(Array.from(past), `${what}: wrote past its rows`).toEqual(new Array(8).fill(7));
      }
      expect([...paths].sort()).toEqual(['block', 'word']);
    });
  });
}

describe.each(['F32', 'F16'] as const)('qgemv RMS_NORM %s, eps where it dominates', (dtype) => {
  it('x of ~1e-3 with eps 1e-2 scales by ~10, not by ~1000; eps 0 by ~1000', async () => {
    if (noF16(dtype)) return expect(noF16(dtype)).toBe(true);
    for (const eps of [1e-2, 0]) {
      const op = await QGemv.create(gpu.device, 'q4', dtype, { rmsNorm: { eps } });
      for (const shape of [[70, 256, 32], [9, 96, 32]] as [number, number, number][]) {
        const { got, want, path } = await runCase({ op, shape, zeros: true, scaleDtype: 'F16', eps, xSpan: 1e-3 });
        const err = nmse(got, want);
        expect(err, `eps=${eps} path=${path} nmse=${err}`).toBeLessThan(tolerance(dtype, 'plain'));
      }
    }
  });
});

it('close to rms_norm.wgsl (weight g) then the plain qgemv, F32, both kinds and paths', async () => {
  // The unfused path rounds the normed row to f32 twice (x·s, then ·g) and sums in another
  // order: a few ulps per element of x, amplified by the zero-point cancellation as above.
  const { device } = gpu;
  const eps = 1e-6;
  for (const kind of ['q8', 'q4'] as QuantKind[]) {
    const [fused, plain, norm] = await Promise.all([QGemv.create(device, kind, 'F32', { rmsNorm: { eps } }), QGemv.create(device, kind, 'F32'), RmsNorm.create(device, 'F32', { eps })]);
    for (const [n, k, g] of [[90, 256, 32], [33, 168, 24]] as [number, number, number][]) {
      const host = randomQuantized(rng, kind, n, k, g, true);
      const weight = uploadQuantized(device, host, { kind, n, k, groupSize: g, scaleDtype: 'F16' }, false);
      const x = randomValues(rng, k, -3, 3);
      const tensors = await uploadWeights(device, { g: { shape: [k], values: randomValues(rng, k, 0.2, 2) } }, 'F32');
      const gT = tensors.tensors.get('g')!;
      const xBuf = uploadArray(device, x, 'F32');
      const [normed, a, b] = [outputBuffer(device, k, 4), outputBuffer(device, n, 4), outputBuffer(device, n, 4)];
      const ops = [fused.prepare('fused', weight, xBuf, a, undefined, gT), norm.prepare('norm', 1, k, xBuf, gT, normed), plain.prepare('plain', weight, normed, b)];
      await runOps(device, ops);
      const [got, want] = [await readArray(device, a, n, 'F32'), await readArray(device, b, n, 'F32')];
      const err = nmse(got, want);
      expect(err, `${kind} N=${n} K=${k} G=${g} path=${qgemvPath(weight)} nmse=${err}`).toBeLessThan(1e-9);
      ops.forEach((op) => op.destroy());
      for (const buf of [xBuf, normed, a, b]) buf.destroy();
      tensors.destroy();
      destroyQuantized(weight);
    }
  }
});

it('refuses residual, outF32, a bad eps, and a missing, extra or mis-shaped norm weight, each in one line', async () => {
  const { device } = gpu;
  await expect(QGemv.create(device, 'q4', 'F32', { rmsNorm: { eps: 1e-5 }, residual: true })).rejects.toThrow(/^qgemv: rmsNorm takes no residual or outF32$/);
  await expect(QGemv.create(device, 'q8', 'F32', { rmsNorm: { eps: 1e-5 }, outF32: true })).rejects.toThrow(/^qgemv: rmsNorm takes no residual or outF32$/);
  await expect(QGemv.create(device, 'q4', 'F32', { rmsNorm: { eps: -1 } })).rejects.toThrow(/^qgemv: rmsNorm's eps must be a finite number ≥ 0, not -1$/);
  await expect(QGemv.create(device, 'q4', 'F32', { rmsNorm: { eps: Number.POSITIVE_INFINITY } })).rejects.toThrow(/eps must be a finite number/);
  const [withNorm, without] = await Promise.all([QGemv.create(device, 'q4', 'F32', { rmsNorm: { eps: 1e-5 } }), QGemv.create(device, 'q4', 'F32')]);
  expect(without.rmsNorm).toBeNull();
  const [n, k] = [8, 64];
  const weight = uploadQuantized(device, randomQuantized(rng, 'q4', n, k, 32, false), { kind: 'q4', n, k, groupSize: 32, scaleDtype: 'F16' }, false);
  const f32 = await uploadWeights(device, { g: { shape: [k], values: new Float32Array(k).fill(1) }, long: { shape: [k + 4], values: new Float32Array(k + 4) } }, 'F32');
  const f16 = await uploadWeights(device, { g: { shape: [k], values: new Float32Array(k).fill(1) } }, 'F16');
  const [x, y] = [outputBuffer(device, k, 4), outputBuffer(device, n, 4)];
  const oneLine = (f: () => unknown, re: RegExp) => expect(f).toThrow(re);
  oneLine(() => withNorm.prepare('t.q', weight, x, y), /^t\.q: qgemv was created with rmsNorm, prepare got no norm weight$/);
  oneLine(() => without.prepare('t.q', weight, x, y, undefined, f32.tensors.get('g')), /^t\.q: qgemv was created without rmsNorm, prepare got a norm weight$/);
  oneLine(() => withNorm.prepare('t.q', weight, x, y, undefined, f32.tensors.get('long')), /^t\.q: long is F32 \[68\], expected F32 \[64\]$/);
  oneLine(() => withNorm.prepare('t.q', weight, x, y, undefined, f16.tensors.get('g')), /^t\.q: g is F16 \[64\], expected F32 \[64\]$/);
  expect(() => withNorm.prepare('t.ok', weight, x, y, undefined, f32.tensors.get('g')).destroy()).not.toThrow();
  destroyQuantized(weight);
  f32.destroy();
  f16.destroy();
  x.destroy();
  y.destroy();
});

it('every RMS_NORM variant compiles with no message', async () => {
  const features = gpu.device.features as ReadonlySet<string>;
  const dtypes: ComputeDtype[] = features.has('shader-f16') ? ['F32', 'F16'] : ['F32'];
  const rms = qgemvVariants(dtypes, features).filter((v) => (v.spec.flags ?? []).includes('RMS_NORM'));
  // kinds × dtypes × x sharing × paths × (plain, bias, glu silu, glu gelu_tanh, ropeStore × bias × scaled).
  expect(rms.length).toBe(2 * dtypes.length * (features.has('subgroups') ? 2 : 1) * 2 * 8);
  expect(rms.map((v) => v.key)).toContain('qgemv_q4_f32_block_bias_rms_r4_wg32');
  expect(rms.map((v) => v.key)).toContain('qgemv_q8_f32_word_glu_gelu_tanh_rms_r4_wg32');
  for (const { key, spec } of rms) {
    expect((spec.flags ?? []).filter((f) => ['OUT_F32', 'RESIDUAL'].includes(f)), key).toEqual([]);
    const info = await pipelineCache(gpu.device).module(spec.shader, spec.flags).getCompilationInfo();
    expect(info.messages.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`), key).toEqual([]);
  }
});

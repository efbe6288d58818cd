// qgemv GLU: gate_up_proj and the MLP's act(gate) * up in one dispatch (QGemv with glu),
// q8 and q4, F32 and F16, silu and gelu_tanh, block and per-word paths, on seeded shapes
// whose I is no multiple of the pairs per workgroup: bit for bit the unfused path (the plain
// qgemv into (2I,), then Swiglu fused), and close to a float64 reference over the
// dequantized weights with common/glu.wgsl's roundings.

import { describe, expect, it } from 'vitest';
import { dequantizeHost, destroyQuantized, type HostQuantized, type QuantizedTensor, type QuantKind } from '../../src/gpu/quantized-tensor.js';
import { pipelineCache } from '../../src/gpu/pipeline-cache.js';
import { readBuffer } from '../../src/gpu/read-back.js';
import { runOps, type ComputeDtype } from '../../src/ops/op.js';
import { canShareX, QGEMV_GLU_PAIRS_PER_WORKGROUP, QGemv, qgemvPath, qgemvVariants } from '../../src/ops/qgemv.js';
import { Swiglu, type SwigluAct } from '../../src/ops/swiglu.js';
import { spyDevice, useGpuTestDevice } from '../support/gpu-helpers.js';
import { asDtype, decode, linearReference, outputBuffer, randomValues, roundF16, uploadArray } from '../support/op-helpers.js';
import { randomQuantized, uploadQuantized } from '../support/quantized-weights.js';
import { mulberry32 } from '../support/safetensors-bytes.js';

const gpu = useGpuTestDevice('test.qgemv-glu');
const rng = mulberry32(0x91a);

// (I, K, group size). Block path: G a power of two ≥ 32, K a multiple of 128; per-word path:
// the rest. I of 1, one past a workgroup's pairs, exactly one workgroup, two and a bit.
const P = QGEMV_GLU_PAIRS_PER_WORKGROUP;
const NAMED: [number, number, number][] = [
  [1, 128, 32],
  [P + 1, 96, 32],
  [P, 256, 64],
  [2 * P + 3, 40, 8],
];
const SEEDED_K: [number, number][] = [[128, 32], [256, 128], [384, 64], [96, 32], [192, 64], [168, 24]];
const shapes = (): [number, number, number][] => [
  ...NAMED,
  ...Array.from({ length: 4 }, (): [number, number, number] => {
    const [k, g] = SEEDED_K[Math.floor(rng() * SEEDED_K.length)];
    let i = 1 + Math.floor(rng() * 150);
    if (i % P === 0) i++;
    return [i, k, g];
  }),
];

/** torch's gelu(approximate='tanh') in float64, as x / (1 + exp(−2y)) (see swiglu.test.ts). */
function geluTanh(x: number): number {
  const y = Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3);
  return x / (1 + Math.exp(-2 * y));
}

const roundTo = (dtype: ComputeDtype): ((v: number) => number) => (dtype === 'F16' ? roundF16 : Math.fround);

/**
 * Each element's float64 want and its tolerance. The projections are f32 sums of
 * s·(Σq·x − z·Σx) per group, whose terms reach s·(|q| + |z|)·|x|: an f32 sum of them is off by
 * at most ~(K/8 + 32)·2^-24 of their total `mag` (chains of ≤ K/16 chunks, ≤ 32 products each),
 * a loose bound (the bit-for-bit check is the strict one; a wrong row or act is off by O(1)).
 * Rounding a sum to T may then land one ulp of T away (2^-10 relative in F16, 2^-23 in F32);
 * act' ≤ 1.2 for both acts passes that on to act(gate). After that, swiglu.test.ts's bounds for
 * the act and the roundings: F16 3·2^-11 relative (rounded act one ulp off, the product's
 * rounding), abs 2^-20 (act in f16's subnormals, 2^-25, times |up| ≤ ~16); F32 2^-17, 2^-30.
 */
function gluReference(
  kind: QuantKind,
  [i2, k, g]: [number, number, number],
  host: HostQuantized,
  x: Float32Array,
  dtype: ComputeDtype,
  act: SwigluAct,
): { want: Float64Array; tol: Float64Array } {
  const n = i2 / 2;
  const sums = linearReference(x, dequantizeHost(kind, [i2, k], g, host), [1, i2, k]);
  const qz = kind === 'q4' ? 30 : 256; // |q| + |z| at most
  const mag = Float64Array.from({ length: i2 }, (_, r) => {
    let m = 0;
    for (let c = 0; c < k; c++) m += host.scales[r * (k / g) + Math.floor(c / g)] * qz * Math.abs(x[c]);
    return m;
  });
  const round = roundTo(dtype);
  const ulp = dtype === 'F16' ? 2 ** -10 : 2 ** -23;
  const [abs, rel] = dtype === 'F16' ? [2 ** -20, 3 * 2 ** -11] : [2 ** -30, 2 ** -17];
  const want = new Float64Array(n);
  const tol = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const gate = round(sums[i]);
    const up = round(sums[n + i]);
    const a = act === 'silu' ? gate / (1 + Math.exp(-gate)) : geluTanh(gate);
    want[i] = round(a) * up;
    const [dGate, dUp] = [i, n + i].map((r) => (k / 8 + 32) * 2 ** -24 * mag[r] + ulp * Math.abs(sums[r]));
    tol[i] = 1.2 * dGate * (Math.abs(up) + dUp) + Math.abs(a) * dUp + rel * Math.abs(want[i]) + abs;
  }
  return { want, tol };
}

/** null when every |got − want| ≤ tol, else the first element off and how many are. */
function within(got: ArrayLike<number>, want: Float64Array, tol: Float64Array): string | null {
  let bad = 0;
  let first = -1;
  for (let i = 0; i < want.length; i++) {
    if (!(Math.abs(got[i] - want[i]) <= tol[i])) {
      if (first < 0) first = i;
      bad++;
    }
  }
  return bad ? `${bad} of ${want.length} off; first [${first}] got ${got[first]}, want ${want[first]} ± ${tol[first]}` : null;
}

const bytesOf = (dtype: ComputeDtype): number => (dtype === 'F16' ? 2 : 4);

/** The bytes of y (fused) and of the unfused path's output, (I,) each, and y's 8 elements past I. */
async function runBoth(
  device: GPUDevice,
  ops: { fused: QGemv; plain: QGemv; swiglu: Swiglu },
  weight: QuantizedTensor,
  x: Float32Array,
  n: number,
  label: string,
): Promise<{ fused: Uint8Array; unfused: Uint8Array; past: Uint8Array }> {
  const dtype = ops.fused.dtype;
  const b = bytesOf(dtype);
  const xBuf = uploadArray(device, x, dtype, `${label}.x`);
  const y = uploadArray(device, new Float32Array(n + 8).fill(7), dtype, `${label}.y`);
  const gateUp = outputBuffer(device, 2 * n, b, `${label}.gateUp`);
  const out = outputBuffer(device, n, b, `${label}.out`);
  const prepared = [
    ops.fused.prepare(label, weight, xBuf, y),
    ops.plain.prepare(`${label}.plain`, weight, xBuf, gateUp),
    ops.swiglu.prepare(`${label}.swiglu`, 1, n, [gateUp], out),
  ];
  await runOps(device, prepared);
  const all = await readBuffer(device, y, 0, Math.ceil(((n + 8) * b) / 4) * 4);
  const unfused = await readBuffer(device, out, 0, Math.ceil((n * b) / 4) * 4);
  prepared.forEach((p) => p.destroy());
  [xBuf, y, gateUp, out].forEach((buf) => buf.destroy());
  return { fused: all.slice(0, n * b), unfused: unfused.slice(0, n * b), past: all.slice(n * b, (n + 8) * b) };
}

const noF16 = (dtype: ComputeDtype): boolean => dtype === 'F16' && !gpu.device.features.has('shader-f16');

for (const kind of ['q8', 'q4'] as QuantKind[]) {
  describe.each(['F32', 'F16'] as const)(`qgemv glu ${kind} %s`, (dtype: ComputeDtype) => {
    it.each(['silu', 'gelu_tanh'] as SwigluAct[])('%s: bit for bit the unfused qgemv + swiglu, close to float64, both paths', async (act) => {
      const device = gpu.device;
      if (noF16(dtype)) return expect(noF16(dtype)).toBe(true); // said, not silent: no F16 on this adapter
      // With subgroups to share x, half the shapes load it per invocation instead.
      const sgChoices = canShareX(device) ? [true, false] : [false];
      const opsFor = new Map<boolean, { fused: QGemv; plain: QGemv; swiglu: Swiglu }>();
      const swiglu = await Swiglu.create(device, dtype, { act, fused: true });
      const paths = new Set<string>();
      for (const [s, [n, k, g]] of shapes().entries()) {
        const subgroups = sgChoices[s % sgChoices.length];
        if (!opsFor.has(subgroups)) {
          const [fused, plain] = await Promise.all([QGemv.create(device, kind, dtype, { glu: act, subgroups }), QGemv.create(device, kind, dtype, { subgroups })]);
          opsFor.set(subgroups, { fused, plain, swiglu });
        }
        const ops = opsFor.get(subgroups)!;
        expect(ops.fused.glu).toBe(act);
        const zeros = s % 2 === 0;
        const scaleDtype = s % 3 === 2 ? 'F32' : 'F16';
        const host = randomQuantized(rng, kind, 2 * n, k, g, zeros);
        const weight = uploadQuantized(device, host, { kind, n: 2 * n, k, groupSize: g, scaleDtype }, false);
        // |gate|, |up| of a few units, where the acts bend: q8's weights are ~16× q4's.
        const span = kind === 'q8' ? 1 / 8 : 2;
        const x = asDtype(randomValues(rng, k, -span, span), dtype);
        const path = qgemvPath(weight);
        paths.add(path);
        const what = `${kind} ${dtype} ${act} I=${n} K=${k} G=${g} path=${path} subgroups=${subgroups} zeros=${zeros} scales=${scaleDtype}`;
        const { fused, unfused, past } = await runBoth(device, ops, weight, x, n, `test.qgemv-glu.${n}x${k}`);
        expect(Buffer.from(fused).equals(Buffer.from(unfused)), `${what}: not bit for bit the unfused path`).toBe(true);
        expect(Array.from(decode(past, dtype, 8)), `${what}: wrote past I`).toEqual(new Array(8).fill(7));
        const { want, tol } = gluReference(kind, [2 * n, k, g], host, x, dtype, act);
        expect(within(decode(fused, dtype, n), want, tol), what).toBeNull();
        destroyQuantized(weight);
      }
      expect([...paths].sort()).toEqual(['block', 'word']);
    });
  });
}

it('I past the per-dimension workgroup limit spills into y, still bit for bit', async () => {
  // A device that claims 2 workgroups per dimension: I = 5P − 3 makes 5 workgroups → (2, 3), one spare.
  const spy = spyDevice(gpu.device, { limits: { maxComputeWorkgroupsPerDimension: 2 } });
  const n = 5 * P - 3;
  const [k, g] = [128, 32];
  const [fused, plain, swiglu] = await Promise.all([
    QGemv.create(spy.device, 'q4', 'F32', { glu: 'silu' }),
    QGemv.create(gpu.device, 'q4', 'F32'),
    Swiglu.create(gpu.device, 'F32', { fused: true }),
  ]);
  const host = randomQuantized(rng, 'q4', 2 * n, k, g, true);
  const weight = uploadQuantized(gpu.device, host, { kind: 'q4', n: 2 * n, k, groupSize: g, scaleDtype: 'F16' }, false);
  const x = randomValues(rng, k, -2, 2);
  const got = await runBoth(gpu.device, { fused, plain, swiglu }, weight, x, n, 'test.qgemv-glu.spill');
  expect(Buffer.from(got.fused).equals(Buffer.from(got.unfused))).toBe(true);
  expect(Array.from(decode(got.past, 'F32', 8))).toEqual(new Array(8).fill(7));
  destroyQuantized(weight);
});

it('every GLU variant compiles with no message', async () => {
  const features = gpu.device.features as ReadonlySet<string>;
  const dtypes: ComputeDtype[] = features.has('shader-f16') ? ['F32', 'F16'] : ['F32'];
  // The RMS_NORM ones with a GLU: qgemv-rms.test.ts.
  const glu = qgemvVariants(dtypes, features).filter((v) => (v.spec.flags ?? []).includes('GLU') && !(v.spec.flags ?? []).includes('RMS_NORM'));
  // kinds × dtypes × x sharing × paths × acts.
  expect(glu.length).toBe(2 * dtypes.length * (features.has('subgroups') ? 2 : 1) * 2 * 2);
  expect(glu.map((v) => v.key)).toContain('qgemv_q4_f32_block_glu_gelu_tanh_r4_wg32');
  for (const { key, spec } of glu) {
    expect((spec.flags ?? []).filter((f) => ['BIAS', 'OUT_F32', 'RESIDUAL'].includes(f)), key).toEqual([]);
    const info = await pipelineCache(gpu.device).module(spec.shader, spec.flags).getCompilationInfo();
    expect(info.messages.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`), key).toEqual([]);
  }
});

it('refuses glu with bias, outF32 or residual, an unknown act, and a weight it cannot read as [gate; up]', async () => {
  const device = gpu.device;
  for (const option of ['bias', 'outF32', 'residual'] as const) {
    await expect(QGemv.create(device, 'q4', 'F32', { glu: 'silu', [option]: true })).rejects.toThrow(`qgemv: glu cannot be combined with ${option}`);
  }
  await expect(QGemv.create(device, 'q8', 'F32', { glu: 'relu' as SwigluAct })).rejects.toThrow(/glu must be one of silu, gelu_tanh, got relu/);
  const op = await QGemv.create(device, 'q4', 'F32', { glu: 'gelu_tanh' });
  const x = outputBuffer(device, 32, 4);
  const y = outputBuffer(device, 64, 4);
  const chunked = uploadQuantized(device, randomQuantized(rng, 'q4', 6, 32, 32, false), { kind: 'q4', n: 6, k: 32, groupSize: 32, scaleDtype: 'F16' }, true);
  expect(chunked.chunks.length).toBe(3);
  expect(() => op.prepare('t.gate_up', chunked, x, y)).toThrow('t.gate_up: a GLU gemv needs the gate and up rows in one chunk, not 3');
  const odd = uploadQuantized(device, randomQuantized(rng, 'q4', 5, 32, 32, false), { kind: 'q4', n: 5, k: 32, groupSize: 32, scaleDtype: 'F16' }, false);
  expect(() => op.prepare('t.odd', odd, x, y)).toThrow(/t.odd: a GLU gemv needs \[gate; up\], an even number of rows, not 5/);
  const wide = uploadQuantized(device, randomQuantized(rng, 'q4', 40, 32, 32, false), { kind: 'q4', n: 40, k: 32, groupSize: 32, scaleDtype: 'F16' }, false);
  const short = outputBuffer(device, 16, 4);
  expect(() => op.prepare('t.short', wide, x, short)).toThrow(/qgemv y holds 64 bytes, \(20,\) needs 80/);
  expect(() => op.prepare('t.fits', wide, x, y).destroy()).not.toThrow();
  [chunked, odd, wide].forEach(destroyQuantized);
  [x, y, short].forEach((b) => b.destroy());
});

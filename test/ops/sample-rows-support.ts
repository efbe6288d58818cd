// The rows of one sample dispatch, built from plain cases (logits, parameters, history, bias,
// allowed-token mask) and run on the GPU: shared by the per-row and the mask tests of
// shaders/sample.wgsl.

import { runOps } from '../../src/ops/op.js';
import { maskWords, NO_PENALTIES, Sample, type SampleRowConfig } from '../../src/ops/sample.js';
import { readU32, uploadArray } from '../support/op-helpers.js';
import type { ReferenceParams, RowContext } from './sample-reference.js';

const between = (rng: () => number, lo: number, hi: number) => lo + Math.floor(rng() * (hi - lo + 1));

/** What out holds where no row wrote. */
export const SENTINEL = 0xdeadbeef;

export interface RowCase {
  logits: Float32Array;
  params: ReferenceParams;
  ctx: RowContext;
  step: number;
}

/** Seeded logits with a realistic spread: a few clear favourites, a long tail. */
export function randomLogits(rng: () => number, n: number, scale = 4): Float32Array {
  return Float32Array.from({ length: n }, () => scale * (rng() + rng() + rng() - 1.5) * 2);
}

/** A seeded row: random filters, penalties, history (prompt + generated, with repeats) and bias. */
export function randomRow(rng: () => number, vocab: number, greedy: boolean): RowCase {
  const int = (lo: number, hi: number) => between(rng, lo, hi);
  const history = Array.from({ length: int(0, 300) }, () => (rng() < 0.5 ? int(0, 20) : int(0, vocab - 1))); // repeats among 0..20
  const bias = new Map<number, number>();
  for (let i = int(0, 6); i > 0; i--) bias.set(int(0, vocab - 1), -100 + 200 * rng());
  const params: ReferenceParams = {
    temperature: greedy ? 0 : 0.5 + rng(),
    topK: rng() < 0.5 ? int(1, 60) : 0,
    topP: rng() < 0.5 ? 0.5 + 0.5 * rng() : 1,
    minP: rng() < 0.3 ? 0.05 * rng() : 0,
    repetitionPenalty: rng() < 0.5 ? 0.8 + 0.6 * rng() : 1,
    frequencyPenalty: rng() < 0.6 ? -2 + 4 * rng() : 0,
    presencePenalty: rng() < 0.6 ? -2 + 4 * rng() : 0,
    seed: int(0, 2 ** 32 - 1),
  };
  return { logits: randomLogits(rng, vocab), params, ctx: { history, generatedFrom: int(0, history.length), bias }, step: int(0, 1000) };
}

/**
 * The rows sampled in one dispatch (rows prepared; `count` uploaded, default all): logits
 * stacked, histories and bias lists concatenated, each row placed at its own offsets; a row
 * whose ctx has a mask is staged as masked over its row of one mask buffer (bound only when
 * some row has one, so the unmasked form is exactly what it was before masks existed).
 */
export async function sampleRows(device: GPUDevice, vocab: number, cases: readonly RowCase[], count = cases.length): Promise<number[]> {
  const logits = new Float32Array(cases.length * vocab);
  cases.forEach((c, r) => logits.set(c.logits, r * vocab));
  const history: number[] = [];
  const bias: number[] = [];
  const configs: SampleRowConfig[] = cases.map((c) => {
    const config: SampleRowConfig = {
      ...NO_PENALTIES,
      ...c.params,
      historyBase: history.length,
      generatedFrom: c.ctx.generatedFrom ?? (c.ctx.history?.length ?? 0),
      biasBase: bias.length / 2,
      biasCount: c.ctx.bias?.size ?? 0,
    };
    history.push(...(c.ctx.history ?? []));
    for (const [id, b] of c.ctx.bias ?? []) bias.push(id, new Uint32Array(Float32Array.of(b).buffer)[0]);
    return config;
  });
  const words = maskWords(vocab);
  const masks = new Uint32Array(cases.length * words);
  cases.forEach((c, r) => c.ctx.mask && masks.set(c.ctx.mask.subarray(0, words), r * words));
  const masked = cases.some((c) => c.ctx.mask);
  const logitsBuf = uploadArray(device, logits, 'F32');
  const historyBuf = uploadArray(device, Uint32Array.from(history.length ? history : [0]), 'U32');
  const biasBuf = uploadArray(device, Uint32Array.from(bias.length ? bias : [0, 0]), 'U32');
  const maskBuf = masked ? uploadArray(device, masks, 'U32') : undefined;
  const out = uploadArray(device, new Uint32Array(cases.length).fill(SENTINEL), 'U32');
  const op = (await Sample.create(device)).prepareRows('test.rows', vocab, cases.length, { logits: logitsBuf, history: historyBuf, bias: biasBuf, out, mask: maskBuf });
  cases.forEach((c, r) => op.setRow(r, configs[r], c.step, c.ctx.history?.length ?? 0, c.ctx.mask !== undefined));
  op.upload(count);
  await runOps(device, [op]);
  const ids = [...(await readU32(device, out, cases.length))];
  for (const b of [op, logitsBuf, historyBuf, biasBuf, out, maskBuf]) b?.destroy();
  return ids;
}

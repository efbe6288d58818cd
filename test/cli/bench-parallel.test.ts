// `sluice bench generate --parallel`: on a tiny reference model, every stream count's
// figures over its rounds (medians, each round's aggregate), the ratios against one stream
// in the same run, and the arrival's TTFT against its limit. No speed asserted.

import { expect, it } from 'vitest';
import { benchParallel } from '../../src/cli/bench/parallel-bench.js';
import { runCli } from '../support/cli.js';
import { useGpuTestDevice } from '../support/gpu-helpers.js';

const gpu = useGpuTestDevice('test.bench-parallel');

it('medians over rounds, ratios against one stream, the arrival against its limit', async () => {
  const r = await benchParallel(gpu.context, { dir: 'test/fixtures/models/llama-gqa', dtype: 'f32', streams: [1, 3], promptTokens: 10, tokens: 6, repeats: 3 });
  expect(r.slots).toBe(3);
  expect(r.kernels).toBe('software');
  expect(r.runs.map((x) => x.streams)).toEqual([1, 3]);
  for (const run of r.runs) {
    expect(run.rounds_aggregate).toHaveLength(3);
    const sorted = [...run.rounds_aggregate].sort((a, b) => a - b);
    expect(run.aggregate_decode_tokens_per_second).toBeCloseTo(sorted[1], 2); // the median round
    expect(run.ms_per_token).toBeGreaterThan(0);
    expect(run.ttft_ms).toBeGreaterThan(0);
  }
  const [one, three] = r.runs;
  expect([one.aggregate_over_solo, one.latency_over_solo]).toEqual([1, 1]);
  expect(three.aggregate_over_solo).toBeCloseTo(three.aggregate_decode_tokens_per_second / one.aggregate_decode_tokens_per_second, 2);
  expect(three.latency_over_solo).toBeCloseTo(three.ms_per_token / one.ms_per_token, 2);
  expect(r.arrival.others).toBe(2);
  expect(r.arrival.ttft_over_limit).toBeCloseTo(r.arrival.ttft_ms / r.arrival.limit_ms, 2);
});

it('refuses a bad --parallel list and --repeats', async () => {
  for (const bad of ['0', '1,x', '']) {
    const out = await runCli(['bench', 'generate', '--synthetic', 'smollm2-135m', `--parallel=${bad}`]);
    expect(out.code, bad).toBe(2);
  }
  expect((await runCli(['bench', 'generate', '--synthetic', 'smollm2-135m', '--parallel', '2', '--repeats', '0'])).code).toBe(2);
  // The library checks too, before it loads anything.
  await expect(benchParallel(gpu.context, { dir: 'x', streams: [2], repeats: 0 })).rejects.toThrow(/repeats must be a whole number ≥ 1, not 0/);
});

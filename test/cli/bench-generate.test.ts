// `sluice bench generate` on a tiny reference model: the JSON has every figure, and they
// agree with each other and with the model (dispatch count, weight bytes), the median and
// spread with the decode runs, the limit with its two probes. No speed asserted.

import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';
import { benchGenerate, DEFAULT_DECODE_REPEATS, decodeStats } from '../../src/cli/bench/generate-bench.js';
import type { GpuContext } from '../../src/gpu/device.js';

describe('decodeStats', () => {
  it('the median and (max − min) / median of the runs', () => {
    const odd = decodeStats([10, 12, 11, 9, 30]);
    expect(odd.median).toBe(11); // one slow outlier does not move it
    expect(odd.spread).toBeCloseTo(21 / 11, 12);
    expect(decodeStats([4, 2])).toEqual({ median: 3, spread: 2 / 3 }); // even count: the middle two's mean
    expect(decodeStats([7])).toEqual({ median: 7, spread: 0 });
    expect(decodeStats([5, 5, 5])).toEqual({ median: 5, spread: 0 });
  });

  it('refuses no runs', () => {
    expect(() => decodeStats([])).toThrow(/no runs/);
  });
});

describe('sluice bench generate', () => {
  it('--json: speeds, per-token costs, weight bandwidth vs the read limit', async () => {
    const { code, stdout, stderr } = await runCli(['bench', 'generate', 'test/fixtures/models/llama-gqa', '--prompt-tokens', '20', '--tokens', '8', '--repeats', '2', '--json', '--dtype', 'f32']);
    expect([code, stderr]).toEqual([0, '']);
    const r = JSON.parse(stdout);
    expect(r).toMatchObject({ compute_dtype: 'F32', prompt_tokens: 20, generated_tokens: 8, submits_per_token: 1, readback_bytes_per_token: 4 });
    // 2 layers × (norm + q|k|v + rope + K/V store, attention, o + residual add, norm + gate|up
    // + swiglu, down + residual add; as test/model/dispatches.test.ts counts them) + embedding
    // + final norm + LM head + sampler; the tiny cache fits one decode split.
    expect(r.dispatches_per_token).toBe(2 * 5 + 1 + 2 + 1);
    // Every weight once in f32, the tied table as the LM head, plus one embedding row; the
    // layers' norms live in the linears' columns (folded at load), the final one is read.
    const params = 256 * 64 + 64 + 2 * (64 * 64 + 2 * 32 * 64 + 64 * 64 + 3 * 160 * 64);
    expect(r.weight_bytes_per_token).toBe(params * 4 + 64 * 4);
    for (const key of ['ttft_ms', 'prefill_tokens_per_second', 'decode_tokens_per_second', 'weight_gbps', 'read_limit_gbps']) expect(r[key], key).toBeGreaterThan(0);
    // Two timed decode runs: the top-level rate is their median, the spread theirs.
    expect(r.decode_repeats).toBe(2);
    expect(r.decode_runs_tokens_per_second).toHaveLength(2);
    for (const x of r.decode_runs_tokens_per_second) expect(x).toBeGreaterThan(0);
    const runs = decodeStats(r.decode_runs_tokens_per_second);
    expect(r.decode_tokens_per_second).toBeCloseTo(runs.median, 2); // runs rounded to 0.001 each
    expect(r.decode_spread).toBeCloseTo(runs.spread, 2);
    // Linux: the main thread's share of the decode's wall time, 0 (asleep) to ~1 (spinning).
    if (process.platform === 'linux') expect(r.host_busy_share).toBeGreaterThanOrEqual(0);
    if (process.platform === 'linux') expect(r.host_busy_share).toBeLessThan(1.5);
    expect(r.weight_gbps).toBeCloseTo((r.weight_bytes_per_token * r.decode_tokens_per_second) / 1e9, 2);
    // A probe before each run and after the last; each run against the larger probe around it.
    const probes = r.read_limit_probes_gbps as number[];
    expect(probes).toHaveLength(3);
    for (const p of probes) expect(p).toBeGreaterThan(0);
    expect([r.read_limit_before_gbps, r.read_limit_after_gbps]).toEqual([probes[0], probes[2]]);
    const limits = [0, 1].map((i) => Math.max(probes[i], probes[i + 1]));
    const ratios = r.decode_runs_tokens_per_second.map((rate: number, i: number) => (r.weight_bytes_per_token * rate) / 1e9 / limits[i]);
    (r.weight_over_read_runs as number[]).forEach((x, i) => expect(x).toBeCloseTo(ratios[i], 2));
    expect(r.read_limit_gbps).toBeCloseTo((limits[0] + limits[1]) / 2, 2); // the median of two
    expect(r.weight_over_read).toBeCloseTo(decodeStats(ratios).median, 2);
    expect(r.weight_over_read_spread).toBeCloseTo(decodeStats(ratios).spread, 1);
  });

  describe('--synthetic', () => {
    const dirs: string[] = [];
    afterAll(() => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));

    it('real shapes, random weights: TTFT per prompt length, truncation said, the checkpoint cached', async () => {
      const cacheDir = await mkdtemp(join(tmpdir(), 'sluice-bench-synthetic-'));
      dirs.push(cacheDir);
      const args = ['bench', 'generate', '--synthetic', 'smollm2-135m', '--layers', '1', '--tokens', '2', '--cache-dir', cacheDir, '--json'];
      const first = await runCli(args);
      expect([first.code, first.stderr]).toEqual([0, '']);
      const r = JSON.parse(first.stdout);
      const dir = join(cacheDir, 'smollm2-135m-1-layers');
      expect(r).toMatchObject({
        model: 'synthetic:smollm2-135m (1 of 30 layers)',
        layers: 1,
        prompt_tokens: 64, // decode follows the last prompt
        generated_tokens: 2,
        decode_repeats: DEFAULT_DECODE_REPEATS,
        synthetic: { name: 'smollm2-135m', config_from: 'HuggingFaceTB/SmolLM2-135M-Instruct', dir, storage: 'BF16', layers: 1, config_layers: 30, truncated: true, written: true, tensors: 11 },
      });
      // The default prompts, 8 and 64 tokens, each timed.
      expect(r.prefill.map((p: { prompt_tokens: number }) => p.prompt_tokens)).toEqual([8, 64]);
      for (const p of r.prefill) expect(p.ttft_ms).toBeGreaterThan(0);
      expect(r.ttft_ms).toBe(r.prefill[1].ttft_ms);
      // 1 layer × 5 + embedding + final norm + LM head + sampler.
      expect(r.dispatches_per_token).toBe(5 + 1 + 2 + 1);
      // At the real width (576, vocab 49152): the tied table as LM head, one embedding row, one
      // layer (its norms folded into its linears).
      const h = 576;
      const layer = h * h * 2 + 2 * 192 * h + 3 * 1536 * h;
      const width = r.compute_dtype === 'F32' ? 4 : 2;
      expect(r.weight_bytes_per_token).toBe((49152 * h + h + layer) * width + h * width);
      for (const key of ['decode_tokens_per_second', 'weight_gbps', 'read_limit_gbps']) expect(r[key], key).toBeGreaterThan(0);
      expect(r.decode_runs_tokens_per_second).toHaveLength(DEFAULT_DECODE_REPEATS);

      // The second run reuses the checkpoint: not rewritten.
      const mtime = (await stat(join(dir, 'model.safetensors'))).mtimeMs;
      const second = await runCli([...args, '--prompt-tokens', '4', '--repeats', '1']);
      expect([second.code, second.stderr]).toEqual([0, '']);
      const r2 = JSON.parse(second.stdout);
      expect(r2.synthetic).toMatchObject({ written: false, write_seconds: 0, file_bytes: r.synthetic.file_bytes });
      expect(r2.prefill.map((p: { prompt_tokens: number }) => p.prompt_tokens)).toEqual([4]);
      expect(r2).toMatchObject({ decode_repeats: 1, decode_spread: 0, decode_runs_tokens_per_second: [r2.decode_tokens_per_second] });
      expect((await stat(join(dir, 'model.safetensors'))).mtimeMs).toBe(mtime);
    });
  });

  it('usage errors', async () => {
    expect((await runCli(['bench', 'generate'])).code).toBe(2);
    expect((await runCli(['bench', 'generate', 'x', '--tokens', '0'])).code).toBe(2);
    expect((await runCli(['bench', 'generate', 'x', '--synthetic', 'smollm2-135m'])).code).toBe(2);
    expect((await runCli(['bench', 'generate', 'x', '--layers', '2'])).code).toBe(2);
    expect((await runCli(['bench', 'generate', '--synthetic', 'smollm2-135m', '--prompt-tokens', '8,x'])).code).toBe(2);
    expect((await runCli(['bench', 'generate', '--synthetic', 'smollm2-135m', '--storage', 'q4'])).code).toBe(2);
    for (const bad of ['0', '-1', '1.5', 'x', '']) {
      const repeats = await runCli(['bench', 'generate', '--synthetic', 'smollm2-135m', `--repeats=${bad}`]);
      expect([repeats.code, repeats.stderr], bad).toEqual([2, `sluice: bench generate: --repeats must be a whole number ≥ 1, not ${JSON.stringify(bad)}\n`]);
    }
    // The library checks too, before it loads anything (no GPU needed to refuse).
    await expect(benchGenerate({} as GpuContext, { dir: 'x', repeats: 0 })).rejects.toThrow(/repeats must be a whole number ≥ 1, not 0/);
    const unknown = await runCli(['bench', 'generate', '--synthetic', 'gpt-5']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/unknown model "gpt-5"; one of smollm2-135m, qwen2.5-0.5b/);
  });
});

// `sluice bench load` at a small size: every measurement runs (in worker processes, from
// dist/), the JSON document is complete and self-consistent, the human table, temp files
// removed, usage errors. No timing is asserted: speed goals live in the benchmark itself.

import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt } from '../support/build.js';
import { runCli } from '../support/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'sluice-bench-load-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
beforeAll(() => ensureBuilt(), 120_000);

function hasTorch(): boolean {
  try {
    execFileSync('/usr/bin/python3', ['-c', 'import torch'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

describe('sluice bench load', () => {
  it('--synthetic --json: all five measurements, ratios and verdicts consistent with the timings', async () => {
    const { code, stdout, stderr } = await runCli(['bench', 'load', '--synthetic', '6MiB', '--repeat', '1', '--dir', dir, '--json']);
    expect([code, stderr]).toEqual([0, '']);
    const r = JSON.parse(stdout);
    expect(r.bytes).toBeGreaterThan(5 * 2 ** 20);
    expect(r.tensors).toBeGreaterThan(10);
    expect(r.compute_dtype).toMatch(/^F(16|32)$/);
    for (const key of ['read', 'load', 'load_pth']) {
      for (const which of ['cold', 'warm']) {
        expect(r[key][which].seconds, `${key}.${which}`).toBeGreaterThan(0);
        // seconds are rounded to 1 ms: GB/s agrees with them within that rounding.
        const { seconds, gbps } = r[key][which];
        expect(gbps, `${key}.${which}`).toBeGreaterThanOrEqual(r.bytes / (seconds + 0.0006) / 1e9 - 0.001);
        expect(gbps, `${key}.${which}`).toBeLessThanOrEqual(r.bytes / Math.max(seconds - 0.0006, 1e-4) / 1e9 + 0.001);
      }
    }
    expect(r.upload.cold).toBeNull(); // nothing to read, so no cold run
    expect(r.upload.warm.seconds).toBeGreaterThan(0);
    const limit = Math.max(r.read.warm.seconds, r.upload.warm.seconds);
    const near = (got: number, want: number) => expect(Math.abs(got - want) / want, `${got} vs ${want}`).toBeLessThan(0.3);
    near(r.ratios.limit_over_load, limit / r.load.warm.seconds);
    near(r.ratios.pth_over_load, r.load_pth.warm.seconds / r.load.warm.seconds);
    expect(r.pass.load_vs_limit).toBe(r.ratios.limit_over_load >= 0.8);
    expect(r.pass.pth_vs_load).toBe(r.ratios.pth_over_load <= 1.1);
    if (hasTorch()) {
      expect(r.torch_load.warm.seconds).toBeGreaterThan(0);
      expect(r.pass.torch_vs_load).toBe(r.ratios.torch_over_load > 1);
    } else {
      expect(r.torch_load).toBeNull();
      expect(r.torch_note).toMatch(/torch/);
    }
    // The GPU holds every byte (bf16 → f16 or f32), and host memory is what RSS grew beyond it.
    expect(r.memory.device_bytes).toBeGreaterThanOrEqual(r.bytes);
    expect(r.memory.host_overhead_bytes).toBe(r.memory.rss_growth_bytes - (r.software_adapter ? r.memory.device_bytes : 0));
    expect(readdirSync(dir)).toEqual([]);
  }, 120_000);

  it('a given checkpoint without --pth: (d) and (e) are n/a in the table', async () => {
    const { code, stdout, stderr } = await runCli(['bench', 'load', 'examples/tiny/model.safetensors', '--repeat', '1']);
    expect([code, stderr]).toEqual([0, '']);
    expect(stdout).toMatch(/^examples\/tiny\/model\.safetensors: \d+ tensors, /);
    expect(stdout).toMatch(/\n\(c\) safetensors → GPU +[\d.]+ +[\d.]+ +[\d.]+ +[\d.]+\n/);
    expect(stdout).toMatch(/\n\(d\) \.pth → GPU +- +- +- +-\n/);
    expect(stdout).toMatch(/\(d\)\/\(c\) = n\/a .*: n\/a\n/);
    expect(stdout).toMatch(/no \.pth given/);
    expect(stdout).toMatch(/\nhost memory during \(c\): -?\d+ MiB = peak RSS growth \d+ MiB − GPU buffers/);
  }, 120_000);

  it('--quantize q4: (q) beside (c), its device bytes split dense/quantized/scratch, its ratios; no timing goal asserted', async () => {
    const tiny = 'examples/tiny/model.safetensors';
    const { code, stdout, stderr } = await runCli(['bench', 'load', tiny, '--quantize', 'q4', '--repeat', '1', '--json']);
    expect([code, stderr]).toEqual([0, '']);
    const r = JSON.parse(stdout);
    const q = r.quantized;
    expect(q.kind).toBe('q4');
    for (const which of ['cold', 'warm']) expect(q.load[which].seconds, which).toBeGreaterThan(0);
    // The tiny Llama: the embedding and 7 projections in each of its 2 layers, of which
    // down_proj (K = 172, not a multiple of the group of 32) stays dense, as do the norms.
    expect(q.quantized_tensors).toBe(13);
    const d = q.device_bytes;
    expect(d.total).toBe(d.dense + d.quantized);
    expect(d.scratch).toBeGreaterThan(0);
    // Dense: 5 norms of 64 and 2 down_proj (64 × 172), in the compute dtype.
    const width = r.compute_dtype === 'F16' ? 2 : 4;
    const dense = 5 * 64 + 2 * 64 * 172;
    const projections = 256 * 64 + 2 * (2 * 64 * 64 + 2 * 32 * 64 + 2 * 172 * 64); // 84,992 weights quantized
    expect(d.dense).toBe(dense * width);
    // q4: half a byte per weight, plus per group of 32 a scale (2 or 4 bytes: f16 or f32 scales) → 0.5625 or 0.625.
    expect(d.quantized).toBeGreaterThanOrEqual(projections * (0.5 + 2 / 32));
    expect(d.quantized).toBeLessThanOrEqual(projections * (0.5 + 4 / 32) + 13 * 64); // + per-chunk padding
    // (c) holds the same tensors dense; no scratch is counted there beyond its staging.
    expect(r.device_bytes.quantized).toBe(0);
    expect(r.device_bytes.total).toBe(r.memory.device_bytes);
    expect(r.device_bytes.dense).toBe((dense + projections) * width);
    expect(q.device_over_load).toBeCloseTo(d.total / r.device_bytes.total, 2);
    expect(q.load_over_load).toBeCloseTo(q.load.warm.seconds / r.load.warm.seconds, 1);
    expect(q.pass.time).toBe(q.load_over_load <= r.goals.quantizedOverLoad);
    expect(q.host_overhead_bytes).toBe(q.rss_growth_bytes - (r.software_adapter ? d.total : 0));

    const human = await runCli(['bench', 'load', tiny, '--quantize', 'q8', '--repeat', '1']);
    expect([human.code, human.stderr]).toEqual([0, '']);
    expect(human.stdout).toMatch(/\n\(q\) safetensors → GPU, q8 +[\d.]+ +[\d.]+ +[\d.]+ +[\d.]+\n/);
    expect(human.stdout).toMatch(/\n\(q\)\/\(c\) = [\d.]+ \(goal ≤ 1\.15\): (pass|FAIL)\n/);
    expect(human.stdout).toMatch(/\ndevice bytes: \(c\) [\d.]+ kB; \(q\) [\d.]+ kB = 0\.\d+× \(c\) \([\d.]+ kB q8 in 13 tensors \+ [\d.]+ kB dense\), \+ [\d.]+ [kM]B scratch during the load\n/);
  }, 120_000);

  it('usage errors', async () => {
    for (const argv of [
      ['bench', 'load'],
      ['bench', 'load', 'x.safetensors', '--synthetic', '1MiB'],
      ['bench', 'load', '--synthetic', 'lots'],
      ['bench', 'load', '--synthetic', '1MiB', '--dtype', 'f8'],
      ['bench', 'load', '--synthetic', '1MiB', '--repeat', '0'],
      ['bench', 'load', '--synthetic', '1MiB', '--quantize', 'q3'],
    ]) {
      const { code, stderr } = await runCli(argv);
      expect(code, argv.join(' ')).toBe(2);
      expect(stderr, argv.join(' ')).toMatch(/^sluice: /);
    }
  });
});

// `sluice bench kernels --quick`: every section measured on the software GPU, the JSON
// complete and self-consistent (ratios and verdicts follow from the figures), the table.
// No speed is asserted: goals live in the benchmark's own verdicts.

import { describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';

describe('sluice bench kernels', () => {
  it('--quick --json: read limit, gemv, matmul and attention, with consistent verdicts', async () => {
    const { code, stdout, stderr } = await runCli(['bench', 'kernels', '--quick', '--json']);
    expect([code, stderr]).toEqual([0, '']);
    const r = JSON.parse(stdout);
    expect(r.timing).toMatch(/^(timestamp|wall)$/);
    expect(r.read_limit.read_gbps).toBeGreaterThan(0);
    expect(r.read_limit.copy_gbps).toBeGreaterThan(0);
    expect(r.gemv.map((g: { dtype: string }) => g.dtype)).toContain('F32');
    expect(r.gemv).toHaveLength(r.gemv.some((g: { dtype: string }) => g.dtype === 'F16') ? 8 : 4);
    for (const g of r.gemv) {
      expect(g.gbps, `${g.n}×${g.k}`).toBeCloseTo((g.n * g.k * (g.dtype === 'F16' ? 2 : 4)) / (g.ms / 1e3) / 1e9, 0);
      expect(g.over_read).toBeCloseTo(g.gbps / r.read_limit.read_gbps, 1);
      expect(g.pass).toBe(g.over_read >= r.goals.gemvOverRead);
    }
    expect(r.qgemv.map((g: { kind: string }) => g.kind)).toEqual(['q8', 'q8', 'q8', 'q8', 'q4', 'q4', 'q4', 'q4']);
    for (const g of r.qgemv) {
      // Packed bytes per weight at G = 32: q8 1 + 2/32 (f16 scales) or 4/32 (f32); q4 0.5 + 3/32 or 5/32.
      expect(g.bytes_per_weight, `${g.kind} ${g.n}×${g.k}`).toBeGreaterThan(g.kind === 'q8' ? 1.05 : 0.55);
      expect(g.bytes_per_weight).toBeLessThan(g.kind === 'q8' ? 1.13 : 0.66);
      expect(g.gbps).toBeCloseTo((g.n * g.k * g.bytes_per_weight) / (g.ms / 1e3) / 1e9, 0);
      expect(g.over_read).toBeCloseTo(g.gbps / r.read_limit.read_gbps, 1);
      // Speed over the dense gemv of the same shape in the decode dtype (its ms / ours).
      const dense = r.gemv.find((d: { dtype: string; n: number; k: number }) => d.dtype === g.dtype && d.n === g.n && d.k === g.k);
      expect(g.over_gemv, `${g.kind} ${g.n}×${g.k}`).toBeCloseTo(dense.ms / g.ms, 1);
    }
    expect(r.matmul.length).toBeGreaterThanOrEqual(2);
    for (const m of r.matmul) {
      expect(m.over_naive).toBeCloseTo(m.gflops / m.naive_gflops, 1);
      expect(m.goal).toBe(r.software_adapter ? 3 : 5);
      expect(m.pass).toBe(m.over_naive >= m.goal);
    }
    expect(r.attention.map((a: { kind: string; context: number }) => `${a.kind}@${a.context}`)).toEqual(
      expect.arrayContaining(['prefill@64', 'decode@64', 'decode@256']),
    );
    for (const a of r.attention) expect(a.ms).toBeGreaterThan(0);
  }, 120_000);

  it('the table names every section; bad arguments are usage errors', async () => {
    const { code, stdout } = await runCli(['bench', 'kernels', '--quick']);
    expect(code).toBe(0);
    expect(stdout).toMatch(/^.*; timing by (timestamp queries|wall clock)\nread limit: [\d.]+ GB\/s \(strided [\d.]+, segmented [\d.]+; copy [\d.]+ GB\/s\) over 33\.6 MB\n/);
    expect(stdout).toMatch(/\ngemv +N×K +chunks +ms +GB\/s +×read +≥ 0\.8\nF32 +1024×1024 +1 /);
    expect(stdout).toMatch(/\nmatmul +M×N×K +GFLOP\/s +naive +×naive +≥ [35]\n/);
    expect(stdout).toMatch(/\nattention +kind +tokens +context +heads +ms\nF32 +prefill +64 +64 +8\/2×64 /);
    const bad = await runCli(['bench', 'kernels', 'extra']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^sluice: bench kernels: unexpected argument "extra"/);
  });
});

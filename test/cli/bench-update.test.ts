// `sluice bench update` at a small size: the JSON document's shape, the human table, the
// temp files removed, usage errors. No timing is asserted (the ratio depends on the disk).

import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'sluice-bench-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('sluice bench update', () => {
  it('--json: one document {file_bytes, tensor_bytes, update_ms, rewrite_ms, ratio, goal, pass}', async () => {
    const { code, stdout, stderr } = await runCli(['bench', 'update', '--size-mib', '32', '--repeat', '1', '--dir', dir, '--json']);
    expect([code, stderr]).toEqual([0, '']);
    const doc = JSON.parse(stdout);
    expect(Object.keys(doc)).toEqual(['file_bytes', 'tensor_bytes', 'update_ms', 'rewrite_ms', 'ratio', 'goal', 'pass']);
    expect(doc.tensor_bytes).toBe(16 * 2 ** 20);
    expect(doc.file_bytes).toBeGreaterThan(32 * 2 ** 20); // two tensors + the header
    expect(doc.file_bytes).toBeLessThan(32 * 2 ** 20 + 4096);
    for (const k of ['update_ms', 'rewrite_ms', 'ratio']) expect(doc[k], k).toBeGreaterThan(0);
    expect(doc.goal).toBe(20);
    expect(doc.pass).toBe(doc.ratio >= 20);
    expect(readdirSync(dir)).toEqual([]); // its temp directory is gone
  });

  it('prints a short table', async () => {
    const { code, stdout } = await runCli(['bench', 'update', '--size-mib', '8', '--repeat', '2', '--dir', dir]);
    expect(code).toBe(0);
    expect(stdout).toMatch(/^replacing one 8\.39 MB tensor of a 8\.39 MB file \(1 tensor\), 2 runs each\n/);
    expect(stdout).toMatch(/\nin-place update +[\d.]+ +[\d.]+, [\d.]+\nfull rewrite +[\d.]+ +[\d.]+, [\d.]+\n/);
    expect(stdout).toMatch(/\nratio [\d.]+× \(goal ≥ 20×\): (pass|FAIL)\n$/);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('usage errors name the available benchmarks', async () => {
    for (const argv of [['bench'], ['bench', 'nope'], ['bench', '--json']]) {
      const { code, stderr } = await runCli(argv);
      expect(code, argv.join(' ')).toBe(2);
      expect(stderr).toMatch(/^sluice: bench: .*Available: load, kernels, generate, update/);
    }
    expect((await runCli(['bench', 'update', '--size-mib', '0'])).code).toBe(2);
    const help = await runCli(['bench', '--help']);
    expect(help.stdout).toMatch(/Benchmarks:\n {2}load .*\n {2}kernels .*\n {2}generate .*\n {2}update /);
  });
});

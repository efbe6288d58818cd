// Step 11's hostile checkpoints (test/support/hostile-checkpoints.ts), each run through the
// real CLI (`sluice inspect`, built in dist/) in a child process with its time and peak
// RSS measured: each must end within 20 s and 1.5 GB with one `sluice: <file>: …` line
// naming the bound it hit, or open. Before the bounds, these ran for minutes, aborted
// Node with a heap out of memory, or printed 2^20 tensors. About 15 s in all.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { errorLine, runBoundedCli } from '../../support/bounded-cli.js';
import { HOSTILE } from '../../support/hostile-checkpoints.js';

const BUDGET_MS = 20_000;
const BUDGET_MIB = 1536;

const dir = mkdtempSync(join(tmpdir(), 'sluice-bombs-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('hostile torch.save files end quickly, in bounded memory, with one line naming the file', () => {
  it.each(HOSTILE.map((c, i) => ({ ...c, i })))('$name', async ({ i, build, flags, error }) => {
    const file = join(dir, `case${i}.pth`);
    writeFileSync(file, build());
    const run = await runBoundedCli(['inspect', file, ...(flags ?? [])], { timeoutMs: BUDGET_MS + 10_000 });
    const report = `${Math.round(run.ms)} ms, ${Math.round(run.peakMiB)} MiB, exit ${run.code ?? run.signal}: ${run.stderr.slice(0, 300)}`;
    expect(run.timedOut, report).toBe(false);
    expect(run.ms, report).toBeLessThan(BUDGET_MS);
    expect(run.peakMiB, report).toBeGreaterThan(0); // the child reported: it exited, not aborted
    expect(run.peakMiB, report).toBeLessThan(BUDGET_MIB);
    if (error === null) {
      expect(run.code, report).toBe(0);
      return;
    }
    expect(run.code, report).toBe(1);
    const line = errorLine(run);
    expect(line.startsWith(`sluice: ${file}: `), line).toBe(true);
    expect(line).toMatch(error);
    expect(line.length, line).toBeLessThan(600); // untrusted text is quoted short
  });
});

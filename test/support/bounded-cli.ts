// Runs `sluice ARGV` (the built CLI, dist/) in a child process and measures what a hostile
// input costs it: wall time and peak RSS. The reproducers of step 11 assert both, plus the
// one-line error, so a bomb that regresses fails by its budget, not by hanging CI.
//
// The child is killed at `timeoutMs` (a hang becomes a failed assertion, not a stuck
// suite) and runs with a heap cap a little above the RSS budget, so a runaway allocation
// aborts the child instead of swapping the machine.

import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureBuilt, root } from './build.js';

export interface BoundedRun {
  /** Exit code, or null when killed by a signal. */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Wall time of the child, start to exit. */
  ms: number;
  /** Peak resident set of the child in MiB (0 when it died before reporting). */
  peakMiB: number;
  /** True when the child ran past `timeoutMs` and was killed. */
  timedOut: boolean;
}

export interface BoundedOptions {
  /** Kill the child after this long (default 30 s). */
  timeoutMs?: number;
  /** V8 heap cap for the child in MiB (default 1536): past it the child aborts. */
  heapMiB?: number;
  env?: Record<string, string>;
  cwd?: string;
}

const PRELOAD = join(root, 'test', 'support', 'report-peak-rss.mjs');

/** `sluice ARGV` in a child Node process with its time and peak memory measured. */
export async function runBoundedCli(argv: string[], options: BoundedOptions = {}): Promise<BoundedRun> {
  await ensureBuilt();
  const dir = mkdtempSync(join(tmpdir(), 'sluice-bounded-'));
  const rssFile = join(dir, 'rss');
  const started = performance.now();
  try {
    return await new Promise<BoundedRun>((resolve, reject) => {
      const child = spawn(
        process.execPath,
        [`--max-old-space-size=${options.heapMiB ?? 1536}`, '--import', PRELOAD, join(root, 'bin', 'sluice.js'), ...argv],
        {
          cwd: options.cwd ?? root,
          // SLUICE_FILTERED_CHILD: the launcher runs the command in this process (no GPU child),
          // so the peak measured is the command's own.
          env: { ...process.env, ...options.env, SLUICE_FILTERED_CHILD: '1', SLUICE_PEAK_RSS_FILE: rssFile },
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      let stdout = '';
      let stderr = '';
      let timedOut = false;
      child.stdout.setEncoding('utf8').on('data', (t: string) => void (stdout += t));
      child.stderr.setEncoding('utf8').on('data', (t: string) => void (stderr += t));
      const timer = setTimeout(() => {
        timedOut = true;
        child.kill('SIGKILL');
      }, options.timeoutMs ?? 30_000);
      child.on('error', reject);
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        let peakMiB = 0;
        try {
          peakMiB = Number(readFileSync(rssFile, 'utf8')) / 1024;
        } catch {
          // killed or aborted before its exit hook ran
        }
        resolve({ code, signal, stdout, stderr, ms: performance.now() - started, peakMiB, timedOut });
      });
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The error line of a run: stderr must be exactly one `sluice: …` line. */
export function errorLine(run: BoundedRun): string {
  const lines = run.stderr.split('\n').filter((l) => l.trim() !== '');
  if (lines.length !== 1 || !lines[0].startsWith('sluice: ')) {
    throw new Error(`expected one 'sluice: …' line on stderr, got ${lines.length} lines: ${run.stderr.slice(0, 500)}`);
  }
  return lines[0];
}

// A child process for the update crash and concurrency tests: it runs the COMPILED code
// (dist/, built by test/support/build.ts's ensureBuilt) so a test can SIGKILL it at any
// moment of an update, or run several at once against one file.
//
//   node update-worker.mjs TARGET [--start K] [--loops N] [--lock-timeout-ms M] [--at T] PATCH...
//       Update j (j = 0 … N−1; N = 0 loops until killed) applies PATCH[(K + j) mod #PATCH]
//       to TARGET (a file, a directory or an index) with updateCheckpoint. With --at, the
//       first update waits until Date.now() ≥ T, so several workers start together.
//   node update-worker.mjs TARGET --hold-lock MS
//       Takes TARGET's update lock, holds it MS milliseconds, releases it.
//
// Protocol, one line each on stdout (pipes are written synchronously on Linux, so a line
// printed before a SIGKILL always reaches the parent):
//   ready            the modules are loaded; updates start now
//   done SEQ MS      update number K + j is committed (SEQ = K + j) and took MS ms
//   locked           (--hold-lock) the lock is held
// A failure prints `error CODE MESSAGE` on stderr and exits 1.

import { parseArgs } from 'node:util';
import { openCheckpoint } from '../../dist/checkpoint/open-path.js';
import { acquireLock } from '../../dist/io/file-lock.js';
import { updateCheckpoint } from '../../dist/formats/safetensors/update.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    start: { type: 'string', default: '0' },
    loops: { type: 'string', default: '1' },
    'lock-timeout-ms': { type: 'string', default: '60000' },
    'hold-lock': { type: 'string' },
    at: { type: 'string' },
  },
});
const [target, ...patchPaths] = positionals;
const say = (line) => process.stdout.write(`${line}\n`);

async function holdLock(ms) {
  const lock = await acquireLock(target, { timeoutMs: 10_000 });
  say('locked');
  await new Promise((resolve) => setTimeout(resolve, ms));
  await lock.release();
}

async function runUpdates() {
  const start = Number(values.start);
  const loops = Number(values.loops);
  const lock = { timeoutMs: Number(values['lock-timeout-ms']) };
  const patches = [];
  for (const p of patchPaths) patches.push(await openCheckpoint(p));
  say('ready');
  if (values.at !== undefined) await new Promise((resolve) => setTimeout(resolve, Number(values.at) - Date.now()));
  try {
    for (let j = 0; loops === 0 || j < loops; j++) {
      const seq = start + j;
      const t0 = performance.now();
      await updateCheckpoint(target, { from: patches[seq % patches.length], lock });
      say(`done ${seq} ${(performance.now() - t0).toFixed(1)}`);
    }
  } finally {
    for (const p of patches) await p.close();
  }
}

try {
  if (!target) throw new Error('usage: update-worker.mjs TARGET [--start K] [--loops N] PATCH... | TARGET --hold-lock MS');
  if (values['hold-lock'] !== undefined) await holdLock(Number(values['hold-lock']));
  else if (patchPaths.length === 0) throw new Error('no PATCH given');
  else await runUpdates();
} catch (e) {
  process.stderr.write(`error ${e?.code ?? 'ERROR'} ${e?.message ?? e}\n`);
  process.exitCode = 1;
}

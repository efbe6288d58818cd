// Concurrent updaters of one file, as separate processes (update-worker.mjs, the compiled
// code) and within one process: the file lock serialises them, so every update lands
// whole. Four processes each replace a different tensor several times: at the end each
// tensor holds its own last version and everything else is untouched. Two processes
// replacing the same tensor (12 MiB: two 8 MiB write chunks, so an interleaving would
// show) leave exactly one of their last versions.

import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openCheckpoint } from '../../../src/checkpoint/open-path.js';
import { updateCheckpoint } from '../../../src/formats/safetensors/update.js';
import { writeSafetensors } from '../../../src/formats/safetensors/write-file.js';
import type { TensorToWrite } from '../../../src/formats/safetensors/writer.js';
import { ensureBuilt, root as repoRoot } from '../../support/build.js';
import { mulberry32, seededBytes } from '../../support/safetensors-bytes.js';

const WORKER = join(repoRoot, 'test', 'support', 'update-worker.mjs');
const MiB = 1 << 20;
const PROCESSES = 4;
const VERSIONS = 5; // updates per process
type Spec = TensorToWrite & { data: Uint8Array };

let tmp: string;
let n = 0;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'sluice-concurrent-'));
  await ensureBuilt();
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

let seed = 0x70c0;
/** A BF16 tensor of `bytes` bytes, shape (bytes / 2048, 1024). */
const bf16 = (name: string, bytes: number): Spec => ({ name, dtype: 'BF16', shape: [bytes / 2048, 1024], data: seededBytes(seed++, bytes) });
const sha = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

async function writeFile(tensors: Spec[]): Promise<string> {
  const file = join(tmp, `f${n++}.safetensors`);
  await writeSafetensors(file, tensors, { metadata: { format: 'pt' } });
  return file;
}

/** Runs update-worker.mjs applying `patches` in order from time `at`; resolves when it exits. */
function runWorker(target: string, patches: string[], at: number): Promise<{ code: number | null; done: number; stderr: string }> {
  const args = [WORKER, target, '--loops', String(patches.length), '--lock-timeout-ms', '30000', '--at', String(at), ...patches];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, done: stdout.split('\n').filter((l) => l.startsWith('done ')).length, stderr })));
}

/**
 * `file` is `original` with only tensor bytes changed (same size, same header) and opens
 * through sluice with the names, dtypes, shapes and bytes of `expected`; nothing left over.
 */
async function expectFile(file: string, original: Buffer, expected: Spec[]): Promise<void> {
  const now = readFileSync(file);
  const header = 8 + Number(original.readBigUInt64LE(0));
  expect(now.length).toBe(original.length);
  expect(now.subarray(0, header).equals(original.subarray(0, header)), 'header changed').toBe(true);
  const ckpt = await openCheckpoint(file);
  try {
    const byName = (a: [string, ...unknown[]], b: [string, ...unknown[]]) => (a[0] < b[0] ? -1 : 1);
    const seen = ckpt.tensors().map((t): [string, ...unknown[]] => [t.name, t.dtype, t.shape]).sort(byName);
    expect(seen).toEqual(expected.map((t): [string, ...unknown[]] => [t.name, t.dtype, t.shape]).sort(byName));
    for (const t of expected) expect(sha(await ckpt.read(t.name)), t.name).toBe(sha(t.data));
  } finally {
    await ckpt.close();
  }
  expect(readdirSync(tmp).filter((f) => /\.lock|sluice-journal|sluice-txn|\.tmp-/.test(f))).toEqual([]);
}

describe('concurrent updaters of one file', () => {
  it(`${PROCESSES} processes, each updating its own tensor ${VERSIONS} times`, async () => {
    const base = [...Array.from({ length: PROCESSES }, (_, i) => bf16(`layers.${i}.w`, 2 * MiB)), bf16('untouched', 4 * MiB)];
    const file = await writeFile(base);
    const original = readFileSync(file);
    const versions = base.slice(0, PROCESSES).map((t) => Array.from({ length: VERSIONS }, () => bf16(t.name, 2 * MiB)));
    const patches = await Promise.all(
      versions.map((vs, i) =>
        Promise.all(vs.map(async (v, j) => {
          const path = join(tmp, `p${i}-${j}.patch.safetensors`);
          await writeSafetensors(path, [v]);
          return path;
        })),
      ),
    );
    // All start at once, after every process has loaded (node start-up ≈ 0.2 s each on 2 cores).
    const started = Date.now() + 1500;
    const results = await Promise.all(patches.map((ps) => runWorker(file, ps, started)));
    for (const r of results) expect([r.code, r.done], r.stderr).toEqual([0, VERSIONS]);
    console.log(`${PROCESSES} × ${VERSIONS} concurrent updates in ${Date.now() - started} ms`);
    await expectFile(file, original, [...versions.map((vs) => vs[VERSIONS - 1]), base[PROCESSES]]);
  }, 60_000);

  it('two processes replacing the same tensor serialise: one whole last version wins', async () => {
    const base = [bf16('shared', 12 * MiB), bf16('other', 2 * MiB)];
    const file = await writeFile(base);
    const original = readFileSync(file);
    const mine = [0, 1].map(() => [0, 1, 2].map(() => bf16('shared', 12 * MiB)));
    const patches = await Promise.all(
      mine.map((vs, w) =>
        Promise.all(vs.map(async (v, j) => {
          const path = join(tmp, `same${w}-${j}.patch.safetensors`);
          await writeSafetensors(path, [v]);
          return path;
        })),
      ),
    );
    const at = Date.now() + 1000;
    const results = await Promise.all(patches.map((ps) => runWorker(file, ps, at)));
    for (const r of results) expect([r.code, r.done], r.stderr).toEqual([0, 3]);
    const ckpt = await openCheckpoint(file);
    const got = sha(await ckpt.read('shared'));
    await ckpt.close();
    const winner = [mine[0][2], mine[1][2]].find((v) => sha(v.data) === got);
    expect(winner, 'the tensor is neither worker’s last version').toBeDefined();
    await expectFile(file, original, [winner!, base[1]]);
  }, 60_000);

  it('in one process: concurrent updateCheckpoint calls queue on the lock', async () => {
    const base = Array.from({ length: 6 }, (_, i) => bf16(`t${i}`, 256 * 1024));
    const file = await writeFile(base);
    const original = readFileSync(file);
    const next = base.map((t) => bf16(t.name, 256 * 1024));
    const patchFiles = await Promise.all(next.map(async (t, i) => {
      const path = join(tmp, `inproc-${n}-${i}.patch.safetensors`);
      await writeSafetensors(path, [t]);
      return openCheckpoint(path);
    }));
    const reports = await Promise.all(patchFiles.map((from) => updateCheckpoint(file, { from })));
    await Promise.all(patchFiles.map((p) => p.close()));
    expect(reports.map((r) => r.bytesWritten)).toEqual(next.map((t) => t.data.byteLength));
    await expectFile(file, original, next);
  });
});

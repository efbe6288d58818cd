// Crash safety of in-place updates, by killing a real updater: update-worker.mjs (the
// compiled code, in a child process) loops updates of a 64 MiB file alternating between
// patches A and B (2 tensors, 24 MiB); the test SIGKILLs it at seeded random moments and,
// after each kill, recovers (recoverCheckpoint, as `update --recover`, which rolls an
// interrupted update back) and checks the sha256 of the WHOLE file: it must be exactly the
// initial version, A or B — more precisely the version of the last update the worker
// reported done, or of the one after it (committed, killed before it could say so). No lock
// may be left that blocks the next updater. A sharded variant checks that an update
// spanning two shards leaves both at the same version.
//
// Napkin math (2 cores, page cache, ~500 MB/s fsync): one update reads 24 MiB twice for the
// journal, writes 24 MiB of journal + 24 MiB in place, two fsyncs: ~100–200 ms, so a
// random kill within ~2 updates lands in every phase. A cycle (spawn ~150 ms, wait, kill,
// recover, hash 64 MiB) is ~0.5 s: 50 kills in ~25–35 s.
// Set SLUICE_CRASH_SEED to replay a run; the seed is printed with the statistics.

import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openCheckpoint } from '../../../src/checkpoint/open-path.js';
import { recoverCheckpoint } from '../../../src/formats/safetensors/update.js';
import { journalPathOf } from '../../../src/formats/safetensors/journal.js';
import { writeShardedSafetensors } from '../../../src/formats/safetensors/sharded-writer.js';
import { writeSafetensors } from '../../../src/formats/safetensors/write-file.js';
import type { TensorToWrite } from '../../../src/formats/safetensors/writer.js';
import { acquireLock, lockPathOf } from '../../../src/io/file-lock.js';
import { ensureBuilt, root as repoRoot } from '../../support/build.js';
import { mulberry32, seededBytes } from '../../support/safetensors-bytes.js';

const SEED = Number(process.env.SLUICE_CRASH_SEED ?? 0xc4a5);
const KILLS = 50;
const SHARDED_KILLS = 10;
const MiB = 1 << 20;
const WORKER = join(repoRoot, 'test', 'support', 'update-worker.mjs');
type Spec = TensorToWrite & { data: Uint8Array };

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'sluice-crash-'));
  await ensureBuilt();
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** An F16 tensor of `mib` MiB: shape (mib·256, 2048). */
const f16 = (name: string, mib: number, seed: number): Spec => ({ name, dtype: 'F16', shape: [mib * 256, 2048], data: seededBytes(seed, mib * MiB) });
const sha = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

/** `file` (its bytes) with the patch tensors' bytes put where the header places them. */
function patched(file: Buffer, patch: Spec[]): Buffer {
  const h = Number(file.readBigUInt64LE(0));
  const header = JSON.parse(file.subarray(8, 8 + h).toString('utf8')) as Record<string, { data_offsets: [number, number] }>;
  const out = Buffer.from(file);
  for (const p of patch) if (header[p.name]) out.set(p.data, 8 + h + header[p.name].data_offsets[0]);
  return out;
}

interface Worker {
  child: ChildProcess;
  ready: Promise<void>;
  /** Resolves with the exit code once the process is gone and its stdout fully read. */
  closed: Promise<number | null>;
  done: Array<{ seq: number; ms: number }>;
  stderr: string[];
}

function startWorker(target: string, patches: string[], start: number, loops = 0): Worker {
  const args = [WORKER, target, '--start', String(start), '--loops', String(loops), '--lock-timeout-ms', '5000', ...patches];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const w: Worker = { child, done: [], stderr: [], ready: null!, closed: null! };
  let buffered = '';
  let onReady!: () => void;
  w.ready = new Promise((resolve) => (onReady = resolve));
  child.stdout!.on('data', (d: Buffer) => {
    buffered += d.toString();
    for (let at = buffered.indexOf('\n'); at >= 0; at = buffered.indexOf('\n')) {
      const [word, seq, ms] = buffered.slice(0, at).split(' ');
      buffered = buffered.slice(at + 1);
      if (word === 'ready') onReady();
      if (word === 'done') w.done.push({ seq: Number(seq), ms: Number(ms) });
    }
  });
  child.stderr!.on('data', (d: Buffer) => w.stderr.push(d.toString()));
  w.closed = new Promise((resolve) => child.on('close', (code) => (onReady(), resolve(code))));
  return w;
}

interface CrashRun {
  name: string;
  /** What the worker updates (a file or a directory). */
  target: string;
  /** The files whose whole bytes are checked. */
  files: string[];
  /** Files whose locks an updater takes. */
  locked: string[];
  patches: [string, string];
  /** sha256 of each of `files` at the initial version, after A, after B. */
  versions: { initial: string[]; a: string[]; b: string[] };
  kills: number;
}

/** Journals, their temp files, transaction records, and all such leftovers (`litter`) in `dir`. */
function onDisk(dir: string) {
  const names = readdirSync(dir);
  return {
    journals: names.filter((f) => f.endsWith('.sluice-journal')).length,
    journalTemps: names.filter((f) => f.includes('.sluice-journal.tmp-')),
    records: names.filter((f) => /^\.sluice-txn-.*\.json$/.test(f)),
    litter: names.filter((f) => /\.lock\.|\.tmp-|^\.sluice-txn-/.test(f)),
  };
}

/** The kill loop; returns phase statistics. Throws on the first inconsistent state. */
async function crashLoop(run: CrashRun, rng: () => number): Promise<Record<string, number>> {
  const dir = join(run.files[0], '..');
  const { initial, a, b } = run.versions;
  const stateAfter = (seq: number) => (seq < 0 ? initial : seq % 2 === 0 ? a : b);
  const name = (s: string[]) => (s.join() === initial.join() ? 'initial' : s.join() === a.join() ? 'A' : s.join() === b.join() ? 'B' : 'torn');
  const stats: Record<string, number> = {};
  const count = (k: string) => void (stats[k] = (stats[k] ?? 0) + 1);

  // Calibration: three updates run to completion give the time one takes.
  const calib = startWorker(run.target, run.patches, 0, 3);
  expect(await calib.closed, calib.stderr.join('')).toBe(0);
  const updateMs = calib.done.map((d) => d.ms).sort((x, y) => x - y)[1];
  let completed = 3;

  for (let k = 0; k < run.kills; k++) {
    const oldRecords = new Set(onDisk(dir).records); // orphans of earlier kills
    const w = startWorker(run.target, run.patches, completed);
    await w.ready;
    await new Promise((resolve) => setTimeout(resolve, rng() * 2.2 * updateMs));
    w.child.kill('SIGKILL');
    const code = await w.closed;
    expect(code, `worker failed before the kill: ${w.stderr.join('')}`).toBeNull();
    const lastDone = w.done.length ? w.done[w.done.length - 1].seq : completed - 1;

    // What the kill left, before anyone recovers.
    const seen = onDisk(dir);
    const staleLocks = run.locked.filter((f) => existsSync(lockPathOf(f))).length;
    const phase = seen.journals ? `journal ×${seen.journals}${seen.records.some((r) => !oldRecords.has(r)) ? ' + txn record' : ''}` : seen.journalTemps.length ? 'writing journal' : 'no journal';
    count(`phase: ${phase}`);
    if (staleLocks) count('stale lock left');
    const before = stateAfter(lastDone);
    const after = stateAfter(lastDone + 1);
    if (seen.journals) {
      // What the files held when killed: torn states are the ones recovery must repair.
      const held = run.files.map((f) => sha(readFileSync(f))).join();
      count(`  journal present, files held ${held === before.join() ? 'old bytes' : held === after.join() ? 'new bytes' : 'a torn mix'}`);
    }

    // A reader refuses the interrupted state (it never writes); recovery, as
    // `sluice update --recover` does it, then leaves whole files that a reader opens.
    if (seen.journals) await expect(openCheckpoint(run.target)).rejects.toMatchObject({ code: 'JOURNAL_PENDING' });
    await recoverCheckpoint(run.target, { timeoutMs: 5_000 });
    const ckpt = await openCheckpoint(run.target);
    await ckpt.close();
    expect(onDisk(dir).journals, 'a journal survived recovery').toBe(0);
    const now = run.files.map((f) => sha(readFileSync(f)));
    const ok = now.join() === before.join() || now.join() === after.join();
    expect(ok, `kill ${k} (seed ${SEED}, ${phase}): files are ${name(now)}, expected ${name(before)} or ${name(after)}`).toBe(true);
    const committedUnreported = now.join() === after.join() && after.join() !== before.join();
    if (committedUnreported) count('committed, killed before reporting');
    if (seen.journals && !committedUnreported) count('rolled back');
    if (seen.journals && committedUnreported) count('journal discarded (committed)');
    completed = committedUnreported ? lastDone + 2 : lastDone + 1;

    // Every other kill the test takes the locks itself (a stale one must be broken at
    // once); otherwise the next worker has to break it, within its 5 s lock timeout.
    if (k % 2 === 1) {
      for (const f of run.locked) await (await acquireLock(f, { timeoutMs: 500 })).release();
    }
    // A journal temp (24 MiB) must not pile up: the next update removes it.
    expect(seen.journalTemps.length, 'journal temps piled up').toBeLessThanOrEqual(run.files.length);
  }
  // The last kill's lock, if any, does not block the next updater either; one last update
  // to completion cleans up the journal temps a kill left.
  for (const f of run.locked) await (await acquireLock(f, { timeoutMs: 500 })).release();
  const last = startWorker(run.target, run.patches, completed, 1);
  expect(await last.closed, last.stderr.join('')).toBe(0);
  expect(name(run.files.map((f) => sha(readFileSync(f))))).toBe(name(stateAfter(completed)));
  const left = onDisk(dir);
  expect([left.journals, left.journalTemps.length], 'journals or journal temps left').toEqual([0, 0]);
  for (const f of left.litter) {
    count(`left at the end: ${f.includes('.lock.') ? 'lock temp' : /^\.sluice-txn-.*\.json$/.test(f) ? 'orphan txn record' : 'other temp file'}`);
  }
  console.log(`${run.name}: ${run.kills} kills, seed ${SEED}, update ≈ ${updateMs.toFixed(0)} ms, ${completed} updates in all\n${JSON.stringify(stats, null, 2)}`);
  return stats;
}

describe('SIGKILL during in-place updates', () => {
  it(`single file, 64 MiB, 24 MiB replaced: ${KILLS} kills, every state whole`, async () => {
    const rng = mulberry32(SEED);
    const file = join(tmp, 'model.safetensors');
    const tensors = [f16('a', 12, 1), f16('b', 12, 2), ...[0, 1, 2, 3, 4].map((i) => f16(`filler.${i}`, 8, 10 + i))];
    await writeSafetensors(file, tensors, { metadata: { format: 'pt' } });
    const patchA = [f16('a', 12, 3), f16('b', 12, 4)];
    const patchB = [f16('a', 12, 5), f16('b', 12, 6)];
    const paths = [join(tmp, 'patch-a.safetensors'), join(tmp, 'patch-b.safetensors')] as [string, string];
    await writeSafetensors(paths[0], patchA);
    await writeSafetensors(paths[1], patchB);
    const initial = readFileSync(file);
    const versions = { initial: [sha(initial)], a: [sha(patched(initial, patchA))], b: [sha(patched(initial, patchB))] };

    const stats = await crashLoop({ name: 'single file', target: file, files: [file], locked: [file], patches: paths, versions, kills: KILLS }, rng);
    expect(Object.entries(stats).filter(([k]) => k.startsWith('phase:')).reduce((s, [, v]) => s + v, 0)).toBe(KILLS);
    expect(existsSync(journalPathOf(file))).toBe(false);
  }, 240_000); // fsync-bound: ~60–95 s on an idle 2-core machine, more under load

  it(`two shards, one update spanning both: ${SHARDED_KILLS} kills, both shards always at one version`, async () => {
    const rng = mulberry32(SEED + 1);
    const dir = join(tmp, 'sharded');
    // Greedy split at 32 MiB: shard 1 = {a, filler.0}, shard 2 = {b, filler.1}.
    const tensors = [f16('a', 12, 21), f16('filler.0', 20, 22), f16('b', 12, 23), f16('filler.1', 20, 24)];
    const out = await writeShardedSafetensors(dir, tensors, { maxShardSize: 32 * MiB });
    expect(out.files).toHaveLength(2);
    const patchA = [f16('a', 12, 25), f16('b', 12, 26)];
    const patchB = [f16('a', 12, 27), f16('b', 12, 28)];
    const paths = [join(tmp, 'shard-patch-a.safetensors'), join(tmp, 'shard-patch-b.safetensors')] as [string, string];
    await writeSafetensors(paths[0], patchA);
    await writeSafetensors(paths[1], patchB);
    const shards = out.files.map((f) => readFileSync(f));
    const versions = {
      initial: shards.map(sha),
      a: shards.map((s) => sha(patched(s, patchA))),
      b: shards.map((s) => sha(patched(s, patchB))),
    };
    const locked = [out.index!, ...out.files];
    await crashLoop({ name: 'two shards', target: dir, files: out.files, locked, patches: paths, versions, kills: SHARDED_KILLS }, rng);
  }, 60_000);
});

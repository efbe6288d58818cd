// In-place updates of safetensors checkpoints: replacement byte for byte (everything but the
// replaced tensors' bytes stays identical), cost counted in bytes, sharded targets, every
// refusal leaving the target untouched, delete/rename by rewrite, recovery of interrupted
// states built by hand with writeJournal, locks (stale, live, in-process), and the CLI.
// Expected bytes come from the file itself parsed with JSON.parse, not from sluice's parser.

import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { appendFileSync, copyFileSync, mkdirSync, readFileSync, readdirSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openCheckpoint } from '../../../src/checkpoint/open-path.js';
import { SluiceError } from '../../../src/errors.js';
import type { Dtype } from '../../../src/formats/dtypes.js';
import { journalPathOf, writeJournal } from '../../../src/formats/safetensors/journal.js';
import { writeShardedSafetensors } from '../../../src/formats/safetensors/sharded-writer.js';
import { type UpdateOptions, updateCheckpoint } from '../../../src/formats/safetensors/update.js';
import { writeSafetensors } from '../../../src/formats/safetensors/write-file.js';
import type { TensorToWrite } from '../../../src/formats/safetensors/writer.js';
import { acquireLock, lockPathOf } from '../../../src/io/file-lock.js';
import { ensureBuilt, root as repoRoot } from '../../support/build.js';
import { runCli } from '../../support/cli.js';
import { byteSize, mulberry32, randomBytes } from '../../support/safetensors-bytes.js';

const rng = mulberry32(0x0bda7e);
const WORKER = join(repoRoot, 'test', 'support', 'update-worker.mjs');
type Spec = TensorToWrite & { data: Uint8Array };

let tmp: string;
let n = 0;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'sluice-update-'));
  await ensureBuilt(); // the lock tests spawn update-worker.mjs, which runs dist/
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});
const freshDir = () => {
  const d = join(tmp, `d${n++}`);
  mkdirSync(d);
  return d;
};

const t = (name: string, dtype: Dtype, shape: number[]): Spec => ({ name, dtype, shape, data: randomBytes(rng, byteSize(dtype, shape)) });
/** Same name, dtype and shape as `s`, new bytes. */
const renew = (s: Spec): Spec => t(s.name, s.dtype, s.shape);
const BASE = [t('embed', 'F32', [64, 32]), t('layer.0.w', 'F16', [128, 64]), t('layer.0.b', 'F16', [64]), t('layer.1.w', 'BF16', [128, 64]), t('norm', 'F32', [64]), t('ids', 'U8', [300])];
const META = { format: 'pt' };
const base = (name: string) => BASE.find((s) => s.name === name)!;

async function target(tensors: Spec[] = BASE): Promise<string> {
  const file = join(freshDir(), 'model.safetensors');
  await writeSafetensors(file, tensors, { metadata: META });
  return file;
}
async function writePatch(tensors: TensorToWrite[]): Promise<string> {
  const file = join(freshDir(), 'patch.safetensors');
  await writeSafetensors(file, tensors);
  return file;
}
/** A sharded checkpoint: 6 tensors of 16 KiB, two per shard, three shards + index. */
async function shardedTarget(): Promise<{ dir: string; tensors: Spec[]; shards: string[]; index: string }> {
  const dir = freshDir();
  const tensors = Array.from({ length: 6 }, (_, i) => t(`w${i}`, 'F16', [128, 64]));
  const out = await writeShardedSafetensors(dir, tensors, { maxShardSize: 40_000 });
  expect(out.files).toHaveLength(3);
  return { dir, tensors, shards: out.files, index: out.index! };
}
async function update(path: string, patch: TensorToWrite[] | null, more: Partial<UpdateOptions> = {}) {
  const from = patch ? await openCheckpoint(await writePatch(patch)) : undefined;
  try {
    return await updateCheckpoint(path, { ...more, from });
  } finally {
    await from?.close();
  }
}

const sha = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');
/** [start, end) of every tensor in the file, from its header read with JSON.parse. */
function spans(bytes: Buffer): Map<string, [number, number]> {
  const h = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + h).toString('utf8')) as Record<string, { data_offsets: [number, number] }>;
  return new Map(Object.entries(header).filter(([k]) => k !== '__metadata__').map(([k, v]) => [k, [8 + h + v.data_offsets[0], 8 + h + v.data_offsets[1]]]));
}
/** `before` with the named tensors' bytes replaced. */
function patched(before: Buffer, changes: Spec[]): Buffer {
  const out = Buffer.from(before);
  for (const c of changes) out.set(c.data, spans(before).get(c.name)![0]);
  return out;
}
/** Journals, locks, transaction records and temp files left in `dir`. */
const leftovers = (dir: string) => readdirSync(dir).filter((f) => /\.lock|sluice-journal|sluice-txn|\.tmp-/.test(f));
async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    if (e instanceof SluiceError) return e.code;
    throw e;
  }
  return 'no error';
}
/** Reads every tensor of `path` through sluice and compares with `expected`. */
async function expectTensors(path: string, expected: Spec[]): Promise<void> {
  const ckpt = await openCheckpoint(path);
  try {
    expect(ckpt.tensors().map((x) => x.name).sort()).toEqual(expected.map((x) => x.name).sort());
    for (const e of expected) expect(Buffer.from(await ckpt.read(e.name)).equals(Buffer.from(e.data)), e.name).toBe(true);
  } finally {
    await ckpt.close();
  }
}

describe('in-place replacement', () => {
  it('replaces one tensor: same size, every other byte identical', async () => {
    const file = await target();
    const before = readFileSync(file);
    const p = renew(base('layer.0.w'));
    const report = await update(file, [p]);
    expect(report).toMatchObject({ mode: 'in-place', files: [file], bytesWritten: p.data.byteLength, deleted: [], renamed: [] });
    expect(report.replaced).toEqual([{ name: p.name, file, bytes: p.data.byteLength }]);
    expect(readFileSync(file).equals(patched(before, [p]))).toBe(true);
    expect(leftovers(dirname(file))).toEqual([]);
  });

  it('replaces several tensors of different dtypes at once', async () => {
    const file = await target();
    const before = readFileSync(file);
    const ps = ['embed', 'layer.1.w', 'ids'].map((name) => renew(base(name)));
    const report = await update(file, ps);
    expect(report.bytesWritten).toBe(ps.reduce((a, p) => a + p.data.byteLength, 0));
    expect(readFileSync(file).equals(patched(before, ps))).toBe(true);
  });

  it('costs the bytes replaced, not the file size (report and /proc/self/io wchar)', async () => {
    const big: Spec = { name: 'big', dtype: 'U8', shape: [32 << 20], data: new Uint8Array(32 << 20).fill(7) };
    const file = await target([...BASE, big]);
    const wchar = () => Number(/wchar: (\d+)/.exec(readFileSync('/proc/self/io', 'utf8'))?.[1] ?? NaN);
    for (const name of ['norm', 'layer.0.w']) {
      const p = renew(base(name));
      const from = await openCheckpoint(await writePatch([p]));
      const w0 = wchar();
      const report = await updateCheckpoint(file, { from });
      const written = wchar() - w0;
      await from.close();
      expect(report.bytesWritten).toBe(p.data.byteLength);
      // Journal copy + overwrite = 2× the tensor; lock files, journal header, fsyncs: a few KB.
      if (Number.isFinite(written)) expect(written, `${name}: ${written} bytes written`).toBeLessThan(2 * p.data.byteLength + 64 * 1024);
    }
  });

  it('sharded: a tensor is updated in its shard, the others and the index stay identical', async () => {
    const { dir, shards, index } = await shardedTarget();
    const before = [...shards, index].map(sha);
    const shard2 = readFileSync(shards[1]);
    const p = t('w3', 'F16', [128, 64]);
    const report = await update(dir, [p]);
    expect(report.files).toEqual([shards[1]]);
    expect([shards[0], shards[2], index].map(sha)).toEqual([before[0], before[2], before[3]]);
    expect(readFileSync(shards[1]).equals(patched(shard2, [p]))).toBe(true);
  });

  it('sharded: an update spanning shards lands in all of them (target given as the index)', async () => {
    const { dir, shards, index } = await shardedTarget();
    const old = shards.map((s) => readFileSync(s));
    const ps = [t('w0', 'F16', [128, 64]), t('w5', 'F16', [128, 64])];
    const report = await update(index, ps);
    expect([...report.files].sort()).toEqual([shards[0], shards[2]]);
    expect(readFileSync(shards[0]).equals(patched(old[0], [ps[0]]))).toBe(true);
    expect(readFileSync(shards[1]).equals(old[1])).toBe(true);
    expect(readFileSync(shards[2]).equals(patched(old[2], [ps[1]]))).toBe(true);
    expect(leftovers(dir)).toEqual([]);
  });
});

describe('refusals leave the target byte-identical', () => {
  const cases: Array<[string, string, (file: string) => Promise<unknown>]> = [];
  const refuse = (what: string, code: string, run: (file: string) => Promise<unknown>) => cases.push([what, code, run]);
  refuse('a tensor of another shape', 'SHAPE_MISMATCH', (f) => update(f, [t('layer.0.w', 'F16', [64, 128])]));
  refuse('a tensor of another dtype', 'DTYPE_MISMATCH', (f) => update(f, [t('layer.0.w', 'BF16', [128, 64])]));
  refuse('a name the target lacks', 'TENSOR_NOT_FOUND', (f) => update(f, [t('nope', 'F32', [4])]));
  refuse('a good tensor beside an unknown one', 'TENSOR_NOT_FOUND', (f) => update(f, [renew(base('embed')), t('nope', 'F32', [4])]));
  refuse('delete of an unknown name', 'TENSOR_NOT_FOUND', (f) => update(f, null, { delete: ['nope'] }));
  refuse('rename of an unknown name', 'TENSOR_NOT_FOUND', (f) => update(f, null, { rename: [['nope', 'x']] }));
  refuse('rename onto an existing name', 'DUPLICATE_KEY', (f) => update(f, null, { rename: [['embed', 'norm']] }));
  it.for(cases)('%s → %s', async ([, code, run]) => {
    const file = await target();
    const before = sha(file);
    expect(await codeOf(run(file).then(() => undefined))).toBe(code);
    expect(sha(file)).toBe(before);
    expect(leftovers(dirname(file))).toEqual([]);
  });

  it('a patch that is not safetensors (CLI)', async () => {
    const file = await target();
    const before = sha(file);
    const bad = join(freshDir(), 'bad.safetensors');
    writeFileSync(bad, Buffer.from('not a safetensors file at all'));
    const { code, stderr } = await runCli(['update', file, '--from', bad]);
    expect(code).toBe(1);
    expect(stderr).toMatch(/^sluice: .*bad\.safetensors/);
    expect(sha(file)).toBe(before);
  });
});

describe('--delete and --rename (atomic rewrite)', () => {
  it('single file: tensors go and get new names, every kept tensor keeps its bytes', async () => {
    const file = await target();
    const { code, stdout } = await runCli(['update', file, '--delete', 'layer.0.b', '--delete', 'ids', '--rename', 'norm=final_norm', '--json']);
    expect(code).toBe(0);
    const report = JSON.parse(stdout);
    expect(report).toMatchObject({ mode: 'rewrite', files: [file], deleted: ['layer.0.b', 'ids'], renamed: [{ from: 'norm', to: 'final_norm' }] });
    const kept = BASE.filter((s) => !['layer.0.b', 'ids'].includes(s.name)).map((s) => (s.name === 'norm' ? { ...s, name: 'final_norm' } : s));
    await expectTensors(file, kept);
    const ckpt = await openCheckpoint(file);
    expect(ckpt.metadata).toEqual(META);
    await ckpt.close();
  });

  it('sharded: weight_map and total_size follow, an untouched shard stays identical', async () => {
    const { dir, tensors, shards, index } = await shardedTarget();
    const shard3 = sha(shards[2]);
    const report = await update(dir, null, { delete: ['w0'], rename: [['w2', 'renamed']] });
    expect(report.files).toEqual([shards[0], shards[1], index]);
    expect(sha(shards[2])).toBe(shard3);
    const doc = JSON.parse(await readFile(index, 'utf8'));
    expect(doc.weight_map).toEqual({ w1: basename(shards[0]), renamed: basename(shards[1]), w3: basename(shards[1]), w4: basename(shards[2]), w5: basename(shards[2]) });
    expect(doc.metadata.total_size).toBe(5 * tensors[0].data.byteLength);
    await expectTensors(dir, tensors.filter((s) => s.name !== 'w0').map((s) => (s.name === 'w2' ? { ...s, name: 'renamed' } : s)));
  });
});

/** Journals the named tensors' current bytes (as commitInPlace does), then scribbles over them. */
async function journalThenScribble(file: string, names: string[], txn: string | null = null): Promise<void> {
  const at = spans(readFileSync(file));
  const ranges = names.map((name) => ({ offset: at.get(name)![0], length: at.get(name)![1] - at.get(name)![0] }));
  const h = await open(file, 'r+');
  try {
    await writeJournal(file, h, ranges, txn);
    for (const r of ranges) await h.write(new Uint8Array(r.length).fill(0xee), 0, r.length, r.offset);
  } finally {
    await h.close();
  }
}

describe('recovery of interrupted updates', () => {
  it('openCheckpoint refuses an interrupted update and writes nothing; --recover rolls it back', async () => {
    const file = await target();
    const before = sha(file);
    await journalThenScribble(file, ['embed', 'layer.1.w']);
    const scribbled = [sha(file), sha(journalPathOf(file))];
    expect(scribbled[0]).not.toBe(before);
    const err = await openCheckpoint(file).then(() => null, (e: unknown) => e as SluiceError);
    expect(err?.code).toBe('JOURNAL_PENDING');
    expect(err?.message).toContain(`run 'sluice update ${file} --recover'`);
    expect([sha(file), sha(journalPathOf(file))]).toEqual(scribbled);
    expect((await runCli(['update', file, '--recover'])).code).toBe(0);
    await expectTensors(file, BASE);
    expect(sha(file)).toBe(before);
    expect(leftovers(dirname(file))).toEqual([]);
  });

  it('a reader waits for a running update (a live lock) instead of refusing it', async () => {
    const file = await target();
    const holder = await holdLock(file, 400);
    await journalThenScribble(file, ['norm']);
    // The "update" ends: its journal goes before its lock, as commitInPlace does.
    setTimeout(() => rmSync(journalPathOf(file)), 200);
    const started = Date.now();
    const ckpt = await openCheckpoint(file);
    await ckpt.close();
    expect(Date.now() - started).toBeGreaterThanOrEqual(150);
    await holder.exited;
  });

  it('`sluice update --recover` says what it did', async () => {
    const file = await target();
    const before = sha(file);
    await journalThenScribble(file, ['embed', 'layer.1.w']);
    const { code, stdout } = await runCli(['update', file, '--recover', '--json']);
    expect(code).toBe(0);
    const bytes = base('embed').data.byteLength + base('layer.1.w').data.byteLength;
    expect(JSON.parse(stdout)).toEqual({ target: file, recovered: [{ file, action: 'rolled-back', ranges: 2, bytes }] });
    expect(sha(file)).toBe(before);
    await journalThenScribble(file, ['norm']);
    expect((await runCli(['update', file, '--recover'])).stdout).toMatch(/rolled back an interrupted update \(1 range, 256 B\)/);
    expect((await runCli(['update', file, '--recover'])).stdout).toBe(`${file}: no interrupted update to recover\n`);
  });

  it.for([
    ['torn (truncated)', /torn/],
    ['another file’s', /belongs to "model.safetensors"/],
    ['for another file size', /is for a file of/],
  ] as const)('a journal %s → JOURNAL_INVALID, file and journal untouched', async ([kind, message]) => {
    let file = await target();
    await journalThenScribble(file, ['embed']);
    if (kind.startsWith('torn')) truncateSync(journalPathOf(file), readFileSync(journalPathOf(file)).length - 7);
    if (kind.startsWith('another file')) {
      const other = join(dirname(file), 'other.safetensors');
      copyFileSync(file, other);
      copyFileSync(journalPathOf(file), journalPathOf(other));
      file = other;
    }
    if (kind.startsWith('for another')) appendFileSync(file, Buffer.alloc(8));
    const state = [sha(file), sha(journalPathOf(file))];
    const err = await openCheckpoint(file).then(() => null, (e: unknown) => e as SluiceError);
    expect(err?.code).toBe('JOURNAL_PENDING');
    const cli = await runCli(['update', file, '--recover']);
    expect(cli.code).toBe(1);
    expect(cli.stderr).toMatch(message);
    expect([sha(file), sha(journalPathOf(file))]).toEqual(state);
  });

  it('the next update removes the journal temp file a killed update left', async () => {
    const file = await target();
    const temp = `${journalPathOf(file)}.tmp-999999-abc`;
    writeFileSync(temp, Buffer.alloc(4096));
    await update(file, [renew(base('norm'))]);
    expect(leftovers(dirname(file))).toEqual([]);
  });

  it('multi-file transaction, record present: every shard rolls back', async () => {
    const { dir, shards } = await shardedTarget();
    const before = shards.map(sha);
    const record = '.sluice-txn-test.json';
    writeFileSync(join(dir, record), JSON.stringify({ files: [basename(shards[0]), basename(shards[2])] }));
    await journalThenScribble(shards[0], ['w1'], record);
    await journalThenScribble(shards[2], ['w4'], record);
    await expect(openCheckpoint(dir)).rejects.toMatchObject({ code: 'JOURNAL_PENDING' });
    expect((await runCli(['update', dir, '--recover'])).code).toBe(0);
    expect(shards.map(sha)).toEqual(before);
    expect(leftovers(dir)).toEqual([]); // the record goes with the last journal
  });

  it('multi-file transaction, record gone (committed): journals discarded, new bytes kept', async () => {
    const { dir, shards } = await shardedTarget();
    await journalThenScribble(shards[0], ['w1'], '.sluice-txn-committed.json');
    await journalThenScribble(shards[2], ['w4'], '.sluice-txn-committed.json');
    const after = shards.map(sha);
    const { stdout } = await runCli(['update', dir, '--recover']);
    expect(stdout).toMatch(/removed the journal of an update that had completed/);
    expect(shards.map(sha)).toEqual(after);
    expect(leftovers(dir)).toEqual([]);
  });
});

/** Runs update-worker.mjs holding `file`'s lock for `ms`; resolves once it holds it. */
async function holdLock(file: string, ms: number) {
  const child = spawn(process.execPath, [WORKER, file, '--hold-lock', String(ms)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => d.toString().includes('locked') && resolve());
    child.on('exit', () => reject(new Error('lock holder exited early')));
  });
  return { pid: child.pid!, exited };
}

describe('locks', () => {
  it('a stale lock of a dead process is broken', async () => {
    const file = await target();
    const dead = spawnSync(process.execPath, ['-e', '']).pid!; // reaped: its pid is free
    writeFileSync(lockPathOf(file), JSON.stringify({ pid: dead, host: hostname(), since: new Date().toISOString(), token: 'stale' }));
    const report = await update(file, [renew(base('norm'))], { lock: { timeoutMs: 2000 } });
    expect(report.mode).toBe('in-place');
    expect(leftovers(dirname(file))).toEqual([]);
  });

  it('a live lock makes an updater wait; --lock-timeout 0.2 gives LOCKED', async () => {
    const file = await target();
    const before = sha(file);
    const patch = await writePatch([renew(base('norm'))]);
    let holder = await holdLock(file, 60_000);
    const refused = await runCli(['update', file, '--from', patch, '--lock-timeout', '0.2']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(new RegExp(`locked by process ${holder.pid} `));
    expect(await codeOf(update(file, [renew(base('norm'))], { lock: { timeoutMs: 200 } }))).toBe('LOCKED');
    expect(sha(file)).toBe(before);
    process.kill(holder.pid);
    await holder.exited;

    holder = await holdLock(file, 1000);
    const started = Date.now();
    const waited = await runCli(['update', file, '--from', patch]);
    expect(waited.code).toBe(0);
    expect(waited.stderr).toContain(`waiting for process ${holder.pid}`);
    expect(Date.now() - started).toBeGreaterThan(300);
    expect(await holder.exited).toBe(0);
    expect(sha(file)).not.toBe(before);
  });

  it('a lock held in this process also times out', async () => {
    const file = await target();
    const lock = await acquireLock(file);
    try {
      const timer = new Promise<string>((resolve) => setTimeout(() => resolve('still waiting after 5 s'), 5000));
      const code = codeOf(update(file, [renew(base('norm'))], { lock: { timeoutMs: 200 } }));
      expect(await Promise.race([code, timer])).toBe('LOCKED');
    } finally {
      await lock.release();
    }
  });
});

describe('sluice update (CLI)', () => {
  it('--json prints the report; the human form one line per change', async () => {
    const file = await target();
    const patch = await writePatch([renew(base('embed')), renew(base('ids'))]);
    const { code, stdout, stderr } = await runCli(['update', file, '--from', patch, '--json']);
    expect([code, stderr]).toEqual([0, '']);
    const doc = JSON.parse(stdout);
    expect(Object.keys(doc)).toEqual(['target', 'mode', 'files', 'replaced', 'deleted', 'renamed', 'recovered', 'bytesWritten']);
    expect(doc).toEqual({
      target: file, mode: 'in-place', files: [file], deleted: [], renamed: [], recovered: [], bytesWritten: 8492,
      replaced: [{ name: 'embed', file, bytes: 8192 }, { name: 'ids', file, bytes: 300 }],
    });
    const human = await runCli(['update', file, '--from', patch]);
    expect(human.stdout).toBe(`replaced embed (8.19 kB) in ${file}\nreplaced ids (300 B) in ${file}\n${file}: 1 file updated in place, 8.49 kB written\n`);
    expect((await runCli(['update', file])).code).toBe(2);
    expect((await runCli(['update', file, '--recover', '--delete', 'ids'])).code).toBe(2);
  });
});

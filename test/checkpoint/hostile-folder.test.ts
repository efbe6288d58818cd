// A model folder as an attacker would ship it (step 11): forged update journals and
// transaction records, symlinks out of the folder, FIFOs where files should be, and more
// shards than a process has descriptors. Each case is a reproducer of a finding: before,
// sluice deleted or overwrote files outside the folder, leaked bytes of a file outside it,
// hung forever, or failed with EMFILE; now each ends at once with a one-line error naming
// the file (or opens correctly), and nothing outside the folder changes.

import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openCheckpoint } from '../../src/checkpoint/open-path.js';
import { journalPathOf, writeJournal } from '../../src/formats/safetensors/journal.js';
import { MAX_OPEN_HANDLES, openFileHandles } from '../../src/io/file-source.js';
import { ModelFolder } from '../../src/io/model-folder.js';
import { errorLine, runBoundedCli } from '../support/bounded-cli.js';
import { runCli } from '../support/cli.js';
import { buildValid, mulberry32, randomBytes } from '../support/safetensors-bytes.js';

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
function freshDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'sluice-hostile-'));
  dirs.push(d);
  return d;
}
const sha = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');
const rng = mulberry32(0x5eed11);
const checkpoint = () => buildValid([{ name: 'w', dtype: 'F32', shape: [4, 4], data: randomBytes(rng, 64) }], null);

/** A folder with model.safetensors and, outside it, a victim file an attack aims at. */
function folderAndVictim() {
  const root = freshDir();
  const dir = join(root, 'model');
  mkdirSync(dir);
  writeFileSync(join(dir, 'model.safetensors'), checkpoint());
  const victim = join(root, 'package.json');
  writeFileSync(victim, JSON.stringify({ files: ['model/model.safetensors'], name: 'victim' }));
  return { root, dir, victim, file: join(dir, 'model.safetensors') };
}

/** A real journal for `file` (one range) whose header names `txn` as its record. */
async function forgeJournal(file: string, txn: string | null): Promise<void> {
  const h = await open(file, 'r');
  try {
    await writeJournal(file, h, [{ offset: 8, length: 16 }], txn);
  } finally {
    await h.close();
  }
}

describe('forged update journals: a read-only open writes nothing', () => {
  it('a journal whose record is an absolute path outside: inspect refuses, --recover refuses, the victim stays', async () => {
    const { dir, file, victim } = folderAndVictim();
    await forgeJournal(file, victim);
    const state = [sha(file), sha(victim), sha(journalPathOf(file))];
    const inspect = await runCli(['inspect', dir]);
    expect(inspect.code).toBe(1);
    expect(inspect.stderr).toMatch(/^sluice: .*model\.safetensors: an update was interrupted .*--recover' to roll it back\n$/);
    const recover = await runCli(['update', dir, '--recover']);
    expect(recover.stderr).toMatch(/^sluice: .*sluice-journal: .*not a record name.*left as it is/);
    expect([sha(file), sha(victim), sha(journalPathOf(file))]).toEqual(state);
  });

  it.for([
    ['a record name reaching outside (../.sluice-txn-x.json)', '../.sluice-txn-x.json', /outside/],
    ['a record that is not a record name (package.json)', 'package.json', /not a record name/],
  ] as const)('%s → JOURNAL_INVALID, nothing touched', async ([, txn, message]) => {
    const { root, file, victim } = folderAndVictim();
    writeFileSync(join(root, '.sluice-txn-x.json'), JSON.stringify({ files: ['model/model.safetensors'] }));
    await forgeJournal(file, txn);
    const state = [sha(file), sha(victim), sha(journalPathOf(file)), sha(join(root, '.sluice-txn-x.json'))];
    const recover = await runCli(['update', file, '--recover']);
    expect(recover.code).toBe(1);
    expect(recover.stderr).toMatch(message);
    expect([sha(file), sha(victim), sha(journalPathOf(file)), sha(join(root, '.sluice-txn-x.json'))]).toEqual(state);
  });

  it.for([
    ['without "files"', { other: 1 }, /no "files" list/],
    ['listing a file outside the folder', { files: ['../package.json', 'model.safetensors'] }, /outside/],
    ['not JSON', null, /not JSON/],
  ] as const)('a transaction record %s → JOURNAL_INVALID, one line, nothing touched', async ([, record, message]) => {
    const { dir, file, victim } = folderAndVictim();
    const name = '.sluice-txn-forged.json';
    writeFileSync(join(dir, name), record === null ? '{files' : JSON.stringify(record));
    await forgeJournal(file, name);
    const state = [sha(file), sha(victim), sha(join(dir, name))];
    const recover = await runCli(['update', file, '--recover']);
    expect(recover.code).toBe(1);
    expect(recover.stderr).toMatch(/^sluice: [^\n]*JOURNAL|^sluice: [^\n]*sluice-journal: /);
    expect(recover.stderr).toMatch(message);
    expect(recover.stderr.trim().split('\n')).toHaveLength(1);
    expect([sha(file), sha(victim), sha(join(dir, name))]).toEqual(state);
  });

  it('model.safetensors a symlink to a file outside, with a journal: nothing is written through it', async () => {
    const { dir, file, victim, root } = folderAndVictim();
    const outside = join(root, 'precious.safetensors');
    writeFileSync(outside, checkpoint());
    await forgeJournal(file, null); // a valid journal for a file of this size…
    rmSync(file);
    symlinkSync(outside, file); // …then the file swapped for a symlink out
    const state = [sha(outside), sha(victim)];
    const inspect = await runCli(['inspect', dir]);
    expect(inspect.stderr).toMatch(/^sluice: .*model\.safetensors: (is a symlink to a file outside|an update was interrupted)/);
    const recover = await runCli(['update', dir, '--recover']);
    expect(recover.code).toBe(1);
    expect(recover.stderr).toMatch(/symlink/);
    expect([sha(outside), sha(victim)]).toEqual(state);
  });

  it('a journal that is a FIFO, and a FIFO lock: refused at once, nothing blocks', async () => {
    const { file } = folderAndVictim();
    execFileSync('mkfifo', [journalPathOf(file), `${file}.lock`]);
    const started = Date.now();
    expect((await runCli(['inspect', file])).stderr).toMatch(/an update was interrupted/);
    expect((await runCli(['update', file, '--recover', '--lock-timeout', '0.5'])).stderr).toMatch(/^sluice: /);
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});

describe('paths: what a folder names stays inside it', () => {
  it('a symlink leaving the folder is refused, and the error leaks no byte of its target', async () => {
    const root = freshDir();
    const dir = join(root, 'model');
    mkdirSync(dir);
    const secret = join(root, 'secret.txt');
    writeFileSync(secret, 'AKIAABCDEFGH\nhunter2'); // its first 8 bytes would read as a "header length"
    symlinkSync(secret, join(dir, 'model.safetensors'));
    const run = await runCli(['inspect', dir]);
    expect(run.code).toBe(1);
    expect(run.stderr).toBe(`sluice: ${join(dir, 'model.safetensors')}: is a symlink to a file outside the model folder ${dir}; refusing to read it\n`);
    const leaked = new DataView(readFileSync(secret).buffer).getBigUint64(0, true).toString();
    expect(run.stderr).not.toContain(leaked);
  });

  it('an index whose shard is a symlink out of the folder → UNSAFE_PATH; one inside the folder is followed', async () => {
    const root = freshDir();
    const dir = join(root, 'model');
    mkdirSync(join(dir, 'real'), { recursive: true });
    writeFileSync(join(root, 'outside.safetensors'), checkpoint());
    writeFileSync(join(dir, 'real', 'inside.safetensors'), checkpoint());
    symlinkSync('../outside.safetensors', join(dir, 'a.safetensors'));
    symlinkSync('real/inside.safetensors', join(dir, 'b.safetensors'));
    const index = (shard: string) => JSON.stringify({ metadata: {}, weight_map: { w: shard } });
    writeFileSync(join(dir, 'model.safetensors.index.json'), index('a.safetensors'));
    await expect(openCheckpoint(dir)).rejects.toMatchObject({ code: 'UNSAFE_PATH', message: expect.stringContaining('a.safetensors') });
    writeFileSync(join(dir, 'model.safetensors.index.json'), index('b.safetensors'));
    const ok = await openCheckpoint(dir);
    expect(ok.tensors().map((t) => t.name)).toEqual(['w']);
    expect(ok.files).toContain(join(dir, 'b.safetensors')); // named as the folder names it
    await ok.close();
  });

  it('the HF cache: a snapshot may point into its own repo\'s blobs/, not another repo\'s', async () => {
    const cache = freshDir();
    const repo = join(cache, 'models--org--name');
    const snap = join(repo, 'snapshots', 'a'.repeat(40));
    mkdirSync(snap, { recursive: true });
    mkdirSync(join(repo, 'blobs'));
    mkdirSync(join(cache, 'models--evil--x', 'blobs'), { recursive: true });
    writeFileSync(join(repo, 'blobs', 'sha-own'), checkpoint());
    writeFileSync(join(cache, 'models--evil--x', 'blobs', 'sha-other'), checkpoint());
    symlinkSync('../../blobs/sha-own', join(snap, 'model.safetensors'));
    const own = await openCheckpoint(snap);
    expect(own.files).toEqual([join(snap, 'model.safetensors')]);
    await own.close();
    rmSync(join(snap, 'model.safetensors'));
    symlinkSync('../../../models--evil--x/blobs/sha-other', join(snap, 'model.safetensors'));
    await expect(openCheckpoint(snap)).rejects.toMatchObject({ code: 'UNSAFE_PATH' });
  });

  it('a file the user names directly is followed wherever it points', async () => {
    const root = freshDir();
    writeFileSync(join(root, 'real.safetensors'), checkpoint());
    const elsewhere = freshDir();
    symlinkSync(join(root, 'real.safetensors'), join(elsewhere, 'link.safetensors'));
    const run = await runCli(['inspect', join(elsewhere, 'link.safetensors'), '--json']);
    expect(run.code).toBe(0);
  });

  it.for(['model.safetensors', 'config.json'])('a FIFO named %s is refused at once (before: blocked forever)', async (name) => {
    const dir = freshDir();
    if (name !== 'model.safetensors') writeFileSync(join(dir, 'model.safetensors'), checkpoint());
    execFileSync('mkfifo', [join(dir, name)]);
    const started = Date.now();
    if (name === 'model.safetensors') {
      expect((await runCli(['inspect', dir])).stderr).toBe(`sluice: ${join(dir, name)}: not a regular file (a FIFO)\n`);
    } else {
      const folder = await ModelFolder.open(dir);
      await expect(folder.readText(name, 1024)).rejects.toThrow(`${join(dir, name)}: not a regular file (a FIFO)`);
    }
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it('a side file that is a symlink out of the folder is not copied by convert', async () => {
    const root = freshDir();
    const dir = join(root, 'model');
    mkdirSync(dir);
    writeFileSync(join(dir, 'model.safetensors'), checkpoint());
    writeFileSync(join(root, 'id_rsa'), 'PRIVATE KEY');
    symlinkSync('../id_rsa', join(dir, 'tokenizer.model'));
    const run = await runCli(['convert', dir, join(root, 'out')]);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/tokenizer\.model: is a symlink to a file outside the model folder/);
  });

  it('an index naming a shard with control characters is refused (a URL parser would delete them)', async () => {
    const dir = freshDir();
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { w: '.\n./.\n./secret/model.safetensors' } }));
    expect((await runCli(['inspect', dir])).stderr).toMatch(/shard path ".\\n.\/.\\n.\/secret\/model.safetensors" is not a file inside/);
  });

  it('a big integer in index metadata: inspect --json prints it exactly (before: "Do not know how to serialize a BigInt")', async () => {
    const dir = freshDir();
    writeFileSync(join(dir, 'model.safetensors'), checkpoint());
    writeFileSync(
      join(dir, 'model.safetensors.index.json'),
      '{"metadata": {"total_size": 64, "nested": {"big": 123456789012345678901234567890}}, "weight_map": {"w": "model.safetensors"}}',
    );
    const run = await runCli(['inspect', dir, '--json']);
    expect(run.stderr).toBe('');
    expect(run.stdout).toContain('"123456789012345678901234567890"');
  });
});

describe('descriptors: shards are opened lazily and bounded', () => {
  it(`2,000 shards: at most ${MAX_OPEN_HANDLES} handles open, every shard still readable after eviction`, async () => {
    const dir = freshDir();
    const map: Record<string, string> = {};
    const bytes: Uint8Array[] = [];
    for (let i = 0; i < 2000; i++) {
      const data = randomBytes(rng, 8);
      bytes.push(data);
      writeFileSync(join(dir, `s${i}.safetensors`), buildValid([{ name: `t${i}`, dtype: 'U8', shape: [8], data }], null));
      map[`t${i}`] = `s${i}.safetensors`;
    }
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: map }));
    const ckpt = await openCheckpoint(dir);
    try {
      expect(openFileHandles()).toBeLessThanOrEqual(MAX_OPEN_HANDLES);
      for (const i of [0, 1999, 7, 1500, 0]) expect(await ckpt.read(`t${i}`)).toEqual(bytes[i]);
      expect(openFileHandles()).toBeLessThanOrEqual(MAX_OPEN_HANDLES);
    } finally {
      await ckpt.close();
    }
  });

  it('a shard replaced after its header was read is refused on reopen, not read as the original', async () => {
    const dir = freshDir();
    const map: Record<string, string> = {};
    for (let i = 0; i < MAX_OPEN_HANDLES + 10; i++) {
      writeFileSync(join(dir, `s${i}.safetensors`), buildValid([{ name: `t${i}`, dtype: 'U8', shape: [8], data: randomBytes(rng, 8) }], null));
      map[`t${i}`] = `s${i}.safetensors`;
    }
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: map }));
    const ckpt = await openCheckpoint(dir);
    try {
      // s0 was opened first, so its handle is long evicted: swap the file under it.
      rmSync(join(dir, 's0.safetensors'));
      writeFileSync(join(dir, 's0.safetensors'), buildValid([{ name: 't0', dtype: 'U8', shape: [8], data: randomBytes(rng, 8) }], null));
      await expect(ckpt.read('t0')).rejects.toMatchObject({ code: 'SOURCE_CHANGED' });
    } finally {
      await ckpt.close();
    }
  });

  it('25,000 shards (before: EMFILE): inspect lists them in bounded time and memory', async () => {
    const dir = freshDir();
    const map: Record<string, string> = {};
    for (let i = 0; i < 25_000; i++) {
      writeFileSync(join(dir, `s${i}.safetensors`), buildValid([{ name: `t${i}`, dtype: 'U8', shape: [1], data: new Uint8Array([i & 255]) }], null));
      map[`t${i}`] = `s${i}.safetensors`;
    }
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: map }));
    const run = await runBoundedCli(['inspect', dir, '--json'], { timeoutMs: 60_000 });
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout).tensors).toHaveLength(25_000);
    expect(run.ms).toBeLessThan(20_000);
    expect(run.peakMiB).toBeLessThan(1536);
    console.log(`[hostile] 25,000 shards: ${Math.round(run.ms)} ms, ${Math.round(run.peakMiB)} MiB peak`);
  });
});

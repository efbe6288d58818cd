// Compiles src/ into dist/ for tests that run the real launcher (bin/sluice.js) or a child
// Node process, at most once per test run and only when a source is newer than the build.
//
// It shares scripts/setup.sh's stamp (dist/.build-stamp), so `npm test` after `npm run
// setup` does not compile again. Test files run in parallel worker processes; the fast path
// (stamp newer than every source) takes no lock, but the build itself does (a file created
// with O_EXCL), so two workers never write dist/ at once and a reader never sees a
// half-written file.

import { execFile } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = fileURLToPath(new URL('../..', import.meta.url));
const dist = join(root, 'dist');
const stamp = join(dist, '.build-stamp');
const lock = join(dist, '.build-lock');
const inputs = ['src', 'tsconfig.json', 'tsconfig.build.json', 'package.json'];
// A lock older than this was left by a killed worker; tsc takes ~10 s on two cores.
const STALE_LOCK_MS = 120_000;

let building: Promise<void> | undefined;

/** Makes dist/ current with src/. Resolves once dist/cli/main.js and its imports exist. */
export function ensureBuilt(): Promise<void> {
  building ??= build().catch((e: unknown) => {
    building = undefined;
    throw e;
  });
  return building;
}

async function build(): Promise<void> {
  for (;;) {
    if (isFresh()) return;
    if (takeLock()) break;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  try {
    if (isFresh()) return; // another worker finished between our check and our lock
    const started = new Date();
    await runTsc();
    writeFileSync(stamp, '');
    // The stamp carries the start time, so a file edited while tsc ran counts as newer.
    utimesSync(stamp, started, started);
  } finally {
    rmSync(lock, { force: true });
  }
}

function isFresh(): boolean {
  if (!existsSync(stamp) || !existsSync(join(dist, 'cli', 'main.js'))) return false;
  const built = statSync(stamp).mtimeMs;
  return !inputs.some((input) => newerThan(join(root, input), built));
}

function newerThan(path: string, time: number): boolean {
  const stat = statSync(path, { throwIfNoEntry: false });
  if (!stat) return false;
  if (!stat.isDirectory()) return stat.mtimeMs > time;
  return readdirSync(path).some((name) => newerThan(join(path, name), time));
}

function takeLock(): boolean {
  mkdirSync(dist, { recursive: true });
  try {
    closeSync(openSync(lock, 'wx'));
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    const age = Date.now() - (statSync(lock, { throwIfNoEntry: false })?.mtimeMs ?? Date.now());
    if (age > STALE_LOCK_MS) rmSync(lock, { force: true });
    return false;
  }
}

function runTsc(): Promise<void> {
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: root }, (error, stdout, stderr) => {
      if (error) reject(new Error(`tsc -p tsconfig.build.json failed (${error.code}):\n${stdout}${stderr}`));
      else resolve();
    });
  });
}

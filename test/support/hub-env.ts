// Hub tests run with every HF environment variable cleared and HF_HOME (so the cache, and
// the token file a real login leaves) in a fresh temp folder per test; all is put back
// after. Plus a hand-made HF cache, written the way transformers writes one, as an oracle
// independent of sluice's own writer.

import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { afterEach, beforeEach } from 'vitest';

export const HF_VARS = [
  'HF_HUB_CACHE',
  'HUGGINGFACE_HUB_CACHE',
  'HF_HOME',
  'XDG_CACHE_HOME',
  'HF_ENDPOINT',
  'HF_TOKEN',
  'HUGGING_FACE_HUB_TOKEN',
  'HF_TOKEN_PATH',
  'HF_HUB_OFFLINE',
] as const;

export interface HubEnv {
  /** HF_HOME of this test. */
  readonly home: string;
  /** Its hub cache: HF_HOME/hub. */
  readonly cache: string;
}

/** Call at the top of a test file (or describe): each test gets a clean HF environment. */
export function isolateHubEnv(): HubEnv {
  const saved: Record<string, string | undefined> = {};
  let home = '';
  beforeEach(() => {
    for (const v of HF_VARS) {
      saved[v] = process.env[v];
      delete process.env[v];
    }
    home = mkdtempSync(join(tmpdir(), 'sluice-hf-'));
    process.env.HF_HOME = home;
  });
  afterEach(() => {
    for (const v of HF_VARS) {
      if (saved[v] === undefined) delete process.env[v];
      else process.env[v] = saved[v];
    }
    rmSync(home, { recursive: true, force: true });
  });
  return {
    get home() {
      return home;
    },
    get cache() {
      return join(home, 'hub');
    },
  };
}

/**
 * Writes `files` as one cached revision of `repo`: blobs named by sha256, snapshot
 * symlinks into ../../blobs, and refs/<ref> holding the commit. Returns the snapshot folder.
 */
export function writeCachedModel(cache: string, repo: string, commit: string, files: Record<string, Uint8Array | string>, refs: string[] = ['main']): string {
  const storage = join(cache, `models--${repo.replace('/', '--')}`);
  const snapshot = join(storage, 'snapshots', commit);
  for (const [path, content] of Object.entries(files)) {
    const blob = join(storage, 'blobs', createHash('sha256').update(content).digest('hex'));
    mkdirSync(dirname(blob), { recursive: true });
    writeFileSync(blob, content);
    const link = join(snapshot, path);
    mkdirSync(dirname(link), { recursive: true });
    symlinkSync(relative(dirname(link), blob), link);
  }
  mkdirSync(join(storage, 'refs'), { recursive: true });
  for (const ref of refs) writeFileSync(join(storage, 'refs', ref), commit);
  return snapshot;
}

/** A fake commit sha, distinct per label. */
export function sha(label: string): string {
  return createHash('sha1').update(label).digest('hex');
}

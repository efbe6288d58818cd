// The HF cache on disk, read and pruned without any network: which snapshot a name and
// revision mean, whether it holds a loadable model, what is cached (the library's
// scanCacheDir), and removing a model or one revision of it.

import { lstat, readdir, readFile, readlink, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { scanCacheDir } from '@huggingface/hub';
import { PYTORCH_INDEX, resolveDirectory, SAFETENSORS_INDEX } from '../checkpoint/resolve.js';
import { SluiceError } from '../errors.js';
import { MAX_INDEX_BYTES, parseShardIndex } from '../formats/shard-index.js';
import { ModelFolder } from '../io/model-folder.js';
import { readSmallFile } from '../io/safe-open.js';
import { TRAINING_STATE } from './file-choice.js';
import { DEFAULT_REVISION, formatModelName, isCommitSha, type ModelName, repoFolder } from './model-name.js';

export interface CachedSnapshot {
  commit: string;
  /** `<cache>/models--org--name/snapshots/<commit>`. */
  dir: string;
}

/**
 * The snapshot `name` means in the cache: `@sha` (full, or a prefix of 7+ hex digits
 * matching one snapshot) or `refs/<rev>` (default main). Null when there is none.
 */
export async function findSnapshot(cacheDir: string, name: ModelName): Promise<CachedSnapshot | null> {
  const storage = repoFolder(cacheDir, name.repo);
  const rev = name.revision ?? DEFAULT_REVISION;
  const at = (commit: string) => ({ commit, dir: join(storage, 'snapshots', commit) });
  if (isCommitSha(rev) && (await isDir(at(rev).dir))) return at(rev);
  const ref = (await readFile(join(storage, 'refs', rev), 'utf8').catch(() => '')).trim();
  if (isCommitSha(ref) && (await isDir(at(ref).dir))) return at(ref);
  if (/^[0-9a-f]{7,39}$/.test(rev)) {
    const matches = (await readdir(join(storage, 'snapshots')).catch(() => [])).filter((c) => c.startsWith(rev));
    if (matches.length === 1) return at(matches[0]);
  }
  return null;
}

/** What a snapshot lacks to be loaded: config.json, weights, shards an index names. Empty = complete. */
export async function missingModelFiles(dir: string): Promise<string[]> {
  const missing: string[] = [];
  if (!(await exists(join(dir, 'config.json')))) missing.push('config.json');
  let weights: string[];
  try {
    weights = (await resolveDirectory(dir)).files;
  } catch {
    return [...missing, 'weights (.safetensors, .bin or .pth)'];
  }
  for (const file of weights) {
    // A dangling symlink (its blob deleted) is listed by readdir but cannot be read.
    if (!(await exists(file))) missing.push(basename(file));
    else if (file.endsWith(SAFETENSORS_INDEX) || file.endsWith(PYTORCH_INDEX)) {
      // Through the folder's rules: inside the snapshot or its blobs, a regular file, bounded.
      const index = parseShardIndex(await readSmallFile(await (await ModelFolder.open(dir)).resolve(basename(file)), MAX_INDEX_BYTES), file);
      for (const shard of index.shards) if (!(await exists(join(dirname(file), shard)))) missing.push(shard);
    }
  }
  return missing;
}

export interface CachedRevision {
  commit: string;
  refs: string[];
  size: number;
  files: string[];
  formats: string[];
}

export interface CachedModel {
  name: string;
  path: string;
  /** Bytes of the blobs its snapshots use (shared blobs counted once). */
  size: number;
  formats: string[];
  revisions: CachedRevision[];
}

const FORMATS: [RegExp, string][] = [
  [/\.safetensors$/, 'safetensors'],
  [/\.(bin|pth|pt)$/, 'pytorch'],
  [/\.gguf$/, 'gguf'],
  [/\.onnx$/, 'onnx'],
  [/\.h5$/, 'tensorflow'],
  [/\.msgpack$/, 'flax'],
];

function formatsOf(files: string[]): string[] {
  const found = new Set<string>();
  for (const f of files) for (const [re, format] of FORMATS) if (re.test(f) && !TRAINING_STATE.test(f)) found.add(format);
  return [...found];
}

function rank(refs: string[]): number {
  return refs.includes(DEFAULT_REVISION) ? 0 : refs.length ? 1 : 2;
}

/** Every model in the cache, by name; repos the library cannot read become warnings. */
export async function listCachedModels(cacheDir: string): Promise<{ models: CachedModel[]; warnings: string[] }> {
  if (!(await isDir(cacheDir))) return { models: [], warnings: [] };
  const scan = await scanCacheDir(cacheDir);
  const models = scan.repos
    .filter((r) => r.id.type === 'model')
    .map((r) => {
      const revisions = r.revisions
        .map((v) => {
          const files = v.files.map((f) => basename(f.path)).sort();
          return { commit: v.commitOid, refs: [...v.refs].sort(), size: v.size, files, formats: formatsOf(files) };
        })
        // main first, then other branches and tags, then commits no ref names.
        .sort((a, b) => rank(a.refs) - rank(b.refs) || a.commit.localeCompare(b.commit));
      return { name: r.id.name, path: r.path, size: r.size, formats: formatsOf(revisions.flatMap((v) => v.files)), revisions };
    })
    .sort((a, b) => a.name.localeCompare(b.name));
  return { models, warnings: scan.warnings.map((w) => w.message) };
}

export interface Removal {
  /** The commits whose snapshots went. */
  commits: string[];
  /** Bytes of blobs deleted. */
  freed: number;
  /** True when the whole models--org--name folder went. */
  whole: boolean;
}

/**
 * Removes a model (no revision: its whole folder) or one revision: its snapshot, the refs
 * pointing at it, and the blobs no other snapshot uses. The last revision takes the folder.
 */
export async function removeCachedModel(cacheDir: string, name: ModelName): Promise<Removal> {
  const storage = repoFolder(cacheDir, name.repo);
  if (!(await isDir(storage))) throw new SluiceError('NOT_FOUND', `${name.repo}: not in the HF cache (${cacheDir})`);
  const snapshots = await readdir(join(storage, 'snapshots')).catch(() => [] as string[]);
  const removeAll = async (): Promise<Removal> => {
    const freed = await folderBytes(join(storage, 'blobs'));
    await rm(storage, { recursive: true, force: true });
    await rm(join(cacheDir, '.locks', basename(storage)), { recursive: true, force: true });
    return { commits: snapshots, freed, whole: true };
  };
  if (name.revision === undefined) return removeAll();

  const snapshot = await findSnapshot(cacheDir, name);
  if (!snapshot) {
    const cached = snapshots.map((c) => c.slice(0, 7)).join(', ') || 'none';
    throw new SluiceError('NOT_FOUND', `${formatModelName(name)}: no such revision in the HF cache (${storage}; cached: ${cached})`);
  }
  if (snapshots.length === 1 && snapshots[0] === snapshot.commit) return removeAll();
  await rm(snapshot.dir, { recursive: true, force: true });
  for (const ref of await filesUnder(join(storage, 'refs'))) {
    if ((await readFile(ref, 'utf8').catch(() => '')).trim() === snapshot.commit) await rm(ref, { force: true });
  }
  // Blobs still used by the snapshots left; the rest go (partial downloads are left alone).
  const used = new Set<string>();
  for (const file of await filesUnder(join(storage, 'snapshots'))) {
    if ((await lstat(file)).isSymbolicLink()) used.add(resolve(dirname(file), await readlink(file)));
  }
  let freed = 0;
  for (const blob of await readdir(join(storage, 'blobs')).catch(() => [] as string[])) {
    const path = resolve(storage, 'blobs', blob);
    if (blob.endsWith('.incomplete') || used.has(path)) continue;
    freed += (await stat(path)).size;
    await rm(path, { force: true });
  }
  return { commits: [snapshot.commit], freed, whole: false };
}

/** Every file (or symlink) below `dir`, recursively. */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  const out: string[] = [];
  for (const e of entries) {
    const path = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await filesUnder(path)));
    else out.push(path);
  }
  return out;
}

async function folderBytes(dir: string): Promise<number> {
  let bytes = 0;
  for (const file of await filesUnder(dir)) bytes += (await lstat(file)).size;
  return bytes;
}

async function isDir(path: string): Promise<boolean> {
  return (await stat(path).catch(() => null))?.isDirectory() ?? false;
}

async function exists(path: string): Promise<boolean> {
  return (await stat(path).catch(() => null)) !== null;
}

// `org/name[@rev]` → a complete snapshot in the HF cache, as transformers would leave it:
//   refs/<rev>                 the commit sha the revision pointed at (not for a sha)
//   snapshots/<sha>/<file>     symlinks into ../../blobs/
// The steps are the library's snapshotDownload (modelInfo → commit sha, listFiles → the
// tree), with the file choice of file-choice.ts in place of "every file", a shard index
// read before its shards, and fetch-file.ts for resumable, verified downloads.

import { readFile, mkdir, stat, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { listFiles, modelInfo } from '@huggingface/hub';
import { SluiceError } from '../errors.js';
import { parseShardIndex } from '../formats/shard-index.js';
import { chooseFiles, type FilterOptions, type RepoFile, shardFiles } from './file-choice.js';
import { fetchFile, type FetchedFile } from './fetch-file.js';
import { hubFetch, type HubContext } from './hub-fetch.js';
import { DEFAULT_REVISION, formatModelName, type ModelName, repoFolder } from './model-name.js';
import { checkedToken, type HubSettings, hubSettings } from './settings.js';

export interface PullOptions extends FilterOptions {
  /** Default: from the environment (hubSettings()). */
  settings?: HubSettings;
  /** Retries per file when the connection drops (default 3), and the wait unit (default 500 ms). */
  retries?: number;
  retryDelayMs?: number;
  onProgress?: (p: PullProgress) => void;
  /** Things worth saying on the way (waiting for another process's download). */
  onNote?: (note: string) => void;
}

export interface PullProgress {
  phase: 'download' | 'done';
  /** The file in flight, its bytes so far and its size. */
  file: string;
  fileBytesDone: number;
  fileBytes: number;
  /** All chosen files: bytes present so far (cached ones count), and their total. */
  bytesDone: number;
  bytesTotal: number;
  filesDone: number;
  filesTotal: number;
}

export interface PullResult {
  repo: string;
  revision: string;
  commit: string;
  /** `<cache>/models--org--name/snapshots/<commit>`: a model directory. */
  snapshot: string;
  format: 'safetensors' | 'pytorch' | 'none';
  files: FetchedFile[];
}

export async function pullModel(name: ModelName, options: PullOptions = {}): Promise<PullResult> {
  const settings = options.settings ?? hubSettings();
  const label = formatModelName(name);
  if (settings.offline) throw new SluiceError('USAGE', `${label}: HF_HUB_OFFLINE is set, and pulling needs the network`);
  const revision = name.revision ?? DEFAULT_REVISION;
  const ctx: HubContext = { repo: name.repo, revision, endpoint: settings.endpoint, token: checkedToken(settings) };
  const common = { hubUrl: ctx.endpoint, accessToken: ctx.token, fetch: hubFetch(ctx) };

  const info = await modelInfo({ ...common, name: name.repo, revision, additionalFields: ['sha'] });
  const commit = info.sha;
  if (!commit) throw new SluiceError('HTTP_ERROR', `${label}: the Hub gave no commit sha for this revision`);
  const listing: RepoFile[] = [];
  for await (const entry of listFiles({ ...common, repo: { type: 'model', name: name.repo }, recursive: true, revision: commit })) {
    if (entry.type === 'file') listing.push(entry);
  }
  const choice = chooseFiles(name.repo, listing, options);

  const storage = repoFolder(settings.cacheDir, name.repo);
  const snapshot = join(storage, 'snapshots', commit);
  // refs/ must exist even when only a sha is pulled: the library's scanCacheDir requires it.
  await mkdir(join(storage, 'refs'), { recursive: true });
  const target = {
    ctx,
    fetch: common.fetch,
    commit,
    storage,
    locks: join(settings.cacheDir, '.locks', basename(storage)),
    retries: options.retries,
    retryDelayMs: options.retryDelayMs,
    onNote: options.onNote,
  };

  // The index first: it names the shards to fetch.
  const files = [...choice.files];
  const fetched: FetchedFile[] = [];
  let shards: string[] = [];
  if (choice.index) {
    const index = files.find((f) => f.path === choice.index)!;
    fetched.push(await fetchFile(index, target));
    shards = parseShardIndex(await readFile(join(snapshot, index.path)), `${name.repo}: ${index.path}`).shards;
    for (const shard of shardFiles(name.repo, index.path, shards, listing)) if (!files.includes(shard)) files.push(shard);
  }

  const bytesTotal = files.reduce((a, f) => a + (f.lfs?.size ?? f.size), 0);
  let bytesBefore = fetched.reduce((a, f) => a + f.size, 0);
  for (const file of files) {
    if (fetched.some((f) => f.path === file.path)) continue;
    const fileBytes = file.lfs?.size ?? file.size;
    const progress = (fileBytesDone: number) =>
      options.onProgress?.({ phase: 'download', file: file.path, fileBytesDone, fileBytes, bytesDone: bytesBefore + fileBytesDone, bytesTotal, filesDone: fetched.length, filesTotal: files.length });
    progress(0);
    fetched.push(await fetchFile(file, { ...target, onBytes: progress }));
    bytesBefore += fileBytes;
  }
  // Every shard the index names is there (a symlink to a blob that exists).
  for (const shard of shards) {
    if (!(await stat(join(snapshot, shard)).catch(() => null))) {
      throw new SluiceError('NOT_FOUND', `${name.repo}: shard ${shard} named in ${choice.index} is missing from ${snapshot}`);
    }
  }
  // Written last: a revision never points at a snapshot still being filled.
  if (!commit.startsWith(revision)) {
    const ref = join(storage, 'refs', revision);
    await mkdir(join(ref, '..'), { recursive: true });
    await writeFile(ref, commit);
  }
  const last = fetched[fetched.length - 1];
  options.onProgress?.({ phase: 'done', file: last?.path ?? '', fileBytesDone: last?.size ?? 0, fileBytes: last?.size ?? 0, bytesDone: bytesTotal, bytesTotal, filesDone: fetched.length, filesTotal: files.length });
  return { repo: name.repo, revision, commit, snapshot, format: choice.format, files: fetched };
}

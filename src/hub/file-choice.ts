// Which files of a Hub repo a pull fetches: what transformers (and sluice's own directory
// loader, src/checkpoint/resolve.ts) would read, in the same order of preference, and
// nothing else.
//
//   weights   model.safetensors.index.json (+ every shard it names), else model.safetensors,
//             else every top-level *.safetensors; only when there are none:
//             pytorch_model.bin.index.json (+ shards), else pytorch_model.bin, else the
//             top-level *.bin / *.pth / *.pt that are not training state
//   always    config and tokenizer files (SIDE_FILES, as convert copies), where the repo has them
//   never     other formats (gguf, onnx, flax, tf, msgpack, h5) and anything in a
//             subfolder (onnx/, original/ …), unless --include asks for it
//
// `@huggingface/hub`'s snapshotDownload takes every file of a repo; it has no filter.

import { SluiceError } from '../errors.js';
import { PYTORCH_INDEX, SAFETENSORS_INDEX } from '../checkpoint/resolve.js';
import { SIDE_FILES } from '../checkpoint/convert.js';

/** A file of a repo as the Hub's tree listing describes it. */
export interface RepoFile {
  path: string;
  size: number;
  /** Git blob sha1 (of the pointer file, for LFS files). */
  oid?: string;
  /** LFS files: sha256 of the content, and its size. */
  lfs?: { oid: string; size: number };
  xetHash?: string;
}

const PYTORCH_FILE = /\.(bin|pth|pt)$/i;
/** Trainer state saved next to weights by transformers' Trainer: not weights. */
export const TRAINING_STATE = /^(training_args\.bin|optimizer\.pt|scheduler\.pt|scaler\.pt|rng_state.*\.pth)$/;

export interface FileChoice {
  /** The files to fetch (shards of `index` not yet among them). */
  files: RepoFile[];
  /** Which weights were picked. */
  format: 'safetensors' | 'pytorch' | 'none';
  /** A shard index among `files`: its shards are added once it is read. */
  index?: string;
}

export interface FilterOptions {
  /** Globs of extra files to fetch (fnmatch: `*` crosses `/`, as huggingface-cli's --include). */
  include?: string[];
  /** Globs of files never to fetch; applied first, so excluding *.safetensors falls back to .bin. */
  exclude?: string[];
}

export function chooseFiles(repo: string, listing: RepoFile[], filter: FilterOptions = {}): FileChoice {
  const excluded = matcher(filter.exclude ?? []);
  const pool = listing.filter((f) => !excluded(f.path));
  const top = new Map(pool.filter((f) => !f.path.includes('/')).map((f) => [f.path, f]));
  const names = [...top.keys()].sort();
  const take = (list: string[]) => list.map((n) => top.get(n)!);

  let weights: string[] = [];
  let format: FileChoice['format'] = 'none';
  let index: string | undefined;
  const safetensors = names.filter((n) => n.endsWith('.safetensors'));
  const pytorch = names.filter((n) => PYTORCH_FILE.test(n) && !TRAINING_STATE.test(n));
  if (top.has(SAFETENSORS_INDEX) || safetensors.length) {
    format = 'safetensors';
    if (top.has(SAFETENSORS_INDEX)) weights = [(index = SAFETENSORS_INDEX)];
    else weights = top.has('model.safetensors') ? ['model.safetensors'] : safetensors;
  } else if (top.has(PYTORCH_INDEX) || pytorch.length) {
    format = 'pytorch';
    if (top.has(PYTORCH_INDEX)) weights = [(index = PYTORCH_INDEX)];
    else weights = top.has('pytorch_model.bin') ? ['pytorch_model.bin'] : pytorch;
  }

  const included = matcher(filter.include ?? []);
  const extra = pool.filter((f) => included(f.path));
  if (format === 'none' && !extra.length) {
    const seen = names.filter((n) => !(SIDE_FILES as readonly string[]).includes(n) && !n.startsWith('.') && n !== 'README.md').slice(0, 8);
    throw new SluiceError(
      'UNSUPPORTED_FORMAT',
      `${repo}: no .safetensors, .bin or .pth weights at the top of the repo${seen.length ? ` (it has ${seen.join(', ')})` : ''}; --include GLOB fetches files by hand`,
    );
  }
  const chosen = new Map<string, RepoFile>();
  for (const f of [...take(weights), ...take(SIDE_FILES.filter((n) => top.has(n))), ...extra]) chosen.set(f.path, f);
  return { files: [...chosen.values()], format, ...(index ? { index } : {}) };
}

/** The shards an index names, as repo files; a shard missing from the repo is an error naming it. */
export function shardFiles(repo: string, indexName: string, shards: string[], listing: RepoFile[]): RepoFile[] {
  const byPath = new Map(listing.map((f) => [f.path, f]));
  return shards.map((shard) => {
    const file = byPath.get(shard);
    if (!file) throw new SluiceError('NOT_FOUND', `${repo}: shard ${shard} is named in ${indexName} but is not in the repo`);
    return file;
  });
}

/** True for a path any of `globs` matches (fnmatch rules: `*` and `?` also match `/`). */
export function matcher(globs: string[]): (path: string) => boolean {
  const res = globs.map(globToRegExp);
  return (path) => res.some((re) => re.test(path));
}

export function globToRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === '*') re += '.*';
    else if (c === '?') re += '.';
    else if (c === '[' && glob.indexOf(']', i + 2) > 0) {
      const end = glob.indexOf(']', i + 2);
      const body = glob.slice(i + 1, end);
      re += `[${body.startsWith('!') ? `^${escapeClass(body.slice(1))}` : escapeClass(body)}]`;
      i = end;
    } else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`, 's');
}

function escapeClass(body: string): string {
  return body.replace(/[\\\]^]/g, '\\$&');
}

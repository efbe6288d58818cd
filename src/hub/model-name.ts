// `org/name[@revision]`: a Hub model id, and where the HF cache keeps it
// (`<cache>/models--org--name/`, as transformers writes it).

import { join } from 'node:path';
import { getRepoFolderName } from '@huggingface/hub';

export interface ModelName {
  /** `org/name`. */
  repo: string;
  /** A branch, tag or commit sha as given after `@`; undefined = main. */
  revision?: string;
}

export const DEFAULT_REVISION = 'main';

// The Hub's repo name rules: letters, digits, `-`, `_`, `.`; no leading `.` or `-`.
const PART = '[A-Za-z0-9_][A-Za-z0-9._-]{0,95}';
const NAME = new RegExp(`^(${PART}/${PART})(?:@(.+))?$`);
/** Names ending like a checkpoint file are paths that do not exist, not repo ids. */
const FILE_LIKE = /\.(safetensors|bin|pth|pt|json|gguf)$/i;

/** `org/name[@rev]` → its parts; null for anything shaped otherwise (a path, a URL). */
export function parseModelName(text: string): ModelName | null {
  const m = NAME.exec(text);
  if (!m || m[1].includes('..') || FILE_LIKE.test(m[1])) return null;
  const revision = m[2];
  if (revision !== undefined && (revision.includes('..') || /\s|^\/|\/$/.test(revision))) return null;
  return revision === undefined ? { repo: m[1] } : { repo: m[1], revision };
}

/** `org/name@rev`, or `org/name` when no revision was given. */
export function formatModelName(name: ModelName): string {
  return name.revision === undefined ? name.repo : `${name.repo}@${name.revision}`;
}

/** `<cache>/models--org--name`. */
export function repoFolder(cacheDir: string, repo: string): string {
  return join(cacheDir, getRepoFolderName({ type: 'model', name: repo }));
}

/** A full commit sha, as the Hub and the cache's snapshot folders name commits. */
export function isCommitSha(text: string): boolean {
  return /^[0-9a-f]{40}$/.test(text);
}

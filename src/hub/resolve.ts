// A MODEL argument → something the loaders open: a local path or URL as given, or
// `org/name[@rev]` → its snapshot folder in the HF cache.
//
//   1. an existing path (a folder called org/name in the working directory included) or a
//      URL: used as it is;
//   2. a name whose snapshot is cached and complete: that folder, with no network at all
//      (main is not re-checked against the Hub, unlike transformers' default);
//   3. otherwise, when the caller may download and neither --offline nor HF_HUB_OFFLINE
//      forbids it: pulled (pull.ts, the same file choice as `sluice pull`);
//   4. else a one-line NOT_FOUND naming the model and the cache folder.

import { stat } from 'node:fs/promises';
import { isUrl } from '../checkpoint/open.js';
import { SluiceError } from '../errors.js';
import { findSnapshot, missingModelFiles } from './cache.js';
import { formatModelName, type ModelName, parseModelName } from './model-name.js';
import { pullModel, type PullOptions, type PullResult } from './pull.js';
import { type HubSettings, hubSettings } from './settings.js';

export interface ResolveOptions {
  /** May a missing model be pulled? (The model-loading commands: yes; inspect, convert: no.) */
  download: boolean;
  /** --offline: never touch the network (as HF_HUB_OFFLINE=1). */
  offline?: boolean;
  /** Default: from the environment. */
  settings?: HubSettings;
  /** Progress, notes and filters for a pull; `onPull` is told before one starts. */
  pull?: Omit<PullOptions, 'settings'> & { onPull?: (name: ModelName, cacheDir: string) => void };
}

export interface ResolvedModel {
  /** A directory, file or URL for the loaders. */
  path: string;
  /** Set when the argument was a Hub name. */
  name?: ModelName;
  commit?: string;
  /** Set when it had to be downloaded. */
  pulled?: PullResult;
}

export async function resolveModel(arg: string, options: ResolveOptions): Promise<ResolvedModel> {
  if (isUrl(arg) || (await stat(arg).catch(() => null))) return { path: arg };
  const name = parseModelName(arg);
  if (!name) return { path: arg }; // not name-shaped: the loader reports the missing path
  const settings = options.settings ?? hubSettings();
  const cached = await findSnapshot(settings.cacheDir, name);
  const missing = cached ? await missingModelFiles(cached.dir) : [];
  if (cached && !missing.length) return { path: cached.dir, name, commit: cached.commit };

  const label = formatModelName(name);
  const state = cached
    ? `its cached snapshot ${cached.dir} lacks ${missing.join(', ')}`
    : `not in the HF cache (${settings.cacheDir})`;
  if (!options.download) {
    throw new SluiceError('NOT_FOUND', `${label}: no such file or directory, and ${state}; 'sluice pull ${label}' downloads it`);
  }
  if (options.offline || settings.offline) {
    const why = options.offline ? '--offline' : 'HF_HUB_OFFLINE';
    throw new SluiceError('NOT_FOUND', `${label}: ${state}, and ${why} forbids downloading it; run 'sluice pull ${label}' while online`);
  }
  options.pull?.onPull?.(name, settings.cacheDir);
  const pulled = await pullModel(name, { ...options.pull, settings });
  return { path: pulled.snapshot, name, commit: pulled.commit, pulled };
}

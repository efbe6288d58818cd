// Where the Hub and its cache are, read from the environment variables transformers and
// huggingface_hub read, so sluice and Python share one cache and one login:
//   HF_HUB_CACHE > HUGGINGFACE_HUB_CACHE > $HF_HOME/hub > $XDG_CACHE_HOME/huggingface/hub
//   > ~/.cache/huggingface/hub (the library's getHFHubCachePath);
//   HF_ENDPOINT (default https://huggingface.co); HF_TOKEN > HUGGING_FACE_HUB_TOKEN >
//   the file `huggingface-cli login` writes ($HF_TOKEN_PATH, else $HF_HOME/token);
//   HF_HUB_OFFLINE=1 (any of 1/ON/YES/TRUE, as huggingface_hub reads it).

import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { getHFHubCachePath } from '@huggingface/hub';
import { SluiceError } from '../errors.js';

export const DEFAULT_ENDPOINT = 'https://huggingface.co';

export interface HubSettings {
  /** The hub cache: the folder holding `models--org--name/`. */
  cacheDir: string;
  /** The Hub's base URL, without a trailing slash. */
  endpoint: string;
  /** An access token (`hf_…`), for gated and private repos. */
  token?: string;
  /** True: never touch the network. */
  offline: boolean;
}

/** The settings the environment gives, with `overrides` on top. */
export function hubSettings(overrides: Partial<HubSettings> = {}): HubSettings {
  const env = process.env;
  const token = overrides.token ?? (env.HF_TOKEN || env.HUGGING_FACE_HUB_TOKEN || tokenFile());
  return {
    cacheDir: overrides.cacheDir ?? getHFHubCachePath(),
    endpoint: (overrides.endpoint ?? (env.HF_ENDPOINT || DEFAULT_ENDPOINT)).replace(/\/+$/, ''),
    token: token || undefined,
    offline: overrides.offline ?? isTruthy(env.HF_HUB_OFFLINE),
  };
}

/**
 * The token, checked before the first request: the library refuses one without the hf_
 * prefix with a TypeError deep inside a call; this says so up front, naming the source.
 */
export function checkedToken(settings: HubSettings): string | undefined {
  if (settings.token && !settings.token.startsWith('hf_')) {
    throw new SluiceError('USAGE', 'HF_TOKEN (or the saved Hub login) is not a Hub access token: it must start with hf_');
  }
  return settings.token;
}

function isTruthy(value: string | undefined): boolean {
  return ['1', 'ON', 'YES', 'TRUE'].includes((value ?? '').trim().toUpperCase());
}

/** The token saved by `huggingface-cli login` / `hf auth login`, if any. */
function tokenFile(): string | undefined {
  const env = process.env;
  const home = env.HF_HOME ?? join(env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'huggingface');
  try {
    return readFileSync(env.HF_TOKEN_PATH ?? join(home, 'token'), 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

// The MODEL argument of every command: a path or URL as given, or `org/name[@rev]` from
// the HF cache (src/hub/resolve.ts). The model-loading commands (generate, chat, serve,
// bench generate) pull a missing model, with a progress bar; inspect and convert only
// look in the cache.

import { type ResolvedModel, resolveModel } from '../hub/resolve.js';
import type { CliIo } from './io.js';
import { pullProgressBar } from './pull-progress.js';

export interface ModelSourceOptions {
  /** Pull a model that is not cached. */
  download: boolean;
  /** --offline. */
  offline?: boolean;
  /** No progress bar (machine output). */
  quiet?: boolean;
}

export async function modelSource(arg: string, io: CliIo, options: ModelSourceOptions): Promise<ResolvedModel> {
  return resolveModel(arg, {
    download: options.download,
    offline: options.offline,
    pull: {
      onPull: (_name, cacheDir) => io.stderr(`sluice: pulling ${arg} into ${cacheDir}\n`),
      onProgress: pullProgressBar(io, !options.quiet),
      onNote: (note) => io.stderr(`sluice: ${note}\n`),
    },
  });
}

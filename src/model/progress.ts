// What a model load reports, phase by phase, for progress bars: 'download' (a file fetched
// into, or found in, a download cache), then the loader's 'compile' / 'upload' / 'done',
// then 'kernels' (the model's pipelines being built, which takes seconds on some GPUs).

import type { LoadProgress } from '../gpu/load-tensors.js';

export interface DownloadProgress {
  phase: 'download';
  /** The file being fetched (its URL). */
  file: string;
  /** True when the file came from the cache without a download. */
  fromCache: boolean;
  /** Bytes of this file so far, and in all (bytesTotal is 0 when the server does not say). */
  bytesDone: number;
  bytesTotal: number;
}

export interface KernelsProgress {
  phase: 'kernels';
  /** Pipelines built so far, of `kernelsTotal`. */
  kernelsDone: number;
  kernelsTotal: number;
}

export type ModelProgress = LoadProgress | DownloadProgress | KernelsProgress;

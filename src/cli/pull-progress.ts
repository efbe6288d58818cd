// The download bar of `sluice pull` (and of a model command pulling what it lacks): one
// line with the overall bytes and rate, and the file in flight with its own percentage.

import type { PullProgress } from '../hub/pull.js';
import type { CliIo } from './io.js';
import { Progress } from './progress.js';

export function pullProgressBar(io: CliIo, enabled: boolean): (p: PullProgress) => void {
  let bar: Progress | undefined;
  return (p) => {
    bar ??= new Progress(io, 'pulling', p.bytesTotal, enabled);
    const percent = p.fileBytes ? Math.floor((100 * p.fileBytesDone) / p.fileBytes) : 100;
    bar.set(p.bytesDone, `${p.filesDone + 1}/${p.filesTotal} ${p.file} ${percent}%`);
    if (p.phase === 'done') {
      bar.set(p.bytesDone, `${p.filesDone}/${p.filesTotal} files`);
      bar.done();
      bar = undefined;
    }
  };
}

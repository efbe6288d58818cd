// CPU time of the process's main thread alone (not Dawn's or the software GPU's threads),
// for the benchmarks' "how busy was the host" figure: where waiting for the GPU spins, the
// main thread is busy the whole decode (src/gpu/quiet-wait.ts). Node 20 has no
// per-thread CPU clock (process.threadCpuUsage came in Node 23.9), so Linux's
// /proc/self/task/<pid>/stat is read: utime + stime in clock ticks (USER_HZ, 100 on Linux).
// Elsewhere: null.

import { readFileSync } from 'node:fs';

const TICKS_PER_SECOND = 100;

/** Seconds of CPU the main thread has used, or null where /proc is not there to say. */
export function mainThreadCpuSeconds(): number | null {
  if (process.platform !== 'linux') return null;
  try {
    const stat = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces): state is the first, utime the 12th.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]);
    return Number.isFinite(ticks) ? ticks / TICKS_PER_SECOND : null;
  } catch {
    return null;
  }
}

// Preloaded (`node --import`) by bounded-cli.ts: on exit, writes the process's peak RSS in
// KiB to $SLUICE_PEAK_RSS_FILE. Linux's VmHWM is the peak of this process image alone;
// getrusage's maxRSS can start from the parent's footprint inherited across fork + exec.
import { readFileSync, writeFileSync } from 'node:fs';

function peakKiB() {
  try {
    const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'));
    if (m) return Number(m[1]);
  } catch {
    // not Linux: fall back
  }
  return process.resourceUsage().maxRSS;
}

const file = process.env.SLUICE_PEAK_RSS_FILE;
if (file) process.on('exit', () => writeFileSync(file, String(peakKiB())));

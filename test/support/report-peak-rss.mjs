// Preloaded (`node --import`) by bounded-cli.ts: on exit, writes the process's peak RSS in
// KiB to $SLUICE_PEAK_RSS_FILE.
import { writeFileSync } from 'node:fs';

const file = process.env.SLUICE_PEAK_RSS_FILE;
if (file) process.on('exit', () => writeFileSync(file, String(process.resourceUsage().maxRSS)));

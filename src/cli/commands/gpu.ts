// `sluice gpu [--json]`: the adapter sluice would run on, its features and limits.
// It acquires a real device (not only the adapter), so a zero exit also means the
// adapter grants the raised limits and features device.ts asks for.

import { type AdapterReport, adapterName } from '../../gpu/adapter-info.js';
import { USED_FEATURES } from '../../gpu/device.js';
import { acquireNodeDevice } from '../../gpu/node-gpu.js';
import { parseCommandArgs } from '../args.js';
import type { CliIo, Command } from '../io.js';

const usage = `Usage: sluice gpu [--json]

Shows the WebGPU adapter sluice uses: vendor, architecture, description, whether it is a
software (CPU) renderer, its features and its limits.

Options:
  --json     one JSON document: {"adapter": {...}, "features": [...], "limits": {...}}
  --debug    show Dawn's and Mesa's own stderr messages, and stack traces on errors
  -h, --help this text
`;

export const gpuCommand: Command = {
  name: 'gpu',
  summary: 'show the WebGPU adapter, its features and limits',
  usage,
  usesGpu: true,
  async run(args: string[], io: CliIo): Promise<number> {
    const { values } = parseCommandArgs('gpu', args, { json: { type: 'boolean' } });
    if (values.help) {
      io.stdout(usage);
      return 0;
    }
    const context = await acquireNodeDevice({ label: 'sluice.gpu' });
    try {
      const report = context.adapterInfo;
      io.stdout(values.json ? `${JSON.stringify(toJson(report), null, 2)}\n` : formatHuman(report));
      return 0;
    } finally {
      context.destroy();
    }
  },
};

function toJson(report: AdapterReport) {
  const { features, limits, ...adapter } = report;
  return { adapter, features, limits };
}

function formatHuman(report: AdapterReport): string {
  const used = new Set<string>(USED_FEATURES);
  const rows: [string, string][] = [
    ['adapter', adapterName(report)],
    ['vendor', report.vendor || '-'],
    ['architecture', report.architecture || '-'],
    ['device', report.device || '-'],
    ['description', report.description || '-'],
    ['software', report.isSoftware ? 'yes (a CPU renderer: correct, but slow)' : 'no'],
  ];
  const lines = table(rows, '');
  lines.push('', `features (${report.features.length}; * = used by sluice)`);
  for (const name of report.features) lines.push(`  ${used.has(name) ? '*' : ' '} ${name}`);
  const missing = USED_FEATURES.filter((name) => !report.features.includes(name));
  if (missing.length) lines.push(`  missing: ${missing.join(', ')} (optional: sluice runs without them)`);

  lines.push('', 'limits');
  const limitRows = Object.entries(report.limits).map(([name, value]): [string, string] => [name, String(value)]);
  const valueWidth = Math.max(...limitRows.map(([, value]) => value.length));
  for (const [i, [name, value]] of limitRows.entries()) {
    const bytes = /Size$/.test(name) && Number(value) >= 1024 ? `  (${formatBytes(Number(value))})` : '';
    limitRows[i] = [name, value.padStart(valueWidth) + bytes];
  }
  lines.push(...table(limitRows, '  '));
  return `${lines.join('\n')}\n`;
}

/** Two aligned columns. */
function table(rows: [string, string][], indent: string): string[] {
  const width = Math.max(...rows.map(([key]) => key.length));
  return rows.map(([key, value]) => `${indent}${key.padEnd(width)}  ${value}`);
}

/** 134217728 → '128 MiB', 4294967295 → '4 GiB' (rounded, for reading, not for arithmetic). */
function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  const rounded = value >= 10 || Number.isInteger(value) ? Math.round(value) : Math.round(value * 10) / 10;
  return `${rounded} ${units[unit]}`;
}

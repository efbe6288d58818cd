// Small text helpers for human output: sizes, counts, aligned tables.

export { formatBytes } from '../units.js';

/** 1234567 → "1.23M", for parameter counts. */
export function formatCount(n: number): string {
  if (n < 1000) return String(n);
  const units = ['', 'K', 'M', 'B', 'T'];
  const i = Math.min(Math.floor(Math.log10(n) / 3), units.length - 1);
  const v = n / 1000 ** i;
  return `${v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)}${units[i]}`;
}

/** Columns padded to their widest cell; `right` lists the columns aligned right. */
export function table(header: string[], rows: string[][], right: number[] = []): string {
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]?.length ?? 0)));
  const line = (cells: string[]) =>
    cells
      .map((cell, c) => (right.includes(c) ? cell.padStart(widths[c]) : cell.padEnd(widths[c])))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n') + '\n';
}

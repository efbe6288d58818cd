// Small text helpers for human output: sizes, counts, aligned tables.

export { formatBytes } from '../units.js';

/** 1234567 → "1.23M", for parameter counts (rounded: pair it with `exact` where it matters). */
export function formatCount(count: number | bigint): string {
  const n = Number(count);
  if (n < 1000) return String(count);
  const units = ['', 'K', 'M', 'B', 'T'];
  const i = Math.min(Math.floor(Math.log10(n) / 3), units.length - 1);
  const v = n / 1000 ** i;
  return `${v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)}${units[i]}`;
}

/** 1234567n → "1,234,567": every digit, however large (bigint formats exactly). */
export function exact(n: number | bigint): string {
  return n.toLocaleString('en-US');
}

/**
 * An integer for a JSON report: a number while it is exact in every JSON reader (≤ 2^53 − 1),
 * else its decimal string, so no reader (JSON.parse, jq 1.6) silently rounds it.
 */
export function jsonInteger(n: number | bigint): number | string {
  return typeof n === 'number' ? n : n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n.toString();
}

/** Text cut to `max` characters with an ellipsis, for table cells of untrusted names. */
export function clip(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/** Columns padded to their widest cell; `right` lists the columns aligned right. */
export function table(header: string[], rows: string[][], right: number[] = []): string {
  // A loop, not Math.max(...rows): a spread of a million rows overflows the stack (inspect --all).
  const widths = header.map((h) => h.length);
  for (const r of rows) for (let c = 0; c < widths.length; c++) widths[c] = Math.max(widths[c], r[c]?.length ?? 0);
  const line = (cells: string[]) =>
    cells
      .map((cell, c) => (right.includes(c) ? cell.padStart(widths[c]) : cell.padEnd(widths[c])))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n') + '\n';
}

// Sets of Unicode code points (sorted, disjoint, inclusive ranges) and their lowering to
// UTF-8 byte sequences. The lowering follows regex-syntax's `Utf8Sequences`
// (rust-lang/regex, regex-syntax/src/utf8.rs): split a range where the encoded length
// changes, then where the continuation bytes stop covering their full 0x80..0xBF span, until
// every piece is a plain product of byte ranges. Surrogates (U+D800..U+DFFF) are not
// characters and never appear in UTF-8, so they are removed first.

import { type Expr, alt, byteRange, seq } from './expr.js';

/** [lo, hi] inclusive pairs, sorted and disjoint after `normalize`. */
export type CodeRanges = Array<[number, number]>;

export const MAX_CODE_POINT = 0x10ffff;

export function normalize(ranges: CodeRanges): CodeRanges {
  const sorted = ranges.filter(([lo, hi]) => lo <= hi).sort((a, b) => a[0] - b[0]);
  const out: CodeRanges = [];
  for (const [lo, hi] of sorted) {
    const last = out[out.length - 1];
    if (last && lo <= last[1] + 1) last[1] = Math.max(last[1], hi);
    else out.push([lo, hi]);
  }
  return out;
}

/** Every code point not in `ranges`. */
export function negate(ranges: CodeRanges): CodeRanges {
  const out: CodeRanges = [];
  let next = 0;
  for (const [lo, hi] of normalize(ranges)) {
    if (lo > next) out.push([next, lo - 1]);
    next = hi + 1;
  }
  if (next <= MAX_CODE_POINT) out.push([next, MAX_CODE_POINT]);
  return out;
}

/** `ranges` minus `remove`. */
export function subtract(ranges: CodeRanges, remove: CodeRanges): CodeRanges {
  return intersect(ranges, negate(remove));
}

export function intersect(a: CodeRanges, b: CodeRanges): CodeRanges {
  const out: CodeRanges = [];
  const x = normalize(a);
  const y = normalize(b);
  let i = 0;
  let j = 0;
  while (i < x.length && j < y.length) {
    const lo = Math.max(x[i][0], y[j][0]);
    const hi = Math.min(x[i][1], y[j][1]);
    if (lo <= hi) out.push([lo, hi]);
    if (x[i][1] < y[j][1]) i++;
    else j++;
  }
  return out;
}

export const single = (c: number): CodeRanges => [[c, c]];

const SURROGATES: CodeRanges = [[0xd800, 0xdfff]];

/** One character of `ranges`, as alternatives of UTF-8 byte-range sequences. */
export function utf8Class(ranges: CodeRanges): Expr {
  const pieces: Expr[] = [];
  for (const [lo, hi] of subtract(ranges, SURROGATES)) splitRange(lo, hi, pieces);
  return alt(...pieces);
}

const LENGTH_LIMITS = [0x7f, 0x7ff, 0xffff];

function splitRange(lo: number, hi: number, out: Expr[]): void {
  // Split where the encoded length changes (1, 2, 3, 4 bytes).
  for (const limit of LENGTH_LIMITS) {
    if (lo <= limit && hi > limit) {
      splitRange(lo, limit, out);
      splitRange(limit + 1, hi, out);
      return;
    }
  }
  if (hi <= 0x7f) {
    out.push(byteRange(lo, hi));
    return;
  }
  // Split until the low 6·i bits of both ends span everything, so each byte position is an
  // independent range.
  for (let i = 1; i < 4; i++) {
    const m = (1 << (6 * i)) - 1;
    if ((lo & ~m) !== (hi & ~m)) {
      if ((lo & m) !== 0) {
        splitRange(lo, lo | m, out);
        splitRange((lo | m) + 1, hi, out);
        return;
      }
      if ((hi & m) !== m) {
        splitRange(lo, (hi & ~m) - 1, out);
        splitRange(hi & ~m, hi, out);
        return;
      }
    }
  }
  const a = utf8Bytes(lo);
  const b = utf8Bytes(hi);
  out.push(seq(...a.map((x, k) => byteRange(x, b[k]))));
}

/** The UTF-8 encoding of one code point (surrogates excluded by the caller). */
export function utf8Bytes(c: number): number[] {
  if (c < 0x80) return [c];
  if (c < 0x800) return [0xc0 | (c >> 6), 0x80 | (c & 0x3f)];
  if (c < 0x10000) return [0xe0 | (c >> 12), 0x80 | ((c >> 6) & 0x3f), 0x80 | (c & 0x3f)];
  return [0xf0 | (c >> 18), 0x80 | ((c >> 12) & 0x3f), 0x80 | ((c >> 6) & 0x3f), 0x80 | (c & 0x3f)];
}

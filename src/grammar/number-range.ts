// Numbers between bounds as grammar IR: the decimal strings of the integers in [lo, hi]
// (the digit-by-digit splitting of llama.cpp's `_generate_min_max_int`,
// examples/json_schema_to_grammar.py, written here over digit strings), and decimals
// whose every value lies inside the bounds.
//
// A decimal `k.f` (k ≥ 0) lies in [k, k+1), and `-k.f` in (-(k+1), -k], whatever its
// fraction digits, so choosing the integer part k correctly is enough: the fraction is
// free. A non-integer bound is rounded inwards (minimum 0.5 → integer part ≥ 1): the
// grammar then allows a subset of the valid numbers, never an invalid one.

import { EMPTY, type Expr, NOTHING, alt, byteRange, literal, rep, seq } from './expr.js';
import { FRACTION, MAX_INT } from './json-text.js';

export interface NumberBounds {
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
}

const digits = (lo: number, hi: number): Expr => byteRange(0x30 + lo, 0x30 + hi);

/** Canonical decimal strings (no leading zero) of the integers in [lo, hi], 0 ≤ lo. */
export function naturalsIn(lo: number, hi: number): Expr {
  if (lo > hi) return NOTHING;
  const parts: Expr[] = [];
  for (let len = String(lo).length; len <= String(hi).length; len++) {
    const a = Math.max(lo, len === 1 ? 0 : 10 ** (len - 1));
    const b = Math.min(hi, 10 ** len - 1);
    if (a <= b) parts.push(sameLength(String(a), String(b)));
  }
  return alt(...parts);
}

/** Digit strings of one length between a and b inclusive (a ≤ b, same length). */
function sameLength(a: string, b: string): Expr {
  if (a.length === 0) return EMPTY;
  if (a === b) return literal(a);
  const x = Number(a[0]);
  const y = Number(b[0]);
  if (x === y) return seq(literal(a[0]), sameLength(a.slice(1), b.slice(1)));
  const rest = a.length - 1;
  const lowAll = /^0*$/.test(a.slice(1)); // a = x000: the whole x-block is in range
  const highAll = /^9*$/.test(b.slice(1)); // b = y999: the whole y-block is in range
  const parts: Expr[] = [];
  if (!lowAll) parts.push(seq(literal(a[0]), sameLength(a.slice(1), '9'.repeat(rest))));
  const from = lowAll ? x : x + 1;
  const to = highAll ? y : y - 1;
  if (from <= to) parts.push(seq(digits(from, to), rep(digits(0, 9), rest, rest)));
  if (!highAll) parts.push(seq(literal(b[0]), sameLength('0'.repeat(rest), b.slice(1))));
  return alt(...parts);
}

/** Decimal strings of the integers in [lo, hi] (either may be negative). */
export function integersIn(lo: number, hi: number): Expr {
  const parts: Expr[] = [];
  if (lo < 0) parts.push(seq(literal('-'), naturalsIn(Math.max(1, -hi), -lo)));
  if (hi >= 0) parts.push(naturalsIn(Math.max(0, lo), hi));
  return alt(...parts);
}

/** The integer range the bounds allow: [lo, hi] clamped to what MAX_INT digits can write. */
export function integerBounds(b: NumberBounds): [number, number] {
  let lo = -MAX_INT;
  let hi = MAX_INT;
  if (b.minimum !== undefined) lo = Math.max(lo, Math.ceil(b.minimum));
  if (b.exclusiveMinimum !== undefined) lo = Math.max(lo, Math.floor(b.exclusiveMinimum) + 1);
  if (b.maximum !== undefined) hi = Math.min(hi, Math.floor(b.maximum));
  if (b.exclusiveMaximum !== undefined) hi = Math.min(hi, Math.ceil(b.exclusiveMaximum) - 1);
  return [lo, hi];
}

/** Integers within the bounds; NOTHING when none. */
export function boundedInteger(b: NumberBounds): Expr {
  const [lo, hi] = integerBounds(b);
  return integersIn(lo, hi);
}

/**
 * Numbers within the bounds: integers, and decimals `k.f` / `-k.f` whose integer part keeps
 * every fraction inside (see the file comment). No exponent.
 */
export function boundedNumber(b: NumberBounds): Expr {
  const [lo, hi] = integerBounds(b);
  const parts = [integersIn(lo, hi)];
  // k.f ∈ [k, k+1): needs k ≥ lo (k itself, f = 0, must be allowed) and k + 1 ≤ the upper bound.
  const upper = Math.min(b.maximum ?? Infinity, b.exclusiveMaximum ?? Infinity, MAX_INT + 1);
  const kHi = Math.floor(upper) - 1;
  const kLo = Math.max(0, lo);
  if (kLo <= kHi) parts.push(seq(naturalsIn(kLo, kHi), FRACTION));
  // -k.f ∈ (-(k+1), -k]: needs -k ≤ hi (−k itself allowed) and -(k+1) ≥ the lower bound.
  const lower = Math.max(b.minimum ?? -Infinity, b.exclusiveMinimum ?? -Infinity, -(MAX_INT + 1));
  const nHi = Math.floor(-lower) - 1;
  const nLo = Math.max(0, -hi);
  if (nLo <= nHi) parts.push(seq(literal('-'), naturalsIn(nLo, nHi), FRACTION));
  return alt(...parts);
}

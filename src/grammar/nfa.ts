// Thompson construction of one rule's NFA over bytes (grammar IR → states with epsilon,
// byte-range and call edges), for automaton.ts to determinize. Rules the automaton chose
// to inline are expanded in place; the others become call edges.

import type { Expr, Grammar } from './expr.js';
import { grammarError } from './expr.js';

const isByteString = (e: Expr): boolean => e.k === 'byte' || (e.k === 'seq' && e.items.length > 0 && e.items.every((x) => x.k === 'byte'));

export const EPS = 0;
export const BYTE = 1;
export const CALL = 2;

/** One NFA for one kept rule at a time; edge lists are plain arrays, reused across rules. */
export class NfaBuilder {
  states = 0;
  private total = 0;
  // Per edge: kind, from, to, lo, hi (for CALL, lo = the kept rule's index).
  kind: number[] = [];
  from: number[] = [];
  to: number[] = [];
  lo: number[] = [];
  hi: number[] = [];
  private ruleName = '';

  constructor(
    private readonly grammar: Grammar,
    private readonly inline: Uint8Array,
    private readonly keptIndex: Int32Array,
    private readonly budget: number,
  ) {}

  buildRule(r: number): { start: number; end: number } {
    this.states = 0;
    this.kind.length = this.from.length = this.to.length = this.lo.length = this.hi.length = 0;
    this.ruleName = this.grammar.rules[r].name;
    const start = this.newState();
    const end = this.build(this.grammar.rules[r].body, start);
    return { start, end };
  }

  private newState(): number {
    if (++this.total > this.budget) {
      throw grammarError(this.ruleName, `too large: over ${this.budget} automaton states (a repetition count or a schema too big to enforce)`);
    }
    return this.states++;
  }

  private edge(kind: number, from: number, to: number, lo: number, hi: number): void {
    this.kind.push(kind);
    this.from.push(from);
    this.to.push(to);
    this.lo.push(lo);
    this.hi.push(hi);
  }

  /** Adds `e` starting at `start`; returns its end state. */
  private build(e: Expr, start: number): number {
    switch (e.k) {
      case 'byte': {
        const end = this.newState();
        this.edge(BYTE, start, end, e.lo, e.hi);
        return end;
      }
      case 'seq': {
        let s = start;
        for (const item of e.items) s = this.build(item, s);
        return s;
      }
      case 'alt': {
        const end = this.newState();
        const plain = e.items.filter(isByteString);
        if (plain.length > 0) this.edge(EPS, this.byteStrings(plain, start), end, 0, 0);
        for (const item of e.items) {
          if (isByteString(item)) continue;
          // A fresh entry per branch, so a loop inside one branch cannot re-enter another.
          const entry = this.newState();
          this.edge(EPS, start, entry, 0, 0);
          this.edge(EPS, this.build(item, entry), end, 0, 0);
        }
        return end;
      }
      case 'rep': {
        let s = start;
        for (let i = 0; i < e.min; i++) s = this.fresh(e.item, s);
        if (!Number.isFinite(e.max)) {
          const head = this.newState();
          this.edge(EPS, s, head, 0, 0);
          this.edge(EPS, this.fresh(e.item, head), head, 0, 0);
          return head;
        }
        const end = this.newState();
        this.edge(EPS, s, end, 0, 0);
        for (let i = e.min; i < e.max; i++) {
          s = this.fresh(e.item, s);
          this.edge(EPS, s, end, 0, 0);
        }
        return end;
      }
      case 'ref': {
        if (this.inline[e.rule]) return this.build(this.grammar.rules[e.rule].body, start);
        const end = this.newState();
        this.edge(CALL, start, end, this.keptIndex[e.rule], 0);
        return end;
      }
    }
  }

  /**
   * Alternatives that are plain byte-range strings (a UTF-8 character class, an enum of
   * literals), built with shared suffixes as regex-automata's Utf8Compiler does
   * (rust-lang/regex, regex-automata/src/nfa/thompson/compiler.rs): every 3-byte character
   * ends in the same "two continuation bytes" states, so the NFA is nearly a DFA already
   * and determinizing a repeated class stays cheap.
   */
  private byteStrings(items: Expr[], start: number): number {
    const end = this.newState();
    const suffixes = new Map<string, number>(); // ranges still to read → the state reading them
    for (const item of items) {
      const ranges = (item.k === 'byte' ? [item] : item.k === 'seq' ? item.items : []) as ReadonlyArray<{ lo: number; hi: number }>;
      let next = end;
      let key = '';
      for (let i = ranges.length - 1; i >= 1; i--) {
        key = `${ranges[i].lo}-${ranges[i].hi} ${key}`;
        let s = suffixes.get(key);
        if (s === undefined) {
          s = this.newState();
          this.edge(BYTE, s, next, ranges[i].lo, ranges[i].hi);
          suffixes.set(key, s);
        }
        next = s;
      }
      this.edge(BYTE, start, next, ranges[0].lo, ranges[0].hi);
    }
    return end;
  }

  /** `e` from a fresh state entered by an epsilon edge (keeps loops from sharing entries). */
  private fresh(e: Expr, from: number): number {
    const entry = this.newState();
    this.edge(EPS, from, entry, 0, 0);
    return this.build(e, entry);
  }
}

// Grammar IR → a recursive transition network of byte DFAs: one DFA per rule that is kept,
// with byte edges and call edges ("run rule Q, then continue at state t"). This is the shape
// XGrammar and llama.cpp's grammar engine use (a pushdown automaton over per-rule automata;
// mlc-ai/xgrammar cpp/grammar_matcher.cc, ggml-org/llama.cpp src/llama-grammar.cpp), with
// one difference: a rule that is not recursive and not large is inlined into its callers,
// so a JSON schema without recursion becomes ONE DFA and the matcher's stack stays empty.
//
// Every size is bounded before it is allocated: automaton states (NFA and DFA) have budgets,
// and exceeding one is an error naming the rule being built.

import { type Expr, type Grammar, grammarError } from './expr.js';
import { analyse } from './automaton-checks.js';
import { BYTE, CALL, EPS, NfaBuilder } from './nfa.js';

export interface AutomatonLimits {
  /** Thompson NFA states over all rules. */
  maxNfaStates: number;
  /** DFA states over all rules. */
  maxDfaStates: number;
}

export const DEFAULT_LIMITS: AutomatonLimits = { maxNfaStates: 1_000_000, maxDfaStates: 250_000 };

/** A non-recursive rule this small is always inlined. */
const INLINE_TINY = 16;
/** Otherwise, when its size × the copies the automaton would make of it stays under this. */
const INLINE_BUDGET = 8192;
/** Rules inlined into rules inlined into ...: at most this deep. */
const MAX_INLINE_CHAIN = 64;

export interface Automaton {
  readonly numStates: number;
  /** Kept rules: name (for errors) and start state. Rule 0 is the root. */
  readonly ruleNames: readonly string[];
  readonly ruleStart: Int32Array;
  /** 1 where the rule may stop. */
  readonly final: Uint8Array;
  /** Byte edges of state s: [edgeStart[s], edgeStart[s+1]), disjoint sorted ranges. */
  readonly edgeStart: Int32Array;
  readonly edgeLo: Uint8Array;
  readonly edgeHi: Uint8Array;
  readonly edgeTo: Int32Array;
  /** Call edges of state s: [callStart[s], callStart[s+1]): run rule callRule, then go to callTo. */
  readonly callStart: Int32Array;
  readonly callRule: Int32Array;
  readonly callTo: Int32Array;
  /** 1 where the state is final with no edges: returning there = returning past it (tail call). */
  readonly tailReturn: Uint8Array;
}

/** Grammar → automaton, or USAGE naming the rule that cannot finish, recurses on the left, or is too large. */
export function buildAutomaton(grammar: Grammar, limits: AutomatonLimits = DEFAULT_LIMITS): Automaton {
  const kept = chooseKeptRules(grammar);
  // Refuse before allocating: the expansion of each rule is about its NFA's size.
  for (const r of kept.order) {
    if (kept.size[r] > limits.maxNfaStates) throw grammarError(grammar.rules[r].name, `too large: it expands to about ${kept.size[r]} automaton states, over the limit of ${limits.maxNfaStates} (a repetition count or a schema too big to enforce)`);
  }
  const nfa = new NfaBuilder(grammar, kept.inline, kept.index, limits.maxNfaStates);
  const dfa = new DfaBuilder(limits.maxDfaStates);
  const ruleStart: number[] = [];
  for (const r of kept.order) {
    const { start, end } = nfa.buildRule(r);
    ruleStart.push(dfa.determinize(nfa, start, end, grammar.rules[r].name));
  }
  return analyse(dfa.finish(kept.order.map((r) => grammar.rules[r].name), ruleStart));
}

// ── which rules get their own DFA ────────────────────────────────────────────────────────

interface KeptRules {
  /** Rules with a DFA, root first. */
  order: number[];
  /** grammar rule → index in `order`, or -1 where inlined. */
  index: Int32Array;
  inline: Uint8Array;
  /** grammar rule → states its body expands to, inlined rules included. */
  size: Float64Array;
}

/** Each rule `e` refers to, with how many copies the automaton makes of that reference. */
function refsOf(e: Expr, copies: number, out: Map<number, number>): void {
  switch (e.k) {
    case 'ref':
      out.set(e.rule, (out.get(e.rule) ?? 0) + copies);
      return;
    case 'seq':
    case 'alt':
      for (const item of e.items) refsOf(item, copies, out);
      return;
    case 'rep':
      refsOf(e.item, copies * (Number.isFinite(e.max) ? e.max : e.min + 1), out);
      return;
    default:
  }
}

/**
 * Which rules get a DFA of their own. A recursive rule must (the matcher's stack handles
 * it); a rule small enough, or copied few enough times, is inlined into its callers so the
 * common case (a JSON schema without recursion) is a single DFA with no stack at all.
 * Decided callers first, so a rule's copy count includes its inlined callers' copies.
 */
function chooseKeptRules(grammar: Grammar): KeptRules {
  const n = grammar.rules.length;
  const calls = grammar.rules.map((rule) => {
    const out = new Map<number, number>();
    refsOf(rule.body, 1, out);
    return out;
  });
  const { recursive, order } = stronglyConnected(calls.map((m) => [...m.keys()]), grammar.root);
  // Sizes with every non-recursive callee inlined (`order` lists callees first): an upper bound.
  const full = new Float64Array(n);
  const all = Uint8Array.from(recursive, (r) => 1 - r);
  const chain = new Int32Array(n); // longest chain of rules inlined into r: bounds the builder's recursion
  for (const r of order) {
    full[r] = expandedSize(grammar.rules[r].body, all, full);
    for (const q of calls[r].keys()) if (!recursive[q]) chain[r] = Math.max(chain[r], chain[q] + 1);
  }
  const copies = new Float64Array(n);
  copies[grammar.root] = 1;
  const inline = new Uint8Array(n);
  for (let i = order.length - 1; i >= 0; i--) {
    const r = order[i];
    const small = full[r] <= INLINE_TINY || full[r] * copies[r] <= INLINE_BUDGET;
    inline[r] = Number(r !== grammar.root && !recursive[r] && chain[r] < MAX_INLINE_CHAIN && small);
    for (const [q, m] of calls[r]) copies[q] += (inline[r] ? copies[r] : 1) * m;
  }
  const size = new Float64Array(n);
  for (const r of order) size[r] = expandedSize(grammar.rules[r].body, inline, size);
  const keptOrder = [grammar.root, ...order.filter((r) => r !== grammar.root && !inline[r])];
  const index = new Int32Array(n).fill(-1);
  keptOrder.forEach((r, i) => (index[r] = i));
  return { order: keptOrder, index, inline, size };
}

/** States `e` expands to, where a ref to an inlined rule counts that rule's expansion. */
function expandedSize(e: Expr, inline: Uint8Array, expanded: Float64Array): number {
  switch (e.k) {
    case 'byte':
      return 1;
    case 'ref':
      return inline[e.rule] ? expanded[e.rule] : 1;
    case 'seq':
    case 'alt': {
      let n = 1;
      for (const item of e.items) n += expandedSize(item, inline, expanded);
      return n;
    }
    case 'rep':
      return 1 + expandedSize(e.item, inline, expanded) * Math.max(1, Number.isFinite(e.max) ? e.max : e.min + 1);
  }
}

/** Tarjan's SCCs from `root`: which rules are recursive, and a callees-first order. */
function stronglyConnected(calls: number[][], root: number): { recursive: Uint8Array; order: number[] } {
  const n = calls.length;
  const index = new Int32Array(n).fill(-1);
  const low = new Int32Array(n);
  const onStack = new Uint8Array(n);
  const recursive = new Uint8Array(n);
  const stack: number[] = [];
  const order: number[] = [];
  let counter = 0;
  // Iterative, so a chain of 10⁴ rules cannot overflow the JS stack.
  const work: Array<[number, number]> = [[root, 0]];
  index[root] = low[root] = counter++;
  stack.push(root);
  onStack[root] = 1;
  while (work.length) {
    const top = work[work.length - 1];
    const [v, i] = top;
    if (i < calls[v].length) {
      top[1]++;
      const w = calls[v][i];
      if (w === v) recursive[v] = 1;
      if (index[w] < 0) {
        index[w] = low[w] = counter++;
        stack.push(w);
        onStack[w] = 1;
        work.push([w, 0]);
      } else if (onStack[w]) {
        low[v] = Math.min(low[v], index[w]);
      }
      continue;
    }
    work.pop();
    if (work.length) low[work[work.length - 1][0]] = Math.min(low[work[work.length - 1][0]], low[v]);
    if (low[v] === index[v]) {
      const component: number[] = [];
      let w: number;
      do {
        w = stack.pop()!;
        onStack[w] = 0;
        component.push(w);
      } while (w !== v);
      if (component.length > 1) for (const c of component) recursive[c] = 1;
      order.push(...component);
    }
  }
  return { recursive, order };
}

// ── subset construction ─────────────────────────────────────────────────────────────────

export interface RawDfa {
  ruleNames: string[];
  ruleStart: number[];
  final: number[];
  /** Per state: [lo, hi, to] triples, sorted, disjoint. */
  bytes: number[][];
  /** Per state: [rule, to] pairs. */
  calls: number[][];
}

class DfaBuilder {
  final: number[] = [];
  bytes: number[][] = [];
  calls: number[][] = [];

  constructor(private readonly budget: number) {}

  /** Adds the DFA of one rule's NFA; returns its start state. */
  determinize(nfa: NfaBuilder, start: number, end: number, name: string): number {
    const n = nfa.states;
    // CSR of the NFA's edges by source state.
    const first = new Int32Array(n + 1);
    for (const f of nfa.from) first[f + 1]++;
    for (let i = 0; i < n; i++) first[i + 1] += first[i];
    const fill = first.slice(0, n);
    const edges = new Int32Array(nfa.from.length);
    nfa.from.forEach((f, e) => (edges[fill[f]++] = e));

    const stamp = new Int32Array(n);
    let generation = 0;
    const closure = (seeds: number[]): number[] => {
      generation++;
      const out: number[] = [];
      const stack = [...seeds];
      while (stack.length) {
        const s = stack.pop()!;
        if (stamp[s] === generation) continue;
        stamp[s] = generation;
        out.push(s);
        for (let i = first[s]; i < first[s + 1]; i++) {
          const e = edges[i];
          if (nfa.kind[e] === EPS) stack.push(nfa.to[e]);
        }
      }
      return out.sort((a, b) => a - b);
    };

    const ids = new Map<string, number>();
    const sets: number[][] = [];
    const intern = (set: number[]): number => {
      const key = set.join(',');
      let id = ids.get(key);
      if (id === undefined) {
        if (this.final.length >= this.budget) throw grammarError(name, `too large: over ${this.budget} automaton states after determinization`);
        id = this.final.length;
        ids.set(key, id);
        sets.push(set);
        this.final.push(0);
        this.bytes.push([]);
        this.calls.push([]);
      }
      return id;
    };
    const base = this.final.length;
    const startId = intern(closure([start]));
    for (let k = 0; k < sets.length; k++) {
      const id = base + k;
      const set = sets[k];
      const byteEdges: number[] = [];
      const callTargets = new Map<number, number[]>();
      for (const s of set) {
        if (s === end) this.final[id] = 1;
        for (let i = first[s]; i < first[s + 1]; i++) {
          const e = edges[i];
          if (nfa.kind[e] === BYTE) byteEdges.push(e);
          else if (nfa.kind[e] === CALL) {
            const list = callTargets.get(nfa.lo[e]) ?? [];
            list.push(nfa.to[e]);
            callTargets.set(nfa.lo[e], list);
          }
        }
      }
      this.bytes[id] = this.byteTransitions(nfa, byteEdges, closure, intern);
      for (const [rule, targets] of callTargets) this.calls[id].push(rule, intern(closure(targets)));
    }
    return startId;
  }

  /** Splits the bytes the edges cover into intervals with one target set each. */
  private byteTransitions(nfa: NfaBuilder, byteEdges: number[], closure: (s: number[]) => number[], intern: (s: number[]) => number): number[] {
    if (byteEdges.length === 0) return [];
    const points = new Set<number>();
    for (const e of byteEdges) {
      points.add(nfa.lo[e]);
      points.add(nfa.hi[e] + 1);
    }
    const cuts = [...points].sort((a, b) => a - b);
    const out: number[] = [];
    const seen = new Map<string, number>(); // intervals often share a target set: close it once
    for (let i = 0; i + 1 < cuts.length; i++) {
      const lo = cuts[i];
      const hi = cuts[i + 1] - 1;
      const targets: number[] = [];
      for (const e of byteEdges) if (nfa.lo[e] <= lo && hi <= nfa.hi[e]) targets.push(nfa.to[e]);
      if (targets.length === 0) continue;
      const key = targets.join(',');
      let to = seen.get(key);
      if (to === undefined) seen.set(key, (to = intern(closure(targets))));
      const last = out.length - 3;
      if (last >= 0 && out[last + 2] === to && out[last + 1] === lo - 1) out[last + 1] = hi;
      else out.push(lo, hi, to);
    }
    return out;
  }

  finish(ruleNames: string[], ruleStart: number[]): RawDfa {
    return { ruleNames, ruleStart, final: this.final, bytes: this.bytes, calls: this.calls };
  }
}

// The checks that make the matcher safe, run once on the raw DFAs:
//  - every rule can finish (a $ref cycle with no base case, a grammar that matches nothing:
//    refused, naming the rule);
//  - every state kept can still reach the end (dead branches, e.g. an empty character class
//    in one alternative, are cut), so a matcher is never in a state with no way out;
//  - no rule calls itself before reading a byte (left recursion would push forever).

import type { Automaton, RawDfa } from './automaton.js';
import { grammarError } from './expr.js';

export function analyse(raw: RawDfa): Automaton {
  const n = raw.final.length;
  const canFinish = finishable(raw);
  // Other rules first: a root that cannot finish because a $ref cycle cannot is better
  // reported at the cycle.
  for (let r = raw.ruleNames.length - 1; r >= 0; r--) {
    if (canFinish[raw.ruleStart[r]]) continue;
    throw grammarError(raw.ruleNames[r], r === 0 ? 'matches nothing' : 'can never finish (each way through it needs itself again, or matches nothing)');
  }

  // CSR, keeping only edges into states that can still finish.
  const edgeStart = new Int32Array(n + 1);
  const callStart = new Int32Array(n + 1);
  const lo: number[] = [];
  const hi: number[] = [];
  const to: number[] = [];
  const callRule: number[] = [];
  const callTo: number[] = [];
  for (let s = 0; s < n; s++) {
    const bytes = raw.bytes[s];
    for (let i = 0; i < bytes.length; i += 3) {
      if (!canFinish[bytes[i + 2]]) continue;
      lo.push(bytes[i]);
      hi.push(bytes[i + 1]);
      to.push(bytes[i + 2]);
    }
    const calls = raw.calls[s];
    for (let i = 0; i < calls.length; i += 2) {
      if (!canFinish[calls[i + 1]]) continue;
      callRule.push(calls[i]);
      callTo.push(calls[i + 1]);
    }
    edgeStart[s + 1] = to.length;
    callStart[s + 1] = callTo.length;
  }
  const final = Uint8Array.from(raw.final);
  const tailReturn = new Uint8Array(n);
  for (let s = 0; s < n; s++) {
    tailReturn[s] = Number(final[s] === 1 && edgeStart[s] === edgeStart[s + 1] && callStart[s] === callStart[s + 1]);
  }
  const automaton: Automaton = {
    numStates: n,
    ruleNames: raw.ruleNames,
    ruleStart: Int32Array.from(raw.ruleStart),
    final,
    edgeStart,
    edgeLo: Uint8Array.from(lo),
    edgeHi: Uint8Array.from(hi),
    edgeTo: Int32Array.from(to),
    callStart,
    callRule: Int32Array.from(callRule),
    callTo: Int32Array.from(callTo),
    tailReturn,
  };
  refuseLeftRecursion(automaton);
  return automaton;
}

/** 1 where some path from the state reaches the end of its rule (calls must finish too). */
function finishable(raw: RawDfa): Uint8Array {
  const n = raw.final.length;
  const done = new Uint8Array(n);
  const byteFrom: number[][] = Array.from({ length: n }, () => []);
  const callFrom: number[][] = Array.from({ length: n }, () => []); // [source, rule] pairs by target
  const callsOf: number[][] = raw.ruleNames.map(() => []); // [source, target] pairs by callee
  const startOf = new Map<number, number[]>();
  raw.ruleStart.forEach((s, r) => startOf.set(s, [...(startOf.get(s) ?? []), r]));
  for (let s = 0; s < n; s++) {
    const bytes = raw.bytes[s];
    for (let i = 2; i < bytes.length; i += 3) byteFrom[bytes[i]].push(s);
    const calls = raw.calls[s];
    for (let i = 0; i < calls.length; i += 2) {
      callFrom[calls[i + 1]].push(s, calls[i]);
      callsOf[calls[i]].push(s, calls[i + 1]);
    }
  }
  const queue: number[] = [];
  const mark = (s: number) => {
    if (!done[s]) {
      done[s] = 1;
      queue.push(s);
    }
  };
  raw.final.forEach((f, s) => f && mark(s));
  while (queue.length) {
    const t = queue.pop()!;
    for (const s of byteFrom[t]) mark(s);
    const callers = callFrom[t];
    for (let i = 0; i < callers.length; i += 2) if (done[raw.ruleStart[callers[i + 1]]]) mark(callers[i]);
    // t is a rule's start: that rule can now finish, so calls to it whose return state can are live.
    for (const r of startOf.get(t) ?? []) {
      const sites = callsOf[r];
      for (let i = 0; i < sites.length; i += 2) if (done[sites[i + 1]]) mark(sites[i]);
    }
  }
  return done;
}

/** Refuses a rule that can reach a call of itself without reading a byte. */
function refuseLeftRecursion(a: Automaton): void {
  const rules = a.ruleNames.length;
  // nullable[r]: rule r can finish without reading a byte.
  const nullable = new Uint8Array(rules);
  const nullState = Uint8Array.from(a.final);
  for (let changed = true; changed; ) {
    changed = false;
    for (let s = 0; s < a.numStates; s++) {
      if (nullState[s]) continue;
      for (let i = a.callStart[s]; i < a.callStart[s + 1]; i++) {
        if (nullable[a.callRule[i]] && nullState[a.callTo[i]]) {
          nullState[s] = 1;
          changed = true;
          break;
        }
      }
    }
    for (let r = 0; r < rules; r++) {
      if (!nullable[r] && nullState[a.ruleStart[r]]) {
        nullable[r] = 1;
        changed = true;
      }
    }
  }
  // leftCalls[r]: rules r may call before reading a byte.
  const leftCalls: number[][] = [];
  for (let r = 0; r < rules; r++) {
    const seen = new Set<number>([a.ruleStart[r]]);
    const stack = [a.ruleStart[r]];
    const callees = new Set<number>();
    while (stack.length) {
      const s = stack.pop()!;
      for (let i = a.callStart[s]; i < a.callStart[s + 1]; i++) {
        callees.add(a.callRule[i]);
        if (nullable[a.callRule[i]] && !seen.has(a.callTo[i])) {
          seen.add(a.callTo[i]);
          stack.push(a.callTo[i]);
        }
      }
    }
    leftCalls.push([...callees]);
  }
  const state = new Uint8Array(rules); // 0 new, 1 on path, 2 done
  const path: number[] = [];
  const visit = (r: number): void => {
    state[r] = 1;
    path.push(r);
    for (const q of leftCalls[r]) {
      if (state[q] === 1) {
        const cycle = [...path.slice(path.indexOf(q)), q].map((x) => a.ruleNames[x]);
        throw grammarError(a.ruleNames[q], `left-recursive (${cycle.join(' → ')}): it can call itself without reading anything`);
      }
      if (state[q] === 0) visit(q);
    }
    path.pop();
    state[r] = 2;
  };
  for (let r = 0; r < rules; r++) if (state[r] === 0) visit(r);
}

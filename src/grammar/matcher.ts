// Runs an automaton (automaton.ts) over bytes and turns a state into a token mask.
//
// A matcher's position is a CONFIGURATION: the set of stacks the text so far can be in (a
// set because alternatives may overlap for a while), each stack a chain of automaton states
// (the top is where we are, the others where to return after a call). Stacks and
// configurations are interned as integers, and `step(config, byte) → config` is memoized in
// a flat table, so inside a string (where almost every token is allowed) a walk over the
// whole vocabulary trie is one table lookup per trie node: ~330k lookups for a 150k
// vocabulary, a few ms. The mask of a configuration is cached too: a configuration seen
// before (the inside of a string, after each token) costs one copy.
//
// Caches are shared by every matcher of one CompiledGrammar and bounded: past
// MAX_CONFIGS configurations they are dropped between steps and rebuilt as needed.

import { SluiceError } from '../errors.js';
import type { Automaton } from './automaton.js';
import type { TokenVocabulary } from './vocabulary.js';

const UNKNOWN = -2; // memo entry not computed yet
const DEAD = -1; // no stack survives
const MAX_CONFIGS = 8192; // step memo: 8192 × 256 × 4 bytes = 8 MiB
const MASK_CACHE_BYTES = 32 << 20;

export class GrammarRuntime {
  // Stacks: (top state, parent stack) pairs; the parent's top is the return state. -1 = bottom.
  private readonly stackTop: number[] = [];
  private readonly stackParent: number[] = [];
  private readonly stackIds = new Map<number, number>();
  // Configurations: the sorted stacks whose top can read a byte, and whether the text may end here.
  private configStacks: Int32Array[] = [];
  private configCanEnd: number[] = [];
  private configIds = new Map<string, number>();
  private memo = new Int32Array(256 * 64).fill(UNKNOWN);
  private masks = new Map<number, Uint32Array>();
  private readonly maxMasks: number;
  /** Bumped when the caches are dropped; a matcher holding an older config id re-interns it. */
  generation = 0;
  // Closure scratch.
  private seen = new Int32Array(64);
  private seenMark = 0;
  private scanning: number[] = [];
  private canEnd = false;

  constructor(
    readonly automaton: Automaton,
    readonly vocab: TokenVocabulary,
  ) {
    this.maxMasks = Math.max(16, Math.floor(MASK_CACHE_BYTES / (vocab.maskWords * 4)));
  }

  /** The configuration before any text. */
  initial(): number {
    this.beginClosure();
    this.visit(this.stack(this.automaton.ruleStart[0], -1));
    return this.endClosure();
  }

  stacksOf(config: number): Int32Array {
    return this.configStacks[config];
  }

  canEndAt(config: number): boolean {
    return this.configCanEnd[config] === 1;
  }

  /** Re-interns a configuration by its stacks (after the caches were dropped). */
  configOf(stacks: Int32Array, canEnd: boolean): number {
    return this.internConfig(stacks, canEnd);
  }

  /** Drops the caches when they are over their bounds; call only between walks. */
  trim(): void {
    if (this.configStacks.length < MAX_CONFIGS) return;
    this.configStacks = [];
    this.configCanEnd = [];
    this.configIds = new Map();
    this.memo = new Int32Array(256 * 64).fill(UNKNOWN);
    this.masks.clear();
    this.generation++;
  }

  /** The configuration after `byte`, or DEAD. */
  step(config: number, byte: number): number {
    const cached = this.memo[config * 256 + byte];
    return cached === UNKNOWN ? this.computeStep(config, byte) : cached;
  }

  /** Sets the bit of every token whose bytes keep `config` alive (eos is the caller's). */
  fillMask(config: number, mask: Uint32Array): void {
    const hit = this.masks.get(config);
    if (hit) {
      this.masks.delete(config); // least recently used goes first
      this.masks.set(config, hit);
      mask.set(hit);
      mask.fill(0, hit.length); // a caller's buffer may be longer than the vocabulary needs
      return;
    }
    mask.fill(0);
    this.walk(config, mask);
    if (this.masks.size >= this.maxMasks) this.masks.delete(this.masks.keys().next().value!);
    this.masks.set(config, mask.slice(0, this.vocab.maskWords));
  }

  // The hot loop: a preorder walk of the token trie, one memoized step per node, skipping
  // a node's whole subtree as soon as its prefix is dead.
  private walk(config: number, mask: Uint32Array): void {
    const { byte, depth, skip, tokenStart, tokenIds, size, maxDepth } = this.vocab.trie;
    const states = new Int32Array(maxDepth + 1);
    states[0] = config;
    let memo = this.memo;
    let i = 1;
    while (i < size) {
      const from = states[depth[i] - 1];
      let to = memo[from * 256 + byte[i]];
      if (to === UNKNOWN) {
        to = this.computeStep(from, byte[i]);
        memo = this.memo; // may have grown
      }
      if (to === DEAD) {
        i = skip[i];
        continue;
      }
      states[depth[i]] = to;
      for (let k = tokenStart[i], end = tokenStart[i + 1]; k < end; k++) {
        const id = tokenIds[k];
        mask[id >>> 5] |= 1 << (id & 31);
      }
      i++;
    }
  }

  private computeStep(config: number, byte: number): number {
    const { edgeStart, edgeLo, edgeHi, edgeTo } = this.automaton;
    this.beginClosure();
    for (const st of this.configStacks[config]) {
      const top = this.stackTop[st];
      for (let e = edgeStart[top]; e < edgeStart[top + 1]; e++) {
        if (byte < edgeLo[e]) break;
        if (byte <= edgeHi[e]) {
          this.visit(this.stack(edgeTo[e], this.stackParent[st]));
          break;
        }
      }
    }
    const next = this.endClosure();
    this.memo[config * 256 + byte] = next;
    return next;
  }

  private stack(top: number, parent: number): number {
    const key = top * 0x1_0000_0000 + (parent + 1);
    let id = this.stackIds.get(key);
    if (id === undefined) {
      id = this.stackTop.length;
      this.stackTop.push(top);
      this.stackParent.push(parent);
      this.stackIds.set(key, id);
    }
    return id;
  }

  private beginClosure(): void {
    this.seenMark++;
    this.scanning.length = 0;
    this.canEnd = false;
  }

  /** Adds `start` and every stack reachable from it without reading a byte. */
  private visit(start: number): void {
    const a = this.automaton;
    const work = [start];
    while (work.length) {
      const st = work.pop()!;
      if (st >= this.seen.length) {
        const grown = new Int32Array(Math.max(st + 1, this.seen.length * 2));
        grown.set(this.seen);
        this.seen = grown;
      }
      if (this.seen[st] === this.seenMark) continue;
      this.seen[st] = this.seenMark;
      const top = this.stackTop[st];
      const parent = this.stackParent[st];
      if (a.edgeStart[top] < a.edgeStart[top + 1]) this.scanning.push(st);
      for (let c = a.callStart[top]; c < a.callStart[top + 1]; c++) {
        const back = a.callTo[c];
        // A call whose return state has nothing left to do returns straight to our parent
        // (tail call), so right recursion (`list ::= item ("," list)?`) keeps a flat stack.
        const returnTo = a.tailReturn[back] ? parent : this.stack(back, parent);
        work.push(this.stack(a.ruleStart[a.callRule[c]], returnTo));
      }
      if (a.final[top]) {
        if (parent < 0) this.canEnd = true;
        else work.push(parent);
      }
    }
  }

  private endClosure(): number {
    if (this.scanning.length === 0 && !this.canEnd) return DEAD;
    const stacks = Int32Array.from(this.scanning).sort();
    return this.internConfig(stacks, this.canEnd);
  }

  private internConfig(stacks: Int32Array, canEnd: boolean): number {
    const key = `${stacks.join(',')}${canEnd ? '$' : ''}`;
    let id = this.configIds.get(key);
    if (id !== undefined) return id;
    id = this.configStacks.length;
    this.configStacks.push(stacks);
    this.configCanEnd.push(canEnd ? 1 : 0);
    this.configIds.set(key, id);
    if (this.memo.length < (id + 1) * 256) {
      const grown = new Int32Array(this.memo.length * 2).fill(UNKNOWN);
      grown.set(this.memo);
      this.memo = grown;
    }
    return id;
  }
}

/** One generation's position in a grammar: ask for a mask, then accept the sampled token. */
export class GrammarMatcher {
  private config: number;
  private generation: number;
  private stacks: Int32Array;
  private endable: boolean;
  private eosAccepted = false;

  constructor(private readonly runtime: GrammarRuntime) {
    this.config = runtime.initial();
    this.generation = runtime.generation;
    this.stacks = runtime.stacksOf(this.config);
    this.endable = runtime.canEndAt(this.config);
  }

  /** The text so far is a complete match: eos is allowed. */
  get canEnd(): boolean {
    return this.endable && !this.eosAccepted;
  }

  /** Nothing but eos may follow (the grammar is complete and cannot go on), or eos was accepted. */
  get done(): boolean {
    return this.eosAccepted || (this.endable && this.stacks.length === 0);
  }

  /** Sets bit i of `mask` (word i>>5, bit i&31) for each token allowed next, clears the others. */
  fillMask(mask: Uint32Array): void {
    const words = this.runtime.vocab.maskWords;
    if (mask.length < words) throw new SluiceError('USAGE', `GrammarMatcher.fillMask: the mask has ${mask.length} words, the vocabulary needs ${words}`);
    if (this.eosAccepted) {
      mask.fill(0);
      return;
    }
    this.runtime.fillMask(this.current(), mask);
    if (this.endable) for (const id of this.runtime.vocab.eosIds) mask[id >>> 5] |= 1 << (id & 31);
  }

  /** Advances past token `id`; false (and no change) when the grammar does not allow it. */
  accept(id: number): boolean {
    if (this.eosAccepted) return false;
    const { vocab } = this.runtime;
    if (vocab.eosIds.includes(id)) {
      if (!this.endable) return false;
      this.eosAccepted = true;
      return true;
    }
    const bytes = vocab.bytesOf(id);
    if (!bytes) return false;
    let c = this.current();
    for (const b of bytes) {
      c = this.runtime.step(c, b);
      if (c < 0) return false;
    }
    this.config = c;
    this.stacks = this.runtime.stacksOf(c);
    this.endable = this.runtime.canEndAt(c);
    return true;
  }

  /** This matcher's config id, re-interned if the runtime dropped its caches since. */
  private current(): number {
    this.runtime.trim();
    if (this.generation !== this.runtime.generation) {
      this.config = this.runtime.configOf(this.stacks, this.endable);
      this.generation = this.runtime.generation;
    }
    return this.config;
  }
}

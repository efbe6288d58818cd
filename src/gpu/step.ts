// The step of a pass: what changes per forward call, in one small storage buffer that
// rope, kv_store and attention bind (binding 1 of each), written with one writeBuffer per
// call. Nothing else about a pass changes per call: every op's Params stays as prepare()
// wrote it, so a decode token costs one step write however many layers the model has.
//
//   WGSL (STEP_WGSL, pasted verbatim into each shader that reads it; a test checks):
//     struct StepRow { slot: u32, position: u32 }
//     struct Step { rows: u32, row: array<StepRow> }
//   bytes: rows (u32) at 0, then row r's (slot, position) at 4 + 8r.   // (1 + 2·maxRows) u32
//
// `rows` is this call's row count (≤ maxRows, the rows the pass is prepared for): kernels
// dispatch for maxRows and rows past `rows` exit at once, so a short prompt costs little.
// Row r of the pass's activations (its q, k, v, out rows) is token `position` of the
// sequence in KV cache slot `slot`.
//
// Slots (step 14, continuous batching): each sequence served owns one KV cache slot, and
// every layer's caches are (slots, nKvHeads, maxSeq, headDim). kv_store writes row r at
// cache offset (slot · nKvHeads · maxSeq + head · maxSeq + position) · headDim; attention
// reads, for row r, the keys of its own slot at positions ≤ its own position (causal per
// sequence; within a window if the layer has one); rope reads the position only. So one
// pass may hold a prefill chunk of one slot (consecutive positions), decode rows of
// different slots at unrelated positions, or both (rows of one slot are best kept
// adjacent: a prefill attention block splits its keys by runs of one slot). The positions
// of one slot in one step must be distinct (two rows storing one position race); they need
// not be consecutive (the kernels are tested with rows at [5, 9, 10]). With one slot (the
// default) every row is in slot 0 and the kernels do exactly what they did before slots.

import { SluiceError } from '../errors.js';

/** The WGSL declaration every kernel reading the step pastes (kept identical by a test). */
export const STEP_WGSL = `struct StepRow { slot: u32, position: u32 }
struct Step { rows: u32, row: array<StepRow> }`;

/** What a step is made for: the pass's rows, the cache's positions and slots. */
export interface StepShape {
  /** Rows the pass is prepared for (its dispatch size): a call runs 1 … rows of them. */
  readonly rows: number;
  /** Positions a slot of the KV cache holds (maxSeq): every position is below it. */
  readonly positions: number;
  /** KV cache slots: every row's slot is below it (default 1: slot 0 only). */
  readonly slots?: number;
}

export class Step {
  /** (1 + 2·maxRows) u32: rows, then per row (slot, position). STORAGE | COPY_DST | COPY_SRC. */
  readonly buffer: GPUBuffer;
  readonly maxRows: number;
  /** Every position written is below this (the cache length). */
  readonly positions: number;
  readonly slots: number;
  /** The host copy, reused by every write (no allocation per token). */
  private readonly host: Uint32Array;

  constructor(
    private readonly device: GPUDevice,
    readonly label: string,
    shape: StepShape,
  ) {
    const { rows, positions, slots = 1 } = shape;
    for (const [name, v] of Object.entries({ rows, positions, slots })) {
      if (!Number.isInteger(v) || v < 1 || v > 2 ** 31) throw new SluiceError('SHAPE_MISMATCH', `${label}: step ${name} = ${v} is not a positive integer`);
    }
    this.maxRows = rows;
    this.positions = positions;
    this.slots = slots;
    this.host = new Uint32Array(1 + 2 * rows);
    this.buffer = device.createBuffer({
      label: `${label}.step`,
      size: Math.ceil(this.host.byteLength / 16) * 16,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC, // COPY_SRC: read back by tests
      mappedAtCreation: true,
    });
    // Until the first write: every row, at positions 0 … rows − 1 (or 0) of slot 0.
    this.host[0] = rows;
    for (let r = 0; r < rows; r++) this.host[2 + 2 * r] = r < positions ? r : 0;
    new Uint32Array(this.buffer.getMappedRange()).set(this.host);
    this.buffer.unmap();
  }

  /** Rows [0, count) at positions start, start + 1, … of `slot`: one sequence's next tokens. */
  writeRange(start: number, count: number, slot = 0): void {
    this.checkCount(count);
    if (!Number.isInteger(start) || start < 0 || start + count > this.positions) {
      this.fail(`positions [${start}, ${start + count}) exceed the cache (${this.positions})`);
    }
    this.checkSlot(slot);
    const h = this.host;
    h[0] = count;
    for (let r = 0; r < count; r++) {
      h[1 + 2 * r] = slot;
      h[2 + 2 * r] = start + r;
    }
    this.upload(count);
  }

  /**
   * Row r at positions[r] of slots[r] (slot 0 without `slots`): any positions below the
   * cache length, distinct within a slot; e.g. a decode pass of R sequences, row r the
   * next token of the sequence in slots[r]. Pass typed arrays the caller reuses and nothing
   * is allocated per call.
   */
  write(positions: ArrayLike<number>, slots?: ArrayLike<number>): void {
    const count = positions.length;
    this.checkCount(count);
    if (slots && slots.length !== count) this.fail(`${slots.length} slots for ${count} rows`);
    const h = this.host;
    h[0] = count;
    for (let r = 0; r < count; r++) {
      const p = positions[r];
      const s = slots ? slots[r] : 0;
      if (!Number.isInteger(p) || p < 0 || p >= this.positions) this.fail(`row ${r}: position ${p} is outside the cache (${this.positions})`);
      this.checkSlot(s);
      h[1 + 2 * r] = s;
      h[2 + 2 * r] = p;
    }
    this.upload(count);
  }

  destroy(): void {
    this.buffer.destroy();
  }

  /** One writeBuffer of the rows in use, ordered with the next submit. */
  private upload(count: number): void {
    this.device.queue.writeBuffer(this.buffer, 0, this.host.buffer, 0, (1 + 2 * count) * 4);
  }

  private checkCount(count: number): void {
    if (!Number.isInteger(count) || count < 1 || count > this.maxRows) this.fail(`rows = ${count}, prepared for 1..${this.maxRows}`);
  }

  private checkSlot(slot: number): void {
    if (!Number.isInteger(slot) || slot < 0 || slot >= this.slots) this.fail(`slot ${slot} is not one of the ${this.slots} slots`);
  }

  private fail(why: string): never {
    throw new SluiceError('SHAPE_MISMATCH', `${this.label}: step ${why}`);
  }
}

/**
 * The check an op prepared over a step makes: the step's rows fit the op's buffers
 * (`rows` of them), its positions fit the op's cache (`maxSeq`) and its slots the cache's
 * `slots`, else why not.
 */
export function stepProblem(step: Step, rows: number, maxSeq: number, slots = 1): string | null {
  if (step.maxRows > rows) return `step ${step.label} has ${step.maxRows} rows, the buffers hold ${rows}`;
  if (step.positions > maxSeq) return `step ${step.label} allows positions up to ${step.positions}, the cache holds ${maxSeq}`;
  if (step.slots > slots) return `step ${step.label} allows slots up to ${step.slots}, the cache holds ${slots}`;
  return null;
}

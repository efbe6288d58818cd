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
//
// Token ids (issue 21: one writeBuffer per decoded token): a step made with `ids: true`
// also holds row r's token id, (maxRows,) u32 at byte `idsOffset`, the first multiple of
// the device's minStorageBufferOffsetAlignment past the rows; the embedding gather binds
// that range (`step.ids`), the other kernels never look past their rows. A write with ids
// uploads header, rows, the alignment gap and ids in one writeBuffer (from the host copy,
// gap included), so the ids cost no write of their own:
//   bytes: [rows | (slot, position)·maxRows | gap | id·maxRows]   // decode, alignment 256: 12 + 244 + 4 = 260 B

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
  /** Also hold each row's token id (the embedding's input), written with the rows: `Step.ids`. Default false. */
  readonly ids?: boolean;
}

export class Step {
  /**
   * (1 + 2·maxRows) u32: rows, then per row (slot, position); with ids, (maxRows,) u32 more
   * at idsOffset. STORAGE | COPY_DST | COPY_SRC.
   */
  readonly buffer: GPUBuffer;
  /** The token ids' range of `buffer`, (maxRows,) u32, for an embedding to bind; null without `ids`. */
  readonly ids: Readonly<GPUBufferBinding> | null;
  readonly maxRows: number;
  /** Every position written is below this (the cache length). */
  readonly positions: number;
  readonly slots: number;
  /** The host copy, reused by every write (no allocation per token); the gap before the ids stays 0. */
  private readonly host: Uint32Array;
  /** Byte offset of the ids in `buffer` (aligned for binding); the rows' end without ids. */
  private readonly idsOffset: number;

  constructor(
    private readonly device: GPUDevice,
    readonly label: string,
    shape: StepShape,
  ) {
    const { rows, positions, slots = 1, ids = false } = shape;
    for (const [name, v] of Object.entries({ rows, positions, slots })) {
      if (!Number.isInteger(v) || v < 1 || v > 2 ** 31) throw new SluiceError('SHAPE_MISMATCH', `${label}: step ${name} = ${v} is not a positive integer`);
    }
    this.maxRows = rows;
    this.positions = positions;
    this.slots = slots;
    const rowBytes = (1 + 2 * rows) * 4;
    // A binding's offset must be a multiple of this (WebGPU: 256 by default).
    const align = device.limits.minStorageBufferOffsetAlignment;
    this.idsOffset = ids ? Math.ceil(rowBytes / align) * align : rowBytes;
    this.host = new Uint32Array((this.idsOffset + (ids ? rows * 4 : 0)) / 4);
    this.buffer = device.createBuffer({
      label: `${label}.step`,
      size: Math.ceil(this.host.byteLength / 16) * 16,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC, // COPY_SRC: read back by tests
      mappedAtCreation: true,
    });
    // Until the first write: every row, at positions 0 … rows − 1 (or 0) of slot 0.
    this.host[0] = rows;
    for (let r = 0; r < rows; r++) this.host[2 + 2 * r] = r < positions ? r : 0;
    new Uint32Array(this.buffer.getMappedRange()).set(this.host); // ids: 0 until written
    this.buffer.unmap();
    this.ids = ids ? Object.freeze({ buffer: this.buffer, offset: this.idsOffset, size: rows * 4 }) : null;
  }

  /**
   * Rows [0, count) at positions start, start + 1, … of `slot`: one sequence's next tokens,
   * row r's token id ids[r] (a step made with `ids`; without them the ids are left as they were).
   */
  writeRange(start: number, count: number, slot = 0, ids?: ArrayLike<number>): void {
    this.checkCount(count);
    this.checkIds(ids, count);
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
    this.upload(count, ids);
  }

  /**
   * Row r at positions[r] of slots[r] (slot 0 without `slots`): any positions below the
   * cache length, distinct within a slot; e.g. a decode pass of R sequences, row r the
   * next token of the sequence in slots[r], its token id ids[r] (as writeRange). Pass arrays
   * the caller reuses and nothing is allocated per call.
   */
  write(positions: ArrayLike<number>, slots?: ArrayLike<number>, ids?: ArrayLike<number>): void {
    const count = positions.length;
    this.checkCount(count);
    if (slots && slots.length !== count) this.fail(`${slots.length} slots for ${count} rows`);
    this.checkIds(ids, count);
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
    this.upload(count, ids);
  }

  destroy(): void {
    this.buffer.destroy();
  }

  /**
   * One writeBuffer of the rows in use (and, given ids, the gap and the ids in use: one
   * write, not two), ordered with the next submit. The gap's bytes are the host copy's zeros.
   */
  private upload(count: number, ids: ArrayLike<number> | undefined): void {
    let bytes = (1 + 2 * count) * 4;
    if (ids) {
      const at = this.idsOffset / 4;
      for (let r = 0; r < count; r++) this.host[at + r] = ids[r];
      bytes = this.idsOffset + count * 4;
    }
    this.device.queue.writeBuffer(this.buffer, 0, this.host.buffer, 0, bytes);
  }

  /** Throws unless `ids` (if given) is one u32 per row and this step holds ids. */
  private checkIds(ids: ArrayLike<number> | undefined, count: number): void {
    if (!ids) return;
    if (!this.ids) this.fail('was made without ids (new Step(…, { ids: true }))');
    if (ids.length !== count) this.fail(`${ids.length} token ids for ${count} rows`);
    for (let r = 0; r < count; r++) {
      const id = ids[r];
      // Ids ≥ the vocab are the embedding's to zero; a non-u32 would wrap to some other id.
      if (!Number.isInteger(id) || id < 0 || id > 0xffffffff) this.fail(`row ${r}: token id ${id} is not a u32`);
    }
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

// One safetensors file, opened lazily: the header is read and validated on open (at most
// two reads), tensor bytes only when asked for.

import type { ExactShape } from '../../checkpoint/summary.js';
import type { Checkpoint, SliceRanges, TensorInfo, TensorSlice } from '../../checkpoint/types.js';
import { SluiceError, quote } from '../../errors.js';
import type { ByteSource } from '../../io/byte-source.js';
import { dtypeBytes } from '../dtypes.js';
import { checkTensorRange, planSlice } from '../slice.js';
import { PREFIX_BYTES, type SafetensorsHeader, type TensorEntry, parseHeader, parseHeaderLength } from './header.js';

/** The first read takes this much, so a typical header costs one read (one HTTP request). */
export const HEADER_PREFETCH = 64 * 1024;

/** Parallel reads of one slice; enough to keep an HTTP source busy, few enough for a file. */
const SLICE_READ_CONCURRENCY = 8;

export class SafetensorsFile implements Checkpoint {
  readonly format = 'safetensors';
  readonly files: string[];
  readonly metadata: Record<string, string>;
  private readonly byName: Map<string, TensorEntry>;

  private constructor(
    readonly source: ByteSource,
    readonly header: SafetensorsHeader,
  ) {
    this.files = [source.name];
    this.metadata = header.metadata ?? {};
    this.byName = header.byName;
  }

  /** Reads and validates the header. Takes ownership of `source` (closed on failure). */
  static async open(source: ByteSource): Promise<SafetensorsFile> {
    try {
      const first = await source.read(0, Math.min(source.size, PREFIX_BYTES + HEADER_PREFETCH));
      const n = parseHeaderLength(first, source.size, source.name);
      const end = PREFIX_BYTES + n;
      const json = end <= first.byteLength ? first.subarray(PREFIX_BYTES, end) : await source.read(PREFIX_BYTES, n);
      return new SafetensorsFile(source, parseHeader(json, source.size, source.name));
    } catch (e) {
      await source.close().catch(() => {});
      throw e;
    }
  }

  tensors(): TensorInfo[] {
    return this.header.tensors.map((t) => this.describe(t));
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  info(name: string): TensorInfo {
    return this.describe(this.entry(name));
  }

  async read(name: string): Promise<Uint8Array> {
    const t = this.entry(name);
    return this.source.read(this.header.dataStart + t.begin, t.end - t.begin);
  }

  async readRange(name: string, offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    const t = this.entry(name);
    const size = t.end - t.begin;
    checkTensorRange(this.source.name, name, offset, length, size);
    return this.source.read(this.header.dataStart + t.begin + offset, length, into);
  }

  async slice(name: string, ranges: SliceRanges): Promise<TensorSlice> {
    const t = this.entry(name);
    const where = `${this.source.name}: tensor ${quote(name)}`;
    const elementBytes = dtypeBytes(t.dtype);
    if (elementBytes === undefined) {
      throw new SluiceError('INVALID_SLICE', `${where}: cannot slice the sub-byte dtype ${t.dtype}; read it whole`);
    }
    const plan = planSlice(where, t.shape, elementBytes, ranges);
    const data = new Uint8Array(plan.byteLength);
    const base = this.header.dataStart + t.begin;
    let next = 0;
    let at = 0;
    const targets = plan.runs.map((run) => {
      const target = at;
      at += run.length;
      return target;
    });
    const worker = async () => {
      while (next < plan.runs.length) {
        const i = next++;
        const run = plan.runs[i];
        data.set(await this.source.read(base + run.offset, run.length), targets[i]);
      }
    };
    await Promise.all(Array.from({ length: Math.min(SLICE_READ_CONCURRENCY, plan.runs.length) }, worker));
    return { dtype: t.dtype, shape: plan.shape, data };
  }

  async close(): Promise<void> {
    await this.source.close();
  }

  private entry(name: string): TensorEntry {
    const t = this.byName.get(name);
    if (!t) throw new SluiceError('TENSOR_NOT_FOUND', `${this.source.name}: no tensor named ${quote(name)}`);
    return t;
  }

  private describe(t: TensorEntry): TensorInfo & ExactShape {
    const info: TensorInfo & ExactShape = { name: t.name, dtype: t.dtype, shape: [...t.shape], byteLength: t.end - t.begin, file: this.source.name };
    if (t.exactShape) info.exactShape = [...t.exactShape];
    return info;
  }
}

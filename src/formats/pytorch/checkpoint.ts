// A `torch.save` checkpoint (PyTorch >= 1.6 zip format) as a Checkpoint, without running
// Python: the zip directory is read, `data.pkl` is interpreted by the restricted unpickler,
// and tensor bytes come lazily from the `data/<key>` entries. Stored entries are plain byte
// ranges, so a contiguous tensor streams exactly like a safetensors one; views (transposes,
// steps, offsets) are gathered, big-endian storages swapped.

import type { Checkpoint, SliceRanges, TensorInfo, TensorSlice } from '../../checkpoint/types.js';
import { quote, SluiceError } from '../../errors.js';
import type { ByteSource } from '../../io/byte-source.js';
import { copyInto } from '../../io/range.js';
import { dtypeBytes } from '../dtypes.js';
import { checkTensorRange, planSlice } from '../slice.js';
import { dims } from './pickle-globals.js';
import { MAX_BYTEORDER_BYTES, MAX_OVERLAP_BYTES, MAX_PICKLE_BYTES } from './limits.js';
import { isContiguous, stridedIndices, swapBytes } from './strided.js';
import type { TensorRef } from './types.js';
import { unpickle } from './unpickler.js';
import { findTensors } from './walk.js';
import { type ZipEntry, ZipReader } from './zip.js';


interface Located {
  ref: TensorRef;
  elementBytes: number;
  byteLength: number;
  contiguous: boolean;
  entry: ZipEntry;
}

export class PytorchCheckpoint implements Checkpoint {
  readonly format = 'pytorch';
  readonly files: string[];

  private constructor(
    private readonly zip: ZipReader,
    private readonly source: ByteSource,
    private readonly located: Map<string, Located>,
    readonly metadata: Record<string, string>,
    private readonly bigEndian: boolean,
  ) {
    this.files = [source.name];
  }

  /** Opens a torch.save zip. Takes ownership of `source` (closed on failure). */
  static async open(source: ByteSource): Promise<PytorchCheckpoint> {
    try {
      await refuseLegacy(source);
      const zip = await ZipReader.open(source);
      const root = zip.root();
      const pickleEntry = zip.entry(`${root}data.pkl`);
      if (!pickleEntry) throw new SluiceError('INVALID_ZIP', `${source.name}: a zip, but not a torch.save checkpoint (no ${root}data.pkl)`);
      // Both entries are refused by their declared size before a byte is inflated; `read`
      // stops inflating as soon as the output passes that size, in case it lies.
      const pkl = await zip.read(pickleEntry, tooBig(source.name, pickleEntry, MAX_PICKLE_BYTES, 'a checkpoint\'s pickle'));
      const order = zip.entry(`${root}byteorder`);
      const byteorder = order ? new TextDecoder().decode(await zip.read(order, tooBig(source.name, order, MAX_BYTEORDER_BYTES, '"little" or "big"'))).trim() : 'little';
      if (byteorder !== 'little' && byteorder !== 'big') {
        throw new SluiceError('INVALID_ZIP', `${source.name}: unknown byteorder ${quote(byteorder)}`);
      }
      const value = unpickle(pkl, { name: source.name });
      const { tensors, metadata } = findTensors(value, source.name);
      const located = new Map<string, Located>();
      const overlap = { bytes: 0 };
      for (const [name, ref] of tensors) located.set(name, locate(source.name, zip, root, name, ref, overlap));
      return new PytorchCheckpoint(zip, source, located, metadata, byteorder === 'big');
    } catch (e) {
      await source.close().catch(() => {});
      throw e;
    }
  }

  tensors(): TensorInfo[] {
    return [...this.located.keys()].map((name) => this.info(name));
  }

  has(name: string): boolean {
    return this.located.has(name);
  }

  info(name: string): TensorInfo {
    const { ref, byteLength } = this.get(name);
    return { name, dtype: ref.storage.dtype, shape: [...ref.shape], byteLength, file: this.source.name };
  }

  read(name: string): Promise<Uint8Array> {
    return this.readRange(name, 0, this.get(name).byteLength);
  }

  async readRange(name: string, offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    const t = this.get(name);
    checkTensorRange(this.source.name, name, offset, length, t.byteLength);
    if (length === 0) return new Uint8Array(0);
    const { offset: base } = await this.zip.dataRange(t.entry);
    const start = base + t.ref.storageOffset * t.elementBytes;
    // The common case, a contiguous little-endian tensor, reads in place; the others
    // (byte-swapped or strided) are assembled first, then copied.
    if (t.contiguous && !this.bigEndian) return this.source.read(start + offset, length, into);
    const bytes = await this.assembleRange(t, start, offset, length);
    return into ? copyInto(into, bytes) : bytes;
  }

  private async assembleRange(t: Located, start: number, offset: number, length: number): Promise<Uint8Array> {
    const es = t.elementBytes;
    if (t.contiguous) {
      // Swap whole elements: widen to element bounds, swap, cut back.
      const lo = offset - (offset % es);
      const hi = Math.ceil((offset + length) / es) * es;
      const whole = await this.source.read(start + lo, hi - lo);
      swapBytes(whole, es);
      return whole.subarray(offset - lo, offset - lo + length);
    }
    // Strided: gather the elements covering [offset, offset + length) from their storage span.
    const first = Math.floor(offset / es);
    const count = Math.ceil((offset + length) / es) - first;
    const { indices, min, max } = stridedIndices(t.ref.shape, t.ref.stride, first, count);
    const span = await this.source.read(start + min * es, (max - min + 1) * es);
    const gathered = new Uint8Array(count * es);
    for (let n = 0; n < count; n++) {
      const from = (indices[n] - min) * es;
      gathered.set(span.subarray(from, from + es), n * es);
    }
    if (this.bigEndian) swapBytes(gathered, es);
    return gathered.subarray(offset - first * es, offset - first * es + length);
  }

  async slice(name: string, ranges: SliceRanges): Promise<TensorSlice> {
    const t = this.get(name);
    const plan = planSlice(`${this.source.name}: tensor ${quote(name)}`, t.ref.shape, t.elementBytes, ranges);
    const data = new Uint8Array(plan.byteLength);
    let at = 0;
    for (const run of plan.runs) {
      data.set(await this.readRange(name, run.offset, run.length), at);
      at += run.length;
    }
    return { dtype: t.ref.storage.dtype, shape: plan.shape, data };
  }

  async close(): Promise<void> {
    await this.zip.close();
  }

  private get(name: string): Located {
    const t = this.located.get(name);
    if (!t) throw new SluiceError('TENSOR_NOT_FOUND', `${this.source.name}: no tensor named ${quote(name)}`);
    return t;
  }
}

/** An entry's declared size must be within `limit`; returns `limit` for `ZipReader.read`. */
function tooBig(file: string, entry: ZipEntry, limit: number, holds: string): number {
  if (entry.size > limit) {
    throw new SluiceError('INVALID_ZIP', `${file}: zip entry ${quote(entry.name)} inflates to ${entry.size} bytes, more than the ${limit} sluice reads for ${holds}`);
  }
  return limit;
}

/**
 * Checks a tensor against its storage entry before anything reads it, and bounds its
 * logical size: a view may only read bytes its storage holds, and views that overlap
 * themselves (stride 0) may add at most MAX_OVERLAP_BYTES in all (`overlap` counts them
 * across the checkpoint), so reading every tensor costs at most the file plus 1 GiB.
 */
function locate(file: string, zip: ZipReader, root: string, name: string, ref: TensorRef, overlap: { bytes: number }): Located {
  const where = `${file}: tensor ${quote(name)}`;
  const storage = quote(ref.storage.key);
  const es = dtypeBytes(ref.storage.dtype);
  if (es === undefined) throw new SluiceError('UNSUPPORTED_DTYPE', `${where}: ${ref.storage.dtype} is not byte-addressable`);
  const entry = zip.entry(`${root}data/${ref.storage.key}`);
  if (!entry) throw new SluiceError('INVALID_ZIP', `${where}: its storage ${quote(`${root}data/${ref.storage.key}`)} is missing`);
  if (entry.method !== 0) {
    throw new SluiceError('UNSUPPORTED_FORMAT', `${where}: its storage is compressed; torch.save writes them stored (re-save it with torch.save)`);
  }
  if (entry.size < ref.storage.numel * es) {
    throw new SluiceError('INVALID_ZIP', `${where}: storage ${storage} holds ${entry.size} bytes, less than its ${ref.storage.numel} × ${ref.storage.dtype}`);
  }
  const view = () => `its view (offset ${ref.storageOffset}, shape ${dims(ref.shape)}, stride ${dims(ref.stride)})`;
  const numel = ref.shape.reduce((a, b) => a * b, 1);
  const byteLength = numel * es;
  if (numel > 0) {
    const last = ref.storageOffset + ref.shape.reduce((a, d, i) => a + (d - 1) * ref.stride[i], 0);
    const lowest = ref.storageOffset + ref.shape.reduce((a, d, i) => a + Math.min(0, (d - 1) * ref.stride[i]), 0);
    if (lowest < 0 || last >= ref.storage.numel) {
      throw new SluiceError('INVALID_PICKLE', `${where}: ${view()} reads past its storage of ${ref.storage.numel} elements`);
    }
    // Elements beyond the span it reads can only be repeats: an overlapping view.
    const extra = byteLength - (last - lowest + 1) * es;
    if (extra > 0) {
      overlap.bytes += extra;
      if (!Number.isSafeInteger(byteLength) || overlap.bytes > MAX_OVERLAP_BYTES) {
        throw new SluiceError(
          'INVALID_PICKLE',
          `${where}: ${view()} is an overlapping view of ${byteLength} bytes over ${(last - lowest + 1) * es} bytes of storage ${storage}; sluice reads at most ${MAX_OVERLAP_BYTES} bytes of repeats in all`,
        );
      }
    }
  }
  return { ref, elementBytes: es, byteLength, contiguous: isContiguous(ref.shape, ref.stride), entry };
}

/**
 * Torch's formats before 1.6 are a bare pickle stream (magic number first) or a tar file:
 * refuse them by name, with the one-line fix, rather than as a corrupt zip.
 */
async function refuseLegacy(source: ByteSource): Promise<void> {
  const head = await source.read(0, Math.min(source.size, 512));
  const zipMagic = head[0] === 0x50 && head[1] === 0x4b;
  if (zipMagic || source.size < 2) return;
  const fix = "load and re-save it with PyTorch >= 1.6 (torch.save(torch.load(f), f2)), then sluice can read or convert it";
  if (head[0] === 0x80) {
    throw new SluiceError('UNSUPPORTED_FORMAT', `${source.name}: a legacy (pre-1.6, non-zip) torch.save file; ${fix}`);
  }
  if (head.length >= 262 && new TextDecoder().decode(head.subarray(257, 262)) === 'ustar') {
    throw new SluiceError('UNSUPPORTED_FORMAT', `${source.name}: a legacy tar-format torch.save file (PyTorch < 0.4); ${fix}`);
  }
}

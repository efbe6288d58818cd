// Plans a sub-block read (`tensor[a:b, c:d, ...]`) of a row-major tensor as the fewest
// contiguous byte runs: trailing dimensions taken whole merge into the run of the last
// partial dimension, so a row slice is one read and a column slice one read per row.

import { SluiceError } from '../errors.js';

export interface SlicePlan {
  /** Shape of the result. */
  shape: number[];
  /** Byte runs relative to the tensor start, in output order; adjacent runs are merged. */
  runs: Array<{ offset: number; length: number }>;
  byteLength: number;
}

/** Reads beyond this many separate runs are refused instead of issuing millions of reads. */
export const MAX_SLICE_RUNS = 1 << 20;

export function planSlice(
  where: string,
  shape: readonly number[],
  elementBytes: number,
  ranges: ReadonlyArray<readonly [number, number]>,
): SlicePlan {
  if (ranges.length > shape.length) {
    throw new SluiceError('INVALID_SLICE', `${where}: ${ranges.length} ranges for a tensor of rank ${shape.length}`);
  }
  const full = shape.map((d, i): [number, number] => (i < ranges.length ? [ranges[i][0], ranges[i][1]] : [0, d]));
  full.forEach(([start, stop], i) => {
    const ok = Number.isInteger(start) && Number.isInteger(stop) && 0 <= start && start <= stop && stop <= shape[i];
    if (!ok) {
      throw new SluiceError('INVALID_SLICE', `${where}: range ${start}:${stop} is outside dimension ${i} of size ${shape[i]}`);
    }
  });
  const outShape = full.map(([a, b]) => b - a);
  const total = outShape.reduce((a, b) => a * b, 1);
  if (total === 0) return { shape: outShape, runs: [], byteLength: 0 };

  // Row-major strides in bytes.
  const strides = new Array<number>(shape.length);
  let stride = elementBytes;
  for (let i = shape.length - 1; i >= 0; i--) {
    strides[i] = stride;
    stride *= shape[i];
  }
  // k = the innermost dimension that is not taken whole; everything after it is contiguous.
  let k = shape.length - 1;
  while (k >= 0 && full[k][0] === 0 && full[k][1] === shape[k]) k--;
  if (k < 0) return { shape: outShape, runs: [{ offset: 0, length: total * elementBytes }], byteLength: total * elementBytes };

  const runLength = outShape[k] * strides[k];
  const runCount = outShape.slice(0, k).reduce((a, b) => a * b, 1);
  if (runCount > MAX_SLICE_RUNS) {
    throw new SluiceError('INVALID_SLICE', `${where}: slice needs ${runCount} separate reads; read the tensor whole instead`);
  }
  const runs: SlicePlan['runs'] = [];
  const index = full.slice(0, k).map(([a]) => a); // odometer over dims 0..k-1
  for (let r = 0; r < runCount; r++) {
    let offset = full[k][0] * strides[k];
    for (let i = 0; i < k; i++) offset += index[i] * strides[i];
    const last = runs[runs.length - 1];
    if (last && last.offset + last.length === offset) last.length += runLength;
    else runs.push({ offset, length: runLength });
    for (let i = k - 1; i >= 0; i--) {
      if (++index[i] < full[i][1]) break;
      index[i] = full[i][0];
    }
  }
  return { shape: outShape, runs, byteLength: total * elementBytes };
}

/** Throws INVALID_SLICE unless bytes [offset, offset + length) lie within a tensor of `size` bytes. */
export function checkTensorRange(file: string, name: string, offset: number, length: number, size: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > size) {
    throw new SluiceError('INVALID_SLICE', `${file}: bytes ${offset}..${offset + length} are outside tensor ${JSON.stringify(name)} (${size} bytes)`);
  }
}

// Bytes of a strided view (a transposed weight, a slice with a step) in contiguous
// row-major order, gathered from the bytes of the storage span it touches.

/** Whether the view's elements are already back to back in row-major order. */
export function isContiguous(shape: readonly number[], stride: readonly number[]): boolean {
  let expected = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    // A dimension of size 1 (or an empty tensor) never steps, whatever its stride says.
    if (shape[i] === 0) return true;
    if (shape[i] !== 1 && stride[i] !== expected) return false;
    expected *= shape[i];
  }
  return true;
}

/**
 * Storage element indices (relative to the view's storage offset) of the view's elements
 * first..first+count-1 in row-major order, plus their minimum and maximum.
 */
export function stridedIndices(shape: readonly number[], stride: readonly number[], first: number, count: number) {
  const rank = shape.length;
  const index = new Array<number>(rank).fill(0);
  let rest = first;
  for (let i = rank - 1; i >= 0; i--) {
    index[i] = rest % shape[i];
    rest = Math.floor(rest / shape[i]);
  }
  let at = index.reduce((a, x, i) => a + x * stride[i], 0);
  const out = new Float64Array(count);
  let min = Infinity;
  let max = -Infinity;
  for (let n = 0; n < count; n++) {
    out[n] = at;
    if (at < min) min = at;
    if (at > max) max = at;
    // Odometer step: the last dimension fastest.
    for (let i = rank - 1; i >= 0; i--) {
      index[i]++;
      at += stride[i];
      if (index[i] < shape[i]) break;
      at -= stride[i] * shape[i];
      index[i] = 0;
    }
  }
  return { indices: out, min, max };
}

/** Reverses the bytes of each `width`-byte element in place (big-endian storages). */
export function swapBytes(bytes: Uint8Array, width: number): void {
  if (width <= 1) return;
  for (let at = 0; at + width <= bytes.length; at += width) {
    for (let a = at, b = at + width - 1; a < b; a++, b--) {
      const t = bytes[a];
      bytes[a] = bytes[b];
      bytes[b] = t;
    }
  }
}

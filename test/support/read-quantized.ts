// A QuantizedTensor read back into the host layout (HostQuantized): packed words, the scale
// values as stored (f16 decoded exactly), zero points as signed (q8) or unsigned (q4)
// integers, chunks concatenated. For comparing kernels that write the layout with their
// TypeScript references.

import { f16ToF32Bits } from '../../src/formats/float-bits.js';
import { alignUp } from '../../src/gpu/gpu-tensor.js';
import { ELEMENTS_PER_WORD, type HostQuantized, type QuantizedTensor } from '../../src/gpu/quantized-tensor.js';
import { readBuffer } from '../../src/gpu/read-back.js';

export async function readQuantized(device: GPUDevice, t: QuantizedTensor): Promise<HostQuantized> {
  const [n, k] = t.shape;
  const groups = k / t.groupSize;
  const epw = ELEMENTS_PER_WORD[t.kind];
  const data = new Uint32Array((n * k) / epw);
  const scales = new Float32Array(n * groups);
  const zeros = t.hasZeros ? new Int32Array(n * groups) : undefined;
  const bits = new Uint32Array(1);
  const value = new Float32Array(bits.buffer);
  for (const c of t.chunks) {
    const words = (c.rows * k) / epw;
    const d = await readBuffer(device, c.data, 0, words * 4);
    data.set(new Uint32Array(d.buffer, d.byteOffset, words), (c.firstRow * k) / epw);
    const count = c.rows * groups;
    const s = await readBuffer(device, c.scales, 0, alignUp(count * (t.scaleDtype === 'F16' ? 2 : 4), 4));
    const view = new DataView(s.buffer, s.byteOffset, s.byteLength);
    for (let i = 0; i < count; i++) {
      bits[0] = t.scaleDtype === 'F16' ? f16ToF32Bits(view.getUint16(2 * i, true)) : view.getUint32(4 * i, true);
      scales[c.firstRow * groups + i] = value[0];
    }
    if (zeros && c.zeros) {
      const z = await readBuffer(device, c.zeros, 0, alignUp(count, 4));
      for (let i = 0; i < count; i++) zeros[c.firstRow * groups + i] = t.kind === 'q8' ? (z[i] << 24) >> 24 : z[i];
    }
  }
  return { data, scales, zeros };
}

/** null when equal element by element (NaN equals NaN, +0 equals −0); else the first difference. */
export function arrayMismatch(what: string, got: ArrayLike<number>, want: ArrayLike<number>): string | null {
  if (got.length !== want.length) return `${what}: length ${got.length}, expected ${want.length}`;
  let bad = 0;
  let first = -1;
  for (let i = 0; i < want.length; i++) {
    if (got[i] === want[i] || (Number.isNaN(got[i]) && Number.isNaN(want[i]))) continue;
    if (first < 0) first = i;
    bad++;
  }
  return bad ? `${what}: ${bad} of ${want.length} differ; first [${first}] got ${got[first]}, expected ${want[first]}` : null;
}

/** null when two host copies are equal: words, scale values, zero points. */
export function hostMismatch(got: HostQuantized, want: HostQuantized): string | null {
  if ((got.zeros === undefined) !== (want.zeros === undefined)) return `zeros: ${got.zeros ? 'present' : 'absent'}, expected ${want.zeros ? 'present' : 'absent'}`;
  return arrayMismatch('data', got.data, want.data) ?? arrayMismatch('scales', got.scales, want.scales) ?? (got.zeros ? arrayMismatch('zeros', got.zeros, want.zeros!) : null);
}

// Quantized test weights (the qgemv and qmatmul tests): random packed data in sluice's
// layout, uploaded as a QuantizedTensor, optionally row-chunked.

import {
  createQuantizedTensor, ELEMENTS_PER_WORD, type HostQuantized, type QuantizedTensor, type QuantKind, type ScaleDtype, writeQuantized,
} from '../../src/gpu/quantized-tensor.js';
import { roundF16 } from './op-helpers.js';

/** Random packed weights: every bit pattern, f16-valued positive scales, zero points in range. */
export function randomQuantized(rng: () => number, kind: QuantKind, n: number, k: number, groupSize: number, zeros: boolean): HostQuantized {
  const data = new Uint32Array((n * k) / ELEMENTS_PER_WORD[kind]).map(() => Math.floor(rng() * 2 ** 32));
  const groups = (n * k) / groupSize;
  const scales = new Float32Array(groups).map(() => roundF16(0.002 + 0.03 * rng()));
  const z = zeros ? new Int32Array(groups).map(() => (kind === 'q4' ? Math.floor(rng() * 16) : Math.floor(rng() * 256) - 128)) : undefined;
  return { data, scales, zeros: z };
}

/** `host` as a QuantizedTensor (n, k); `chunked`: about three row-chunks. */
export function uploadQuantized(
  device: GPUDevice,
  host: HostQuantized,
  layout: { kind: QuantKind; n: number; k: number; groupSize: number; scaleDtype: ScaleDtype },
  chunked: boolean,
): QuantizedTensor {
  const { kind, n, k, groupSize, scaleDtype } = layout;
  const wordsPerRow = k / ELEMENTS_PER_WORD[kind];
  const maxChunkBytes = chunked ? 16 + Math.ceil(n / 3) * wordsPerRow * 4 : undefined;
  const weight = createQuantizedTensor(device, 'test.qw', { kind, shape: [n, k], groupSize, scaleDtype, hasZeros: host.zeros !== undefined }, maxChunkBytes);
  writeQuantized(device, weight, host);
  return weight;
}

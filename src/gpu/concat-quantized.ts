// Concatenating quantized weights by rows into one, on the GPU (buffer copies, nothing through
// the host): the quantized counterpart of concatRows (concat-rows.ts). q, k and v (or gate
// and up) quantized on load become one [q; k; v] tensor, so a quantized layer runs one qgemv
// where it ran three, as the dense layers do.
//
// A row of a quantized tensor is a row of each of its buffers (data, scales, zeros: layout in
// quantized-tensor.ts), so joining rows is joining each buffer's rows. Buffer copies move
// 4-byte words at 4-byte offsets: data rows always are (K / EPW words), scale and zero rows
// are whenever K / G groups make a multiple of 4 bytes (f16 scales: an even group count;
// zeros: a multiple of 4), true of every Llama-family shape at G = 32/64/128. Otherwise a part
// that starts mid-word cannot be placed by copies, and the join is refused (the caller keeps
// the parts separate).

import { createQuantizedTensor, destroyQuantized, type QuantizedTensor, rowBytes } from './quantized-tensor.js';

type Buffers = 'data' | 'scales' | 'zeros';

interface Copy {
  part: QuantizedTensor;
  buffer: Buffers;
  src: GPUBuffer;
  srcOffset: number;
  dst: GPUBuffer;
  dstOffset: number;
  size: number;
  /** The copy's first row in the result (for the error). */
  row: number;
}

/**
 * Whether every buffer's rows of this layout are whole 4-byte words, so that any parts of it
 * join (concatQuantizedRows may still join others, e.g. even row counts, or refuse them).
 */
export function rowsWordAligned(t: Pick<QuantizedTensor, 'kind' | 'shape' | 'groupSize' | 'scaleDtype' | 'hasZeros'>): boolean {
  const per = rowBytes(t.kind, t.shape[1], t.groupSize, t.scaleDtype, t.hasZeros);
  return per.data % 4 === 0 && per.scales % 4 === 0 && per.zeros % 4 === 0;
}

/** A part's layout in words, for errors. */
function describe(t: QuantizedTensor): string {
  return `${t.kind} [${t.shape.join(', ')}] group size ${t.groupSize}, ${t.scaleDtype} scales, ${t.hasZeros ? 'with' : 'without'} zero points`;
}

/**
 * One quantized tensor `name` whose rows are the rows of `parts` in order, chunked as
 * createQuantizedTensor chunks (whole rows, no buffer past `maxChunkBytes`). The parts must
 * agree on kind, K, group size, scale storage and zero points. Encodes the copies and
 * submits them; the caller may destroy the parts once the queue has finished them.
 */
export function concatQuantizedRows(device: GPUDevice, name: string, parts: readonly QuantizedTensor[], maxChunkBytes = device.limits.maxStorageBufferBindingSize): QuantizedTensor {
  if (parts.length === 0) throw new Error(`${name}: nothing to concatenate`);
  const [first] = parts;
  for (const p of parts) {
    const same = p.kind === first.kind && p.shape[1] === first.shape[1] && p.groupSize === first.groupSize && p.scaleDtype === first.scaleDtype && p.hasZeros === first.hasZeros;
    if (!same) throw new Error(`${name}: cannot join ${p.name} (${describe(p)}) to ${first.name} (${describe(first)})`);
  }
  const [, k] = first.shape;
  const total = parts.reduce((n, p) => n + p.shape[0], 0);
  const out = createQuantizedTensor(device, name, { kind: first.kind, shape: [total, k], groupSize: first.groupSize, scaleDtype: first.scaleDtype, hasZeros: first.hasZeros }, maxChunkBytes);
  const copies = planCopies(out, parts);
  const misaligned = copies.find((c) => c.srcOffset % 4 !== 0 || c.dstOffset % 4 !== 0);
  if (misaligned) {
    destroyQuantized(out);
    const per = rowBytes(first.kind, k, first.groupSize, first.scaleDtype, first.hasZeros)[misaligned.buffer];
    throw new Error(
      `${name}: cannot join ${misaligned.part.name}: its ${misaligned.buffer} rows are ${per} bytes, so row ${misaligned.row} of the join starts mid-word in a buffer (copies move 4-byte words)`,
    );
  }
  const encoder = device.createCommandEncoder({ label: `concat.${name}` });
  // Sizes rounded up to whole words: a copy whose size is not is the last one into its
  // destination (the next would start mid-word, refused above), so the extra bytes land in
  // the buffer's padding; they come from the source's padding or its following rows.
  for (const c of copies) encoder.copyBufferToBuffer(c.src, c.srcOffset, c.dst, c.dstOffset, Math.ceil(c.size / 4) * 4);
  device.queue.submit([encoder.finish()]);
  return out;
}

/** The copies that fill `out` with the parts' rows, in order of destination within each buffer. */
function planCopies(out: QuantizedTensor, parts: readonly QuantizedTensor[]): Copy[] {
  const per = rowBytes(out.kind, out.shape[1], out.groupSize, out.scaleDtype, out.hasZeros);
  const buffers: Buffers[] = out.hasZeros ? ['data', 'scales', 'zeros'] : ['data', 'scales'];
  const copies: Copy[] = [];
  for (const dst of out.chunks) {
    let start = 0; // the part's first row in the result
    for (const part of parts) {
      for (const src of part.chunks) {
        const a = Math.max(dst.firstRow, start + src.firstRow);
        const b = Math.min(dst.firstRow + dst.rows, start + src.firstRow + src.rows);
        if (a >= b) continue;
        for (const buffer of buffers) {
          const rb = per[buffer];
          // zeros is in `buffers` only when the tensors have them.
          copies.push({ part, buffer, src: src[buffer]!, srcOffset: (a - start - src.firstRow) * rb, dst: dst[buffer]!, dstOffset: (a - dst.firstRow) * rb, size: (b - a) * rb, row: a });
        }
      }
      start += part.shape[0];
    }
  }
  return copies;
}

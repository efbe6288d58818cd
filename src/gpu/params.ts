// The `Params` uniform of an op: runtime shapes, strides, offsets and constants, in one
// struct mirrored field by field by a ParamsLayout here. Shapes never go into shader text,
// so one compiled pipeline serves every shape.
//
//   WGSL:  struct Params { rows: u32, cols: u32, eps: f32 }
//   TS:    const PARAMS = new ParamsLayout([['rows', 'u32'], ['cols', 'u32'], ['eps', 'f32']]);
//
// Scalars only (4 bytes each, in order): the uniform layout of such a struct is the
// fields packed, its size rounded up to 16 bytes.

export type ParamType = 'u32' | 'i32' | 'f32';

export class ParamsLayout<K extends string> {
  /** Bytes of the uniform buffer: 4 per field, rounded up to 16. */
  readonly byteSize: number;

  constructor(readonly fields: readonly (readonly [K, ParamType])[]) {
    this.byteSize = Math.max(16, Math.ceil((fields.length * 4) / 16) * 16);
  }

  /** The values packed as the WGSL struct lays them out. Throws on a missing or bad value. */
  pack(values: Readonly<Record<K, number>>, into = new ArrayBuffer(this.byteSize)): ArrayBuffer {
    const view = new DataView(into);
    this.fields.forEach(([name, type], i) => {
      const v = values[name];
      if (typeof v !== 'number' || Number.isNaN(v)) throw new Error(`params: ${name} must be a number, got ${String(v)}`);
      if (type === 'f32') view.setFloat32(i * 4, v, true);
      else {
        const [lo, hi] = type === 'u32' ? [0, 2 ** 32 - 1] : [-(2 ** 31), 2 ** 31 - 1];
        if (!Number.isInteger(v) || v < lo || v > hi) throw new Error(`params: ${name} = ${v} is not a ${type}`);
        if (type === 'u32') view.setUint32(i * 4, v, true);
        else view.setInt32(i * 4, v, true);
      }
    });
    return into;
  }

  /** A uniform buffer holding `values` (COPY_DST, so write() can update it). */
  createBuffer(device: GPUDevice, label: string, values: Readonly<Record<K, number>>): GPUBuffer {
    const buffer = device.createBuffer({
      label: `${label}.params`,
      size: this.byteSize,
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
      mappedAtCreation: true,
    });
    this.pack(values, buffer.getMappedRange());
    buffer.unmap();
    return buffer;
  }

  /**
   * Rewrites a params buffer on the queue timeline (in order with submits). Packs into
   * one reused scratch buffer (writeBuffer copies it at once), so a per-token update
   * allocates nothing.
   */
  write(device: GPUDevice, buffer: GPUBuffer, values: Readonly<Record<K, number>>): void {
    this.scratch ??= new ArrayBuffer(this.byteSize);
    device.queue.writeBuffer(buffer, 0, this.pack(values, this.scratch));
  }

  private scratch: ArrayBuffer | undefined;
}

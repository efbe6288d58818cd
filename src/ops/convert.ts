// Launcher of shaders/convert.wgsl: storage dtype → compute dtype for one piece of a
// tensor already on the GPU (the uploader's staging copy). Bit-exact; see the shader.

import type { Dtype } from '../formats/dtypes.js';
import { workgroups1d } from '../gpu/dispatch.js';
import { pipelineCache } from '../gpu/pipeline-cache.js';
import { bindBuffers, type ComputeDtype } from './op.js';

/** Threads per workgroup. */
export const CONVERT_WORKGROUP = 256;

/**
 * Elements per invocation (fixed in the shader: one vec4 of f16 out, two of f32). Pieces
 * start at multiples of it, so every piece begins on a 16-byte boundary of its chunk.
 */
export const ELEMENTS_PER_INVOCATION = 8;

export type { ComputeDtype } from './op.js';

/** The storage dtypes the kernel converts (others are copied as they are). */
export const CONVERTIBLE: readonly Dtype[] = ['F32', 'F16', 'BF16'];

/** True when storing `from` as `to` needs the kernel (not a plain byte copy). */
export function needsConversion(from: Dtype, to: Dtype): boolean {
  return from !== to && CONVERTIBLE.includes(from) && (to === 'F32' || to === 'F16');
}

export function convertPipelineKey(from: Dtype, to: ComputeDtype): string {
  return `convert_${from.toLowerCase()}_to_${to.toLowerCase()}_wg${CONVERT_WORKGROUP}`;
}

/** The converter of one (from, to) pair, its pipeline compiled once per device. */
export class Converter {
  private constructor(
    private readonly device: GPUDevice,
    private readonly pipeline: GPUComputePipeline,
    readonly from: Dtype,
    readonly to: ComputeDtype,
  ) {}

  static async create(device: GPUDevice, from: Dtype, to: ComputeDtype): Promise<Converter> {
    if (!needsConversion(from, to)) throw new Error(`convert: no kernel for ${from} → ${to}`);
    const pipeline = await pipelineCache(device).get(convertPipelineKey(from, to), {
      shader: 'convert',
      flags: [`SRC_${from}`, ...(to === 'F16' ? ['DST_F16'] : [])],
      constants: { WORKGROUP_SIZE: CONVERT_WORKGROUP },
    });
    return new Converter(device, pipeline, from, to);
  }

  /**
   * Encodes: `count` elements packed from byte 0 of `src` → `dst` from element
   * `dstElement` (a multiple of ELEMENTS_PER_INVOCATION). `params` is a 16-byte uniform
   * written now with queue.writeBuffer: submit this encoder before encoding another
   * piece with the same `params`.
   */
  encode(
    encoder: GPUCommandEncoder,
    src: GPUBuffer,
    dst: GPUBuffer,
    dstElement: number,
    count: number,
    params: GPUBuffer,
  ): void {
    if (dstElement % ELEMENTS_PER_INVOCATION !== 0) throw new Error(`convert: piece starts at element ${dstElement}, not a multiple of 8`);
    const dstVec = (dstElement * (this.to === 'F16' ? 2 : 4)) / 16;
    this.device.queue.writeBuffer(params, 0, new Uint32Array([count, dstVec, 0, 0]));
    const bindGroup = bindBuffers(this.device, this.pipeline, `${this.pipeline.label}.bind`, [params, src, dst]);
    const pass = encoder.beginComputePass({ label: this.pipeline.label });
    pass.setPipeline(this.pipeline);
    pass.setBindGroup(0, bindGroup);
    const maxGroups = this.device.limits.maxComputeWorkgroupsPerDimension;
    pass.dispatchWorkgroups(...workgroups1d(Math.ceil(count / ELEMENTS_PER_INVOCATION), CONVERT_WORKGROUP, maxGroups));
    pass.end();
  }
}

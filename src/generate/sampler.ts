// Sampling on the GPU at the end of each forward pass: the sample kernel reads the
// logits, the repetition history lives on the GPU, and the host reads back 4 bytes.
// Everything is made once per model; a token costs two 4-byte writes (its id into the
// history, the Params step) and one 4-byte read.

import type { LlamaModel } from '../model/llama.js';
import { encodeOp } from '../ops/op.js';
import { Sample, type PreparedSample, type SamplingParams } from '../ops/sample.js';

export class GpuSampler {
  private step = 0;
  private readonly id = new Uint32Array(1);

  private constructor(
    private readonly model: LlamaModel,
    private readonly op: PreparedSample,
    private readonly history: GPUBuffer, // (contextLength,) u32: every id in the cache, in order
    private readonly out: GPUBuffer, // (1,) u32 the sampled id
    private readonly readback: GPUBuffer, // (1,) u32, MAP_READ
    private params: SamplingParams,
  ) {}

  static async create(model: LlamaModel, params: SamplingParams): Promise<GpuSampler> {
    const { device } = model;
    const sample = await Sample.create(device);
    const history = device.createBuffer({ label: 'sampler.history', size: Math.ceil((model.contextLength * 4) / 16) * 16, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
    const out = device.createBuffer({ label: 'sampler.out', size: 16, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
    const readback = device.createBuffer({ label: 'sampler.readback', size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const op = sample.prepare('sampler', model.config.vocabSize, { logits: model.logits, history, out }, { ...params, step: 0, historyLength: 0 });
    return new GpuSampler(model, op, history, out, readback, params);
  }

  /** New parameters for the next request (a new seed restarts the RNG stream). */
  configure(params: SamplingParams): void {
    this.params = params;
    this.step = 0;
  }

  /** Records ids now in the cache at positions [start, start + ids.length), for the penalty. */
  remember(ids: readonly number[], start: number): void {
    if (ids.length === 1) {
      this.id[0] = ids[0]; // the per-token case: no allocation
      this.model.device.queue.writeBuffer(this.history, start * 4, this.id);
    } else if (ids.length) this.model.device.queue.writeBuffer(this.history, start * 4, new Uint32Array(ids));
  }

  /**
   * Runs the model on `ids` at `start` with sampling in the same command buffer, and
   * returns the sampled id. The penalty sees every id up to and including these.
   */
  async next(ids: readonly number[], start: number): Promise<number> {
    this.remember(ids, start);
    this.op.write({ ...this.params, step: this.step++, historyLength: start + ids.length });
    await this.model.forward(ids, start, (encoder) => {
      const pass = encoder.beginComputePass({ label: 'sampler' });
      encodeOp(pass, this.op);
      pass.end();
      encoder.copyBufferToBuffer(this.out, 0, this.readback, 0, 4);
    });
    await this.readback.mapAsync(GPUMapMode.READ, 0, 4);
    this.id.set(new Uint32Array(this.readback.getMappedRange(0, 4))); // a view on the mapping, copied out
    this.readback.unmap();
    return this.id[0];
  }

  destroy(): void {
    this.op.destroy();
    for (const b of [this.history, this.out, this.readback]) b.destroy();
  }
}

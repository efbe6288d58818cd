// One cache of compute pipelines per device, keyed by a readable name that is also the
// pipeline's label (`convert_bf16_to_f16_wg256`), so Dawn's messages say which variant.
// Pipelines are built once (at load time) and reused; nothing here runs per token.

import { SluiceError } from '../errors.js';
import { preprocessWgsl, wgslLocation } from './wgsl-preprocess.js';
import { shaderSource } from './shader-library.js';

export interface PipelineSpec {
  /** Basename of `shaders/<shader>.wgsl`. */
  shader: string;
  /** Preprocessor flags of the variant (see wgsl-preprocess.ts). */
  flags?: readonly string[];
  /** Values of the shader's `override`s: the launcher's constants, so no number lives in two files. */
  constants?: Readonly<Record<string, number>>;
  entryPoint?: string;
}

export class PipelineCache {
  private readonly modules = new Map<string, GPUShaderModule>();
  private readonly pipelines = new Map<string, Promise<GPUComputePipeline>>();

  constructor(readonly device: GPUDevice) {}

  /** The shader module of one variant, compiled once. */
  module(shader: string, flags: readonly string[] = []): GPUShaderModule {
    const key = [shader, ...[...flags].sort()].join('+');
    let module = this.modules.get(key);
    if (!module) {
      const code = preprocessWgsl(shaderSource(shader), shader, flags);
      module = this.device.createShaderModule({ label: key, code });
      this.modules.set(key, module);
    }
    return module;
  }

  /**
   * The pipeline named `key`, compiled asynchronously the first time. A shader that does
   * not compile rejects with a one-line error naming the variant and the first message.
   */
  get(key: string, spec: PipelineSpec): Promise<GPUComputePipeline> {
    let pipeline = this.pipelines.get(key);
    if (!pipeline) {
      pipeline = this.build(key, spec);
      this.pipelines.set(key, pipeline);
      pipeline.catch(() => this.pipelines.delete(key)); // a failure is not cached
    }
    return pipeline;
  }

  private async build(key: string, spec: PipelineSpec): Promise<GPUComputePipeline> {
    const module = this.module(spec.shader, spec.flags);
    try {
      return await this.device.createComputePipelineAsync({
        label: key,
        layout: 'auto',
        compute: { module, entryPoint: spec.entryPoint ?? 'main', constants: { ...spec.constants } },
      });
    } catch (e) {
      const info = await module.getCompilationInfo();
      const first = info.messages.find((m) => m.type === 'error');
      // The compiler counts lines of the expanded text: wgslLocation maps one back through the includes.
      const code = first && preprocessWgsl(shaderSource(spec.shader), spec.shader, spec.flags);
      const where = first ? `${wgslLocation(code!, spec.shader, first.lineNum)}, column ${first.linePos}: ${first.message}` : (e as Error).message;
      throw new SluiceError('SHADER_ERROR', `pipeline ${key} does not compile: ${where.replace(/\s*\n\s*/g, ' ')}`, {
        cause: e,
      });
    }
  }
}

const caches = new WeakMap<GPUDevice, PipelineCache>();

/** The device's pipeline cache (one per device, made on first use). */
export function pipelineCache(device: GPUDevice): PipelineCache {
  let cache = caches.get(device);
  if (!cache) {
    cache = new PipelineCache(device);
    caches.set(device, cache);
  }
  return cache;
}

// Node: a safetensors file written to disk, streaming and atomically: the plan's prefix
// and each tensor's chunks go to a sibling temp file as they are produced (small chunks
// gathered into one write), and the temp file replaces `path` only once it is complete.

import { type FileHandle } from 'node:fs/promises';
import { SluiceError, isSluiceError } from '../../errors.js';
import { writeAll, writeFileAtomic } from '../../io/atomic-file.js';
import { type SafetensorsPlan, type TensorToWrite, planSafetensors, streamSafetensors } from './writer.js';

export interface WriteSafetensorsOptions {
  /** `__metadata__`; omitted from the header when null or undefined. */
  metadata?: Record<string, string> | null;
}

export interface WrittenFile {
  path: string;
  /** The file's size. */
  bytes: number;
}

/** Chunks smaller than this are gathered; 1 MiB per write keeps syscalls few. */
const GATHER_BYTES = 1 << 20;

/**
 * Writes `tensors` to `path` laid out as the reference writer lays them out. The file
 * appears whole or not at all: a refusal, a producer error or a crash leaves whatever was
 * at `path` before, and no temp file. Errors name `path`.
 */
export async function writeSafetensors(path: string, tensors: readonly TensorToWrite[], options: WriteSafetensorsOptions = {}): Promise<WrittenFile> {
  let plan: SafetensorsPlan;
  try {
    plan = planSafetensors(tensors, options.metadata);
  } catch (e) {
    throw withPath(path, e);
  }
  return writeSafetensorsPlan(path, plan);
}

/** Writes a plan made by `planSafetensors` (each producer is called once, here). */
export async function writeSafetensorsPlan(path: string, plan: SafetensorsPlan): Promise<WrittenFile> {
  try {
    await writeFileAtomic(path, async (handle) => {
      const out = new GatheringWriter(handle, path);
      for await (const chunk of streamSafetensors(plan)) await out.write(chunk);
      await out.flush();
      if (out.position !== plan.size) {
        throw new SluiceError('IO_ERROR', `${path}: wrote ${out.position} bytes but the file should be ${plan.size}`);
      }
    });
    return { path, bytes: plan.size };
  } catch (e) {
    throw withPath(path, e);
  }
}

/** Sequential positional writes, gathering small chunks into one buffer. */
class GatheringWriter {
  position = 0;
  private readonly buffer = new Uint8Array(GATHER_BYTES);
  private used = 0;

  constructor(
    private readonly handle: FileHandle,
    private readonly path: string,
  ) {}

  async write(chunk: Uint8Array): Promise<void> {
    const large = chunk.byteLength >= GATHER_BYTES / 4;
    if (large || this.used + chunk.byteLength > GATHER_BYTES) await this.flush();
    if (large) {
      // Straight from the producer's buffer, no copy.
      await writeAll(this.handle, chunk, this.position, this.path);
      this.position += chunk.byteLength;
    } else {
      // Copied now, because a producer may reuse its buffer for the next chunk.
      this.buffer.set(chunk, this.used);
      this.used += chunk.byteLength;
    }
  }

  async flush(): Promise<void> {
    if (this.used === 0) return;
    await writeAll(this.handle, this.buffer.subarray(0, this.used), this.position, this.path);
    this.position += this.used;
    this.used = 0;
  }
}

/** A SluiceError that names `path` (if it did not already); other errors unchanged. */
export function withPath(path: string, e: unknown): unknown {
  if (!isSluiceError(e) || e.message.startsWith(`${path}:`)) return e;
  return new SluiceError(e.code, `${path}: ${e.message}`, { cause: e });
}

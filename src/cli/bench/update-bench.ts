// `sluice bench update`: what an in-place update saves over rewriting the file.
//
// Builds a safetensors file of `sizeMiB` (default 1 GiB: 64 tensors of 16 MiB, F16
// (4096, 2048)), then times, R times each, interleaved:
//   (a) updateCheckpoint replacing one 16 MiB tensor in place (journal + overwrite + fsyncs);
//   (b) the same change by rewriting the whole file, as tools without in-place updates must:
//       writeSafetensors with every tensor streamed from the old file (temp, fsync, rename).
// Napkin math at ~500 MB/s: (a) writes 2 × 16 MiB ≈ 70 ms, (b) writes 1 GiB ≈ 2 s: ~30×.
// The goal is ratio ≥ 20×. Both runs start from a warm page cache (the file was just
// written), so the ratio is a ratio of bytes written and synced, not of cold reads.

import { randomFillSync } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openCheckpoint } from '../../checkpoint/open-path.js';
import { SluiceError } from '../../errors.js';
import { COPY_CHUNK } from '../../formats/safetensors/journal.js';
import { updateCheckpoint } from '../../formats/safetensors/update.js';
import { writeSafetensors } from '../../formats/safetensors/write-file.js';
import type { TensorToWrite } from '../../formats/safetensors/writer.js';
import type { Checkpoint } from '../../checkpoint/types.js';

export const UPDATE_GOAL = 20;
const TENSOR_MIB = 16;
const MiB = 1 << 20;

export interface UpdateBenchOptions {
  /** Where to put the temp directory (default: the OS temp dir). */
  dir?: string;
  /** File size in MiB (default 1024); tensors are 16 MiB, or one tensor when smaller. */
  sizeMiB?: number;
  /** Timed runs of each method (default 3). */
  repeat?: number;
  /** Progress lines, for a terminal. */
  onStep?: (what: string) => void;
}

export interface UpdateBenchResult {
  file_bytes: number;
  tensor_bytes: number;
  tensors: number;
  repeat: number;
  /** Medians, milliseconds. */
  update_ms: number;
  rewrite_ms: number;
  update_runs_ms: number[];
  rewrite_runs_ms: number[];
  /** rewrite_ms / update_ms. */
  ratio: number;
  goal: number;
  pass: boolean;
}

export async function benchUpdate(options: UpdateBenchOptions = {}): Promise<UpdateBenchResult> {
  const sizeMiB = options.sizeMiB ?? 1024;
  const repeat = options.repeat ?? 3;
  if (!Number.isSafeInteger(sizeMiB) || sizeMiB < 1) throw new SluiceError('USAGE', 'bench update: --size-mib must be a positive integer');
  if (!Number.isSafeInteger(repeat) || repeat < 1) throw new SluiceError('USAGE', 'bench update: --repeat must be a positive integer');
  const tensorMiB = Math.min(TENSOR_MIB, sizeMiB);
  const count = Math.floor(sizeMiB / tensorMiB);
  const tensorBytes = tensorMiB * MiB;
  const step = options.onStep ?? (() => {});

  const dir = await mkdtemp(join(options.dir ?? tmpdir(), 'sluice-bench-update-'));
  try {
    const file = join(dir, 'model.safetensors');
    // One random 16 MiB block serves every tensor (content does not matter to the timing;
    // the first 4 bytes carry the tensor's index so no two are equal).
    const block = randomFillSync(new Uint8Array(tensorBytes));
    const names = Array.from({ length: count }, (_, i) => `model.layers.${i}.mlp.weight`);
    const shape = [tensorMiB * 256, 2048]; // (rows, 2048) F16 = tensorMiB MiB
    step(`writing ${count} tensors of ${tensorMiB} MiB to ${file}`);
    const written = await writeSafetensors(
      file,
      names.map((name, i): TensorToWrite => ({ name, dtype: 'F16', shape, data: () => stamped(block, i) })),
      { metadata: { format: 'pt' } },
    );

    // Two patch versions of the middle tensor, alternated so every run changes its bytes.
    const target = names[Math.floor(count / 2)];
    const patches: Checkpoint[] = [];
    for (const v of [0, 1]) {
      const path = join(dir, `patch-${v}.safetensors`);
      await writeSafetensors(path, [{ name: target, dtype: 'F16', shape, data: () => stamped(block, 1_000_000 + v) }]);
      patches.push(await openCheckpoint(path));
    }
    const update: number[] = [];
    const rewrite: number[] = [];
    try {
      for (let r = 0; r < repeat; r++) {
        step(`run ${r + 1}/${repeat}: in-place update`);
        update.push(await timed(() => updateCheckpoint(file, { from: patches[r % 2] })));
        step(`run ${r + 1}/${repeat}: full rewrite`);
        rewrite.push(await timed(() => rewriteWhole(file, patches[(r + 1) % 2], target)));
      }
    } finally {
      await Promise.all(patches.map((p) => p.close()));
    }
    const updateMs = median(update);
    const rewriteMs = median(rewrite);
    const ratio = rewriteMs / updateMs;
    return {
      file_bytes: written.bytes,
      tensor_bytes: tensorBytes,
      tensors: count,
      repeat,
      update_ms: round(updateMs),
      rewrite_ms: round(rewriteMs),
      update_runs_ms: update.map(round),
      rewrite_runs_ms: rewrite.map(round),
      ratio: round(ratio),
      goal: UPDATE_GOAL,
      pass: ratio >= UPDATE_GOAL,
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Replaces `name` by rewriting the whole file: every tensor streamed from the old one. */
async function rewriteWhole(file: string, patch: Checkpoint, name: string): Promise<void> {
  const old = await openCheckpoint(file);
  try {
    const tensors = old.tensors().map((t): TensorToWrite => ({
      name: t.name,
      dtype: t.dtype,
      shape: t.shape,
      data: () => stream(t.name === name ? patch : old, t.name, t.byteLength),
    }));
    await writeSafetensors(file, tensors, { metadata: old.metadata });
  } finally {
    await old.close();
  }
}

async function* stream(from: Checkpoint, name: string, length: number): AsyncIterable<Uint8Array> {
  for (let at = 0; at < length; at += COPY_CHUNK) yield await from.readRange(name, at, Math.min(COPY_CHUNK, length - at));
}

/** `block` with its first 4 bytes set to `i` (a copy: the writer may hold the previous one). */
async function* stamped(block: Uint8Array, i: number): AsyncIterable<Uint8Array> {
  const out = new Uint8Array(block);
  new DataView(out.buffer).setUint32(0, i, true);
  yield out;
}

async function timed(run: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await run();
  return performance.now() - t0;
}

/** The middle value (the mean of the two middle ones for an even count). */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

const round = (x: number) => Math.round(x * 10) / 10;

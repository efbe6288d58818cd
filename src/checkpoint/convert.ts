// Node: any checkpoint → an HF-layout safetensors directory, as `save_pretrained` writes one
// (`model.safetensors`, or shards + `model.safetensors.index.json`), then checked by reading
// it back.
//
//   input.readRange ──16 MiB chunks──▶ [F32/F16/BF16 conversion] ──▶ writeShardedSafetensors
//                                        └─ sha256 of what was produced ─▶ compared with the
//                                           reopened output, tensor by tensor
//
// Memory stays at about one chunk (plus its converted copy) whatever the checkpoint's size.
// Every name is written with its own bytes: tied weights (lm_head = embed_tokens, one
// storage under two names in a .bin) become two tensors, as transformers writes them
// after untying. The Checkpoint interface does not say which names shared a storage, so
// nothing about it is recorded.

import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { readdir, realpath, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { isSluiceError, SluiceError } from '../errors.js';
import { tempPathFor } from '../io/atomic-file.js';
import { fileError } from '../io/file-source.js';
import { ModelFolder } from '../io/model-folder.js';
import { bf16ToF32Bits, f16ToF32Bits, f32ToBf16Bits, f32ToF16Bits } from '../formats/float-bits.js';

export { bf16ToF32Bits, f16ToF32Bits, f32ToBf16Bits, f32ToF16Bits };
import { openRegularFile } from '../io/safe-open.js';
import { type Dtype, dtypeBytes } from '../formats/dtypes.js';
import { writeShardedSafetensors } from '../formats/safetensors/sharded-writer.js';
import type { TensorToWrite } from '../formats/safetensors/writer.js';
import { CHECKSUM_CHUNK, tensorSha256 } from './checksum.js';
import { openCheckpoint } from './open-path.js';
import type { Checkpoint, TensorInfo } from './types.js';

export type ConvertDtype = 'keep' | 'f16' | 'bf16' | 'f32';
export const CONVERT_DTYPES: readonly ConvertDtype[] = ['keep', 'f16', 'bf16', 'f32'];

/**
 * The files besides the weights that a model directory needs (config, tokenizer, chat
 * template, as transformers reads them): copied by convert when present, always pulled.
 */
export const SIDE_FILES = [
  'config.json',
  'generation_config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'tokenizer.model',
  'added_tokens.json',
  'vocab.json',
  'merges.txt',
  'chat_template.jinja',
  'chat_template.json',
] as const;

export interface ConvertOptions {
  /** Largest shard, bytes or "5GB"/"500MiB" (see parseSize). Default 5 GB, as transformers. */
  maxShardSize?: number | string;
  /** F32/F16/BF16 tensors are converted (round to nearest even); other dtypes are kept. */
  dtype?: ConvertDtype;
  /** Where SIDE_FILES are copied from (the input's directory); nothing is copied without it. */
  sourceDir?: string;
  /** Write into an OUT_DIR that already holds safetensors files (they are replaced). */
  force?: boolean;
  /** Bytes just written or verified, of `total` for that phase. */
  onProgress?: (phase: 'write' | 'verify', bytes: number, total: number) => void;
}

export interface ConvertReport {
  outDir: string;
  /** Safetensors files written, in shard order. */
  files: string[];
  /** The index written, or null for a single file. */
  index: string | null;
  /** Base names of the side files copied. */
  copied: string[];
  tensors: number;
  /** Tensor bytes written (the index's total_size). */
  bytes: number;
  dtype: ConvertDtype;
  /** Tensors whose dtype changed. */
  converted: number;
  /** With a --dtype: tensors left as they were because they are not F32/F16/BF16, by dtype. */
  unconverted: Record<string, number>;
  /** Tensors whose name, dtype, shape and sha256 matched on reading the output back. */
  verified: number;
}

const TARGET: Record<Exclude<ConvertDtype, 'keep'>, FloatDtype> = { f16: 'F16', bf16: 'BF16', f32: 'F32' };
const OUTPUT_NAME = /^model(-\d{5}-of-\d{5})?\.safetensors$|^model\.safetensors\.index\.json$/;

/**
 * Writes `input`'s tensors into `outDir` as safetensors, copies the side files from
 * `sourceDir`, then reopens what was written and compares every tensor's sha256 with the
 * bytes produced for it (the input's, or their conversion). Throws before writing when
 * `outDir` already holds safetensors (unless `force`) or would overwrite the input.
 */
export async function convertCheckpoint(input: Checkpoint, outDir: string, options: ConvertOptions = {}): Promise<ConvertReport> {
  const dtype = options.dtype ?? 'keep';
  if (!CONVERT_DTYPES.includes(dtype)) throw new SluiceError('USAGE', `convert: unknown dtype ${JSON.stringify(dtype)} (use ${CONVERT_DTYPES.join(', ')})`);
  await checkOutDir(input, outDir, Boolean(options.force));

  const plan = input.tensors().map((t) => planTensor(t, dtype));
  const unconverted: Record<string, number> = {};
  if (dtype !== 'keep') for (const { info } of plan) if (!isFloat(info.dtype)) unconverted[info.dtype] = (unconverted[info.dtype] ?? 0) + 1;
  const total = plan.reduce((a, p) => a + p.outBytes, 0);
  const hashes = new Map<string, string>();
  const tensors: TensorToWrite[] = plan.map((p) => ({
    name: p.info.name,
    dtype: p.outDtype,
    shape: p.info.shape,
    data: () => produce(input, p, hashes, (n) => options.onProgress?.('write', n, total)),
  }));
  const metadata = { format: 'pt', ...input.metadata };
  const written = await writeShardedSafetensors(outDir, tensors, { maxShardSize: options.maxShardSize, metadata });
  const copied = options.sourceDir ? await copySideFiles(options.sourceDir, outDir) : [];

  const output = await openCheckpoint(written.index ?? written.files[0]);
  let verified = 0;
  try {
    const names = new Set(output.tensors().map((t) => t.name));
    for (const p of plan) {
      const name = p.info.name;
      if (!names.delete(name)) throw verifyError(outDir, `tensor ${JSON.stringify(name)} is missing from the output`);
      const got = output.info(name);
      if (got.dtype !== p.outDtype || got.shape.join() !== p.info.shape.join()) {
        throw verifyError(outDir, `tensor ${JSON.stringify(name)} reads back as ${got.dtype} [${got.shape}], not ${p.outDtype} [${p.info.shape}]`);
      }
      const sum = await tensorSha256(output, name, (n) => options.onProgress?.('verify', n, total));
      if (sum !== hashes.get(name)) throw verifyError(outDir, `tensor ${JSON.stringify(name)} reads back with sha256 ${sum}, not ${hashes.get(name)}`);
      verified++;
    }
    if (names.size) throw verifyError(outDir, `the output holds tensors the input does not: ${[...names].slice(0, 5).join(', ')}`);
  } finally {
    await output.close();
  }
  return {
    outDir,
    files: written.files,
    index: written.index,
    copied,
    tensors: plan.length,
    bytes: written.totalSize,
    dtype,
    converted: plan.filter((p) => p.convert).length,
    unconverted,
    verified,
  };
}

// ─── streaming ────────────────────────────────────────────────────────────────────────

interface TensorPlan {
  info: TensorInfo;
  outDtype: Dtype;
  /** Set when the dtype changes. */
  convert?: { from: FloatDtype; to: FloatDtype };
  outBytes: number;
}

function planTensor(info: TensorInfo, dtype: ConvertDtype): TensorPlan {
  if (dtype === 'keep' || !isFloat(info.dtype) || info.dtype === TARGET[dtype]) return { info, outDtype: info.dtype, outBytes: info.byteLength };
  const to = TARGET[dtype];
  const elements = info.byteLength / dtypeBytes(info.dtype)!;
  return { info, outDtype: to, convert: { from: info.dtype, to }, outBytes: elements * dtypeBytes(to)! };
}

/** One tensor's output bytes in chunks, hashing them as they go. */
async function* produce(input: Checkpoint, p: TensorPlan, hashes: Map<string, string>, onBytes: (n: number) => void): AsyncGenerator<Uint8Array> {
  const hash = createHash('sha256');
  const { name, byteLength } = p.info;
  // CHECKSUM_CHUNK (16 MiB) is a multiple of every element size, so chunks hold whole elements.
  for (let at = 0; at < byteLength; at += CHECKSUM_CHUNK) {
    const chunk = await input.readRange(name, at, Math.min(CHECKSUM_CHUNK, byteLength - at));
    const out = p.convert ? convertFloats(chunk, p.convert.from, p.convert.to) : chunk;
    hash.update(out);
    onBytes(out.byteLength);
    yield out;
  }
  hashes.set(name, hash.digest('hex'));
}

// ─── output directory and side files ──────────────────────────────────────────────────

async function checkOutDir(input: Checkpoint, outDir: string, force: boolean): Promise<void> {
  let names: string[];
  try {
    names = await readdir(outDir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw fileError(outDir, e);
  }
  const existing = names.filter((n) => n.endsWith('.safetensors') || n.endsWith('.safetensors.index.json'));
  if (existing.length && !force) {
    throw new SluiceError('USAGE', `convert: ${outDir} already holds ${existing.slice(0, 3).join(', ')}${existing.length > 3 ? ', …' : ''}; pass --force to replace them`);
  }
  // Even with --force, never write over the files being read.
  const out = await realpath(outDir);
  for (const file of input.files) {
    const abs = await realpath(file).catch(() => resolve(file));
    if (dirname(abs) === out && OUTPUT_NAME.test(basename(abs))) {
      throw new SluiceError('USAGE', `convert: ${outDir} is where the input ${basename(abs)} lives; write to another directory`);
    }
  }
}

async function copySideFiles(sourceDir: string, outDir: string): Promise<string[]> {
  const copied: string[] = [];
  // The input folder is untrusted: a side file that is a symlink out of it is refused,
  // not copied (it would carry, say, ~/.ssh/id_rsa into OUT_DIR as tokenizer.model).
  const folder = await ModelFolder.open(sourceDir);
  for (const name of SIDE_FILES) {
    const from = await folder.resolve(name).catch((e: unknown) => {
      if (isSluiceError(e, 'NOT_FOUND')) return null;
      throw e;
    });
    if (from === null || !(await stat(from)).isFile()) continue;
    const to = join(outDir, name);
    const same = await realpath(to).then((t) => t === from, () => false);
    if (!same) {
      // Copied under a temp name and renamed, so OUT_DIR never holds half a config.json.
      const temp = tempPathFor(to);
      try {
        const { handle } = await openRegularFile(from, { noFollow: true, label: folder.pathOf(name) });
        await pipeline(handle.createReadStream(), createWriteStream(temp, { flags: 'wx' }));
        await rename(temp, to);
      } catch (e) {
        await unlink(temp).catch(() => {});
        throw isSluiceError(e) ? e : fileError(to, e);
      }
    }
    copied.push(name);
  }
  return copied;
}

function verifyError(outDir: string, what: string): SluiceError {
  return new SluiceError('IO_ERROR', `convert: verifying ${outDir} failed: ${what}`);
}

// ─── float conversion (CPU) ───────────────────────────────────────────────────────────
// Bit-exact and endian-explicit (DataView, little-endian). Narrowing rounds to nearest,
// ties to even, as torch's `.half()` / `.bfloat16()` do; overflow becomes ±inf; subnormals
// are produced and read exactly. NaNs to F32 and F16 get the bits torch's `.float()` /
// `.half()` give (F16 → F32: payload kept, quiet bit set; BF16 → F32 exact; → F16:
// sign | 0x7e00), the same as the GPU loader's kernel (shaders/convert.wgsl). To BF16
// torch differs from path to path, so a NaN keeps its sign, quiet bit and top payload.

export type FloatDtype = 'F32' | 'F16' | 'BF16';

function isFloat(d: Dtype): d is FloatDtype {
  return d === 'F32' || d === 'F16' || d === 'BF16';
}

/** Little-endian `from` elements → little-endian `to` elements. */
export function convertFloats(src: Uint8Array, from: FloatDtype, to: FloatDtype): Uint8Array {
  const inBytes = from === 'F32' ? 4 : 2;
  const outBytes = to === 'F32' ? 4 : 2;
  if (src.byteLength % inBytes) throw new SluiceError('SIZE_MISMATCH', `convertFloats: ${src.byteLength} bytes is not a whole number of ${from} elements`);
  const n = src.byteLength / inBytes;
  const out = new Uint8Array(n * outBytes);
  const a = new DataView(src.buffer, src.byteOffset, src.byteLength);
  const b = new DataView(out.buffer);
  const widen =
    from === 'F32'
      ? (i: number) => a.getUint32(i * 4, true)
      : from === 'F16'
        ? (i: number) => f16ToF32Bits(a.getUint16(i * 2, true))
        : (i: number) => bf16ToF32Bits(a.getUint16(i * 2, true));
  // Widening to F32 is exact, so F16 ↔ BF16 through F32 rounds once.
  if (to === 'F32') for (let i = 0; i < n; i++) b.setUint32(i * 4, widen(i), true);
  else if (to === 'F16') for (let i = 0; i < n; i++) b.setUint16(i * 2, f32ToF16Bits(widen(i)), true);
  else for (let i = 0; i < n; i++) b.setUint16(i * 2, f32ToBf16Bits(widen(i)), true);
  return out;
}

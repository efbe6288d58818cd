// sha256 of each tensor's contiguous little-endian bytes, streamed in chunks so hashing a
// 100 GB checkpoint needs one chunk of memory. Node only (node:crypto streams a hash;
// WebCrypto does not).
//
// Bounded: the formats guarantee a tensor's bytes lie in its file, except overlapping
// views (stride 0) of a .pth, which the PyTorch reader limits to 1 GiB of repeats in all
// (formats/pytorch/limits.ts), so hashing costs about the file's size. As a second fuse
// for any Checkpoint, a tensor past MAX_CHECKSUM_BYTES is refused before its first chunk:
// 1 TiB is beyond any real tensor (the largest are ~10 GB) and would take ~an hour.

import { createHash } from 'node:crypto';
import { quote, SluiceError } from '../errors.js';
import type { Checkpoint } from './types.js';

export const CHECKSUM_CHUNK = 16 * 1024 * 1024;
export const MAX_CHECKSUM_BYTES = 2 ** 40;

export async function tensorSha256(
  checkpoint: Checkpoint,
  name: string,
  onBytes?: (n: number) => void,
): Promise<string> {
  const { byteLength, file } = checkpoint.info(name);
  if (!Number.isSafeInteger(byteLength) || byteLength > MAX_CHECKSUM_BYTES) {
    throw new SluiceError('TENSOR_TOO_LARGE', `${file}: tensor ${quote(name)} has ${byteLength} bytes, more than sluice checksums (${MAX_CHECKSUM_BYTES})`);
  }
  const hash = createHash('sha256');
  for (let at = 0; at < byteLength; at += CHECKSUM_CHUNK) {
    const chunk = await checkpoint.readRange(name, at, Math.min(CHECKSUM_CHUNK, byteLength - at));
    hash.update(chunk);
    onBytes?.(chunk.byteLength);
  }
  return hash.digest('hex');
}

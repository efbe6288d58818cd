// sha256 of each tensor's contiguous little-endian bytes, streamed in chunks so hashing a
// 100 GB checkpoint needs one chunk of memory. Node only (node:crypto streams a hash;
// WebCrypto does not).

import { createHash } from 'node:crypto';
import type { Checkpoint } from './types.js';

export const CHECKSUM_CHUNK = 16 * 1024 * 1024;

export async function tensorSha256(
  checkpoint: Checkpoint,
  name: string,
  onBytes?: (n: number) => void,
): Promise<string> {
  const { byteLength } = checkpoint.info(name);
  const hash = createHash('sha256');
  for (let at = 0; at < byteLength; at += CHECKSUM_CHUNK) {
    const chunk = await checkpoint.readRange(name, at, Math.min(CHECKSUM_CHUNK, byteLength - at));
    hash.update(chunk);
    onBytes?.(chunk.byteLength);
  }
  return hash.digest('hex');
}

// Reads into a caller's buffer (`into`), the path the GPU loader uses to land bytes
// straight in mapped staging memory: every source, and checkpoint ranges in every layout
// (safetensors, sharded, PyTorch contiguous, big-endian and strided), give the same bytes
// as a plain read, inside the given buffer, leaving the rest of it alone.

import { readFileSync, readdirSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openCheckpoint } from '../../src/checkpoint/open-path.js';
import { BlobSource } from '../../src/io/blob-source.js';
import type { ByteSource } from '../../src/io/byte-source.js';
import { FileSource } from '../../src/io/file-source.js';
import { MemorySource } from '../../src/io/memory-source.js';
import { UrlSource } from '../../src/io/url-source.js';
import { TestServer } from '../support/http-server.js';
import { mulberry32 } from '../support/safetensors-bytes.js';

const FILE = 'test/fixtures/pytorch/dtypes.pth';
const bytes = new Uint8Array(readFileSync(FILE));
let server: TestServer;
beforeAll(async () => {
  server = await TestServer.start({ '/f.bin': bytes });
});
afterAll(() => server.close());

const sources: Record<string, () => Promise<ByteSource>> = {
  file: () => FileSource.open(FILE),
  memory: async () => new MemorySource(bytes.slice(), 'mem'),
  blob: async () => new BlobSource(new Blob([bytes.slice()]), 'blob'),
  url: () => UrlSource.open(server.url('/f.bin'), { chunkSize: 700 }),
};

describe.each(Object.keys(sources))('%s source: read(offset, length, into)', (kind) => {
  it('fills the front of `into` with the same bytes as a plain read, returns a view of it', async () => {
    const source = await sources[kind]();
    const rng = mulberry32(11);
    try {
      for (let i = 0; i < 20; i++) {
        const offset = Math.floor(rng() * bytes.length);
        const length = Math.floor(rng() * Math.min(3000, bytes.length - offset));
        const into = new Uint8Array(length + 5).fill(0xee);
        const got = await source.read(offset, length, into);
        expect(got.buffer).toBe(into.buffer);
        expect(got.byteOffset).toBe(0);
        expect(Buffer.from(got).equals(Buffer.from(bytes.subarray(offset, offset + length))), `${offset}+${length}`).toBe(true);
        expect([...into.subarray(length)]).toEqual([0xee, 0xee, 0xee, 0xee, 0xee]);
      }
      await expect(source.read(0, 10, new Uint8Array(9))).rejects.toThrow(/shorter than 10/);
    } finally {
      await source.close();
    }
  });
});

describe('plain reads return copies', () => {
  it('MemorySource: writing into a result does not change the source', async () => {
    const source = new MemorySource(new Uint8Array([1, 2, 3, 4]));
    const first = await source.read(0, 4);
    first.fill(9);
    expect([...(await source.read(0, 4))]).toEqual([1, 2, 3, 4]);
  });
});

describe('checkpoint readRange(name, offset, length, into)', () => {
  const paths = [
    'examples/tiny/model.safetensors',
    'test/fixtures/pytorch/tiny-llama-sharded',
    ...readdirSync('test/fixtures/pytorch')
      .filter((f) => /^(dtypes|bigendian|views|nested)\.pth$/.test(f))
      .map((f) => `test/fixtures/pytorch/${f}`),
  ];
  it.each(paths)('%s: every tensor, in uneven pieces, equals read()', async (path) => {
    const checkpoint = await openCheckpoint(path);
    try {
      for (const t of checkpoint.tensors()) {
        const whole = await checkpoint.read(t.name);
        const assembled = new Uint8Array(t.byteLength);
        const step = Math.ceil(t.byteLength / 40) | 1; // odd: pieces cut elements in half
        for (let at = 0; at < t.byteLength; ) {
          const n = Math.min(step, t.byteLength - at);
          const into = new Uint8Array(n + 1).fill(0xee);
          const got = await checkpoint.readRange(t.name, at, n, into);
          expect(got.buffer).toBe(into.buffer);
          expect(into[n]).toBe(0xee);
          assembled.set(got, at);
          at += n;
        }
        expect(Buffer.from(assembled).equals(Buffer.from(whole)), t.name).toBe(true);
      }
    } finally {
      await checkpoint.close();
    }
  });
});

import { describe, expect, it } from 'vitest';
import { isSluiceError } from '../../src/errors.js';
import { BlobSource } from '../../src/io/blob-source.js';
import { patternBytes } from '../support/http-server.js';

const data = patternBytes(10_000, 11);

describe('BlobSource', () => {
  it('reads ranges of a Blob', async () => {
    const src = new BlobSource(new Blob([data]));
    expect(src.size).toBe(data.length);
    expect(src.name).toBe('blob');
    expect(await src.read(0, 10)).toEqual(data.subarray(0, 10));
    expect(await src.read(9_990, 10)).toEqual(data.subarray(9_990));
    expect(await src.read(0, data.length)).toEqual(data);
  });

  it('is named after the File, unless a name is given', () => {
    const file = new File([data], 'model.safetensors');
    expect(new BlobSource(file).name).toBe('model.safetensors');
    expect(new BlobSource(file, 'picked/model.safetensors').name).toBe('picked/model.safetensors');
  });

  it('handles an empty blob and zero-length reads', async () => {
    const src = new BlobSource(new Blob([]));
    expect(src.size).toBe(0);
    expect(await src.read(0, 0)).toEqual(new Uint8Array(0));
    expect(await new BlobSource(new Blob([data])).read(500, 0)).toEqual(new Uint8Array(0));
  });

  it('throws IO_ERROR outside the blob and after close', async () => {
    const src = new BlobSource(new Blob([data]));
    await expect(src.read(9_999, 2)).rejects.toSatisfy((e) => isSluiceError(e, 'IO_ERROR'));
    await src.close();
    await expect(src.read(0, 1)).rejects.toThrow(/read after close/);
  });

  it('maps a NotReadableError (file changed on disk) to SOURCE_CHANGED', async () => {
    const failing = {
      size: 4,
      slice: () => ({ arrayBuffer: () => Promise.reject(new DOMException('changed', 'NotReadableError')) }),
    } as unknown as Blob;
    await expect(new BlobSource(failing).read(0, 4)).rejects.toSatisfy((e) => isSluiceError(e, 'SOURCE_CHANGED'));
  });

  it('throws SOURCE_CHANGED when a slice comes back short', async () => {
    const short = { size: 4, slice: () => new Blob([new Uint8Array(2)]) } as unknown as Blob;
    await expect(new BlobSource(short).read(0, 4)).rejects.toSatisfy((e) => isSluiceError(e, 'SOURCE_CHANGED'));
  });
});

// The browser-safe model openers, run in Node: a picked folder (real File objects, as an
// <input webkitdirectory> gives them, folder prefix and all) and a base URL on a local HTTP
// server. Each must load the tiny reference model so that greedy decoding reproduces the
// PyTorch reference ids, and bring the tokenizer, chat template and eos ids along.

import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openCheckpoint } from '../../src/checkpoint/open-path.js';
import { writeShardedSafetensors } from '../../src/formats/safetensors/sharded-writer.js';
import { generate } from '../../src/generate/generate.js';
import { GpuSampler } from '../../src/generate/sampler.js';
import { type DownloadProgress, type ModelProgress, openModelFromFiles, openModelFromUrl, type OpenedModel } from '../../src/model/open-model-source.js';
import { DEFAULT_SAMPLING } from '../../src/ops/sample.js';
import { writeChatModel } from '../support/byte-tokenizer.js';
import { useGpuTestDevice } from '../support/gpu-helpers.js';
import { TestServer } from '../support/http-server.js';
import { MemoryCache } from '../support/memory-cache.js';

const gpu = useGpuTestDevice('test.open-model-source');
const MODEL = 'test/fixtures/models/llama-gqa';
const reference = JSON.parse(readFileSync(`${MODEL}/reference.json`, 'utf8')) as { prompt_ids: number[]; greedy_ids: number[] };

// The chat model: llama-gqa's config and weights plus a byte-level tokenizer and ChatML.
const chatDir = mkdtempSync(join(tmpdir(), 'sluice-open-source-'));
writeChatModel(MODEL, chatDir);
afterAll(() => rmSync(chatDir, { recursive: true, force: true }));

/** Every file of `dir` as a File, with webkitRelativePath `${folder}/${name}` as a folder picker sets it. */
function filesOf(dir: string, folder: string): File[] {
  return readdirSync(dir).map((name) => withPath(new File([readFileSync(join(dir, name))], name), `${folder}/${name}`));
}

function withPath(file: File, path: string): File {
  Object.defineProperty(file, 'webkitRelativePath', { value: path });
  return file;
}

async function greedy(opened: OpenedModel, maxTokens = reference.greedy_ids.length): Promise<number[]> {
  const sampler = await GpuSampler.create(opened.model, DEFAULT_SAMPLING);
  try {
    const ids: number[] = [];
    const it = generate({ model: opened.model, sampler }, reference.prompt_ids, 0, { temperature: 0, maxTokens });
    for (let r = await it.next(); !r.done; r = await it.next()) ids.push(...r.value.ids);
    return ids;
  } finally {
    sampler.destroy();
  }
}

describe('openModelFromFiles', () => {
  it('a picked folder: greedy ids = the reference; tokenizer, template, eos and defaults come along', async () => {
    const files = filesOf(chatDir, 'llama-gqa');
    // A nested copy of a file deeper in the picked tree must not shadow the model's own.
    files.push(withPath(new File(['{"not": "a config"}'], 'config.json'), 'llama-gqa/other/config.json'));
    const opened = await openModelFromFiles(files, gpu.device, { dtype: 'f32', contextLength: 48 });
    try {
      expect(opened.dir).toBe('llama-gqa');
      expect(opened.tokenizer).not.toBeNull();
      expect(opened.chatTemplate).not.toBeNull();
      expect(opened.eosIds).toEqual([2]);
      expect(opened.defaults.maxTokens).toBe(12); // generation_config.json's max_new_tokens
      expect(await greedy(opened)).toEqual(reference.greedy_ids);
    } finally {
      opened.dispose();
    }
  });

  it('sharded weights: the index brings its shards by name', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-open-source-shards-'));
    try {
      const checkpoint = await openCheckpoint(`${MODEL}/model.safetensors`);
      const tensors = await Promise.all(checkpoint.tensors().map(async (t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, data: await checkpoint.read(t.name) })));
      await checkpoint.close();
      const written = await writeShardedSafetensors(dir, tensors, { maxShardSize: 64 * 1024 });
      expect(written.files.length).toBeGreaterThan(1);
      const files = [...filesOf(dir, 'sharded'), ...filesOf(MODEL, 'sharded').filter((f) => f.name === 'config.json')];
      const opened = await openModelFromFiles(files, gpu.device, { dtype: 'f32', contextLength: 48 });
      try {
        expect(opened.tokenizer).toBeNull();
        expect(await greedy(opened, 8)).toEqual(reference.greedy_ids.slice(0, 8));
      } finally {
        opened.dispose();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('missing files fail naming what is missing', async () => {
    const noConfig = filesOf(chatDir, 'm').filter((f) => f.name !== 'config.json');
    await expect(openModelFromFiles(noConfig, gpu.device)).rejects.toThrow(/m\/config\.json: not found/);
    const noWeights = filesOf(chatDir, 'm').filter((f) => f.name !== 'model.safetensors');
    await expect(openModelFromFiles(noWeights, gpu.device)).rejects.toThrow(/m: no weights among the picked files/);
  });
});

describe('openModelFromUrl', () => {
  it('a base URL: small files by fetch, weights by Range requests; greedy ids = the reference', async () => {
    const files: Record<string, Uint8Array> = {};
    for (const name of readdirSync(chatDir)) files[`/models/gqa/${name}`] = new Uint8Array(readFileSync(join(chatDir, name)));
    const server = await TestServer.start(files);
    try {
      const opened = await openModelFromUrl(server.url('/models/gqa'), gpu.device, { dtype: 'f32', contextLength: 48 });
      try {
        expect(opened.chatTemplate).not.toBeNull();
        expect(opened.eosIds).toEqual([2]);
        expect(await greedy(opened)).toEqual(reference.greedy_ids);
      } finally {
        opened.dispose();
      }
      // The shard index was asked for first (404), then the single file, read by ranges.
      const paths = server.requests.map((r) => r.path);
      expect(paths.indexOf('/models/gqa/model.safetensors.index.json')).toBeGreaterThanOrEqual(0);
      expect(paths.indexOf('/models/gqa/model.safetensors.index.json')).toBeLessThan(paths.indexOf('/models/gqa/model.safetensors'));
      expect(server.requests.some((r) => r.path.endsWith('/model.safetensors') && r.range)).toBe(true);
    } finally {
      await server.close();
    }
  });

  it('with a download cache: the first open downloads every file once, a second needs no server', async () => {
    const files: Record<string, Uint8Array> = {};
    for (const name of readdirSync(chatDir)) files[`/models/gqa/${name}`] = new Uint8Array(readFileSync(join(chatDir, name)));
    const server = await TestServer.start(files);
    const cache = new MemoryCache();
    const base = server.url('/models/gqa');
    const downloads: DownloadProgress[] = [];
    const onProgress = (p: ModelProgress) => p.phase === 'download' && downloads.push({ ...p });
    try {
      const opened = await openModelFromUrl(base, gpu.device, { dtype: 'f32', contextLength: 48, cache, onProgress });
      opened.dispose();
      // Whole files, no ranges; each present file fetched once and now in the cache.
      expect(server.requests.every((r) => r.range === undefined)).toBe(true);
      const fetched = server.requests.filter((r) => r.status === 200).map((r) => r.path);
      expect(new Set(fetched).size).toBe(fetched.length);
      expect(fetched).toContain('/models/gqa/model.safetensors');
      const present = [...cache.entries].filter(([, e]) => e.status === 200).map(([url]) => url);
      expect(present.sort()).toEqual(fetched.map((p) => server.url(p)).sort());
      const weights = downloads.filter((d) => d.file.endsWith('/model.safetensors'));
      expect(weights.at(-1)).toMatchObject({ fromCache: false, bytesDone: files['/models/gqa/model.safetensors'].length, bytesTotal: files['/models/gqa/model.safetensors'].length });
    } finally {
      await server.close();
    }
    downloads.length = 0;
    const again = await openModelFromUrl(base, gpu.device, { dtype: 'f32', contextLength: 48, cache, onProgress });
    try {
      expect(await greedy(again)).toEqual(reference.greedy_ids);
      expect(downloads.length).toBeGreaterThan(0);
      expect(downloads.every((d) => d.fromCache)).toBe(true);
    } finally {
      again.dispose();
    }
  });

  it('url.headers go to every file on the base URL\u2019s origin; an index cannot lead the cache out of the folder', async () => {
    const files: Record<string, Uint8Array> = {};
    for (const name of readdirSync(chatDir)) files[`/models/gqa/${name}`] = new Uint8Array(readFileSync(join(chatDir, name)));
    // %2e%2e is `..` to the URL parser, though no dot segment to a file system's checks.
    const index = { weight_map: { 'model.norm.weight': '%2e%2e/secret/model.safetensors' } };
    files['/models/gqa/model.safetensors.index.json'] = new TextEncoder().encode(JSON.stringify(index));
    files['/models/secret/model.safetensors'] = files['/models/gqa/model.safetensors'];
    const server = await TestServer.start(files);
    try {
      const url = { headers: { Authorization: 'Bearer t0k' } };
      for (const cache of [undefined, new MemoryCache()]) {
        server.resetStats();
        await expect(openModelFromUrl(server.url('/models/gqa'), gpu.device, { cache, url })).rejects.toThrow(/refusing sibling name "%2e%2e\/secret\/model.safetensors"/);
        expect(server.requests.length).toBeGreaterThan(3);
        expect(server.requests.filter((r) => r.path.includes('secret'))).toEqual([]);
        expect(server.requests.every((r) => r.headers.authorization === 'Bearer t0k')).toBe(true);
      }
    } finally {
      await server.close();
    }
  });
});

// pullModel against a local stand-in for the Hub (test/support/mock-hub.ts): which files
// it fetches, the cache layout transformers reads, resuming an interrupted download,
// catching corrupt bytes, and one-line errors for gated, missing and unreachable repos.

import { existsSync, lstatSync, readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isSluiceError } from '../../src/errors.js';
import { pullModel, type PullOptions, type PullProgress } from '../../src/hub/pull.js';
import { hubSettings } from '../../src/hub/settings.js';
import { isolateHubEnv } from '../support/hub-env.js';
import { MOCK_TOKEN, MockHub } from '../support/mock-hub.js';
import { patternBytes } from '../support/http-server.js';
import { failure } from '../support/failure.js';

const env = isolateHubEnv();
const BIG = 1 << 20;
const index = (shards: Record<string, string>) => JSON.stringify({ metadata: { total_size: 3 }, weight_map: shards });

let hub: MockHub;
beforeAll(async () => {
  hub = await MockHub.start({
    'org/both': {
      files: {
        'config.json': '{"model_type": "llama"}',
        'tokenizer.json': '{}',
        'tokenizer_config.json': '{}',
        'added_tokens.json': '', // an empty file: nothing to fetch, still verified
        'model.safetensors': patternBytes(200_000, 1),
        'pytorch_model.bin': patternBytes(1000, 2),
        'model.gguf': patternBytes(1000, 3),
        'onnx/model.onnx': patternBytes(1000, 4),
        'README.md': '# both',
      },
      refs: ['v1.0'],
    },
    'org/bin-only': { files: { 'config.json': '{}', 'pytorch_model.bin': patternBytes(5000, 5), 'tf_model.h5': patternBytes(100, 6) } },
    'org/sharded': {
      files: {
        'config.json': '{}',
        'model.safetensors.index.json': index({ a: 'model-00001-of-00003.safetensors', b: 'model-00002-of-00003.safetensors', c: 'model-00003-of-00003.safetensors' }),
        'model-00001-of-00003.safetensors': patternBytes(3000, 7),
        'model-00002-of-00003.safetensors': patternBytes(3000, 8),
        'model-00003-of-00003.safetensors': patternBytes(3000, 9),
      },
    },
    'org/broken-index': {
      files: { 'config.json': '{}', 'model.safetensors.index.json': index({ a: 'model-00001-of-00002.safetensors', b: 'model-00002-of-00002.safetensors' }), 'model-00001-of-00002.safetensors': patternBytes(10, 1) },
    },
    'org/gated': { gated: true, files: { 'config.json': '{}', 'model.safetensors': patternBytes(1000, 10) } },
    'org/big': { files: { 'config.json': '{}', 'model.safetensors': patternBytes(BIG, 11) } },
    'org/corrupt': { files: { 'config.json': '{}', 'model.safetensors': patternBytes(5000, 12) } },
    'org/corrupt-config': { files: { 'config.json': '{"a": 1}', 'model.safetensors': patternBytes(10, 13) } },
  });
});
afterAll(() => hub.close());

const pull = (repo: string, options: PullOptions = {}, revision?: string) =>
  pullModel({ repo, ...(revision ? { revision } : {}) }, { settings: { cacheDir: env.cache, endpoint: hub.url, offline: false }, retryDelayMs: 0, ...options });

/** Buffer.equals: vitest's toEqual walks a megabyte byte by byte, for seconds. */
const sameBytes = (a: Buffer, b: Uint8Array) => a.equals(b);

const storage = (repo: string) => join(env.cache, `models--${repo.replace('/', '--')}`);
const snapshotFiles = (repo: string) => readdirSync(join(storage(repo), 'snapshots', hub.commitOf(repo)), { recursive: true, withFileTypes: true }).filter((e) => !e.isDirectory()).map((e) => join(e.parentPath, e.name).slice(join(storage(repo), 'snapshots', hub.commitOf(repo)).length + 1)).sort();

describe('pullModel: the files', () => {
  it('a repo with both formats: only safetensors and the config/tokenizer files', async () => {
    const events: PullProgress[] = [];
    const r = await pull('org/both', { onProgress: (p) => events.push(p) });
    expect(r.format).toBe('safetensors');
    expect(snapshotFiles('org/both')).toEqual(['added_tokens.json', 'config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']);
    expect(sameBytes(readFileSync(join(r.snapshot, 'model.safetensors')), patternBytes(200_000, 1))).toBe(true);
    expect(hub.requests.some((q) => q.path.includes('pytorch_model.bin') || q.path.includes('gguf') || q.path.includes('onnx'))).toBe(false);
    expect(r.files.map((f) => f.verified).sort()).toEqual(['git-sha1', 'git-sha1', 'git-sha1', 'git-sha1', 'sha256']);
    const last = events[events.length - 1];
    expect(last).toMatchObject({ phase: 'done', bytesDone: last.bytesTotal, filesDone: 5, filesTotal: 5 });
    expect(last.bytesTotal).toBe(200_000 + 23 + 2 + 2);
  });

  it('the layout transformers reads: refs/<rev> → sha, snapshots/<sha>/<file> → ../../blobs/<sha256 | git oid>', async () => {
    await pull('org/both', {}, 'v1.0');
    const commit = hub.commitOf('org/both');
    expect(readFileSync(join(storage('org/both'), 'refs', 'v1.0'), 'utf8')).toBe(commit);
    const snap = join(storage('org/both'), 'snapshots', commit);
    const weights = join(snap, 'model.safetensors');
    expect(lstatSync(weights).isSymbolicLink()).toBe(true);
    expect(readlinkSync(weights)).toBe(`../../blobs/${hub.entry('org/both', 'model.safetensors').lfs!.oid}`);
    expect(readlinkSync(join(snap, 'config.json'))).toBe(`../../blobs/${hub.entry('org/both', 'config.json').oid}`);
    expect(readdirSync(join(storage('org/both'), 'blobs')).filter((b) => b.endsWith('.incomplete'))).toEqual([]);
  });

  it('a repo with only .bin weights: the .bin (and no .h5)', async () => {
    const r = await pull('org/bin-only');
    expect(r.format).toBe('pytorch');
    expect(snapshotFiles('org/bin-only')).toEqual(['config.json', 'pytorch_model.bin']);
  });

  it('a sharded repo: the index and every shard it names', async () => {
    await pull('org/sharded');
    expect(snapshotFiles('org/sharded')).toEqual(['config.json', 'model-00001-of-00003.safetensors', 'model-00002-of-00003.safetensors', 'model-00003-of-00003.safetensors', 'model.safetensors.index.json']);
  });

  it('an index naming a shard the repo lacks: an error naming the shard, and no ref written', async () => {
    const e = await failure(pull('org/broken-index'));
    expect(isSluiceError(e, 'NOT_FOUND')).toBe(true);
    expect(e.message).toBe('org/broken-index: shard model-00002-of-00002.safetensors is named in model.safetensors.index.json but is not in the repo');
    expect(existsSync(join(storage('org/broken-index'), 'refs', 'main'))).toBe(false);
  });

  it('a second pull fetches nothing already cached', async () => {
    await pull('org/both');
    const before = hub.requests.length;
    const r = await pull('org/both');
    expect(r.files.every((f) => !f.downloaded)).toBe(true);
    expect(hub.requests.slice(before).map((q) => q.path).filter((p) => p.includes('/resolve/') || p.startsWith('/cdn/'))).toEqual([]);
  });
});

describe('pullModel: resume and verification', () => {
  it('a connection dropped mid-file is resumed with a Range request in the same pull', async () => {
    hub.dropAfter('org/big', 'model.safetensors', 400_000, 1);
    const before = hub.downloadsOf('org/big', 'model.safetensors').length;
    const r = await pull('org/big');
    const tries = hub.downloadsOf('org/big', 'model.safetensors').slice(before);
    expect(tries).toHaveLength(2);
    const start = Number(/^bytes=(\d+)-(\d+)$/.exec(tries[1].range ?? '')?.[1]);
    expect(start).toBeGreaterThan(0);
    expect(tries[1].range).toBe(`bytes=${start}-${BIG - 1}`);
    expect(sameBytes(readFileSync(join(r.snapshot, 'model.safetensors')), patternBytes(BIG, 11))).toBe(true);
  });

  it('an interrupted pull keeps the partial file, and the next pull continues it', async () => {
    hub.dropAfter('org/big', 'model.safetensors', 300_000, 1);
    const e = await failure(pull('org/big', { retries: 0 }));
    expect(isSluiceError(e, 'HTTP_ERROR')).toBe(true);
    expect(e.message).toMatch(/^org\/big: model\.safetensors: download interrupted at \d+ of 1048576 bytes after 1 attempts \(.+\); the part is kept, run the pull again to resume$/);
    const oid = hub.entry('org/big', 'model.safetensors').lfs!.oid;
    const partial = join(storage('org/big'), 'blobs', `${oid}.incomplete`);
    const kept = statSync(partial).size;
    expect(kept).toBeGreaterThan(0);
    expect(sameBytes(readFileSync(partial), patternBytes(BIG, 11).subarray(0, kept))).toBe(true);

    const before = hub.downloadsOf('org/big', 'model.safetensors').length;
    const r = await pull('org/big');
    expect(hub.downloadsOf('org/big', 'model.safetensors').slice(before).map((q) => q.range)).toEqual([`bytes=${kept}-${BIG - 1}`]);
    expect(r.files.find((f) => f.path === 'model.safetensors')).toMatchObject({ downloaded: true, resumedFrom: kept });
    expect(sameBytes(readFileSync(join(r.snapshot, 'model.safetensors')), patternBytes(BIG, 11))).toBe(true);
    expect(existsSync(partial)).toBe(false);
  });

  it('bytes whose sha256 differs from the listing: an error naming the file, and nothing cached', async () => {
    hub.corrupt('org/corrupt', 'model.safetensors');
    const e = await failure(pull('org/corrupt'));
    expect(isSluiceError(e, 'CHECKSUM_MISMATCH')).toBe(true);
    expect(e.message).toMatch(/^org\/corrupt: model\.safetensors: corrupt download: sha256 [0-9a-f]{16}… differs from the Hub's [0-9a-f]{16}…; discarded, run the pull again$/);
    const blobs = readdirSync(join(storage('org/corrupt'), 'blobs'));
    expect(blobs.filter((b) => b.startsWith(hub.entry('org/corrupt', 'model.safetensors').lfs!.oid))).toEqual([]);
    expect(existsSync(join(storage('org/corrupt'), 'snapshots', hub.commitOf('org/corrupt'), 'model.safetensors'))).toBe(false);
    expect(existsSync(join(storage('org/corrupt'), 'refs', 'main'))).toBe(false);
  });

  it('a small file whose git sha1 differs: caught the same way', async () => {
    hub.corrupt('org/corrupt-config', 'config.json');
    const e = await failure(pull('org/corrupt-config'));
    expect(e.message).toMatch(/^org\/corrupt-config: config\.json: corrupt download: git sha1 /);
  });
});

describe('pullModel: access and errors', () => {
  it('a gated repo without a token: access denied (401), naming the repo and HF_TOKEN', async () => {
    const e = await failure(pull('org/gated'));
    expect(isSluiceError(e, 'ACCESS_DENIED')).toBe(true);
    expect(e.message).toBe(`org/gated: access denied (401): gated repo; accept the terms at ${hub.url}/org/gated and set HF_TOKEN to a token of that account`);
  });

  it('a gated repo with a token without access: 403, saying so', async () => {
    const e = await failure(pull('org/gated', { settings: { cacheDir: env.cache, endpoint: hub.url, offline: false, token: 'hf_someone_else' } }));
    expect(e.message).toBe(`org/gated: access denied (403): gated repo; HF_TOKEN's account has no access yet: accept the terms at ${hub.url}/org/gated`);
  });

  it('HF_TOKEN and HF_ENDPOINT from the environment: the gated repo downloads, the token on every request', async () => {
    process.env.HF_TOKEN = MOCK_TOKEN;
    process.env.HF_ENDPOINT = `${hub.url}/`;
    const before = hub.requests.length;
    const r = await pullModel({ repo: 'org/gated' });
    expect(r.snapshot.startsWith(env.cache)).toBe(true);
    expect(sameBytes(readFileSync(join(r.snapshot, 'model.safetensors')), patternBytes(1000, 10))).toBe(true);
    expect(new Set(hub.requests.slice(before).map((q) => q.authorization))).toEqual(new Set([`Bearer ${MOCK_TOKEN}`]));
  });

  it('a token that is not a Hub token is refused before any request', async () => {
    process.env.HF_TOKEN = 'not-a-token';
    const before = hub.requests.length;
    const e = await failure(pullModel({ repo: 'org/both' }, { settings: { ...hubSettings(), endpoint: hub.url } }));
    expect(e.message).toBe('HF_TOKEN (or the saved Hub login) is not a Hub access token: it must start with hf_');
    expect(hub.requests.length).toBe(before);
  });

  it('a repo that does not exist: not found, one line', async () => {
    const e = await failure(pull('org/nope'));
    expect(isSluiceError(e, 'NOT_FOUND')).toBe(true);
    expect(e.message).toBe('org/nope: no such model on the Hub (401), or private: set HF_TOKEN if you have access');
    const withToken = await failure(pull('org/nope', { settings: { cacheDir: env.cache, endpoint: hub.url, offline: false, token: MOCK_TOKEN } }));
    expect(withToken.message).toBe('org/nope: no such model on the Hub (404)');
  });

  it('a revision that does not exist', async () => {
    expect((await failure(pull('org/both', {}, 'v9'))).message).toBe('org/both@v9: no such revision on the Hub (404)');
  });

  it('an unreachable Hub, and HF_HUB_OFFLINE: one line each', async () => {
    const closed = await MockHub.start({});
    const endpoint = closed.url;
    await closed.close(); // a port nothing listens on
    const down = await failure(pullModel({ repo: 'org/both' }, { settings: { cacheDir: env.cache, endpoint, offline: false } }));
    expect(isSluiceError(down, 'HTTP_ERROR')).toBe(true);
    expect(down.message).toBe(`org/both: cannot reach the Hub at ${endpoint} (ECONNREFUSED); cached models need no network (--offline)`);
    process.env.HF_HUB_OFFLINE = '1';
    expect((await failure(pullModel({ repo: 'org/both' }))).message).toBe('org/both: HF_HUB_OFFLINE is set, and pulling needs the network');
  });
});

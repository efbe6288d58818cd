// MODEL arguments: paths win, `org/name[@rev]` comes from a hand-made HF cache with no
// network at all, --offline / HF_HUB_OFFLINE refuse to download with a clear message,
// and a missing model is pulled when allowed.

import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isSluiceError } from '../../src/errors.js';
import { parseModelName } from '../../src/hub/model-name.js';
import { resolveModel, type ResolveOptions } from '../../src/hub/resolve.js';
import { isolateHubEnv, sha, writeCachedModel } from '../support/hub-env.js';
import { MockHub } from '../support/mock-hub.js';
import { failure } from '../support/failure.js';

const env = isolateHubEnv();
const MODEL = { 'config.json': '{}', 'model.safetensors': 'weights' };

let hub: MockHub;
beforeAll(async () => {
  hub = await MockHub.start({ 'org/remote': { files: { 'config.json': '{}', 'model.safetensors': new Uint8Array(100) } } });
});
afterAll(() => hub.close());

/** Resolves with HF_ENDPOINT at the mock Hub, so any request would be seen. */
function resolve(arg: string, options: Partial<ResolveOptions> = {}) {
  process.env.HF_ENDPOINT = hub.url;
  return resolveModel(arg, { download: true, ...options, pull: { retryDelayMs: 0 } });
}

describe('parseModelName', () => {
  it.each([
    ['meta-llama/Llama-3.2-1B', { repo: 'meta-llama/Llama-3.2-1B' }],
    ['org/name@v1.0', { repo: 'org/name', revision: 'v1.0' }],
    ['org/name@refs/pr/1', { repo: 'org/name', revision: 'refs/pr/1' }],
    ['./org/name', null],
    ['/abs/path', null],
    ['name', null],
    ['a/b/c', null],
    ['dir/model.safetensors', null],
    ['org/../x', null],
    ['org/name@', null],
    ['https://host/org/name', null],
  ])('%s', (text, expected) => {
    expect(parseModelName(text)).toEqual(expected);
  });
});

describe('resolveModel from the cache, offline', () => {
  it('org/name: refs/main → its snapshot, without a single request', async () => {
    const dir = writeCachedModel(env.cache, 'org/tiny', sha('main'), MODEL);
    const before = hub.requests.length;
    expect(await resolve('org/tiny')).toEqual({ path: dir, name: { repo: 'org/tiny' }, commit: sha('main') });
    expect(hub.requests.length).toBe(before);
  });

  it('@rev picks refs/<rev>, a full sha, or a unique sha prefix', async () => {
    writeCachedModel(env.cache, 'org/tiny', sha('main'), MODEL);
    const v1 = writeCachedModel(env.cache, 'org/tiny', sha('v1'), MODEL, ['v1']);
    expect((await resolve('org/tiny@v1')).path).toBe(v1);
    expect((await resolve(`org/tiny@${sha('v1')}`)).path).toBe(v1);
    expect((await resolve(`org/tiny@${sha('v1').slice(0, 8)}`)).path).toBe(v1);
    expect((await resolve('org/tiny')).commit).toBe(sha('main'));
  });

  it('--offline and a model not cached: NOT_FOUND naming the model and the cache folder', async () => {
    const e = await failure(resolve('org/missing', { offline: true }));
    expect(isSluiceError(e, 'NOT_FOUND')).toBe(true);
    expect(e.message).toBe(`org/missing: not in the HF cache (${env.cache}), and --offline forbids downloading it; run 'sluice pull org/missing' while online`);
  });

  it('HF_HUB_OFFLINE=1 the same, and a revision not cached names the revision', async () => {
    writeCachedModel(env.cache, 'org/tiny', sha('main'), MODEL);
    process.env.HF_HUB_OFFLINE = '1';
    const e = await failure(resolve('org/tiny@v2'));
    expect(e.message).toBe(`org/tiny@v2: not in the HF cache (${env.cache}), and HF_HUB_OFFLINE forbids downloading it; run 'sluice pull org/tiny@v2' while online`);
  });

  it('HF_HUB_CACHE moves the cache', async () => {
    const elsewhere = join(env.home, 'elsewhere');
    const dir = writeCachedModel(elsewhere, 'org/tiny', sha('main'), MODEL);
    process.env.HF_HUB_CACHE = elsewhere;
    expect((await resolve('org/tiny', { offline: true })).path).toBe(dir);
  });

  it('a snapshot missing a shard (or a blob) is not a model: offline, the error names what is missing', async () => {
    const index = JSON.stringify({ weight_map: { a: 'model-00001-of-00002.safetensors', b: 'model-00002-of-00002.safetensors' } });
    const dir = writeCachedModel(env.cache, 'org/half', sha('half'), { 'config.json': '{}', 'model.safetensors.index.json': index, 'model-00001-of-00002.safetensors': 'x' });
    const e = await failure(resolve('org/half', { offline: true }));
    expect(e.message).toBe(`org/half: its cached snapshot ${dir} lacks model-00002-of-00002.safetensors, and --offline forbids downloading it; run 'sluice pull org/half' while online`);
  });

  it('commands that never download (inspect, convert) say how to get it', async () => {
    const e = await failure(resolve('org/missing', { download: false }));
    expect(e.message).toBe(`org/missing: no such file or directory, and not in the HF cache (${env.cache}); 'sluice pull org/missing' downloads it`);
  });
});

describe('resolveModel: paths and downloads', () => {
  it('an existing path wins over a name, even one shaped org/name; URLs and other shapes pass through', async () => {
    writeCachedModel(env.cache, 'org/tiny', sha('main'), MODEL);
    const cwd = process.cwd();
    mkdirSync(join(env.home, 'org', 'tiny'), { recursive: true });
    process.chdir(env.home);
    try {
      expect(await resolve('org/tiny')).toEqual({ path: 'org/tiny' });
    } finally {
      process.chdir(cwd);
    }
    expect(await resolve('https://example.com/org/tiny')).toEqual({ path: 'https://example.com/org/tiny' });
    expect(await resolve('no/such/dir')).toEqual({ path: 'no/such/dir' });
  });

  it('online, a model not cached is pulled; then it resolves from the cache with no request', async () => {
    const first = await resolve('org/remote');
    expect(first.pulled?.files.map((f) => f.path).sort()).toEqual(['config.json', 'model.safetensors']);
    expect(first.path).toBe(join(env.cache, 'models--org--remote', 'snapshots', hub.commitOf('org/remote')));
    const before = hub.requests.length;
    expect(await resolve('org/remote')).toEqual({ path: first.path, name: { repo: 'org/remote' }, commit: hub.commitOf('org/remote') });
    expect(hub.requests.length).toBe(before);
    // A blob deleted behind the cache's back: the snapshot is incomplete, so it is pulled again.
    rmSync(join(env.cache, 'models--org--remote', 'blobs', hub.entry('org/remote', 'model.safetensors').lfs!.oid));
    expect((await resolve('org/remote')).pulled?.files.find((f) => f.path === 'model.safetensors')?.downloaded).toBe(true);
  });
});

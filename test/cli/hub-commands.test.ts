// `sluice pull`, `sluice list`, `sluice rm` end to end (in-process) on a temp HF cache, the
// pull against the local stand-in Hub; and `org/name` as MODEL for a command that needs no
// GPU (inspect), from the cache and offline.

import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';
import { isolateHubEnv, sha, writeCachedModel } from '../support/hub-env.js';
import { MockHub } from '../support/mock-hub.js';
import { patternBytes } from '../support/http-server.js';

const env = isolateHubEnv();
const GQA = 'test/fixtures/models/llama-gqa';
const gqaFiles = () => ({ 'config.json': readFileSync(join(GQA, 'config.json')), 'model.safetensors': readFileSync(join(GQA, 'model.safetensors')) });

let hub: MockHub;
beforeAll(async () => {
  hub = await MockHub.start({
    'org/gqa': { files: { ...gqaFiles(), 'model.gguf': patternBytes(100, 1), 'tokenizer_config.json': '{}' } },
  });
});
afterAll(() => hub.close());

describe('help', () => {
  it('sluice --help lists pull, list and rm; each has its own --help', async () => {
    const top = await runCli(['--help']);
    expect(top.stdout).toMatch(/\n {2}pull +download a Hugging Face Hub model into the shared HF cache\n/);
    expect(top.stdout).toMatch(/\n {2}list +list the models in the HF cache\n/);
    expect(top.stdout).toMatch(/\n {2}rm +remove a model \(or one revision\) from the HF cache\n/);
    expect((await runCli(['pull', '--help'])).stdout).toMatch(/^Usage: sluice pull org\/name\[@REVISION\] \[--include GLOB\]\.\.\. \[--exclude GLOB\]\.\.\. \[--json\]\n/);
    expect((await runCli(['list', '--help'])).stdout).toMatch(/^Usage: sluice list \[--json\]\n/);
    expect((await runCli(['rm', '--help'])).stdout).toMatch(/^Usage: sluice rm org\/name\[@REVISION\]\n/);
  });

  it('the model commands document org/name and --offline', async () => {
    for (const command of ['generate', 'chat']) {
      const { stdout } = await runCli([command, '--help']);
      expect(stdout).toContain('org/name[@REVISION] on the Hugging Face Hub');
      expect(stdout).toContain('--offline                never download: the HF cache only (also HF_HUB_OFFLINE=1)');
    }
    expect((await runCli(['serve', '--help'])).stdout).toContain('--offline');
    const bench = (await runCli(['bench', '--help'])).stdout;
    expect(bench).toContain('sluice bench generate (MODEL | --synthetic NAME');
    expect(bench).toMatch(/\[--prompt-tokens N\[,N\.\.\.\]\] \[--tokens N\] \[--repeats R\] \[--dtype auto\|f16\|f32\]\s+\[--quantize q8\|q4\] \[--kernels auto\|software\|gpu\][^]*\[--offline\] \[--json\]/);
  });
});

describe('sluice pull', () => {
  it('downloads into the cache named by HF_HOME, from HF_ENDPOINT; then the second pull fetches nothing', async () => {
    process.env.HF_ENDPOINT = hub.url;
    const first = await runCli(['pull', 'org/gqa']);
    expect([first.code, first.stderr]).toEqual([0, '']);
    const commit = hub.commitOf('org/gqa');
    const snapshot = join(env.cache, 'models--org--gqa', 'snapshots', commit);
    expect(first.stdout).toBe(`pulled org/gqa@main (${commit.slice(0, 7)}): 3 files, 208 kB (3 downloaded, 0 already cached), safetensors\n${snapshot}\n`);
    expect(readdirSync(snapshot).sort()).toEqual(['config.json', 'model.safetensors', 'tokenizer_config.json']);

    const again = await runCli(['pull', 'org/gqa', '--json']);
    expect(again.code).toBe(0);
    const doc = JSON.parse(again.stdout);
    expect(doc).toMatchObject({ repo: 'org/gqa', revision: 'main', commit, path: snapshot, format: 'safetensors' });
    expect(doc.files.map((f: { downloaded: boolean }) => f.downloaded)).toEqual([false, false, false]);
  });

  it('--include and --exclude', async () => {
    process.env.HF_ENDPOINT = hub.url;
    const { code, stdout } = await runCli(['pull', 'org/gqa', '--include', '*.gguf', '--exclude', 'tokenizer*', '--json']);
    expect(code).toBe(0);
    expect(JSON.parse(stdout).files.map((f: { path: string }) => f.path).sort()).toEqual(['config.json', 'model.gguf', 'model.safetensors']);
  });

  it('usage errors: --offline, a malformed name, no name', async () => {
    expect(await runCli(['pull', 'org/gqa', '--offline'])).toMatchObject({ code: 2, stderr: 'sluice: pull: --offline makes no sense here: pulling is downloading (generate, chat and serve take --offline)\n' });
    expect(await runCli(['pull', './dir'])).toMatchObject({ code: 2, stderr: 'sluice: pull: "./dir" is not a Hub model name (org/name or org/name@REVISION)\n' });
    expect((await runCli(['pull'])).code).toBe(2);
  });

  it('a missing repo: exit 1 and one line', async () => {
    process.env.HF_ENDPOINT = hub.url;
    expect(await runCli(['pull', 'org/nope'])).toMatchObject({ code: 1, stderr: 'sluice: org/nope: no such model on the Hub (401), or private: set HF_TOKEN if you have access\n' });
  });

  it('on a terminal: a progress bar with the file in flight, ended by a newline', async () => {
    process.env.HF_ENDPOINT = hub.url;
    const { code, stderr } = await runCli(['pull', 'org/gqa'], true);
    expect(code).toBe(0);
    expect(stderr).toMatch(/\rpulling \[#{30}\] 208 kB \/ 208 kB .*3\/3 files\x1b\[K\n$/);
  });
});

describe('sluice list', () => {
  it('an empty cache says so', async () => {
    expect(await runCli(['list'])).toEqual({ code: 0, stdout: `no models in the HF cache (${env.cache}); 'sluice pull org/name' downloads one\n`, stderr: '' });
  });

  it('name, revisions, size and formats; --json the same as data', async () => {
    writeCachedModel(env.cache, 'org/a', sha('a1'), { 'config.json': '{}', 'model.safetensors': 'x'.repeat(1000) });
    writeCachedModel(env.cache, 'org/a', sha('a2'), { 'config.json': '{}', 'model.safetensors': 'y'.repeat(500) }, ['v2']);
    writeCachedModel(env.cache, 'other/b', sha('b'), { 'config.json': '{"b": 1}', 'pytorch_model.bin': 'z'.repeat(2000) }, []);
    const human = await runCli(['list']);
    expect(human.code).toBe(0);
    expect(human.stdout).toBe(
      [
        'name     revisions                        size  formats',
        `org/a    main (${sha('a1').slice(0, 7)}); v2 (${sha('a2').slice(0, 7)})  1.50 kB  safetensors`,
        `other/b  ${sha('b').slice(0, 7)}                       2.01 kB  pytorch`,
        '',
        `2 models in ${env.cache}`,
        '',
      ].join('\n'),
    );
    const doc = JSON.parse((await runCli(['list', '--json'])).stdout);
    expect(doc.cache_dir).toBe(env.cache);
    expect(doc.models.map((m: { name: string; size: number }) => [m.name, m.size])).toEqual([['org/a', 1502], ['other/b', 2008]]);
    expect(doc.models[0].revisions[1]).toEqual({ commit: sha('a2'), refs: ['v2'], size: 502, formats: ['safetensors'], files: ['config.json', 'model.safetensors'] });
  });
});

describe('sluice rm', () => {
  it('@rev removes that snapshot, its refs and the blobs only it used; the name removes the rest', async () => {
    const storage = join(env.cache, 'models--org--a');
    writeCachedModel(env.cache, 'org/a', sha('a1'), { 'config.json': '{}', 'model.safetensors': 'x'.repeat(1000) });
    writeCachedModel(env.cache, 'org/a', sha('a2'), { 'config.json': '{}', 'model.safetensors': 'y'.repeat(500) }, ['v2']);
    expect(await runCli(['rm', 'org/a@v2'])).toEqual({ code: 0, stdout: `removed org/a@v2 (${sha('a2').slice(0, 7)}): 500 B freed\n`, stderr: '' });
    expect(readdirSync(join(storage, 'snapshots'))).toEqual([sha('a1')]);
    expect(readdirSync(join(storage, 'refs'))).toEqual(['main']);
    expect(readdirSync(join(storage, 'blobs'))).toHaveLength(2); // config.json's blob is shared and stays
    expect(readFileSync(join(storage, 'snapshots', sha('a1'), 'config.json'), 'utf8')).toBe('{}');

    expect(await runCli(['rm', 'org/a'])).toEqual({ code: 0, stdout: 'removed org/a: 1.00 kB freed\n', stderr: '' });
    expect(existsSync(storage)).toBe(false);
  });

  it('what is not cached: exit 1 naming it; usage errors: exit 2', async () => {
    writeCachedModel(env.cache, 'org/a', sha('a1'), { 'config.json': '{}' });
    expect(await runCli(['rm', 'org/none'])).toMatchObject({ code: 1, stderr: `sluice: org/none: not in the HF cache (${env.cache})\n` });
    expect(await runCli(['rm', 'org/a@v9'])).toMatchObject({ code: 1, stderr: `sluice: org/a@v9: no such revision in the HF cache (${join(env.cache, 'models--org--a')}; cached: ${sha('a1').slice(0, 7)})\n` });
    expect((await runCli(['rm'])).code).toBe(2);
    expect((await runCli(['rm', '../x'])).code).toBe(2);
  });
});

describe('org/name as MODEL', () => {
  it('inspect reads a cached model with no network, and never downloads one', async () => {
    writeCachedModel(env.cache, 'org/gqa', sha('gqa'), gqaFiles());
    process.env.HF_ENDPOINT = hub.url;
    const before = hub.requests.length;
    const byName = await runCli(['inspect', 'org/gqa', '--json']);
    expect([byName.code, byName.stderr]).toEqual([0, '']);
    const byPath = await runCli(['inspect', GQA, '--json']);
    const strip = (s: string) => ({ ...JSON.parse(s), files: undefined, tensors: JSON.parse(s).tensors.map((t: { file?: string }) => ({ ...t, file: undefined })) });
    expect(strip(byName.stdout)).toEqual(strip(byPath.stdout));

    const missing = await runCli(['inspect', 'org/remote-only']);
    expect(missing).toMatchObject({ code: 1, stderr: `sluice: org/remote-only: no such file or directory, and not in the HF cache (${env.cache}); 'sluice pull org/remote-only' downloads it\n` });
    expect(hub.requests.length).toBe(before);
  });
});

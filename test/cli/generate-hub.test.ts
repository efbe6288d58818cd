// `sluice generate org/name` end to end on the software GPU: the model is pulled from the
// stand-in Hub into a temp HF cache on first use, then runs from the cache with --offline
// while the Hub is down; both give the PyTorch reference's greedy ids.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadModel, type SluiceModel } from '../../src/generate/load-model.js';
import { runCli } from '../support/cli.js';
import { isolateHubEnv } from '../support/hub-env.js';
import { MockHub } from '../support/mock-hub.js';

const env = isolateHubEnv();
const MODEL = 'test/fixtures/models/llama-gqa';
const reference = JSON.parse(readFileSync(`${MODEL}/reference.json`, 'utf8')) as { prompt_ids: number[]; greedy_ids: number[] };
const files = { 'config.json': readFileSync(join(MODEL, 'config.json')), 'model.safetensors': readFileSync(join(MODEL, 'model.safetensors')) };

describe('sluice generate org/name', () => {
  it('pulls a missing model, then runs it from the cache offline', async () => {
    const hub = await MockHub.start({ 'org/gqa': { files } });
    process.env.HF_ENDPOINT = hub.url;
    const argv = ['generate', 'org/gqa', '--ids', reference.prompt_ids.join(','), '--temperature', '0', '--max-tokens', '24', '--json'];
    try {
      const online = await runCli(argv);
      expect(online.stderr).toBe(`sluice: pulling org/gqa into ${env.cache}\n`);
      expect(online.code).toBe(0);
      expect(JSON.parse(online.stdout).ids).toEqual(reference.greedy_ids);
    } finally {
      await hub.close();
    }
    const offline = await runCli([...argv, '--offline']);
    expect([offline.code, offline.stderr]).toEqual([0, '']);
    expect(JSON.parse(offline.stdout).ids).toEqual(reference.greedy_ids);

    const missing = await runCli(['generate', 'org/other', '--ids', '1', '--offline']);
    expect(missing).toMatchObject({ code: 1, stderr: `sluice: org/other: not in the HF cache (${env.cache}), and --offline forbids downloading it; run 'sluice pull org/other' while online\n` });
  });

  it('loadModel(org/name) in the library: the same resolution; named after the repo', async () => {
    const hub = await MockHub.start({ 'org/lib': { files } });
    process.env.HF_ENDPOINT = hub.url;
    const pulled: number[] = [];
    let model: SluiceModel | undefined;
    try {
      model = await loadModel('org/lib', { dtype: 'f32', contextLength: 48, onPullProgress: (p) => pulled.push(p.bytesDone) });
      expect(model.name).toBe('org/lib');
      expect(pulled.at(-1)).toBe(files['config.json'].length + files['model.safetensors'].length);
      const ids: number[] = [];
      for await (const d of model.generate(reference.prompt_ids, { temperature: 0, maxTokens: 8 })) ids.push(...d.ids);
      expect(ids).toEqual(reference.greedy_ids.slice(0, 8));
    } finally {
      model?.dispose();
      await hub.close();
    }
    await expect(loadModel('org/absent', { offline: true })).rejects.toThrow(/org\/absent: not in the HF cache .* --offline forbids downloading it/);
  });
});

// Which file of a model directory openCheckpoint loads, in transformers' order of
// preference: model.safetensors.index.json > model.safetensors > other *.safetensors >
// pytorch_model.bin.index.json > pytorch_model.bin > a single *.pth/*.pt/*.bin. Each case
// is a temp directory holding copies of the PyTorch fixtures plus safetensors written here;
// the choice is read from `checkpoint.files` and from the note passed to `onNote`.

import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openCheckpoint } from '../../src/checkpoint/open-path.js';
import { writeShardedSafetensors } from '../../src/formats/safetensors/sharded-writer.js';
import { runCli } from '../support/cli.js';
import { errorCode, seededBytes } from '../support/safetensors-bytes.js';

const FIXTURES = 'test/fixtures/pytorch';
const tmp = mkdtempSync(join(tmpdir(), 'sluice-resolve-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
let dirs = 0;

/** The candidates, one per tier of preference. */
type Tier = 'st-index' | 'st-single' | 'st-other' | 'pt-index' | 'pt-single' | 'pth';

async function modelDir(tiers: Tier[]): Promise<string> {
  const dir = join(tmp, `model-${++dirs}`);
  mkdirSync(dir);
  const tensor = (name: string, seed: number) => ({ name, dtype: 'F32' as const, shape: [64, 32], data: seededBytes(seed, 64 * 32 * 4) });
  if (tiers.includes('st-index')) {
    // Two shards + model.safetensors.index.json.
    await writeShardedSafetensors(dir, [tensor('sharded.a', 1), tensor('sharded.b', 2)], { maxShardSize: 10_000 });
  }
  if (tiers.includes('st-single')) {
    // Written elsewhere and copied in: the sharded writer would remove it as a stale layout.
    const elsewhere = join(tmp, `single-${dirs}`);
    await writeShardedSafetensors(elsewhere, [tensor('single', 3)]);
    copyFileSync(join(elsewhere, 'model.safetensors'), join(dir, 'model.safetensors'));
  }
  if (tiers.includes('st-other')) {
    await writeShardedSafetensors(dir, [tensor('other', 4)], { prefix: 'consolidated' });
  }
  if (tiers.includes('pt-index')) {
    for (const f of readdirSync(join(FIXTURES, 'tiny-llama-sharded'))) if (/^pytorch_model/.test(f)) copyFileSync(join(FIXTURES, 'tiny-llama-sharded', f), join(dir, f));
  }
  if (tiers.includes('pt-single')) copyFileSync(join(FIXTURES, 'tiny-llama', 'pytorch_model.bin'), join(dir, 'pytorch_model.bin'));
  if (tiers.includes('pth')) copyFileSync(join(FIXTURES, 'views.pth'), join(dir, 'views.pth'));
  writeFileSync(join(dir, 'config.json'), '{}\n');
  return dir;
}

async function choose(dir: string): Promise<{ format: string; files: string[]; notes: string[] }> {
  const notes: string[] = [];
  const ck = await openCheckpoint(dir, { onNote: (n) => notes.push(n) });
  try {
    expect(ck.tensors().length).toBeGreaterThan(0);
    return { format: ck.format, files: ck.files.map((f) => basename(f)), notes };
  } finally {
    await ck.close();
  }
}

const ORDER: Array<[Tier, string, string[]]> = [
  ['st-index', 'safetensors', ['model.safetensors.index.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']],
  ['st-single', 'safetensors', ['model.safetensors']],
  ['st-other', 'safetensors', ['consolidated.safetensors']],
  ['pt-index', 'pytorch', ['pytorch_model.bin.index.json', 'pytorch_model-00001-of-00002.bin', 'pytorch_model-00002-of-00002.bin']],
  ['pt-single', 'pytorch', ['pytorch_model.bin']],
  ['pth', 'pytorch', ['views.pth']],
];

describe('directory resolution', () => {
  it.each(ORDER.map((row, i) => [row[0], i] as const))('with every tier from %s down, that one wins', async (_tier, i) => {
    const [tier, format, files] = ORDER[i];
    const present = ORDER.slice(i).map((r) => r[0]);
    const got = await choose(await modelDir(present));
    expect(got.format, tier).toBe(format);
    expect([...got.files].sort()).toEqual([...files].sort());
    // The note names what was chosen; passing over PyTorch files for safetensors says so.
    const ptPassedOver = format === 'safetensors' && present.some((t) => t.startsWith('pt') || t === 'pth');
    if (ptPassedOver || format === 'pytorch') {
      expect(got.notes).toHaveLength(1);
      expect(got.notes[0]).toContain(files[0]);
    }
    if (ptPassedOver) expect(got.notes[0]).toMatch(/ignoring .*(pytorch_model|views\.pth)/);
  });

  it('says nothing when safetensors is the only kind present', async () => {
    expect((await choose(await modelDir(['st-single']))).notes).toEqual([]);
    expect((await choose(await modelDir(['st-index']))).notes).toEqual([]);
  });

  it('takes a single .pt file', async () => {
    const dir = join(tmp, 'pt-only');
    mkdirSync(dir);
    copyFileSync(join(FIXTURES, 'nested.pth'), join(dir, 'checkpoint.pt'));
    const got = await choose(dir);
    expect(got).toMatchObject({ format: 'pytorch', files: ['checkpoint.pt'] });
    expect(got.notes[0]).toContain('checkpoint.pt');
  });

  it('refuses several PyTorch files with no index to join them, naming them', async () => {
    const dir = await modelDir(['pth']);
    copyFileSync(join(FIXTURES, 'module.pth'), join(dir, 'module.pth'));
    expect(await errorCode(openCheckpoint(dir))).toBe('UNSUPPORTED_FORMAT');
    await expect(openCheckpoint(dir)).rejects.toThrow(/module\.pth.*views\.pth/);
  });

  it('refuses a directory with no checkpoint in it', async () => {
    const dir = join(tmp, 'empty');
    mkdirSync(dir);
    writeFileSync(join(dir, 'config.json'), '{}\n');
    expect(await errorCode(openCheckpoint(dir))).toBe('NOT_FOUND');
  });

  it('sluice inspect prints the note on stderr and reports the chosen file', async () => {
    const dir = await modelDir(['st-single', 'pt-single']);
    const { code, stdout, stderr } = await runCli(['inspect', dir, '--json']);
    expect(code).toBe(0);
    expect(stderr).toMatch(/^sluice: .*using model\.safetensors.*pytorch_model\.bin.*\n$/);
    const doc = JSON.parse(stdout);
    expect(doc.format).toBe('safetensors');
    expect(doc.files.map((f: string) => basename(f))).toEqual(['model.safetensors']);
  });
});

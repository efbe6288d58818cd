// Constrained decoding end to end on the GPU: a tiny random-weight model with a byte-level
// tokenizer, sampled at temperature 1 under several seeds, always gives JSON that parses and
// validates (ajv) for a few schemas, and a regex match — the mask in the sampler, not the
// model, makes it so: the same seeds unconstrained give no valid JSON. Batched through the
// engine (two constrained and one free sequence in each pass) and on the one-sequence
// generate() path. Any id the sampler drew against the mask would throw (GrammarConstraint).

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { openCheckpoint } from '../../src/checkpoint/open-path.js';
import { generate, type GenerateOptions, type GenerationStats } from '../../src/generate/generate.js';
import { loadModel, type SluiceModel } from '../../src/generate/load-model.js';
import { GpuSampler } from '../../src/generate/sampler.js';
import { parseModelConfig } from '../../src/model/config.js';
import { LlamaModel } from '../../src/model/llama.js';
import { DEFAULT_SAMPLING } from '../../src/ops/sample.js';
import { loadTokenizer } from '../../src/text/tokenizer.js';
import { writeChatModel } from '../support/byte-tokenizer.js';
import { useGpuTestDevice } from '../support/gpu-helpers.js';
import { makeAjv } from '../grammar/support.js';
import { readerFor } from '../text/fixtures.js';

const gpu = useGpuTestDevice('test.grammar-gpu');
const FIXTURE = 'test/fixtures/models/llama-gqa';
const dir = mkdtempSync(join(tmpdir(), 'sluice-grammar-gpu-'));
writeChatModel(FIXTURE, dir);
const EOS = 2;
let model: SluiceModel;
beforeAll(async () => {
  model = await loadModel(dir, { device: gpu.device, dtype: 'f32', contextLength: 700, parallel: 3 });
});
afterAll(() => {
  model?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

// Bounded schemas: every reply completes well within maxTokens whatever the model prefers.
const SCHEMAS: Record<string, object> = {
  person: {
    type: 'object',
    properties: {
      name: { type: 'string', maxLength: 6 },
      age: { type: 'integer', minimum: 0, maximum: 120 },
      tags: { type: 'array', items: { enum: ['red', 'green', 'blue'] }, minItems: 1, maxItems: 3 },
    },
    required: ['name', 'age', 'tags'],
    additionalProperties: false,
  },
  nested: {
    type: 'object',
    properties: {
      point: { type: 'object', properties: { x: { type: 'number' }, y: { type: 'number' } }, required: ['x', 'y'], additionalProperties: false },
      label: { anyOf: [{ type: 'string', maxLength: 4 }, { type: 'null' }] },
      ok: { type: 'boolean' },
    },
    required: ['point', 'label', 'ok'],
    additionalProperties: false,
  },
  flags: { type: 'array', items: { type: 'boolean' }, minItems: 2, maxItems: 4 },
};
const SEEDS = [1, 2, 3];

async function reply(stream: AsyncGenerator<{ text: string; ids: number[] }, GenerationStats>): Promise<{ text: string; ids: number[]; stats: GenerationStats }> {
  let text = '';
  const ids: number[] = [];
  let r = await stream.next();
  while (!r.done) {
    text += r.value.text;
    ids.push(...r.value.ids);
    r = await stream.next();
  }
  return { text, ids, stats: r.value };
}

const parsesAndValidates = (schema: object, text: string): boolean => {
  try {
    return makeAjv().compile(schema)(JSON.parse(text));
  } catch {
    return false;
  }
};

it('temperature 1, several seeds, batched with a free sequence: every constrained reply validates', async () => {
  const options = (seed: number): GenerateOptions => ({ temperature: 1, seed, maxTokens: 600 });
  const names = Object.keys(SCHEMAS);
  for (const seed of SEEDS) {
    // Two constrained sequences and one free one decode in the same passes (3 slots).
    const [a, b, free] = await Promise.all([
      reply(model.generate('JSON:', { ...options(seed), grammar: { jsonSchema: SCHEMAS[names[seed % 3]] } })),
      reply(model.generate('JSON:', { ...options(seed), grammar: { jsonSchema: SCHEMAS[names[(seed + 1) % 3]] } })),
      reply(model.generate('JSON:', { ...options(seed), maxTokens: 30 })),
    ]);
    for (const [r, name] of [[a, names[seed % 3]], [b, names[(seed + 1) % 3]]] as const) {
      expect(parsesAndValidates(SCHEMAS[name], r.text), `seed ${seed}, ${name}: ${r.text}`).toBe(true);
      expect(r.stats.stopReason).toBe('eos');
      expect(r.stats.grammar!.masks).toBe(r.stats.generatedTokens);
    }
    expect(free.ids).toHaveLength(30);
    // The same seed unconstrained is random bytes, not JSON (so the checks above can fail).
    for (const name of names) {
      const plain = await reply(model.generate('JSON:', { ...options(seed), maxTokens: 60 }));
      expect(parsesAndValidates(SCHEMAS[name], plain.text), `unconstrained seed ${seed}: ${plain.text}`).toBe(false);
    }
  }
});

it('a regex and eos: the reply matches and ends when the grammar does', async () => {
  for (const seed of SEEDS) {
    const r = await reply(model.generate('Date:', { temperature: 1, seed, maxTokens: 100, grammar: { regex: '20[0-9]{2}-(0[1-9]|1[0-2])-[0-2][0-9]' } }));
    expect(r.text).toMatch(/^20\d\d-(0[1-9]|1[0-2])-[0-2]\d$/);
    expect(r.stats.stopReason).toBe('eos');
  }
});

it('the one-sequence generate() path constrains the same way', async () => {
  const config = parseModelConfig(readFileSync(`${FIXTURE}/config.json`, 'utf8'));
  const checkpoint = await openCheckpoint(`${FIXTURE}/model.safetensors`);
  const llama = await LlamaModel.load(checkpoint, config, gpu.device, { dtype: 'f32', contextLength: 700 });
  await checkpoint.close();
  const sampler = await GpuSampler.create(llama, DEFAULT_SAMPLING);
  const tokenizer = await loadTokenizer(readerFor(dir), dir);
  try {
    for (const seed of SEEDS) {
      const r = await reply(generate({ model: llama, sampler, tokenizer }, [1, 74, 83], 0, { temperature: 1, seed, maxTokens: 600, eosIds: [EOS], grammar: { jsonSchema: SCHEMAS.person } }));
      expect(parsesAndValidates(SCHEMAS.person, r.text), `seed ${seed}: ${r.text}`).toBe(true);
      expect(r.stats.stopReason).toBe('eos');
      expect(r.stats.grammar).toMatchObject({ masks: r.stats.generatedTokens });
    }
    await expect(reply(generate({ model: llama, sampler }, [1, 74], 0, { grammar: { jsonObject: true }, eosIds: [EOS] }))).rejects.toThrow(/needs the model's tokenizer/);
  } finally {
    sampler.destroy();
    llama.dispose();
  }
});

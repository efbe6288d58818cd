// models/tiny-chat, the embedded default model (trained by scripts/train-tiny-chat.py):
// the directory is complete and small, sluice's greedy replies equal the training script's
// torch greedy replies stored in eval.json (BF16 weights, f32 compute, as here), and a
// sample of the held-out questions is answered exactly. The full held-out eval is
// scripts/eval-tiny-chat.mjs.

import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChatSession } from '../../src/generate/chat-session.js';
import { Engine } from '../../src/generate/engine.js';
import { ModelBatchBackend } from '../../src/generate/model-backend.js';
import { openModel, type OpenedModel } from '../../src/model/open-model.js';
import { useGpuTestDevice } from '../support/gpu-helpers.js';

const DIR = 'models/tiny-chat';

interface EvalItem {
  family: 'add' | 'repeat' | 'capital' | 'other';
  prompt: string;
  expected: string;
  /** The torch greedy reply (BF16 weights, f32 compute). */
  output: string;
  ok: boolean;
}
const evaluation = JSON.parse(readFileSync(join(DIR, 'eval.json'), 'utf8')) as { accuracy: Record<string, number>; items: EvalItem[] };
const family = (f: EvalItem['family']) => evaluation.items.filter((i) => i.family === f);
const every = <T>(xs: T[], n: number): T[] => xs.filter((_, i) => i % Math.floor(xs.length / n) === 0).slice(0, n);

// Parity: a few of each family, whether torch got them right or not.
const PARITY = [...every(family('add'), 4), ...every(family('repeat'), 3), ...every(family('capital'), 2), ...every(family('other'), 1)];
// The goals are ≥ 95% on held-out additions and repeats and 100% on capitals: a sample of 20
// may miss one addition; 10 repeats and 10 capitals may miss none.
const SAMPLE = { add: { items: every(family('add'), 20), misses: 1 }, repeat: { items: every(family('repeat'), 10), misses: 0 }, capital: { items: every(family('capital'), 10), misses: 0 } };

const gpu = useGpuTestDevice('test.tiny-chat');
let opened: OpenedModel;
let backend: ModelBatchBackend;
const replies = new Map<string, string>();

beforeAll(async () => {
  opened = await openModel(DIR, gpu.device, { dtype: 'f32', contextLength: 128 });
  backend = await ModelBatchBackend.create(opened.model);
});
afterAll(() => {
  backend?.destroy();
  opened?.dispose();
});

/** One fresh single-turn chat (no system message, as eval.json's), greedy, memoised. */
async function reply(prompt: string): Promise<string> {
  const known = replies.get(prompt);
  if (known !== undefined) return known;
  const { model, tokenizer, chatTemplate: template, eosIds, defaults } = opened;
  const session = new ChatSession(new Engine({ model, backend, tokenizer, template, eosIds, defaults }));
  let text = '';
  for await (const delta of session.send(prompt, { temperature: 0, maxTokens: defaults.maxTokens })) text += delta.text;
  replies.set(prompt, text);
  return text;
}

describe('models/tiny-chat', () => {
  it('is a complete HF model directory: greedy defaults, <|im_end|> as eos, the ChatML template, ≤ 25 MB', () => {
    const config = JSON.parse(readFileSync(join(DIR, 'config.json'), 'utf8'));
    expect(config).toMatchObject({ architectures: ['LlamaForCausalLM'], tie_word_embeddings: true, torch_dtype: 'bfloat16', rope_theta: 10000 });
    expect(config.num_key_value_heads).toBeLessThan(config.num_attention_heads);
    expect(opened.eosIds).toEqual([opened.tokenizer!.encode('<|im_end|>', { addSpecialTokens: false })[0]]);
    expect(opened.defaults).toMatchObject({ temperature: 0, maxTokens: 48 });
    expect(opened.chatTemplate!.render([{ role: 'user', content: 'hi' }], { addGenerationPrompt: true })).toBe('<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n');
    // Digits are pre-tokenized one by one, so no merge glues them together.
    expect(opened.tokenizer!.encode('1234', { addSpecialTokens: false })).toHaveLength(4);
    const bytes = readdirSync(DIR).reduce((n, f) => n + statSync(join(DIR, f)).size, 0);
    expect(bytes).toBeLessThan(25e6);
  });

  it('parity: greedy replies equal the training script\'s torch replies in eval.json', async () => {
    const got = [];
    for (const item of PARITY) got.push(await reply(item.prompt));
    expect(got).toEqual(PARITY.map((i) => i.output));
  });

  it('answers held-out additions and repeats and the capitals exactly', async () => {
    for (const [name, { items, misses }] of Object.entries(SAMPLE)) {
      const wrong = [];
      for (const item of items) {
        const text = await reply(item.prompt);
        if (text !== item.expected) wrong.push(`${item.prompt} → ${JSON.stringify(text)}`);
      }
      expect(wrong.length, `${name}: ${wrong.join('; ')}`).toBeLessThanOrEqual(misses);
    }
  });
});

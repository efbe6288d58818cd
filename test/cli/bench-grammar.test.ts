// `sluice bench generate` with a grammar on a tiny model: the JSON reports the vocabulary
// and compile times and the mask cost per token against the decode step, and the figures
// agree with each other; --tokenizer lends a tokenizer to a model without one. No speed
// asserted.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { writeChatModel } from '../support/byte-tokenizer.js';
import { runCli } from '../support/cli.js';

const MODEL = 'test/fixtures/models/llama-gqa'; // no tokenizer
const dir = mkdtempSync(join(tmpdir(), 'sluice-bench-grammar-'));
writeChatModel(MODEL, dir);
const schema = join(dir, 'schema.json');
writeFileSync(schema, JSON.stringify({ type: 'object', properties: { n: { type: 'integer' } }, required: ['n'] }));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

it('--json-schema --tokenizer: vocabulary, compile and mask figures against the decode step', async () => {
  const tokens = 24;
  const { code, stdout, stderr } = await runCli(['bench', 'generate', MODEL, '--prompt-tokens', '8', '--tokens', String(tokens), '--dtype', 'f32', '--json-schema', schema, '--tokenizer', dir, '--json']);
  expect([code, stderr]).toEqual([0, '']);
  const g = JSON.parse(stdout).grammar;
  expect(g).toMatchObject({ source: schema, tokenizer: dir, tokenizer_tokens: 256, vocab_size: 256, tokens });
  for (const key of ['vocabulary_ms', 'compile_ms', 'fill_ms_per_token', 'mask_ms_per_token', 'mask_ms_max', 'constrained_step_ms', 'step_ms', 'mask_over_step']) expect(g[key], key).toBeGreaterThan(0);
  expect(g.upload_ms_per_token).toBeGreaterThanOrEqual(0);
  expect(g.mask_ms_per_token).toBeCloseTo(g.fill_ms_per_token + g.upload_ms_per_token, 2);
  expect(g.mask_over_step).toBeCloseTo(g.mask_ms_per_token / g.step_ms, 2);
  expect(g.step_overhead).toBeCloseTo(g.constrained_step_ms / g.step_ms - 1, 2);
  expect(g.mask_ms_median).toBeLessThanOrEqual(g.mask_ms_max);
  expect(g.automaton_states).toBeGreaterThan(1);
});

it('the model\'s own tokenizer by default; the text report names the goal', async () => {
  const { code, stdout } = await runCli(['bench', 'generate', dir, '--prompt-tokens', '4', '--tokens', '4', '--dtype', 'f32', '--regex', '[0-9]+']);
  expect(code).toBe(0);
  expect(stdout).toMatch(/grammar --regex: vocabulary of .* \(256 tokens, 256 ids\)/);
  expect(stdout).toMatch(/4 constrained tokens .*: mask [0-9.]+ ms\/token .* of the [0-9.]+ ms decode step \(goal ≤ 15%\)/);
});

it.each([
  [[MODEL, '--json-object'], /has no tokenizer\.json; a grammar needs one: give --tokenizer DIR/],
  [[MODEL, '--tokenizer', dir], /--tokenizer DIR goes with a grammar/],
  [[dir, '--json-object', '--parallel', '2'], /a grammar goes without --parallel/],
  [[dir, '--json-schema', join(dir, 'missing.json')], /missing\.json: not found/],
])('refused: %j', async (args, pattern) => {
  const { code, stderr } = await runCli(['bench', 'generate', ...args, '--tokens', '2', '--prompt-tokens', '2']);
  expect(code).not.toBe(0);
  expect(stderr).toMatch(pattern);
});

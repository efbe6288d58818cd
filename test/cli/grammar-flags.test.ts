// `--json-schema FILE | --grammar FILE | --regex | --json-object` on generate and chat: the
// reply of a random tiny model at temperature 1 matches; the JSON document reports the
// grammar's cost; a bad file is one line naming it, before any model is loaded.

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { writeChatModel } from '../support/byte-tokenizer.js';
import { runCli } from '../support/cli.js';
import { makeAjv } from '../grammar/support.js';

const MODEL = 'test/fixtures/models/llama-gqa';
const dir = mkdtempSync(join(tmpdir(), 'sluice-cli-grammar-'));
const chatDir = join(dir, 'model');
mkdirSync(chatDir);
writeChatModel(MODEL, chatDir);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const file = (name: string, text: string) => {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
};

const SCHEMA = {
  type: 'object',
  properties: { city: { type: 'string', maxLength: 5 }, rank: { type: 'integer', minimum: 1, maximum: 9 } },
  required: ['city', 'rank'],
  additionalProperties: false,
};
const schemaFile = file('schema.json', JSON.stringify(SCHEMA));
const sampling = ['--temperature', '1', '--seed', '4', '--max-tokens', '300'];

it('generate --json-schema: the reply validates; --json reports the grammar cost', async () => {
  const { code, stdout, stderr } = await runCli(['generate', chatDir, '--prompt', 'City:', '--json-schema', schemaFile, ...sampling, '--json']);
  expect([code, stderr]).toEqual([0, '']);
  const r = JSON.parse(stdout);
  expect(makeAjv().compile(SCHEMA)(JSON.parse(r.text)), r.text).toBe(true);
  expect(r.stop_reason).toBe('eos');
  expect(r.grammar.compile_ms).toBeGreaterThan(0);
  expect(r.grammar.mask_ms_per_token).toBeGreaterThan(0);
});

it('generate --grammar (GBNF) and --regex; chat --json-object', async () => {
  const gbnf = file('yesno.gbnf', '# a yes or a no, then digits\nroot ::= ("yes" | "no") "-" [0-9]{2,3}\n');
  const g = await runCli(['generate', chatDir, '--prompt', 'A:', '--grammar', gbnf, ...sampling, '--json']);
  expect(g.code, g.stderr).toBe(0);
  expect(JSON.parse(g.stdout).text).toMatch(/^(yes|no)-[0-9]{2,3}$/);
  const re = await runCli(['generate', chatDir, '--prompt', 'A:', '--regex', '[A-Z][a-z]{3}!', ...sampling, '--json']);
  expect(JSON.parse(re.stdout).text).toMatch(/^[A-Z][a-z]{3}!$/);
  // Any object: random keys and values of a random model (this seed closes it after ~450 tokens).
  const chat = await runCli(['chat', chatDir, '--prompt', 'Give me JSON', '--json-object', ...sampling, '--max-tokens', '2000', '--context', '2100', '--dtype', 'f32', '--json']);
  expect(chat.code, chat.stderr).toBe(0);
  const reply = JSON.parse(chat.stdout);
  expect(reply.stop_reason).toBe('eos');
  const value = JSON.parse(reply.text);
  expect(typeof value === 'object' && value !== null && !Array.isArray(value)).toBe(true);
});

it.each([
  ['a missing file', ['--json-schema', join(dir, 'nope.json')], /^sluice: generate: .*nope\.json: not found\n$/],
  ['invalid JSON', ['--json-schema', file('bad.json', '{"type": ')], /^sluice: generate: .*bad\.json: not valid JSON \(.*\)\n$/],
  ['a keyword it cannot enforce', ['--json-schema', file('unique.json', '{"type":"array","uniqueItems":true}')], /^sluice: generate: .*unique\.json: .*uniqueItems.*\n$/],
  ['a bad GBNF line', ['--grammar', file('bad.gbnf', 'root ::= "a"\nx ::= "b\n')], /^sluice: generate: .*bad\.gbnf: .*line 2.*\n$/],
  ['a bad regex', ['--regex', 'a(b'], /^sluice: generate: --regex: .*\n$/],
  ['two grammars', ['--regex', 'a', '--json-object'], /^sluice: generate: give one of --regex, --json-object, not several\n$/],
])('%s: one line naming it, before the model loads', async (_, flags, pattern) => {
  const { code, stdout, stderr } = await runCli(['generate', join(dir, 'no-such-model'), '--prompt', 'x', ...flags]);
  expect(code).not.toBe(0);
  expect(stdout).toBe('');
  expect(stderr).toMatch(pattern);
});

it('a model without a tokenizer cannot be constrained', async () => {
  const { code, stderr } = await runCli(['generate', MODEL, '--ids', '1,2,3', '--json-object']);
  expect(code).not.toBe(0);
  expect(stderr).toMatch(/^sluice: generate: --json-object: the model has no tokenizer\.json, so its output cannot be constrained\n$/);
});

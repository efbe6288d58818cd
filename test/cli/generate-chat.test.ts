// `sluice generate` and `sluice chat` end to end on tiny reference models: greedy ids equal
// the PyTorch reference through the CLI, the JSON documents' shape, a one-turn chat, and
// the usage errors.

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { writeChatModel } from '../support/byte-tokenizer.js';
import { runCli } from '../support/cli.js';

const MODEL = 'test/fixtures/models/llama-gqa';
const reference = JSON.parse(readFileSync(`${MODEL}/reference.json`, 'utf8')) as { prompt_ids: number[]; greedy_ids: number[] };
const chatDir = mkdtempSync(join(tmpdir(), 'sluice-cli-chat-'));
writeChatModel(MODEL, chatDir);
afterAll(() => rmSync(chatDir, { recursive: true, force: true }));

describe('sluice generate', () => {
  it('--ids --temperature 0 --json: the reference greedy ids, and the documented fields', async () => {
    const { code, stdout, stderr } = await runCli(['generate', MODEL, '--ids', reference.prompt_ids.join(','), '--temperature', '0', '--max-tokens', '24', '--json']);
    expect([code, stderr]).toEqual([0, '']);
    const r = JSON.parse(stdout);
    expect(r.ids).toEqual(reference.greedy_ids);
    expect(r).toMatchObject({ text: '', prompt_tokens: 12, generated_tokens: 24, stop_reason: 'length' });
    expect(Object.keys(r.timings)).toEqual(['ttft_ms', 'prefill_tokens_per_second', 'decode_tokens_per_second']);
  });

  it('without --json and without a tokenizer: the ids, space-separated', async () => {
    const { code, stdout } = await runCli(['generate', MODEL, '--ids', reference.prompt_ids.join(','), '--temperature', '0', '--max-tokens', '5']);
    expect(code).toBe(0);
    expect(stdout).toBe(`${reference.greedy_ids.slice(0, 5).join(' ')} \n`);
  });

  it('--prompt with a tokenizer streams text; --prompt without one is a clear error', async () => {
    const ok = await runCli(['generate', chatDir, '--prompt', 'Hello', '--max-tokens', '4', '--json']);
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout).prompt_tokens).toBe(5);
    const bad = await runCli(['generate', MODEL, '--prompt', 'Hello']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/no tokenizer\.json, so --prompt cannot be tokenized; use --ids/);
  });

  it.each([
    [['generate'], /which model\?/],
    [['generate', MODEL], /give --prompt TEXT or --ids/],
    [['generate', MODEL, '--ids', '1,x'], /--ids must be token ids/],
    [['generate', MODEL, '--ids', '1', '--temperature=-1'], /--temperature must be a number ≥ 0/],
    [['generate', MODEL, '--ids', '1', '--top-p', '0'], /--top-p must be in \(0, 1\]/],
    [['generate', MODEL, '--ids', '1', '--dtype', 'f8'], /--dtype must be auto, f16 or f32/],
  ])('usage error: %j', async (argv, pattern) => {
    const { code, stderr } = await runCli(argv as string[]);
    expect(code).toBe(2);
    expect(stderr).toMatch(pattern);
  });
});

describe('a model behind a URL', () => {
  it('generate reads config and weights over HTTP (Range requests) and answers as from disk', async () => {
    const { TestServer } = await import('../support/http-server.js');
    const files: Record<string, Uint8Array> = {};
    for (const name of ['config.json', 'model.safetensors']) files[`/models/gqa/${name}`] = new Uint8Array(readFileSync(join(MODEL, name)));
    const server = await TestServer.start(files);
    try {
      const { code, stdout, stderr } = await runCli(['generate', server.url('/models/gqa/'), '--ids', reference.prompt_ids.join(','), '--temperature', '0', '--max-tokens', '8', '--json']);
      expect([code, stderr]).toEqual([0, '']);
      expect(JSON.parse(stdout).ids).toEqual(reference.greedy_ids.slice(0, 8));
      expect(server.requests.some((r) => r.headers.range)).toBe(true);
    } finally {
      await server.close();
    }
  });
});

describe('sluice chat', () => {
  it('--prompt --json: one turn over the chat template', async () => {
    const { code, stdout, stderr } = await runCli(['chat', chatDir, '--prompt', 'Hi', '--system', 'Be brief.', '--json']);
    expect([code, stderr]).toEqual([0, '']);
    const r = JSON.parse(stdout);
    // <|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n
    expect(r.prompt_tokens).toBe(1 + 7 + 9 + 1 + 1 + 1 + 5 + 2 + 1 + 1 + 1 + 10);
    expect(r.reused_tokens).toBe(0);
    expect(r.generated_tokens).toBeLessThanOrEqual(12); // generation_config max_new_tokens
    expect(typeof r.text).toBe('string');
  });

  it('a model without a chat template: a clear error; --json without --prompt: usage', async () => {
    const noTemplate = await runCli(['chat', MODEL, '--prompt', 'Hi']);
    expect(noTemplate.code).toBe(1);
    expect(noTemplate.stderr).toMatch(/no tokenizer\.json, so no chat; `sluice generate --ids` still works/);
    const usage = await runCli(['chat', chatDir, '--json']);
    expect(usage.code).toBe(2);
  });
});

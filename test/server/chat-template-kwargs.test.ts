// Chat template variables through the server and the library: a model loaded with
// templateVariables (what `sluice serve --template-var` does) renders them into every chat
// prompt; a request's chat_template_kwargs override them key by key; a call's
// templateVariables override the model's; bad input is a 400 naming the field.
// The template is Qwen3-style: enable_thinking=false adds '<think>\n\n</think>\n\n' (19 byte
// tokens with the byte tokenizer) at the end of the prompt, which usage.prompt_tokens shows.

import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, type SluiceModel } from '../../src/generate/load-model.js';
import { type RunningServer, startServer } from '../../src/server/server.js';
import { writeChatModel } from '../support/byte-tokenizer.js';
import { useGpuTestDevice } from '../support/gpu-helpers.js';

const gpu = useGpuTestDevice('test.server-kwargs');
const dir = mkdtempSync(join(tmpdir(), 'sluice-serve-kwargs-'));
const MESSAGES = [{ role: 'user' as const, content: 'Hi' }];
// <|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n: the byte tokenizer's specials are one id each
const PLAIN = 1 + 5 + 2 + 1 + 1 + 1 + 10;
const NO_THINKING = PLAIN + '<think>\n\n</think>\n\n'.length;
let model: SluiceModel;
let server: RunningServer;

beforeAll(async () => {
  writeChatModel('test/fixtures/models/llama-gqa', dir);
  copyFileSync('test/fixtures/text/templates/qwen3-style.jinja', join(dir, 'chat_template.jinja'));
  model = await loadModel(dir, { device: gpu.device, dtype: 'f32', contextLength: 96, templateVariables: { enable_thinking: false } });
  server = await startServer([model], { port: 0 });
});
afterAll(async () => {
  await server?.close();
  model?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

const post = (body: Record<string, unknown>) =>
  fetch(`${server.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ messages: MESSAGES, max_tokens: 1, ...body }) });

async function promptTokens(body: Record<string, unknown> = {}): Promise<number> {
  const res = await post(body);
  expect(res.status).toBe(200);
  return (await res.json()).usage.prompt_tokens;
}

describe('chat_template_kwargs', () => {
  it("the server's defaults apply; a request's kwargs override them key by key", async () => {
    expect(await promptTokens()).toBe(NO_THINKING);
    expect(await promptTokens({ chat_template_kwargs: null })).toBe(NO_THINKING);
    expect(await promptTokens({ chat_template_kwargs: {} })).toBe(NO_THINKING);
    expect(await promptTokens({ chat_template_kwargs: { unrelated: 1 } })).toBe(NO_THINKING);
    expect(await promptTokens({ chat_template_kwargs: { enable_thinking: true } })).toBe(PLAIN);
    expect(await promptTokens({ chat_template_kwargs: { enable_thinking: false }, stream: false })).toBe(NO_THINKING);
  });

  it.each([
    ['a string', 'enable_thinking=false', 'chat_template_kwargs', /^chat_template_kwargs must be an object/],
    ['an array', [{ enable_thinking: false }], 'chat_template_kwargs', /^chat_template_kwargs must be an object/],
    ['a number', 3, 'chat_template_kwargs', /^chat_template_kwargs must be an object/],
    ['a reserved key', { messages: [] }, 'chat_template_kwargs.messages', /^chat_template_kwargs: messages is set by the server/],
    ['another reserved key', { add_generation_prompt: false }, 'chat_template_kwargs.add_generation_prompt', /add_generation_prompt is set by the server/],
    ['a key that is not a name', { 'a b': 1 }, 'chat_template_kwargs.a b', /"a b" is not a template variable name/],
  ])('%s → 400 naming the field', async (_name, kwargs, param, message) => {
    const res = await post({ chat_template_kwargs: kwargs });
    expect(res.status).toBe(400);
    const { error } = await res.json();
    expect(error).toMatchObject({ type: 'invalid_request_error', param });
    expect(error.message).toMatch(message);
  });
});

describe('templateVariables in the library', () => {
  const libraryPromptTokens = async (options = {}) => {
    const run = model.chat(MESSAGES, { maxTokens: 1, ...options });
    let r = await run.next();
    while (!r.done) r = await run.next();
    return r.value.promptTokens;
  };

  it("the model's apply to every chat(); a call's win key by key", async () => {
    expect(model.engine.templateVariables).toEqual({ enable_thinking: false });
    expect(await libraryPromptTokens()).toBe(NO_THINKING);
    expect(await libraryPromptTokens({ templateVariables: { enable_thinking: true } })).toBe(PLAIN);
    expect(await libraryPromptTokens({ templateVariables: { other: 'x' } })).toBe(NO_THINKING);
  });

  it('refuses reserved names: per call, and at load before any work', async () => {
    expect(() => model.chat(MESSAGES, { templateVariables: { bos_token: '<s>' } })).toThrow(
      expect.objectContaining({ code: 'USAGE', message: 'templateVariables: bos_token is set by sluice and cannot be a template variable' }),
    );
    await expect(loadModel(dir, { device: gpu.device, templateVariables: { messages: [] } })).rejects.toMatchObject({
      code: 'USAGE',
      message: 'templateVariables: messages is set by sluice and cannot be a template variable',
    });
  });
});

// --template-var KEY=VALUE: VALUE as JSON when it parses, else text; bad forms are one-line
// usage errors (exit 2) before any model loads; generate refuses the flag (it applies no
// template); and with `sluice chat` the variable reaches the model's template: a Qwen3-style
// template given enable_thinking=false adds its empty <think> block to the prompt.

import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseCommandArgs, templateVarOption, templateVarsFlag } from '../../src/cli/args.js';
import { writeChatModel } from '../support/byte-tokenizer.js';
import { runCli } from '../support/cli.js';

const MODEL = 'test/fixtures/models/llama-gqa';
const qwen3Dir = mkdtempSync(join(tmpdir(), 'sluice-cli-template-vars-'));
writeChatModel(MODEL, qwen3Dir);
// chat_template.jinja wins over tokenizer_config.json's ChatML template.
copyFileSync('test/fixtures/text/templates/qwen3-style.jinja', join(qwen3Dir, 'chat_template.jinja'));
afterAll(() => rmSync(qwen3Dir, { recursive: true, force: true }));

const parse = (...flags: string[]) => {
  const { values } = parseCommandArgs('chat', flags.flatMap((f) => ['--template-var', f]), templateVarOption);
  return templateVarsFlag('chat', values);
};

describe('parsing --template-var KEY=VALUE', () => {
  it('reads VALUE as JSON when it parses, else as the text given', () => {
    expect(parse('enable_thinking=false', 'x=3', 'name="a b"', 'date_string=26 Jul 2024', 'xs=[1, 2]', 'cfg={"a": null}', 'eq=a=b', 'empty=', 'flag=true')).toEqual({
      enable_thinking: false,
      x: 3,
      name: 'a b',
      date_string: '26 Jul 2024',
      xs: [1, 2],
      cfg: { a: null },
      eq: 'a=b',
      empty: '',
      flag: true,
    });
    expect(templateVarsFlag('chat', {})).toBeUndefined();
  });

  it.each([
    ['novalue', 'chat: --template-var must be KEY=VALUE, not "novalue"'],
    ['=3', 'chat: --template-var must be KEY=VALUE, not "=3"'],
    ['a-b=1', 'chat: --template-var: "a-b" is not a template variable name (letters, digits and _, not first a digit)'],
    ['messages=[]', 'chat: --template-var: messages is set by sluice and cannot be a template variable'],
    ['add_generation_prompt=false', 'chat: --template-var: add_generation_prompt is set by sluice and cannot be a template variable'],
    ['bos_token=<s>', 'chat: --template-var: bos_token is set by sluice and cannot be a template variable'],
    ['tools=[]', 'chat: --template-var: tools is set by sluice and cannot be a template variable'],
  ])('%s → one-line usage error, exit 2, before loading the model', async (flag, message) => {
    const { code, stdout, stderr } = await runCli(['chat', qwen3Dir, '--prompt', 'Hi', '--template-var', flag]);
    expect([code, stdout, stderr]).toEqual([2, '', `sluice: ${message}\n`]);
  });

  it('a key given twice is a usage error', async () => {
    const { code, stderr } = await runCli(['chat', qwen3Dir, '--prompt', 'Hi', '--template-var', 'x=1', '--template-var', 'x=2']);
    expect([code, stderr]).toEqual([2, 'sluice: chat: --template-var x is given twice\n']);
  });

  it('serve checks it too, before loading', async () => {
    const { code, stderr } = await runCli(['serve', qwen3Dir, '--port', '0', '--template-var', 'eos_token=x']);
    expect([code, stderr]).toEqual([2, 'sluice: serve: --template-var: eos_token is set by sluice and cannot be a template variable\n']);
  });

  it('generate applies no template, so it refuses the flag in words (and --help says so)', async () => {
    const { code, stderr } = await runCli(['generate', qwen3Dir, '--prompt', 'Hi', '--template-var', 'enable_thinking=false']);
    expect(code).toBe(2);
    expect(stderr).toBe("sluice: generate: --template-var is for chat templates, and generate applies none (raw text); use sluice chat or sluice serve\n");
    expect((await runCli(['generate', '--help'])).stdout).toMatch(/--template-var is refused/);
    expect((await runCli(['chat', '--help'])).stdout).toMatch(/--template-var KEY=VALUE/);
    expect((await runCli(['serve', '--help'])).stdout).toMatch(/chat_template_kwargs/);
  });
});

describe('sluice chat --template-var, end to end', () => {
  const promptTokens = async (...extra: string[]) => {
    const { code, stdout, stderr } = await runCli(['chat', qwen3Dir, '--prompt', 'Hi', '--max-tokens', '1', '--json', ...extra]);
    expect([code, stderr]).toEqual([0, '']);
    return JSON.parse(stdout).prompt_tokens as number;
  };

  it("enable_thinking=false reaches the template: its '<think>\\n\\n</think>\\n\\n' (19 byte tokens) ends the prompt", async () => {
    const plain = await promptTokens();
    // <|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n: the byte tokenizer's specials are one id each
    expect(plain).toBe(1 + 5 + 2 + 1 + 1 + 1 + 10);
    expect(await promptTokens('--template-var', 'enable_thinking=false')).toBe(plain + '<think>\n\n</think>\n\n'.length);
    expect(await promptTokens('--template-var', 'enable_thinking=true')).toBe(plain);
    // The text "False" is not the boolean false (JSON's is lower case): the template ignores it.
    expect(await promptTokens('--template-var', 'enable_thinking=False')).toBe(plain);
  });
});


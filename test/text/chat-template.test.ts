// The templates under test/fixtures/text/templates/ are the public chat templates of
// Qwen/Qwen2-0.5B-Instruct (ChatML), meta-llama/Meta-Llama-3-8B-Instruct,
// meta-llama/Llama-3.2-1B-Instruct, meta-llama/Llama-2-7b-chat-hf and
// mistralai/Mistral-7B-Instruct-v0.1 (its first template, whose `</s> [INST]` rendering the
// @huggingface/jinja README shows), copied from our knowledge of their tokenizer_config.json
// files, not downloaded; qwen3-style.jinja is a small template written in the style of
// Qwen3's (its enable_thinking switch as Qwen3's has it). Every expected string below is what Python's jinja2, set up as
// transformers sets it up, renders (test/fixtures/text/render_templates.py prints them).

import { describe, expect, it } from 'vitest';
import { isSluiceError } from '../../src/errors.js';
import { ChatTemplate, checkTemplateVariables, loadChatTemplate, strftime, templateFromConfig, type ChatMessage } from '../../src/text/chat-template.js';
import { Tokenizer } from '../../src/text/tokenizer.js';
import { fixtureDir, loadFixtureTokenizer, readerFor, templateText } from './fixtures.js';

const SYSTEM_CHAT: ChatMessage[] = [
  { role: 'system', content: 'You are a terse assistant.' },
  { role: 'user', content: 'Hello!' },
  { role: 'assistant', content: 'Hi. How can I help?' },
  { role: 'user', content: 'What is a sluice? ' }, // the trailing space shows which templates trim
];
const PLAIN_CHAT: ChatMessage[] = [
  { role: 'user', content: 'Hello!' },
  { role: 'assistant', content: 'Hi. How can I help?' },
  { role: 'user', content: 'What is a sluice?' },
];
const LLAMA3_TOKENS = { bos_token: '<|begin_of_text|>', eos_token: '<|eot_id|>' };
const JAN_5_2025 = new Date(2025, 0, 5, 9, 7, 3); // local time, as strftime_now uses

async function template(name: string, tokens = {}): Promise<ChatTemplate> {
  return new ChatTemplate(await templateText(name), `${name}.jinja`, tokens);
}

describe('ChatML (Qwen2, from tokenizer_config.json)', () => {
  it('renders a conversation with a system message, with and without the generation prompt', async () => {
    const chat = await loadChatTemplate(readerFor(fixtureDir('bytelevel')), await loadFixtureTokenizer('bytelevel'));
    const turns =
      '<|im_start|>system\nYou are a terse assistant.<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n' +
      '<|im_start|>assistant\nHi. How can I help?<|im_end|>\n<|im_start|>user\nWhat is a sluice? <|im_end|>\n';
    expect(chat.render(SYSTEM_CHAT)).toBe(turns);
    expect(chat.render(SYSTEM_CHAT, { addGenerationPrompt: true })).toBe(`${turns}<|im_start|>assistant\n`);
    expect(chat.source).toBe(`${fixtureDir('bytelevel')}/tokenizer_config.json`);
  });

  it('adds the default system message when there is none', async () => {
    const chat = await loadChatTemplate(readerFor(fixtureDir('bytelevel')), await loadFixtureTokenizer('bytelevel'));
    expect(chat.render(PLAIN_CHAT, { addGenerationPrompt: true })).toBe(
      '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n' +
        '<|im_start|>assistant\nHi. How can I help?<|im_end|>\n<|im_start|>user\nWhat is a sluice?<|im_end|>\n<|im_start|>assistant\n',
    );
  });

  it('renders text that tokenizes with the special tokens whole', async () => {
    const tokenizer = await loadFixtureTokenizer('bytelevel');
    const chat = await loadChatTemplate(readerFor(fixtureDir('bytelevel')), tokenizer);
    const ids = tokenizer.encode(chat.render([{ role: 'user', content: 'Hi' }], { addGenerationPrompt: true }), { addSpecialTokens: false });
    // The ids of the Rust library for the same text.
    expect(ids).toEqual([
      557, 115, 121, 115, 269, 109, 10, 89, 311, 358, 258, 32, 257, 108, 112, 102, 117, 108, 258, 115, 115, 105, 115, 116, 274, 116, 46, 558, 10,
      557, 117, 115, 278, 10, 72, 105, 558, 10, 557, 97, 115, 115, 105, 115, 116, 274, 116, 10,
    ]);
  });
});

describe('Llama 3', () => {
  it('renders system + multi-turn, trimming each message', async () => {
    const chat = await template('llama3', LLAMA3_TOKENS);
    const turns =
      '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a terse assistant.<|eot_id|>' +
      '<|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>' +
      '<|start_header_id|>assistant<|end_header_id|>\n\nHi. How can I help?<|eot_id|>' +
      '<|start_header_id|>user<|end_header_id|>\n\nWhat is a sluice?<|eot_id|>';
    expect(chat.render(SYSTEM_CHAT)).toBe(turns);
    expect(chat.render(SYSTEM_CHAT, { addGenerationPrompt: true })).toBe(`${turns}<|start_header_id|>assistant<|end_header_id|>\n\n`);
    expect(chat.render(PLAIN_CHAT, { addGenerationPrompt: true })).toBe(
      '<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>' +
        '<|start_header_id|>assistant<|end_header_id|>\n\nHi. How can I help?<|eot_id|>' +
        '<|start_header_id|>user<|end_header_id|>\n\nWhat is a sluice?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n',
    );
  });
});

describe('Llama 3.1 and 3.2 (chat_template.jinja, date_string, strftime_now)', () => {
  const header = (date: string) =>
    `<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: ${date}\n\n`;
  const rest =
    '<|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>' +
    '<|start_header_id|>assistant<|end_header_id|>\n\nHi. How can I help?<|eot_id|>' +
    '<|start_header_id|>user<|end_header_id|>\n\nWhat is a sluice?<|eot_id|>';

  it('renders system + multi-turn with the date it is given', async () => {
    const chat = await template('llama3.2', LLAMA3_TOKENS);
    const variables = { date_string: '05 Jan 2025' };
    expect(chat.render(SYSTEM_CHAT, { variables })).toBe(`${header('05 Jan 2025')}You are a terse assistant.<|eot_id|>${rest}`);
    expect(chat.render(SYSTEM_CHAT, { variables, addGenerationPrompt: true })).toBe(
      `${header('05 Jan 2025')}You are a terse assistant.<|eot_id|>${rest}<|start_header_id|>assistant<|end_header_id|>\n\n`,
    );
    expect(chat.render(PLAIN_CHAT, { variables, addGenerationPrompt: true })).toBe(
      `${header('05 Jan 2025')}<|eot_id|>${rest}<|start_header_id|>assistant<|end_header_id|>\n\n`,
    );
  });

  it("leaves date_string undefined: Llama 3.2's template then takes today from strftime_now", async () => {
    const chat = await template('llama3.2', LLAMA3_TOKENS);
    expect(chat.render(PLAIN_CHAT, { now: JAN_5_2025 })).toBe(`${header('05 Jan 2025')}<|eot_id|>${rest}`);
  });

  it("leaves date_string undefined: Llama 3.1's template then uses its own default, 26 Jul 2024", async () => {
    // Llama 3.1's template differs from 3.2's here: no strftime_now, a fixed default date.
    const llama32 = await templateText('llama3.2');
    const block = /\{%- if not date_string is defined %\}[\s\S]*?\{%- endif %\}\n\{%- endif %\}/;
    expect(llama32).toMatch(block);
    const llama31 = llama32.replace(block, '{%- if not date_string is defined %}\n    {%- set date_string = "26 Jul 2024" %}\n{%- endif %}');
    const chat = new ChatTemplate(llama31, 'llama3.1.jinja', LLAMA3_TOKENS);
    expect(chat.render(PLAIN_CHAT, { now: JAN_5_2025 })).toBe(`${header('26 Jul 2024')}<|eot_id|>${rest}`);
    expect(chat.render(PLAIN_CHAT, { now: JAN_5_2025, variables: { date_string: '05 Jan 2025' } })).toBe(`${header('05 Jan 2025')}<|eot_id|>${rest}`);
    expect(new ChatTemplate('{{ date_string is defined }}', 't.jinja').render([])).toBe('false');
  });

  it('is read from chat_template.jinja, which wins over tokenizer_config.json', async () => {
    const dir = fixtureDir('bytelevel');
    const chat = await loadChatTemplate(readerFor(dir, { 'chat_template.jinja': await templateText('llama3.2') }), await loadFixtureTokenizer('bytelevel'));
    expect(chat.source).toBe(`${dir}/chat_template.jinja`);
    expect(chat.render(PLAIN_CHAT, { now: JAN_5_2025 })).toBe(`${header('05 Jan 2025').replace('<|begin_of_text|>', '')}<|eot_id|>${rest}`); // Qwen2 has no bos
  });
});

describe('Qwen3-style enable_thinking (template variables)', () => {
  const THOUGHT_CHAT: ChatMessage[] = [
    { role: 'system', content: 'Be brief.' },
    { role: 'user', content: 'Hi' },
    { role: 'assistant', content: '<think>\nhm\n</think>\n\nHello.' },
    { role: 'user', content: 'Why?' },
  ];
  // What Python's jinja2, set up as transformers sets it up, renders for these messages.
  const turns =
    '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n' +
    '<|im_start|>user\nWhy?<|im_end|>\n<|im_start|>assistant\n';

  it('closes an empty <think> block when enable_thinking is false, and only then', async () => {
    const chat = await template('qwen3-style', { eos_token: '<|im_end|>' });
    expect(chat.render(THOUGHT_CHAT, { addGenerationPrompt: true })).toBe(turns);
    expect(chat.render(THOUGHT_CHAT, { addGenerationPrompt: true, variables: { enable_thinking: true } })).toBe(turns);
    expect(chat.render(THOUGHT_CHAT, { addGenerationPrompt: true, variables: { enable_thinking: false } })).toBe(`${turns}<think>\n\n</think>\n\n`);
    // `is false` is the boolean test: the text "false" is not false.
    expect(chat.render(THOUGHT_CHAT, { addGenerationPrompt: true, variables: { enable_thinking: 'false' } })).toBe(turns);
  });

  it('passes numbers, strings, lists and objects through as Jinja values', () => {
    const chat = new ChatTemplate('{{ n + 1 }} {{ name }} {{ xs | length }} {{ cfg.mode }}', 't.jinja');
    expect(chat.render([], { variables: { n: 3, name: 'a b', xs: [1, 2], cfg: { mode: 'fast' } } })).toBe('4 a b 2 fast');
  });

  it.each(['messages', 'add_generation_prompt', 'bos_token', 'eos_token', 'tools', 'documents', 'raise_exception', 'none'])(
    'refuses the reserved name %s, naming it',
    (key) => {
      const chat = new ChatTemplate('{{ 1 }}', 't.jinja');
      expect(() => chat.render([], { variables: { [key]: 'x' } })).toThrow(
        expect.objectContaining({ code: 'USAGE', message: `template variable: ${key} is set by sluice and cannot be a template variable` }),
      );
    },
  );

  it('refuses a key that is not a name, and variables that are not an object', () => {
    expect(() => checkTemplateVariables({ 'a-b': 1 }, 'chat: --template-var')).toThrow(
      'chat: --template-var: "a-b" is not a template variable name (letters, digits and _, not first a digit)',
    );
    expect(() => checkTemplateVariables({ '1x': 1 })).toThrow(/"1x" is not a template variable name/);
    expect(() => checkTemplateVariables([] as never, 'templateVariables')).toThrow('templateVariables: template variables must be an object of name → value');
    expect(() => checkTemplateVariables({ enable_thinking: false, date_string: '1 Jan 2025', _x1: null })).not.toThrow();
  });
});

describe('Llama 2 and Mistral [INST]', () => {
  it('renders Llama 2 with <<SYS>> folded into the first user turn (from tokenizer_config.json)', async () => {
    const chat = await loadChatTemplate(readerFor(fixtureDir('sentencepiece')), await loadFixtureTokenizer('sentencepiece'));
    const expected = '<s>[INST] <<SYS>>\nYou are a terse assistant.\n<</SYS>>\n\nHello! [/INST] Hi. How can I help? </s><s>[INST] What is a sluice? [/INST]';
    expect(chat.render(SYSTEM_CHAT)).toBe(expected);
    expect(chat.render(SYSTEM_CHAT, { addGenerationPrompt: true })).toBe(expected); // the template ignores it
    expect(chat.render(PLAIN_CHAT, { addGenerationPrompt: true })).toBe('<s>[INST] Hello! [/INST] Hi. How can I help? </s><s>[INST] What is a sluice? [/INST]');
  });

  it('renders Mistral v0.1', async () => {
    const chat = await template('mistral-v0.1', { bos_token: '<s>', eos_token: '</s>' });
    expect(chat.render(PLAIN_CHAT, { addGenerationPrompt: true })).toBe('<s>[INST] Hello! [/INST]Hi. How can I help?</s> [INST] What is a sluice? [/INST]');
  });

  it("turns the template's raise_exception into a one-line error naming the file", async () => {
    const chat = await template('mistral-v0.1', { bos_token: '<s>', eos_token: '</s>' });
    expect(() => chat.render(SYSTEM_CHAT)).toThrow(
      expect.objectContaining({
        code: 'UNSUPPORTED_FORMAT',
        message: 'mistral-v0.1.jinja: the chat template refuses these messages: Conversation roles must alternate user/assistant/user/assistant/...',
      }),
    );
  });
});

describe('finding the template', () => {
  it('picks "default" from the list form, or the one asked for', () => {
    const config = { chat_template: [{ name: 'tool_use', template: 'tools' }, { name: 'default', template: 'plain' }] };
    expect(templateFromConfig(config, 'tokenizer_config.json')).toBe('plain');
    expect(templateFromConfig(config, 'tokenizer_config.json', 'tool_use')).toBe('tools');
    expect(() => templateFromConfig({ chat_template: [{ name: 'rag', template: 'x' }] }, 'm/tokenizer_config.json')).toThrow(
      'm/tokenizer_config.json: no chat template named "default" (it has "rag")',
    );
    expect(() => templateFromConfig({ chat_template: [{ name: 'default' }] }, 'm/tokenizer_config.json')).toThrow(
      'm/tokenizer_config.json: chat_template must be a string or a list of {"name", "template"}',
    );
    expect(templateFromConfig({}, 'tokenizer_config.json')).toBeNull();
  });

  it('loads the list form through loadChatTemplate', async () => {
    const base = await loadFixtureTokenizer('bytelevel');
    const tokenizer = Tokenizer.fromJson({
      tokenizerJson: JSON.stringify(await readerFor(fixtureDir('bytelevel'))('tokenizer.json').then((t) => JSON.parse(t!))),
      tokenizerConfig: { ...base.config, chat_template: [{ name: 'default', template: base.config.chat_template }, { name: 'tool_use', template: '{{ eos_token }}' }] },
    });
    const read = readerFor(fixtureDir('bytelevel'));
    expect((await loadChatTemplate(read, tokenizer)).render([{ role: 'user', content: 'Hi' }])).toBe(
      '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n',
    );
    expect((await loadChatTemplate(read, tokenizer, { name: 'tool_use' })).render([])).toBe('<|im_end|>');
  });

  it('says which directory has no template, and that generate still works', async () => {
    const dir = fixtureDir('bytelevel');
    const tokenizer = await loadFixtureTokenizer('bytelevel');
    const bare = Tokenizer.fromJson({ tokenizerJson: (await readerFor(dir)('tokenizer.json'))!, tokenizerConfig: { eos_token: '<|im_end|>' }, where: dir });
    const error = await loadChatTemplate(readerFor(dir), bare).catch((e: unknown) => e);
    expect(isSluiceError(error, 'UNSUPPORTED_FORMAT')).toBe(true);
    expect((error as Error).message).toBe(
      `${dir}: no chat template (no chat_template.jinja, and ${dir}/tokenizer_config.json has no "chat_template"); \`sluice generate\` still works, on raw text`,
    );
    expect(tokenizer.config.chat_template).toBeDefined();
  });

  it('names the file of a template that does not parse or fails', () => {
    expect(() => new ChatTemplate('{% for m in messages %}', 'x/chat_template.jinja')).toThrow(
      expect.objectContaining({ code: 'UNSUPPORTED_FORMAT', message: expect.stringMatching(/^x\/chat_template\.jinja: the chat template does not parse \(/) }),
    );
    expect(() => new ChatTemplate('{{ messages[0].content.nope() }}', 'x/chat_template.jinja').render([{ role: 'user', content: 'Hi' }])).toThrow(
      expect.objectContaining({ code: 'UNSUPPORTED_FORMAT', message: expect.stringMatching(/^x\/chat_template\.jinja: the chat template failed \(/) }),
    );
  });
});

describe("transformers' template globals", () => {
  it('has range, none, tools = none, documents = none, and the caller\'s variables', () => {
    const chat = new ChatTemplate(
      '{% for i in range(3) %}{{ i }}{% endfor %}{% if tools is none and documents is none %} no tools{% endif %}' +
        '{% if enable_thinking is defined and not enable_thinking %} no thinking{% endif %}{% if bos_token is not defined %} no bos{% endif %}',
      't.jinja',
      { eos_token: '</s>' },
    );
    expect(chat.render([], { variables: { enable_thinking: false } })).toBe('012 no tools no thinking no bos');
  });

  it('has strftime_now, in English whatever the locale', () => {
    const chat = new ChatTemplate('{{ strftime_now("%Y-%m-%d %H:%M:%S %a %A %b %B %j %y %e %I%p %% %Q") }}', 't.jinja');
    expect(chat.render([], { now: JAN_5_2025 })).toBe('2025-01-05 09:07:03 Sun Sunday Jan January 005 25  5 09AM % %Q');
    expect(strftime(new Date(2024, 6, 26, 23), '%d %b %Y %I%p')).toBe('26 Jul 2024 11PM');
  });

  it('refuses messages that are not {role, content} strings', () => {
    const chat = new ChatTemplate('{{ messages | length }}', 't.jinja');
    expect(() => chat.render([{ role: 'user', content: 5 } as unknown as ChatMessage])).toThrow(TypeError);
    expect(chat.render([{ role: 'user', content: '' }])).toBe('1');
  });
});

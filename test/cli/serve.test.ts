// `sluice serve` through the real launcher: it loads, says where it listens, answers, and
// on SIGTERM shuts down gracefully (exit 0); --template-var sets the chat template
// variables every request starts from.

import { spawn } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ensureBuilt, root } from '../support/build.js';
import { writeChatModel } from '../support/byte-tokenizer.js';

const dir = mkdtempSync(join(tmpdir(), 'sluice-serve-cli-'));
beforeAll(() => ensureBuilt(), 120_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Starts `sluice serve DIR --port 0 ...extra` and resolves with its URL once it listens. */
async function serve(extra: string[]): Promise<{ url: string; stop: () => Promise<{ code: number | null; stderr: string }> }> {
  const child = spawn(process.execPath, [join(root, 'bin/sluice.js'), 'serve', dir, '--port', '0', '--context', '64', ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  const url = await new Promise<string>((resolve, reject) => {
    child.stderr.setEncoding('utf8').on('data', (s: string) => {
      stderr += s;
      const m = /serving .* on (http:\/\/\S+) /.exec(stderr);
      if (m) resolve(m[1]);
    });
    child.on('exit', () => reject(new Error(`exited early: ${stderr}`)));
  });
  const stop = async () => {
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    child.kill('SIGTERM');
    return { code: await exited, stderr };
  };
  return { url, stop };
}

it('serves, answers, and exits 0 on SIGTERM', async () => {
  writeChatModel(join(root, 'test/fixtures/models/llama-gqa'), dir);
  const { url, stop } = await serve([]);
  expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  const res = await fetch(`${url}/v1/chat/completions`, { method: 'POST', body: JSON.stringify({ messages: [{ role: 'user', content: 'Hi' }], max_tokens: 3 }) });
  expect(res.status).toBe(200);
  const { code, stderr } = await stop();
  expect(code).toBe(0);
  expect(stderr).toContain('SIGTERM: shutting down');
}, 90_000);

it('--template-var enable_thinking=false reaches a Qwen3-style template; chat_template_kwargs override it', async () => {
  writeChatModel(join(root, 'test/fixtures/models/llama-gqa'), dir);
  copyFileSync(join(root, 'test/fixtures/text/templates/qwen3-style.jinja'), join(dir, 'chat_template.jinja'));
  const { url, stop } = await serve(['--template-var', 'enable_thinking=false']);
  try {
    const promptTokens = async (extra: Record<string, unknown>) => {
      const res = await fetch(`${url}/v1/chat/completions`, { method: 'POST', body: JSON.stringify({ messages: [{ role: 'user', content: 'Hi' }], max_tokens: 1, ...extra }) });
      expect(res.status).toBe(200);
      return (await res.json()).usage.prompt_tokens as number;
    };
    const plain = await promptTokens({ chat_template_kwargs: { enable_thinking: true } });
    expect(await promptTokens({})).toBe(plain + '<think>\n\n</think>\n\n'.length);
  } finally {
    rmSync(join(dir, 'chat_template.jinja'), { force: true });
    expect((await stop()).code).toBe(0);
  }
}, 90_000);

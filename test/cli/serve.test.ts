// `sluice serve` through the real launcher: it loads, says where it listens, answers, and
// on SIGTERM shuts down gracefully (exit 0) — answering a running stream with an error
// event and a waiting request with 503; --template-var sets the chat template variables
// every request starts from; an empty --api-key or a --cors that is not an origin is a
// usage error; a 1 MiB prompt is tokenized off the main thread, so /health stays quick.

import { spawn } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ensureBuilt, root } from '../support/build.js';
import { writeChatModel } from '../support/byte-tokenizer.js';
import { runCli } from '../support/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'sluice-serve-cli-'));
const JSON_TYPE = { 'content-type': 'application/json' };
beforeAll(() => ensureBuilt(), 120_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Starts `sluice serve DIR --port 0 ...extra` and resolves with its URL once it listens. */
async function serve(extra: string[], context = 64): Promise<{ url: string; stop: () => Promise<{ code: number | null; stderr: string }> }> {
  const child = spawn(process.execPath, [join(root, 'bin/sluice.js'), 'serve', dir, '--port', '0', '--context', String(context), ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
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
  const res = await fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: JSON_TYPE, body: JSON.stringify({ messages: [{ role: 'user', content: 'Hi' }], max_tokens: 3 }) });
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
      const res = await fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: JSON_TYPE, body: JSON.stringify({ messages: [{ role: 'user', content: 'Hi' }], max_tokens: 1, ...extra }) });
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

it('a 1 MiB prompt is tokenized off the main thread (/health answers meanwhile); SIGTERM ends the running stream with an error event, answers the waiting request 503, exits 0', async () => {
  writeChatModel(join(root, 'test/fixtures/models/llama-gqa'), dir);
  const { url, stop } = await serve(['--parallel', '1'], 512); // one slot: a second request waits
  const post = (body: Record<string, unknown>) => fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: JSON_TYPE, body: JSON.stringify({ messages: [{ role: 'user', content: 'Hi' }], ...body }) });

  const body = JSON.stringify({ messages: [{ role: 'user', content: 'Hello there, how are you today? '.repeat(32_000) }], max_tokens: 1 });
  let done = false;
  const big = new Promise<number>((resolve, reject) => {
    const req = request(`${url}/v1/chat/completions`, { method: 'POST', headers: { ...JSON_TYPE, 'content-length': Buffer.byteLength(body) } }, (res) => {
      res.resume().on('end', () => ((done = true), resolve(res.statusCode!)));
    });
    req.on('error', reject).end(body);
  });
  // Tokenizing it takes ~1 s (3 s on a loaded machine); in-thread, not one /health got
  // through meanwhile (the first waited all of it). Each answer's latency is reported.
  const latencies: number[] = [];
  while (!done) {
    const started = performance.now();
    await fetch(`${url}/health`);
    if (!done) latencies.push(performance.now() - started);
    await new Promise((r) => setTimeout(r, 10));
  }
  expect(await big).toBe(400); // 372,009 tokens: more than the context
  console.log(`/health during a 1 MiB prompt: ${latencies.length} answers, median ${median(latencies).toFixed(1)} ms, max ${Math.max(...latencies).toFixed(0)} ms`);
  expect(latencies.length).toBeGreaterThanOrEqual(5);

  // Greedy 'Hi' runs 400 tokens without an eos on this model: seconds of decoding.
  const running = await post({ max_tokens: 400, stream: true });
  const reader = running.body!.getReader();
  let streamed = new TextDecoder().decode((await reader.read()).value); // generation is under way
  const waiting = post({ max_tokens: 3 });
  await new Promise((r) => setTimeout(r, 200)); // let it reach the queue
  const { code, stderr } = await stop();
  for (let r = await reader.read(); !r.done; r = await reader.read()) streamed += new TextDecoder().decode(r.value);
  expect(streamed).toContain('"code":"server_shutting_down"');
  expect(streamed).not.toContain('[DONE]');
  const refused = await waiting;
  expect(refused.status).toBe(503);
  expect((await refused.json()).error.code).toBe('server_shutting_down');
  expect(code).toBe(0);
  expect(stderr).toContain('SIGTERM: shutting down');
}, 90_000);

it('usage errors before loading: an empty --api-key, a --cors that is not an origin', async () => {
  for (const [args, message] of [
    [['--api-key', ''], 'sluice: serve: --api-key is empty: give a key, or leave it out'],
    [['--cors', 'app.example'], 'sluice: serve: --cors "app.example" is not an origin (scheme://host[:port], e.g. https://app.example:3000, or *)'],
    [['--cors', 'https://app.example/'], 'is not an origin'],
  ] as const) {
    const { code, stderr } = await runCli(['serve', dir, ...args]);
    expect(code).toBe(2);
    expect(stderr).toContain(message);
  }
});

function median(xs: number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[sorted.length >> 1] ?? 0;
}

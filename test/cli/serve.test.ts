// `sluice serve` through the real launcher: it loads, says where it listens, answers, and
// on SIGTERM shuts down gracefully (exit 0).

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ensureBuilt, root } from '../support/build.js';
import { writeChatModel } from '../support/byte-tokenizer.js';

const dir = mkdtempSync(join(tmpdir(), 'sluice-serve-cli-'));
beforeAll(() => ensureBuilt(), 120_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

it('serves, answers, and exits 0 on SIGTERM', async () => {
  writeChatModel(join(root, 'test/fixtures/models/llama-gqa'), dir);
  const child = spawn(process.execPath, [join(root, 'bin/sluice.js'), 'serve', dir, '--port', '0', '--context', '64'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  const url = await new Promise<string>((resolve, reject) => {
    child.stderr.setEncoding('utf8').on('data', (s: string) => {
      stderr += s;
      const m = /serving .* on (http:\/\/\S+) /.exec(stderr);
      if (m) resolve(m[1]);
    });
    child.on('exit', () => reject(new Error(`exited early: ${stderr}`)));
  });
  expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  const res = await fetch(`${url}/v1/chat/completions`, { method: 'POST', body: JSON.stringify({ messages: [{ role: 'user', content: 'Hi' }], max_tokens: 3 }) });
  expect(res.status).toBe(200);
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  child.kill('SIGTERM');
  expect(await exited).toBe(0);
  expect(stderr).toContain('SIGTERM: shutting down');
}, 90_000);

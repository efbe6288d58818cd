// The chat REPL through the real launcher (bin/sluice.js → dist/), stdin piped: messages
// are answered in turn, /reset forgets, /exit (or end of input) quits cleanly.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ensureBuilt, root } from '../support/build.js';
import { writeChatModel } from '../support/byte-tokenizer.js';

const dir = mkdtempSync(join(tmpdir(), 'sluice-repl-'));
beforeAll(() => ensureBuilt(), 120_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

it('answers each line, /reset forgets, /exit quits with status 0', () => {
  writeChatModel(join(root, 'test/fixtures/models/llama-gqa'), dir);
  const run = spawnSync(process.execPath, [join(root, 'bin/sluice.js'), 'chat', dir, '--max-tokens', '3'], {
    input: 'Hello\n/reset\nAgain\n/exit\nnever read\n',
    encoding: 'utf8',
    timeout: 60_000,
  });
  expect(run.status, run.stderr).toBe(0);
  expect(run.stderr).toContain('[conversation forgotten]');
  // Two replies, each ended by a newline (stdin is not a terminal: no prompt echo, no stats).
  expect(run.stdout.split('\n').length).toBeGreaterThanOrEqual(3);
}, 90_000);

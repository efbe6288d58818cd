// The whole project (src, tests, scripts) typechecks under `strict`: vitest strips types
// without checking them, so without this a type error would pass `npm test`.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { expect, it } from 'vitest';
import { root } from './support/build.js';

it('tsc --noEmit reports no errors', async () => {
  const run = promisify(execFile);
  const result = await run(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.json', '--noEmit'], {
    cwd: root,
  }).catch((e: { stdout: string }) => ({ stdout: e.stdout }));
  expect(result.stdout).toBe('');
}, 180_000); // ~25 s alone; over 60 s on this 2-core machine while the GPU tests run beside it

// scripts/setup.sh: quick and silent when everything is there; without an adapter and
// without root it changes nothing and prints the exact commands to run.
import { execFile } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, expect, it } from 'vitest';
import { ensureBuilt, root } from './support/build.js';

const run = promisify(execFile);
const fakeBin = mkdtempSync(join(tmpdir(), 'sluice-setup-'));
afterAll(() => rmSync(fakeBin, { recursive: true, force: true }));

it('is a no-op that prints nothing when dependencies, adapter and build are present', async () => {
  await ensureBuilt();
  const { stdout, stderr } = await run('bash', ['scripts/setup.sh'], { cwd: root });
  expect(stdout).toBe('');
  expect(stderr).toBe('');
});

it('without an adapter and without root, says exactly what to install and touches nothing', async () => {
  await ensureBuilt();
  // A non-root user with no passwordless sudo, on a machine whose Vulkan has no driver.
  writeFileSync(join(fakeBin, 'id'), '#!/bin/sh\necho 1000\n');
  writeFileSync(join(fakeBin, 'sudo'), '#!/bin/sh\nexit 1\n');
  writeFileSync(join(fakeBin, 'apt-get'), '#!/bin/sh\necho "apt-get must not run" >&2; exit 99\n');
  for (const f of ['id', 'sudo', 'apt-get']) chmodSync(join(fakeBin, f), 0o755);
  const env = {
    ...process.env,
    SLUICE_CHROMIUM: join(fakeBin, 'no-chromium'),
    PATH: `${fakeBin}:${process.env.PATH}`,
    VK_ICD_FILENAMES: join(fakeBin, 'no-driver.json'),
    VK_DRIVER_FILES: join(fakeBin, 'no-driver.json'),
  };
  const { stderr } = await run('bash', ['scripts/setup.sh'], { cwd: root, env });
  expect(stderr).not.toContain('apt-get must not run');
  expect(stderr).toContain('cannot install without root. As root, run:');
  expect(stderr).toMatch(/apt-get install -y (-t bookworm-backports )?mesa-vulkan-drivers libvulkan1/);
  expect(stderr).toContain('still no WebGPU adapter');
  // Nor Chromium, for the browser test: the command to run, and what will fail without it.
  expect(stderr).toContain('As root, run: apt-get update && apt-get install -y chromium');
  expect(stderr).toContain(`WARNING: no ${join(fakeBin, 'no-chromium')}; the browser test (test/e2e) will fail`);
});

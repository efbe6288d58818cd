// `sluice gpu` in-process (through main), the launcher bin/sluice.js as a real process
// (Dawn's native stderr noise filtered, exit codes and signals forwarded), and the noise
// filter itself.
import { execFile, spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createNoiseFilter } from '../../src/cli/dawn-noise.js';
import type { CliIo } from '../../src/cli/io.js';
import { main } from '../../src/cli/main.js';
import { ensureBuilt, root } from '../support/build.js';

const launcher = join(root, 'bin', 'sluice.js');

function captureIo() {
  const io = { out: '', err: '', isTty: false } as CliIo & { out: string; err: string };
  io.stdout = (text) => void (io.out += text);
  io.stderr = (text) => void (io.err += text);
  return io;
}

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function runLauncher(args: string[], env: NodeJS.ProcessEnv = {}, file = launcher): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [file, ...args], { env: { ...process.env, ...env }, timeout: 30_000 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : null) : 0;
      resolve({ code, signal: (error?.signal as NodeJS.Signals | undefined) ?? null, stdout, stderr });
    });
  });
}

describe('sluice gpu (in-process)', () => {
  it('--json prints one JSON document with the adapter, features and limits', async () => {
    const io = captureIo();
    expect(await main(['gpu', '--json'], io)).toBe(0);
    const report = JSON.parse(io.out);
    expect(report.adapter).toMatchObject({ vendor: expect.any(String), isSoftware: true });
    expect(report.adapter.description).toMatch(/llvmpipe|lavapipe/);
    expect(report.features).toContain('shader-f16');
    expect(report.limits.maxStorageBufferBindingSize).toBeGreaterThan(0);
    expect(report.limits.maxBufferSize).toBeGreaterThan(0);
    expect(io.err).toBe('');
  });

  it('prints an aligned table naming the adapter', async () => {
    const io = captureIo();
    expect(await main(['gpu'], io)).toBe(0);
    const json = captureIo();
    await main(['gpu', '--json'], json);
    const { adapter, limits } = JSON.parse(json.out);
    expect(io.out).toContain(adapter.description);
    expect(io.out).toMatch(/^software\s+yes/m);
    expect(io.out).toMatch(/^ {2}\* shader-f16$/m);
    const row = new RegExp(`^ {2}maxBufferSize +${limits.maxBufferSize}  \\(4 GiB\\)$`, 'm');
    expect(io.out).toMatch(row);
  });

  it('has --help, and rejects unknown options with exit 2', async () => {
    const help = captureIo();
    expect(await main(['gpu', '--help'], help)).toBe(0);
    expect(help.out).toContain('sluice gpu [--json]');
    const bad = captureIo();
    expect(await main(['gpu', '--bogus'], bad)).toBe(2);
    expect(bad.err).toMatch(/^sluice: gpu: .*--bogus/);
  });
});

describe('bin/sluice.js', () => {
  beforeAll(() => ensureBuilt());

  it('filters Dawn noise out of stderr and exits 0', async () => {
    const run = await runLauncher(['gpu']);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('maxStorageBufferBindingSize');
    expect(run.stderr).not.toContain('artificially reduced');
    expect(run.stderr).toBe('');
  });

  it('lets the noise through with --debug', async () => {
    // Dawn's Vulkan backend prints this on every device; other backends may not.
    const run = await runLauncher(['gpu', '--debug']);
    expect(run.code).toBe(0);
    expect(run.stderr).toContain('artificially reduced');
  });

  it.runIf(process.platform === 'linux')('reports a missing Vulkan in one line, exit 1', async () => {
    // An empty libvulkan.so.1 first on the library path: Dawn's dlopen fails, as on a
    // machine without the Vulkan loader, and Dawn prints its "Couldn't load Vulkan" block.
    const dir = mkdtempSync(join(tmpdir(), 'sluice-novk-'));
    try {
      writeFileSync(join(dir, 'libvulkan.so.1'), '');
      const run = await runLauncher(['gpu'], { LD_LIBRARY_PATH: dir });
      expect(run.code).toBe(1);
      expect(run.stderr).toMatch(/^sluice: no WebGPU adapter .*npm run setup.*\n$/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('forwards SIGTERM to the filtered child and dies of it too', async () => {
    // A module preloaded in the child only (by the launcher's marker) keeps it alive and
    // tells us its pid, so the signal surely arrives while the child runs.
    const hold = `if (process.env.SLUICE_FILTERED_CHILD) { process.stdout.write('child ' + process.pid + '\\n'); setTimeout(() => {}, 60000); }`;
    const parent = spawn(process.execPath, [launcher, 'gpu', '--json'], {
      env: { ...process.env, NODE_OPTIONS: `--import=data:text/javascript,${encodeURIComponent(hold)}` },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const childPid = await new Promise<number>((resolve, reject) => {
      parent.stdout.on('data', (chunk: Buffer) => {
        const match = /child (\d+)/.exec(chunk.toString());
        if (match) resolve(Number(match[1]));
      });
      parent.on('close', () => reject(new Error('launcher ended before its child started')));
    });
    const ended = new Promise<NodeJS.Signals | null>((resolve) => parent.on('close', (_code, signal) => resolve(signal)));
    parent.kill('SIGTERM');
    expect(await ended).toBe('SIGTERM');
    expect(() => process.kill(childPid, 0)).toThrow(); // the child is gone too
  });

  it('says to run setup when dist/ is missing', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-nodist-'));
    try {
      mkdirSync(join(dir, 'bin'));
      copyFileSync(launcher, join(dir, 'bin', 'sluice.js'));
      const run = await runLauncher(['gpu'], {}, join(dir, 'bin', 'sluice.js'));
      expect(run.code).toBe(1);
      expect(run.stderr).toMatch(/^sluice: not built .*npm run setup.*\n$/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('createNoiseFilter', () => {
  const reduced = (kind: string) =>
    `Warning: maxDynamic${kind}BuffersPerPipelineLayout artificially reduced from 1000000 to 16 to fit dynamic offset allocation limit.\n`;
  const vulkan =
    "Warning: Couldn't load Vulkan: libvulkan.so.1: cannot open shared object file\n" +
    '    at operator() (/src/dawn/native/vulkan/BackendVk.cpp:368)\n\n';

  function filter(chunks: string[]): string {
    let out = '';
    const f = createNoiseFilter((text) => (out += text));
    for (const chunk of chunks) f.write(chunk);
    f.end();
    return out;
  }

  it('drops the known lines and their trailers, keeps everything else', () => {
    const text = `${reduced('Uniform')}${reduced('Storage')}sluice: real error\n${vulkan}` +
      'error: XDG_RUNTIME_DIR is invalid or not set in the environment.\nWarning: something new\n' +
      '    at f (/x.cpp:1)\n';
    const kept = 'sluice: real error\nWarning: something new\n    at f (/x.cpp:1)\n';
    expect(filter([text])).toBe(kept);
    // Same result whatever the chunk boundaries.
    for (const size of [1, 3, 7, 50]) {
      const chunks = text.match(new RegExp(`[^]{1,${size}}`, 'g'))!;
      expect(filter(chunks)).toBe(kept);
    }
  });

  it('passes partial lines through at once (progress bars), and a last line without newline', () => {
    let out = '';
    const f = createNoiseFilter((text) => (out += text));
    f.write('\rloading  10%');
    expect(out).toBe('\rloading  10%');
    f.write('\rloading 100%\n');
    f.write('done');
    f.end();
    expect(out).toBe('\rloading  10%\rloading 100%\ndone');
  });
});

#!/usr/bin/env node
// The `sluice` command: runs the compiled CLI in dist/ (`npm run build`, or `npm run setup`).
// Dawn and Mesa write warnings from native code straight to fd 2, where nothing in-process
// can silence them, so a command that uses the GPU runs in a child process whose stderr
// passes through the line filter in src/cli/dawn-noise.ts. `--debug` skips the child and
// shows everything.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { constants } from 'node:os';
import { fileURLToPath } from 'node:url';

const CHILD = 'SLUICE_FILTERED_CHILD'; // set in the child, so it runs the command itself
const dist = (file) => new URL(`../dist/cli/${file}`, import.meta.url);
const args = process.argv.slice(2);

if (!existsSync(dist('main.js'))) {
  process.stderr.write(`sluice: not built (no ${fileURLToPath(dist('main.js'))}): run 'npm run setup'\n`);
  process.exitCode = 1;
} else if (process.env[CHILD] || args.includes('--debug') || !(await usesGpu(args[0]))) {
  const { main } = await import(dist('main.js').href);
  process.exitCode = await main(args);
} else {
  await runFiltered();
}

async function usesGpu(name) {
  const { commands } = await import(dist('commands/index.js').href);
  return commands.some((command) => command.name === name && command.usesGpu);
}

async function runFiltered() {
  const { createNoiseFilter } = await import(dist('dawn-noise.js').href);
  const child = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), ...args], {
    stdio: ['inherit', 'inherit', 'pipe'],
    env: { ...process.env, [CHILD]: '1' },
  });
  const filter = createNoiseFilter((text) => process.stderr.write(text));
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk) => filter.write(chunk));
  child.stderr.on('end', () => filter.end());

  // On a terminal, Ctrl-C already reaches the child (same process group): forwarding it
  // too would deliver it twice. We still catch it, so we outlive the child and report
  // how it ended. SIGTERM comes only to us and is always passed on.
  const onTerminal = [process.stdin, process.stdout, process.stderr].some((stream) => stream.isTTY);
  const forward = (signal) => {
    if (signal !== 'SIGINT' || !onTerminal) child.kill(signal);
  };
  for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, forward);

  child.on('error', (error) => {
    process.stderr.write(`sluice: cannot start ${process.execPath}: ${error.message}\n`);
    process.exitCode = 1;
  });
  child.on('close', (code, signal) => {
    for (const name of ['SIGINT', 'SIGTERM']) process.off(name, forward);
    // End the way the child ended, so a shell sees 130/143 for a signal; the exit code
    // covers signals Node ignores (SIGPIPE), where the kill does nothing.
    process.exitCode = signal ? 128 + (constants.signals[signal] ?? 0) : (code ?? 1);
    if (signal) process.kill(process.pid, signal);
  });
}

// sluice's command-line entry: dispatches to one module per command, turns errors into
// one line `sluice: <message>` and an exit code. `--debug` adds the stack.

import { isSluiceError } from '../errors.js';
import { commands } from './commands/index.js';
import { type CliIo, processIo } from './io.js';

const VERSION = '0.1.0';

export function usage(): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  const lines = commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`);
  return [
    'sluice: stream checkpoints into WebGPU and run Llama-style models',
    '',
    'Usage: sluice <command> [options]',
    '',
    'Commands:',
    ...lines,
    '',
    "Run 'sluice <command> --help' for a command's options; --debug adds stack traces.",
    '',
  ].join('\n');
}

/** Runs one CLI invocation and returns its exit code (0 ok, 1 failure, 2 usage). */
export async function main(argv: string[], io: CliIo = processIo): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    io.stdout(usage());
    return name ? 0 : 2;
  }
  if (name === '--version' || name === '-v') {
    io.stdout(`${VERSION}\n`);
    return 0;
  }
  const command = commands.find((c) => c.name === name);
  if (!command) {
    io.stderr(`sluice: unknown command '${name}'\n\n${usage()}`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    io.stdout(command.usage.endsWith('\n') ? command.usage : `${command.usage}\n`);
    return 0;
  }
  try {
    return await command.run(rest, io);
  } catch (e) {
    io.stderr(`sluice: ${oneLine(e)}\n`);
    if (rest.includes('--debug') && e instanceof Error && e.stack) io.stderr(`${e.stack}\n`);
    return isSluiceError(e, 'USAGE') ? 2 : 1;
  }
}

function oneLine(e: unknown): string {
  const message = e instanceof Error ? e.message : String(e);
  return message.replace(/\s*\n\s*/g, ' ');
}

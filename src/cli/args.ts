import { parseArgs, type ParseArgsConfig } from 'node:util';
import { SluiceError } from '../errors.js';

type Options = NonNullable<ParseArgsConfig['options']>;

/** Options every command takes. */
export const commonOptions = {
  help: { type: 'boolean', short: 'h' },
  debug: { type: 'boolean' },
} as const satisfies Options;

export interface ParsedArgs {
  values: Record<string, string | boolean | Array<string | boolean> | undefined>;
  positionals: string[];
}

/**
 * util.parseArgs with sluice's conventions: strict, positionals allowed, and its
 * TypeErrors turned into one-line USAGE errors naming the command.
 */
export function parseCommandArgs(command: string, args: string[], options: Options): ParsedArgs {
  try {
    return parseArgs({ args, options: { ...commonOptions, ...options }, allowPositionals: true, strict: true });
  } catch (e) {
    throw new SluiceError('USAGE', `${command}: ${(e as Error).message} (see 'sluice ${command} --help')`);
  }
}

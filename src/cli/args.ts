import { parseArgs, type ParseArgsConfig } from 'node:util';
import { SluiceError } from '../errors.js';

type Options = NonNullable<ParseArgsConfig['options']>;

/** Options every command takes. */
export const commonOptions = {
  help: { type: 'boolean', short: 'h' },
  debug: { type: 'boolean' },
} as const satisfies Options;

/**
 * util.parseArgs with sluice's conventions: strict, positionals allowed, and its
 * TypeErrors turned into one-line USAGE errors naming the command.
 */
export function parseCommandArgs<O extends Options>(command: string, args: string[], options: O) {
  try {
    return parseArgs({ args, options: { ...commonOptions, ...options }, allowPositionals: true, strict: true });
  } catch (e) {
    throw new SluiceError('USAGE', `${command}: ${(e as Error).message} (see 'sluice ${command} --help')`);
  }
}

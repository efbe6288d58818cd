import { parseArgs, type ParseArgsConfig } from 'node:util';
import { SluiceError } from '../errors.js';
import type { DtypeChoice } from '../gpu/load-tensors.js';
import { checkTemplateVariables } from '../text/chat-template.js';

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

/**
 * The number a string flag holds, when given and `check` accepts it; else a USAGE error
 * `command: --flag must be <what>, not "…"`.
 */
export function numberFlag(command: string, values: ParsedArgs['values'], flag: string, check: (x: number) => boolean, what: string): number | undefined {
  const v = values[flag];
  if (v === undefined) return undefined;
  const x = Number(v);
  if (typeof v !== 'string' || v.trim() === '' || !check(x)) throw new SluiceError('USAGE', `${command}: --${flag} must be ${what}, not ${JSON.stringify(v)}`);
  return x;
}

/** A whole-number flag in [min, max]. */
export function wholeNumberFlag(command: string, values: ParsedArgs['values'], flag: string, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
  const what = max === Number.MAX_SAFE_INTEGER ? `a whole number ≥ ${min}` : `a whole number in [${min}, ${max}]`;
  return numberFlag(command, values, flag, (x) => Number.isSafeInteger(x) && x >= min && x <= max, what);
}

/** --dtype auto|f16|f32 (default auto): the compute precision. */
export function dtypeFlag(command: string, values: ParsedArgs['values']): DtypeChoice {
  const dtype = (values.dtype as string | undefined) ?? 'auto';
  if (!['auto', 'f16', 'f32'].includes(dtype)) throw new SluiceError('USAGE', `${command}: --dtype must be auto, f16 or f32, not ${JSON.stringify(dtype)}`);
  return dtype as DtypeChoice;
}

/** --template-var KEY=VALUE (repeatable): chat, serve, and generate (which refuses it). */
export const templateVarOption = { 'template-var': { type: 'string', multiple: true } } as const satisfies Options;

export const TEMPLATE_VAR_HELP = `  --template-var KEY=VALUE
                           a chat template variable (repeatable): VALUE as JSON when
                           it parses (enable_thinking=false, n=3, name='"a b"'), else
                           the text as given ("date_string=26 Jul 2024")`;

/**
 * The chat template variables of --template-var KEY=VALUE flags: VALUE is JSON when it
 * parses as JSON (false, 3, "a b", [1, 2]), else the text itself. A flag without `=`, a
 * key that is not a name, a reserved key or one given twice is a USAGE error.
 */
export function templateVarsFlag(command: string, values: ParsedArgs['values']): Record<string, unknown> | undefined {
  const flags = values['template-var'] as string[] | undefined;
  if (flags === undefined) return undefined;
  const out: Record<string, unknown> = {};
  for (const flag of flags) {
    const eq = flag.indexOf('=');
    if (eq <= 0) throw new SluiceError('USAGE', `${command}: --template-var must be KEY=VALUE, not ${JSON.stringify(flag)}`);
    const key = flag.slice(0, eq);
    if (Object.hasOwn(out, key)) throw new SluiceError('USAGE', `${command}: --template-var ${key} is given twice`);
    out[key] = jsonOrText(flag.slice(eq + 1));
  }
  checkTemplateVariables(out, `${command}: --template-var`);
  return out;
}

function jsonOrText(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

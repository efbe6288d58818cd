// The constrained-output flags of generate, chat and bench generate: --json-schema FILE,
// --grammar FILE (GBNF), --regex PATTERN, --json-object. The file is read (bounded) and the
// grammar checked before the model loads, so a bad schema costs no load and its error is
// one line naming the file; once the model is loaded the grammar is compiled against its
// vocabulary once, and every request (every chat turn) reuses it.

import { readFile, stat } from 'node:fs/promises';
import { SluiceError } from '../errors.js';
import { type CompiledGrammar, compileGrammar, type GrammarSource, TokenVocabulary } from '../grammar/index.js';
import type { GenerationStats } from '../generate/generate.js';
import type { Tokenizer } from '../text/tokenizer.js';
import type { ParsedArgs } from './args.js';

export const grammarOptions = {
  'json-schema': { type: 'string' },
  grammar: { type: 'string' },
  regex: { type: 'string' },
  'json-object': { type: 'boolean' },
} as const;

export const GRAMMAR_OPTIONS_HELP = `Constrained output (one of; the reply always matches, whatever the model prefers):
  --json-schema FILE       a JSON Schema (OpenAI structured outputs' subset; strict)
  --grammar FILE           a GBNF grammar (llama.cpp's format; its root rule)
  --regex PATTERN          a JavaScript regex the whole reply matches
  --json-object            any JSON object (OpenAI's json_object)`;

/** Largest schema or grammar file read (OpenAI's schemas are far smaller). */
export const MAX_GRAMMAR_FILE_BYTES = 4 * 1024 * 1024;

export interface GrammarFlag {
  source: GrammarSource;
  /** What errors name: the file, or the flag. */
  label: string;
}

/**
 * The grammar the flags ask for, read and checked (compiled against a plain byte
 * vocabulary: the front end and automaton do not depend on the model's); undefined when
 * none. USAGE naming the file (or flag) and the problem.
 */
export async function grammarFlag(command: string, values: ParsedArgs['values']): Promise<GrammarFlag | undefined> {
  const given = Object.keys(grammarOptions).filter((k) => values[k] !== undefined && values[k] !== false);
  if (given.length > 1) throw new SluiceError('USAGE', `${command}: give one of ${given.map((k) => `--${k}`).join(', ')}, not several`);
  let flag: GrammarFlag | undefined;
  if (values['json-schema'] !== undefined) {
    const file = values['json-schema'] as string;
    const text = await readGrammarFile(command, file);
    let schema: unknown;
    try {
      schema = JSON.parse(text);
    } catch (e) {
      throw new SluiceError('USAGE', `${command}: ${file}: not valid JSON (${(e as Error).message})`);
    }
    flag = { source: { jsonSchema: schema }, label: file };
  } else if (values.grammar !== undefined) {
    const file = values.grammar as string;
    flag = { source: { grammar: await readGrammarFile(command, file) }, label: file };
  } else if (values.regex !== undefined) {
    flag = { source: { regex: values.regex as string }, label: '--regex' };
  } else if (values['json-object']) {
    flag = { source: { jsonObject: true }, label: '--json-object' };
  }
  if (flag) compileFor(command, flag, BYTES);
  return flag;
}

/** The flag's grammar compiled for a model: its tokenizer, its vocabulary rows, its eos ids. */
export function compileGrammarFlag(command: string, flag: GrammarFlag, tokenizer: Tokenizer | null, vocabSize: number, eosIds: readonly number[]): CompiledGrammar {
  if (!tokenizer) throw new SluiceError('USAGE', `${command}: ${flag.label}: the model has no tokenizer.json, so its output cannot be constrained`);
  if (!eosIds.length) throw new SluiceError('USAGE', `${command}: ${flag.label}: the model names no eos token, so a constrained reply could not end`);
  return compileFor(command, flag, TokenVocabulary.fromTokenizer(tokenizer, { vocabSize, eosIds }));
}

/** Each byte a token, and an eos: enough for compileGrammar to check a source. */
const BYTES = TokenVocabulary.fromBytes(
  Array.from({ length: 256 }, (_, b) => Uint8Array.of(b)),
  { vocabSize: 257, eosIds: [256] },
);

function compileFor(command: string, flag: GrammarFlag, vocab: TokenVocabulary): CompiledGrammar {
  try {
    return compileGrammar(flag.source, vocab);
  } catch (e) {
    if (e instanceof SluiceError) throw new SluiceError(e.code, `${command}: ${flag.label}: ${e.message}`, { cause: e });
    throw e;
  }
}

async function readGrammarFile(command: string, file: string): Promise<string> {
  try {
    const { size } = await stat(file);
    if (size > MAX_GRAMMAR_FILE_BYTES) throw new SluiceError('USAGE', `${command}: ${file}: ${size} bytes; a schema or grammar file may have at most ${MAX_GRAMMAR_FILE_BYTES}`);
    return await readFile(file, 'utf8');
  } catch (e) {
    if (e instanceof SluiceError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    throw new SluiceError(code === 'ENOENT' ? 'NOT_FOUND' : 'IO_ERROR', `${command}: ${file}: ${code === 'ENOENT' ? 'not found' : (e as Error).message}`);
  }
}

/** The `grammar` object of --json outputs: compile time, and host ms of the masks per token. */
export function grammarJson(compiled: CompiledGrammar, s: GenerationStats) {
  const round = (x: number) => Math.round(x * 1000) / 1000;
  const g = s.grammar;
  return { compile_ms: round(compiled.stats.compileMs), mask_ms_per_token: g && g.masks ? round(g.maskMs / g.masks) : 0 };
}

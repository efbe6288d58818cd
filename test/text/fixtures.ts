// Loads the model directories under test/fixtures/text/ (written by make_tokenizers.py)
// the way a caller of src/text does: through a ReadModelFile callback.

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadTokenizer, type ReadModelFile, type Tokenizer } from '../../src/text/tokenizer.js';
import { root } from '../support/build.js';

export const TEXT_FIXTURES = join(root, 'test/fixtures/text');

/** Files of `dir`, with `overrides` (name → text, or null for "missing") on top. */
export function readerFor(dir: string, overrides: Record<string, string | null> = {}): ReadModelFile {
  return async (name) => {
    if (name in overrides) return overrides[name];
    try {
      return await readFile(join(dir, name), 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
  };
}

export function fixtureDir(name: 'bytelevel' | 'sentencepiece'): string {
  return join(TEXT_FIXTURES, name);
}

export function loadFixtureTokenizer(name: 'bytelevel' | 'sentencepiece'): Promise<Tokenizer> {
  return loadTokenizer(readerFor(fixtureDir(name)), fixtureDir(name));
}

export function templateText(name: string): Promise<string> {
  return readFile(join(TEXT_FIXTURES, 'templates', `${name}.jinja`), 'utf8');
}

// Node: a model folder is untrusted input. Every file sluice opens because the folder
// names it (a shard in an index, a side file such as config.json, a file found by listing
// the folder) is resolved here, and must stay inside the folder: a name with `..`, an
// absolute name, or a symlink whose target lies elsewhere is refused with UNSAFE_PATH,
// before a byte of the target is read (so no error can quote it either).
//
// The one exception is the Hugging Face cache, whose snapshot folders are made of
// symlinks into the repo's own content store:
//   models--org--name/snapshots/<commit>/config.json → ../../blobs/<sha256>
// so for a folder inside `snapshots/`, that repo's `blobs/` is inside too, and nothing else.
//
// The folder itself, and a file the user names directly, are the user's choice and are
// followed wherever they point.

import { realpath } from 'node:fs/promises';
import { isAbsolute, join, relative, sep } from 'node:path';
import { quote, SluiceError } from '../errors.js';
import { FileSource } from './file-source.js';
import { fileError, readSmallFile } from './safe-open.js';

export class ModelFolder {
  private constructor(
    /** The folder as the user named it (messages use it). */
    readonly dir: string,
    /** Real paths of the trees the folder's files may resolve into. */
    private readonly roots: string[],
  ) {}

  static async open(dir: string): Promise<ModelFolder> {
    let real: string;
    try {
      real = await realpath(dir);
    } catch (e) {
      throw fileError(dir, e);
    }
    const roots = [real];
    // <cache>/models--org--name/snapshots/<commit>[/sub/folder]: the repo's blobs/ too.
    const parts = real.split(sep);
    const at = parts.lastIndexOf('snapshots');
    if (at > 0 && /^(models|datasets|spaces)--/.test(parts[at - 1]) && at < parts.length - 1) {
      roots.push([...parts.slice(0, at), 'blobs'].join(sep));
    }
    return new ModelFolder(dir, roots);
  }

  /** `name` joined to the folder, as messages show it. */
  pathOf(name: string): string {
    return join(this.dir, name);
  }

  /**
   * The real path of the file `name` (relative to the folder) after checking that it
   * stays inside. NOT_FOUND when absent (a dangling symlink included).
   */
  async resolve(name: string): Promise<string> {
    const shown = this.pathOf(name);
    if (name === '' || isAbsolute(name) || name.includes('\0') || name.split(/[\\/]/).includes('..')) {
      throw new SluiceError('UNSAFE_PATH', `${quote(shown)}: refusing a name that leaves the model folder ${this.dir}`);
    }
    let real: string;
    try {
      real = await realpath(shown);
    } catch (e) {
      throw fileError(shown, e);
    }
    if (!this.roots.some((root) => isInside(root, real))) {
      throw new SluiceError('UNSAFE_PATH', `${shown}: is a symlink to a file outside the model folder ${this.dir}; refusing to read it`);
    }
    return real;
  }

  /** Opens `name` for positional reads: inside the folder, a regular file. */
  async openSource(name: string): Promise<FileSource> {
    // The resolved path has no symlink left in it: `noFollow` refuses one swapped in
    // since resolve() looked; errors and listings still name the path the user knows.
    return FileSource.open(await this.resolve(name), { noFollow: true, label: this.pathOf(name) });
  }

  /**
   * A small text file of the folder (config.json, tokenizer.json…): null when absent;
   * refused when it leaves the folder, is not a regular file or is over `maxBytes`.
   */
  async readText(name: string, maxBytes: number): Promise<string | null> {
    let real: string;
    try {
      real = await this.resolve(name);
    } catch (e) {
      if ((e as SluiceError).code === 'NOT_FOUND') return null;
      throw e;
    }
    return (await readSmallFile(real, maxBytes, { noFollow: true, label: this.pathOf(name) })).toString('utf8');
  }
}

/** True when `path` is strictly below `root` (both real, absolute). */
export function isInside(root: string, path: string): boolean {
  const rel = relative(root, path);
  return rel !== '' && !isAbsolute(rel) && rel.split(sep)[0] !== '..';
}

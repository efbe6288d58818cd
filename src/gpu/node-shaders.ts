// Node's shader loader: `shaders/<name>.wgsl` next to `src/` or `dist/` in the package,
// read once per name; a name may have folders (`common/dtype`: an #include's file). Reading from disk (not a generated module) keeps a shader edit
// visible to the next run without a build step.

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { SluiceError } from '../errors.js';
import type { ShaderLoader } from './shader-library.js';

// This file is src/gpu/ or dist/gpu/: the package root is two levels up.
const SHADER_DIR = fileURLToPath(new URL('../../shaders/', import.meta.url));

const cache = new Map<string, string>();

export const nodeShaderLoader: ShaderLoader = (name) => {
  let source = cache.get(name);
  if (source !== undefined) return source;
  if (!/^[a-z0-9_-]+(\/[a-z0-9_-]+)*$/.test(name)) throw new SluiceError('NOT_FOUND', `invalid shader name ${JSON.stringify(name)}`);
  const path = `${SHADER_DIR}${name}.wgsl`;
  try {
    source = readFileSync(path, 'utf8');
  } catch (e) {
    throw new SluiceError('NOT_FOUND', `${path}: cannot read shader (${(e as Error).message})`, { cause: e });
  }
  cache.set(name, source);
  return source;
};

// Where WGSL source comes from. Node reads `shaders/<name>.wgsl` from the package on disk
// (node-shaders.ts, installed by node-gpu.ts); the browser bundle inlines the files at
// build time and installs them the same way. Library code only asks for a name, so the
// launchers are identical on both platforms. A name may have folders: `common/dtype` is
// shaders/common/dtype.wgsl, a file only for #include (wgsl-preprocess.ts).

import { SluiceError } from '../errors.js';

/** Returns the text of `shaders/<name>.wgsl` (`name` may be `folder/name`); throws when there is none. */
export type ShaderLoader = (name: string) => string;

let loader: ShaderLoader | undefined;

/** Installs the platform's shader loader (idempotent; the last one wins). */
export function setShaderLoader(next: ShaderLoader): void {
  loader = next;
}

/** A loader over an in-memory table `{ name: source }` (browser bundles, tests). */
export function shaderTable(table: Readonly<Record<string, string>>): ShaderLoader {
  return (name) => {
    const source = table[name];
    if (source === undefined) throw new SluiceError('NOT_FOUND', `shader ${name}.wgsl is not in this build`);
    return source;
  };
}

export function shaderSource(name: string): string {
  if (!loader) {
    throw new SluiceError(
      'NOT_FOUND',
      `no WGSL shaders available for ${name}.wgsl: in Node import 'sluice/node' (or acquire the device ` +
        `with acquireNodeDevice); in a browser use the bundled build, which inlines them`,
    );
  }
  return loader(name);
}

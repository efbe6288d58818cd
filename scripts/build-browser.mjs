// Builds the browser ESM bundle: src/browser.ts → dist/browser/sluice.js (+ .map), with
// every shaders/*.wgsl inlined through the virtual module `sluice:shaders`. Type
// declarations are tsc's dist/index.d.ts (`npm run build`); the bundle's API is index.ts's.
//
//   node scripts/build-browser.mjs [--outfile PATH] [--minify]

import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const outIndex = args.indexOf('--outfile');
const outfile = outIndex >= 0 ? args[outIndex + 1] : join(root, 'dist/browser/sluice.js');

/**
 * Resolves `sluice:shaders` to `export default { <name>: <wgsl text>, ... }`: every .wgsl under
 * shaders/, folders included, so `#include "common/dtype.wgsl"` finds `common/dtype` as Node's
 * loader finds shaders/common/dtype.wgsl.
 */
const shadersPlugin = {
  name: 'sluice-shaders',
  setup(b) {
    const dir = join(root, 'shaders');
    b.onResolve({ filter: /^sluice:shaders$/ }, () => ({ path: 'sluice:shaders', namespace: 'sluice-shaders' }));
    b.onLoad({ filter: /.*/, namespace: 'sluice-shaders' }, () => {
      const files = readdirSync(dir, { recursive: true })
        .map((f) => f.split(sep).join('/'))
        .filter((f) => f.endsWith('.wgsl'))
        .sort();
      const table = Object.fromEntries(files.map((f) => [f.slice(0, -'.wgsl'.length), readFileSync(join(dir, f), 'utf8')]));
      return { contents: `export default ${JSON.stringify(table)};`, loader: 'js', watchFiles: files.map((f) => join(dir, f)) };
    });
  },
};

const result = await build({
  entryPoints: [join(root, 'src/browser.ts')],
  outfile,
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  sourcemap: true,
  minify: args.includes('--minify'),
  plugins: [shadersPlugin],
  logLevel: 'warning',
  metafile: true,
});
const bytes = Object.values(result.metafile.outputs).reduce((n, o) => n + o.bytes, 0);
console.log(`${outfile}: ${(bytes / 1024).toFixed(0)} KiB (with source map)`);

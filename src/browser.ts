// The browser bundle's entry (scripts/build-browser.mjs → dist/browser/sluice.js): the
// browser-safe API with every .wgsl under shaders/ (shaders/common/'s #include files too)
// inlined at build time. `sluice:shaders` is a virtual module that the build's esbuild
// plugin fills with `{ name: wgsl text }`; tsc knows it only by its declaration in
// shaders.d.ts, so this file is left out of the Node build (tsconfig.build.json).

import table from 'sluice:shaders';
import { setShaderLoader, shaderTable } from './gpu/shader-library.js';

setShaderLoader(shaderTable(table));

export * from './index.js';

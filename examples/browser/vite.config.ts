// The browser chat page: `npm run page` builds it into dist/page/ and serves it on
// 127.0.0.1:4173; `npx vite -c examples/browser/vite.config.ts` is the dev server.
//
// `sluice/browser` is the library's ESM bundle (dist/browser/sluice.js, from
// `npm run build:browser`): the page runs exactly what a user of the package gets. The
// embedded tiny model (models/tiny-chat) is served at ./models/tiny-chat/ and copied into
// the build.

import { createReadStream, copyFileSync, existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineConfig, type Plugin } from 'vite';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../..');
const bundle = join(root, 'dist/browser/sluice.js');
const modelDir = join(root, 'models/tiny-chat');
const MODEL_FILES = ['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'];

/** Serves the embedded model in dev (with Range requests, as UrlSource reads it) and copies it into the build. */
function embeddedModel(): Plugin {
  let outDir = '';
  return {
    name: 'sluice-embedded-model',
    configResolved(config) {
      outDir = resolve(config.root, config.build.outDir);
    },
    configureServer(server) {
      server.middlewares.use('/models/tiny-chat/', (req, res, next) => {
        const name = (req.url ?? '').replace(/[?#].*$/, '').replace(/^\//, '');
        if (!MODEL_FILES.includes(name)) return next();
        const file = join(modelDir, name);
        const size = statSync(file).size;
        const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
        const start = range ? Number(range[1]) : 0;
        const end = range && range[2] !== '' ? Math.min(Number(range[2]), size - 1) : size - 1;
        if (range && start >= size) {
          res.writeHead(416, { 'content-range': `bytes */${size}` });
          return res.end();
        }
        res.writeHead(range ? 206 : 200, {
          'content-length': String(end - start + 1),
          'accept-ranges': 'bytes',
          ...(range ? { 'content-range': `bytes ${start}-${end}/${size}` } : {}),
        });
        createReadStream(file, { start, end }).pipe(res);
      });
    },
    configurePreviewServer(server) {
      // vite preview gzips any type it does not know, .safetensors included, and range
      // responses too; a compressed 206 has no usable byte offsets (UrlSource refuses it).
      // An explicit identity encoding makes the compressor leave model files alone.
      server.middlewares.use('/models/', (_req, res, next) => {
        res.setHeader('Content-Encoding', 'identity');
        next();
      });
    },
    writeBundle() {
      const to = join(outDir, 'models/tiny-chat');
      mkdirSync(to, { recursive: true });
      for (const name of MODEL_FILES) copyFileSync(join(modelDir, name), join(to, name));
    },
  };
}

/** A clear message instead of an unresolved import when the library bundle is missing. */
function requireBundle(): Plugin {
  return {
    name: 'sluice-require-bundle',
    buildStart() {
      if (!existsSync(bundle)) this.error(`${bundle} is missing: run \`npm run build:browser\` first (\`npm run page\` does)`);
      const shaders = readdirSync(join(root, 'shaders')).map((f) => statSync(join(root, 'shaders', f)).mtimeMs);
      if (Math.max(...shaders) > statSync(bundle).mtimeMs) this.warn(`${bundle} is older than shaders/: run \`npm run build:browser\``);
    },
  };
}

export default defineConfig({
  root: here,
  base: './',
  // No SPA fallback: a missing model file must be a 404 (the loader asks for optional
  // files such as a shard index), not this page's index.html.
  appType: 'mpa',
  resolve: { alias: { 'sluice/browser': bundle } },
  worker: { format: 'es' },
  build: { outDir: join(root, 'dist/page'), emptyOutDir: true, target: 'es2022', sourcemap: true },
  preview: { host: '127.0.0.1', port: 4173 },
  server: { host: '127.0.0.1' },
  plugins: [requireBundle(), embeddedModel()],
});

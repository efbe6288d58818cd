// The browser ESM bundle (scripts/build-browser.mjs → dist/browser/sluice.js): it builds,
// holds nothing a browser cannot load (no require(), no node: imports), inlines every
// shaders/*.wgsl, and, imported as a module, exposes the public API with the inlined
// shaders installed, so a page needs no shader files beside it.

import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, sep } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { root } from './support/build.js';

// Built into a temporary folder, so the test neither races nor replaces dist/browser.
const outDir = mkdtempSync(join(tmpdir(), 'sluice-browser-bundle-'));
const outfile = join(outDir, 'sluice.js');
// Every .wgsl under shaders/, the #include files in shaders/common/ too, as `common/name`.
const shaderNames = readdirSync(join(root, 'shaders'), { recursive: true })
  .map((f) => String(f).split(sep).join('/'))
  .filter((f) => f.endsWith('.wgsl'))
  .map((f) => f.slice(0, -'.wgsl'.length));
let bundle = '';

beforeAll(async () => {
  await promisify(execFile)(process.execPath, [join(root, 'scripts/build-browser.mjs'), '--outfile', outfile], { cwd: root, timeout: 60_000 });
  bundle = readFileSync(outfile, 'utf8');
});
afterAll(() => rmSync(outDir, { recursive: true, force: true }));

describe('browser bundle', () => {
  it('builds an ESM file with a source map and nothing Node-only', () => {
    expect(existsSync(outfile)).toBe(true);
    expect(existsSync(`${outfile}.map`)).toBe(true);
    expect(bundle).toMatch(/^export \{/m);
    expect(bundle).not.toMatch(/\brequire\(/);
    expect(bundle).not.toMatch(/from\s*["']node:|import\(\s*["']node:|["']node:[a-z_/]+["']/);
    expect(bundle).not.toMatch(/from\s*["'](fs|path|os|url|child_process|webgpu)["']/);
  });

  it('embeds every shader in shaders/', () => {
    expect(shaderNames.length).toBeGreaterThan(5);
    expect(shaderNames.some((n) => n.startsWith('common/'))).toBe(true);
    for (const name of shaderNames) expect(bundle, `${name}.wgsl`).toContain(JSON.stringify(name));
  });

  it('imported as a module: the public API, with the inlined shaders installed', async () => {
    const mod = await import(/* @vite-ignore */ pathToFileURL(outfile).href);
    for (const name of ['loadTensors', 'LlamaModel', 'openModelFromUrl', 'openModelFromFiles', 'openCheckpointSource', 'BlobSource', 'generate']) {
      expect(mod[name], name).toBeDefined();
    }
    for (const name of shaderNames) {
      expect(mod.shaderSource(name), `${name}.wgsl`).toBe(readFileSync(join(root, 'shaders', `${name}.wgsl`), 'utf8'));
    }
    expect(() => mod.shaderSource('no_such_op')).toThrow(/no_such_op\.wgsl is not in this build/);
  });
});

// src/index.ts is the browser-safe API: nothing it imports, directly or not, may use a
// Node built-in (those belong in src/node.ts). A static walk of the import graph, so a
// Node import slipped into a shared module fails here, not in a user's bundler.

import { readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { expect, it } from 'vitest';
import { root } from './support/build.js';

const IMPORT = /(?:^|\n)\s*(?:import|export)\s[^;]*?\sfrom\s+'([^']+)'|(?:^|\n)\s*import\s+'([^']+)'|import\(\s*'([^']+)'\s*\)/g;

it('src/index.ts and everything it imports use no Node built-ins', () => {
  const seen = new Set<string>();
  const offenders: string[] = [];
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(IMPORT)) {
      const spec = m[1] ?? m[2] ?? m[3];
      if (spec.startsWith('.')) visit(join(dirname(file), spec.replace(/\.js$/, '.ts')));
      else if (spec.startsWith('node:') || ['fs', 'path', 'os', 'child_process', 'url', 'zlib', 'crypto'].includes(spec)) {
        offenders.push(`${relative(root, file)} imports ${spec}`);
      } else if (spec === 'webgpu') offenders.push(`${relative(root, file)} imports Dawn (webgpu)`);
    }
  };
  visit(join(root, 'src/index.ts'));
  expect(seen.size).toBeGreaterThan(20); // the walk really followed the graph
  expect([...seen].some((f) => f.endsWith('load-tensors.ts'))).toBe(true);
  expect(offenders).toEqual([]);
});

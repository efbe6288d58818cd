// The closed WGSL preprocessor (src/gpu/wgsl-preprocess.ts): which lines each variant keeps,
// that line numbers survive (Dawn's messages must point into the file), and that every kind
// of mistake throws a message naming the shader and line instead of compiling a wrong variant.
import { readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { nodeShaderLoader } from '../../src/gpu/node-shaders.js';
import { setShaderLoader } from '../../src/gpu/shader-library.js';
import {
  MAX_INCLUDE_DEPTH,
  preprocessWgsl,
  shaderFlags,
  WgslPreprocessError,
  wgslLocation,
  type IncludeResolver,
} from '../../src/gpu/wgsl-preprocess.js';
import { allVariants } from '../../src/ops/variants.js';

/** Source lines → the preprocessed output's non-empty lines, trimmed. */
function kept(lines: string[], flags: string[] = []): string[] {
  const out = preprocessWgsl(lines.join('\n'), 'test', flags);
  expect(out.split('\n')).toHaveLength(lines.length); // one output line per input line, always
  return out
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');
}

/** The WgslPreprocessError message of a preprocess call (fails the test if it does not throw one). */
function failure(lines: string[], flags: string[] = [], name = 'test'): string {
  try {
    preprocessWgsl(lines.join('\n'), name, flags);
  } catch (e) {
    expect(e).toBeInstanceOf(WgslPreprocessError);
    return (e as Error).message;
  }
  throw new Error('expected a WgslPreprocessError');
}

const IF_ELSE = ['a', '#ifdef X', 'x', '#else', 'not_x', '#endif', 'b'];

describe('preprocessWgsl: blocks', () => {
  it('#ifdef / #else / #endif picks one branch', () => {
    expect(kept(IF_ELSE)).toEqual(['a', 'not_x', 'b']);
    expect(kept(IF_ELSE, ['X'])).toEqual(['a', 'x', 'b']);
  });

  it('#ifndef is the negation', () => {
    const src = ['#ifndef X', 'no_x', '#else', 'has_x', '#endif'];
    expect(kept(src)).toEqual(['no_x']);
    expect(kept(src, ['X'])).toEqual(['has_x']);
  });

  it('a block without #else keeps nothing when false', () => {
    expect(kept(['#ifdef X', 'x', '#endif'])).toEqual([]);
    expect(kept(['#ifdef X', 'x', '#endif'], ['X'])).toEqual(['x']);
  });

  it('nests: inner blocks of an inactive branch stay inactive, #else included', () => {
    const src = [
      '#ifdef A',
      'a',
      '#ifdef B',
      'ab',
      '#else',
      'a_not_b',
      '#endif',
      '#else',
      'not_a',
      '#ifndef B',
      'not_a_not_b',
      '#else',
      'not_a_b',
      '#endif',
      '#endif',
      'tail',
    ];
    expect(kept(src)).toEqual(['not_a', 'not_a_not_b', 'tail']);
    expect(kept(src, ['A'])).toEqual(['a', 'a_not_b', 'tail']);
    expect(kept(src, ['B'])).toEqual(['not_a', 'not_a_b', 'tail']);
    expect(kept(src, ['A', 'B'])).toEqual(['a', 'ab', 'tail']);
  });

  it('three levels deep, every combination of flags', () => {
    const src = ['#ifdef A', '#ifdef B', '#ifdef C', 'abc', '#else', 'ab', '#endif', '#endif', '#endif', 'end'];
    for (const flags of [[], ['A'], ['B'], ['C'], ['A', 'B'], ['A', 'C'], ['B', 'C'], ['A', 'B', 'C']]) {
      const want = flags.includes('A') && flags.includes('B') ? [flags.includes('C') ? 'abc' : 'ab', 'end'] : ['end'];
      expect([flags, kept(src, flags)]).toEqual([flags, want]);
    }
  });

  it('keeps every line number: directives and skipped lines become empty lines', () => {
    const src = ['line1', '  #ifdef X // why', 'line3', '#else', 'line5', '#endif', 'line7'];
    const out = preprocessWgsl(src.join('\n'), 'test', []).split('\n');
    expect(out).toEqual(['line1', '', '', '', 'line5', '', 'line7']);
    // A trailing newline stays too.
    expect(preprocessWgsl('a\n#ifdef X\nb\n#endif\n', 'test', [])).toBe('a\n\n\n\n');
  });

  it('accepts indented directives and trailing // comments; leaves other lines untouched', () => {
    const src = ['\t#ifdef X   // comment', '  let v = 1; // #not a directive', '\t#endif // X'];
    expect(preprocessWgsl(src.join('\n'), 'test', ['X']).split('\n')).toEqual(['', src[1], '']);
  });

  it('a source without directives comes back unchanged', () => {
    const src = '@compute @workgroup_size(1)\nfn main() {}\n';
    expect(preprocessWgsl(src, 'plain')).toBe(src);
  });
});

describe('preprocessWgsl: mistakes throw, naming the shader', () => {
  it('an unknown flag names the shader and lists the flags it tests', () => {
    const src = ['#ifdef SRC_F32', '#endif', '#ifndef DST_F16', '#endif', '#ifdef SRC_F32', '#endif'];
    const message = failure(src, ['SRC_F23'], 'convert');
    expect(message).toContain('convert.wgsl');
    expect(message).toContain('SRC_F23');
    expect(message).toContain('SRC_F32, DST_F16');
  });

  it('an unknown flag on a shader that tests none says so', () => {
    expect(failure(['fn f() {}'], ['X'], 'plain')).toMatch(/plain\.wgsl.*unknown flag X.*none/);
  });

  it('an unknown directive names the line, even inside an inactive block', () => {
    expect(failure(['a', '#define X'])).toMatch(/test\.wgsl:2: unknown directive #define/);
    expect(failure(['#ifdef X', '#elif Y', '#endif'])).toMatch(/test\.wgsl:2: unknown directive #elif/);
  });

  it('a malformed directive (two words, no name) throws', () => {
    expect(failure(['#ifdef A B', '#endif'])).toMatch(/test\.wgsl:1: malformed directive/);
    expect(failure(['#define X 1'])).toMatch(/test\.wgsl:1: malformed directive/);
    expect(failure(['# ifdef A', '#endif'])).toMatch(/test\.wgsl:1: malformed directive/);
    expect(failure(['#ifdef', '#endif'])).toMatch(/test\.wgsl:1: #ifdef needs a flag/);
    expect(failure(['#ifndef', '#endif'])).toMatch(/test\.wgsl:1: #ifndef needs a flag/);
  });

  it('unbalanced blocks: #endif or #else without #ifdef, #ifdef never closed', () => {
    expect(failure(['a', '#endif'])).toMatch(/test\.wgsl:2: #endif without a matching #ifdef/);
    expect(failure(['#else'])).toMatch(/test\.wgsl:1: #else without a matching #ifdef/);
    expect(failure(['#ifdef X', 'x', '#endif', '#endif'])).toMatch(/test\.wgsl:4: #endif without/);
    // The message names the line of the block left open (the inner one here).
    expect(failure(['#ifdef X', '#ifdef Y', '#endif', 'x'])).toMatch(/test\.wgsl:1: #ifdef is never closed/);
    expect(failure(['#ifdef X', '#endif', 'a', '#ifndef Y', 'y'])).toMatch(/test\.wgsl:4: #ifdef is never closed/);
  });

  it('#else twice in one block throws', () => {
    expect(failure(['#ifdef X', 'a', '#else', 'b', '#else', 'c', '#endif'])).toMatch(/test\.wgsl:5: #else without/);
    // ... also when the flag is set, and in an inactive nested block.
    expect(failure(['#ifdef X', '#else', '#else', '#endif'], ['X'])).toMatch(/test\.wgsl:3:/);
    expect(failure(['#ifdef X', '#ifdef Y', '#else', '#else', '#endif', '#endif'])).toMatch(/test\.wgsl:4:/);
  });
});

describe('shaderFlags', () => {
  it('lists the flags tested, in order of first use, without duplicates', () => {
    const src = ['#ifndef B', '#ifdef A', '#endif', '#endif', '#ifdef B // again', '#endif', '#ifdef C', '#endif'];
    expect(shaderFlags(src.join('\n'))).toEqual(['B', 'A', 'C']);
    expect(shaderFlags('fn f() {}')).toEqual([]);
  });

  it('shaders/convert.wgsl: all six variants preprocess, keep their line count, and differ', () => {
    const source = nodeShaderLoader('convert');
    expect(shaderFlags(source).sort()).toEqual(['DST_F16', 'SRC_BF16', 'SRC_F16', 'SRC_F32']);
    const variants = new Set<string>();
    for (const src of ['SRC_F32', 'SRC_F16', 'SRC_BF16']) {
      for (const dst of [[], ['DST_F16']]) {
        const out = preprocessWgsl(source, 'convert', [src, ...dst]);
        expect(out.split('\n')).toHaveLength(source.split('\n').length);
        expect(out).not.toMatch(/^\s*#/m);
        variants.add(out);
      }
    }
    expect(variants.size).toBe(6);
  });
});

/** A resolver over `{ path: lines }`, counting what it reads; an unknown path throws as a loader does. */
function files(table: Record<string, string[]>): IncludeResolver & { reads: string[] } {
  const reads: string[] = [];
  const resolve = (path: string): string => {
    reads.push(path);
    const lines = table[path];
    if (!lines) throw new Error(`shader ${path} is not in this build`);
    return lines.join('\n');
  };
  return Object.assign(resolve, { reads });
}

/** Non-empty, non-comment lines of a variant, trimmed. */
function code(out: string): string[] {
  return out
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('//'));
}

/** The WgslPreprocessError message of preprocessing `lines` with includes from `resolve`. */
function includeFailure(lines: string[], resolve: IncludeResolver, name = 'main', flags: string[] = []): string {
  try {
    preprocessWgsl(lines.join('\n'), name, flags, resolve);
  } catch (e) {
    expect(e).toBeInstanceOf(WgslPreprocessError);
    const message = (e as Error).message;
    expect(message).not.toContain('\n');
    return message;
  }
  throw new Error('expected a WgslPreprocessError');
}

const DTYPE = ['#ifdef F16', 'enable f16;', 'alias T = f16;', '#else', 'alias T = f32;', '#endif'];

describe('preprocessWgsl: #include', () => {
  it('expands the file in place, behind a marker line, and its #ifdefs see the shader flags', () => {
    const resolve = files({ 'common/dtype.wgsl': DTYPE });
    const src = ['#include "common/dtype.wgsl"', 'fn f(x: T) -> T { return x; }'];
    expect(code(preprocessWgsl(src.join('\n'), 'main', [], resolve))).toEqual(['alias T = f32;', src[1]]);
    expect(code(preprocessWgsl(src.join('\n'), 'main', ['F16'], resolve))).toEqual(['enable f16;', 'alias T = f16;', src[1]]);
    const out = preprocessWgsl(src.join('\n'), 'main', [], resolve).split('\n');
    expect(out[0]).toBe('// #include "common/dtype.wgsl" (+6 lines)');
    expect(out).toHaveLength(1 + DTYPE.length + 1);
  });

  it('a flag tested only inside an included file is a flag of the shader', () => {
    const resolve = files({ 'common/dtype.wgsl': DTYPE, 'leaf.wgsl': ['#ifdef DEEP', 'deep', '#endif'] });
    expect(shaderFlags('#include "common/dtype.wgsl"\nfn f() {}', 'main', resolve)).toEqual(['F16']);
    expect(shaderFlags(['#ifdef A', '#endif', '#include "leaf.wgsl"'].join('\n'), 'main', resolve)).toEqual(['A', 'DEEP']);
    // ... so setting it is no unknown flag, and a flag tested nowhere still is one.
    expect(code(preprocessWgsl('#include "leaf.wgsl"', 'main', ['DEEP'], resolve))).toEqual(['deep']);
    expect(includeFailure(['#include "leaf.wgsl"'], resolve, 'main', ['DEPP'])).toMatch(/^main\.wgsl: unknown flag DEPP \(the shader tests: DEEP\)$/);
  });

  it('nests: an included file includes others, each block still sees the flags', () => {
    const resolve = files({
      'a.wgsl': ['a1', '#include "sub/b.wgsl"', 'a3'],
      'sub/b.wgsl': ['#ifdef X', 'bx', '#else', 'b_not_x', '#endif', '#include "sub/c-d.wgsl"'],
      'sub/c-d.wgsl': ['c'],
    });
    const src = ['top', '#ifndef X', '#include "a.wgsl"', '#endif', 'end'];
    expect(code(preprocessWgsl(src.join('\n'), 'main', [], resolve))).toEqual(['top', 'a1', 'b_not_x', 'c', 'a3', 'end']);
    // With X the block holding the include is skipped: its lines become empty, its markers stay.
    const out = preprocessWgsl(src.join('\n'), 'main', ['X'], resolve);
    expect(code(out)).toEqual(['top', 'end']);
    expect(out.split('\n').filter((l) => l.startsWith('// #include'))).toEqual([
      '// #include "a.wgsl" (+10 lines)',
      '// #include "sub/b.wgsl" (+7 lines)',
      '// #include "sub/c-d.wgsl" (+1 lines)',
    ]);
  });

  it("an included file's final newline adds no line; the shader's own stays", () => {
    const resolve = files({ 'x.wgsl': ['x1', 'x2', ''] });
    expect(preprocessWgsl('#include "x.wgsl"\ns\n', 'main', [], resolve)).toBe('// #include "x.wgsl" (+2 lines)\nx1\nx2\ns\n');
  });

  it('the same file may be included twice (no cycle), and an include may carry a // comment', () => {
    const resolve = files({ 'x.wgsl': ['x'] });
    expect(code(preprocessWgsl('#include "x.wgsl" // why\n  #include "x.wgsl"', 'main', [], resolve))).toEqual(['x', 'x']);
  });

  it('wgslLocation maps an output line back to its file and line', () => {
    const resolve = files({
      'a.wgsl': ['a1', '#include "b.wgsl"', 'a3'],
      'b.wgsl': ['b1', 'b2'],
    });
    const src = ['s1', '#include "a.wgsl"', 's3', '#include "b.wgsl"', 's5'];
    const out = preprocessWgsl(src.join('\n'), 'main', [], resolve);
    const lines = out.split('\n');
    const where = lines.map((_, i) => wgslLocation(out, 'main', i + 1));
    expect(where).toEqual([
      'main.wgsl:1',
      'main.wgsl:2', // the marker stands for the #include line
      'a.wgsl:1 (included by main.wgsl)',
      'a.wgsl:2 (included by main.wgsl)',
      'b.wgsl:1 (included by main.wgsl)',
      'b.wgsl:2 (included by main.wgsl)',
      'a.wgsl:3 (included by main.wgsl)',
      'main.wgsl:3',
      'main.wgsl:4',
      'b.wgsl:1 (included by main.wgsl)',
      'b.wgsl:2 (included by main.wgsl)',
      'main.wgsl:5',
    ]);
    // Each location's text is that file's line.
    const text: Record<string, string[]> = { 'main.wgsl': src, 'a.wgsl': ['a1', '#include "b.wgsl"', 'a3'], 'b.wgsl': ['b1', 'b2'] };
    lines.forEach((line, i) => {
      const [file, n] = where[i].split(' ')[0].split(':');
      if (!line.startsWith('// #include')) expect(line).toBe(text[file][Number(n) - 1]);
    });
    // A file without includes: the line itself.
    expect(wgslLocation('a\nb', 'plain', 2)).toBe('plain.wgsl:2');
  });
});

describe('preprocessWgsl: #include mistakes throw one line naming the shader', () => {
  const resolve = files({ 'ok.wgsl': ['ok'], 'common/bad.wgsl': ['#endif'], 'common/open.wgsl': ['#ifdef X', 'x'] });

  it('an unknown file', () => {
    expect(includeFailure(['a', '#include "common/nope.wgsl"'], resolve, 'attention')).toMatch(
      /^attention\.wgsl:2: #include "common\/nope\.wgsl": shader common\/nope\.wgsl is not in this build$/,
    );
  });

  it('a path with .., an absolute path, or anything but [a-z0-9_/-]+.wgsl', () => {
    const bad: [string, RegExp][] = [
      ['../secret.wgsl', /a path out of shaders\//],
      ['common/../ok.wgsl', /a path out of shaders\//],
      ['/etc/ok.wgsl', /an absolute path/],
      ['Ok.wgsl', /not a name of the form/],
      ['ok.WGSL', /not a name of the form/],
      ['ok', /not a name of the form/],
      ['common//ok.wgsl', /not a name of the form/],
      ['./ok.wgsl', /not a name of the form/],
      ['ok .wgsl', /not a name of the form/],
      ['', /not a name of the form/],
    ];
    for (const [path, why] of bad) {
      const message = includeFailure([`#include "${path}"`], resolve, 'gemv');
      expect(message, path).toMatch(/^gemv\.wgsl:1: #include "/);
      expect(message, path).toMatch(why);
    }
    expect(resolve.reads.filter((p) => p !== 'common/nope.wgsl')).toEqual([]); // none was looked up
  });

  it('a malformed #include line', () => {
    for (const line of ['#include common/ok.wgsl', "#include 'ok.wgsl'", '#include "ok.wgsl" x', '#include', '#includes "ok.wgsl"']) {
      expect(includeFailure(['a', line], resolve, 'rope'), line).toMatch(/^rope\.wgsl:2: malformed/);
    }
  });

  it('a cycle, through a self-include or a chain, names the chain', () => {
    const cyclic = files({ 'a.wgsl': ['#include "b.wgsl"'], 'b.wgsl': ['x', '#include "a.wgsl"'] });
    expect(includeFailure(['#include "a.wgsl"'], cyclic, 'softmax')).toBe(
      'b.wgsl:2 (included by softmax.wgsl): #include "a.wgsl": a cycle (softmax.wgsl → a.wgsl → b.wgsl → a.wgsl)',
    );
    const self = files({ 'softmax.wgsl': ['#include "softmax.wgsl"'] });
    expect(includeFailure(['#include "softmax.wgsl"'], self, 'softmax')).toMatch(/^softmax\.wgsl:1: .*a cycle \(softmax\.wgsl → softmax\.wgsl\)/);
  });

  it(`includes nest at most ${MAX_INCLUDE_DEPTH} deep`, () => {
    const chain = (depth: number): Record<string, string[]> =>
      Object.fromEntries(Array.from({ length: depth }, (_, i) => [`d${i + 1}.wgsl`, i + 1 < depth ? [`#include "d${i + 2}.wgsl"`] : ['leaf']]));
    expect(code(preprocessWgsl('#include "d1.wgsl"', 'main', [], files(chain(MAX_INCLUDE_DEPTH))))).toEqual(['leaf']);
    expect(includeFailure(['#include "d1.wgsl"'], files(chain(MAX_INCLUDE_DEPTH + 1)), 'qgemv')).toMatch(
      /^d4\.wgsl:1 \(included by qgemv\.wgsl\): #include "d5\.wgsl": includes nest deeper than 4 \(qgemv\.wgsl → d1\.wgsl → .* → d5\.wgsl\)$/,
    );
  });

  it('an included file must close its own blocks, and its mistakes name it and the shader', () => {
    expect(includeFailure(['#ifdef X', '#include "common/bad.wgsl"'], resolve, 'add')).toBe(
      'common/bad.wgsl:1 (included by add.wgsl): #endif without a matching #ifdef in its file',
    );
    expect(includeFailure(['#include "common/open.wgsl"', '#endif'], resolve, 'add')).toMatch(
      /^common\/open\.wgsl:1 \(included by add\.wgsl\): #ifdef is never closed in its file/,
    );
    const typo = files({ 'common/typo.wgsl': ['ok', '#ifdef X', '#elif Y', '#endif'] });
    expect(includeFailure(['#include "common/typo.wgsl"'], typo, 'add')).toMatch(/^common\/typo\.wgsl:3 \(included by add\.wgsl\): unknown directive #elif/);
  });
});

describe('the shaders in shaders/', () => {
  it('every pipeline variant preprocesses, its includes resolved, none of its flags unknown', () => {
    setShaderLoader(nodeShaderLoader);
    const seen = new Set<string>();
    const included = new Set<string>();
    for (const features of [new Set<string>(), new Set(['shader-f16', 'subgroups'])]) {
      for (const { key, spec } of allVariants(features)) {
        const id = [spec.shader, ...(spec.flags ?? [])].join('+');
        if (seen.has(id)) continue;
        seen.add(id);
        const out = preprocessWgsl(nodeShaderLoader(spec.shader), spec.shader, spec.flags ?? []);
        expect(out, key).not.toMatch(/^\s*#/m);
        for (const m of out.matchAll(/^\/\/ #include "([^"]+)"/gm)) included.add(m[1]);
      }
    }
    expect(seen.size).toBeGreaterThan(100);
    // Every file in shaders/common/ is some variant's include (none left over unused).
    const common = readdirSync('shaders/common').filter((f) => f.endsWith('.wgsl')).map((f) => `common/${f}`);
    expect(common.length).toBeGreaterThan(5);
    expect([...included].sort()).toEqual(common.sort());
  });
});

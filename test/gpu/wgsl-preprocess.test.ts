// The closed WGSL preprocessor (src/gpu/wgsl-preprocess.ts): which lines each variant keeps,
// that line numbers survive (Dawn's messages must point into the file), and that every kind
// of mistake throws a message naming the shader and line instead of compiling a wrong variant.
import { describe, expect, it } from 'vitest';
import { nodeShaderLoader } from '../../src/gpu/node-shaders.js';
import { preprocessWgsl, shaderFlags, WgslPreprocessError } from '../../src/gpu/wgsl-preprocess.js';

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

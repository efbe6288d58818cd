// A tiny, closed preprocessor for shader variants (f16/f32 compute, source dtypes):
// `#ifdef FLAG`, `#ifndef FLAG`, `#else`, `#endif`, nestable, one directive per line, and
// `#include "common/name.wgsl"` for text several shaders share (the dtype preamble, reduction
// trees, a kernel pair's common prologue).
// Closed means strict: a flag the shader never tests, an unknown directive, an unbalanced
// block or a bad include throws, so a typo in a launcher cannot silently compile the wrong
// variant.
//
// Includes are expanded first, recursively, so an included file's #ifdef blocks see the
// variant's flags and count among the shader's flags. A path is relative to shaders/ and is
// `[a-z0-9_-]+(/[a-z0-9_-]+)*.wgsl` (no `..`, no absolute path); includes nest at most
// MAX_INCLUDE_DEPTH deep, never in a cycle, and every included file closes the blocks it opens.
// An include inside an #ifdef block is expanded (and checked) whatever the flags: only its
// lines are dropped.
//
// Line numbers: the `#include` line becomes the marker comment `// #include "path" (+N lines)`
// followed by the file's N expanded lines, so a compiler message's line L counts lines of that
// expanded text: L = the shader's own line + the N of every include above it (wgslLocation
// turns L back into `file:line`). Skipped lines become empty lines, markers stay, so every
// variant of a shader has the same line count.

import { shaderSource } from './shader-library.js';

export class WgslPreprocessError extends Error {
  override readonly name = 'WgslPreprocessError';
}

/** Returns the text of an included file, by its path relative to shaders/ (`common/dtype.wgsl`). */
export type IncludeResolver = (path: string) => string;

/** The platform's shader files (shader-library.ts): Node reads shaders/, the browser its bundle. */
export const libraryIncludes: IncludeResolver = (path) => shaderSource(path.slice(0, -'.wgsl'.length));

/** How deep includes may nest: the shader's own includes are depth 1. */
export const MAX_INCLUDE_DEPTH = 4;

const DIRECTIVE = /^\s*#(\w+)\s*(\w*)\s*(?:\/\/.*)?$/;
const INCLUDE = /^\s*#include\b/;
const INCLUDE_LINE = /^\s*#include\s+"([^"]*)"\s*(?:\/\/.*)?$/;
const INCLUDE_PATH = /^[a-z0-9_-]+(\/[a-z0-9_-]+)*\.wgsl$/;
const MARKER = /^\/\/ #include "([^"]+)" \(\+(\d+) lines\)$/;

/** Where an expanded line came from: a file (`name.wgsl`, or a path under shaders/) and its line. */
interface Origin {
  file: string;
  line: number;
}

interface Expanded {
  lines: string[];
  origins: Origin[];
  /** Which lines are include markers (kept in skipped blocks too, for wgslLocation). */
  markers: Set<number>;
}

/** `file:line`, with the shader named when the line is in one of its includes. */
function locate(origin: Origin, shaderFile: string): string {
  const at = `${origin.file}:${origin.line}`;
  return origin.file === shaderFile ? at : `${at} (included by ${shaderFile})`;
}

/** Why `path` is no valid include path, or undefined. */
function badIncludePath(path: string): string | undefined {
  if (path.startsWith('/')) return 'an absolute path';
  if (/(^|\/)\.\.(\/|$)/.test(path)) return 'a path out of shaders/ (..)';
  if (!INCLUDE_PATH.test(path)) return 'not a name of the form [a-z0-9_/-]+.wgsl';
  return undefined;
}

/** #ifdef/#ifndef opened minus #endif closed, checking an included file never closes more than it opened. */
function checkBalanced(lines: string[], file: string, shaderFile: string): void {
  const open: number[] = [];
  lines.forEach((line, i) => {
    const m = DIRECTIVE.exec(line);
    if (!m) return;
    if (m[1] === 'ifdef' || m[1] === 'ifndef') open.push(i + 1);
    if ((m[1] === 'endif' || m[1] === 'else') && open.length === 0) {
      throw new WgslPreprocessError(`${locate({ file, line: i + 1 }, shaderFile)}: #${m[1]} without a matching #ifdef in its file`);
    }
    if (m[1] === 'endif') open.pop();
  });
  if (open.length) {
    const line = open[open.length - 1];
    throw new WgslPreprocessError(`${locate({ file, line }, shaderFile)}: #ifdef is never closed in its file (an included file closes its own blocks)`);
  }
}

/** `source` with every #include replaced by a marker line and the included file's lines, recursively. */
function expandIncludes(source: string, shaderName: string, resolve: IncludeResolver): Expanded {
  const shaderFile = `${shaderName}.wgsl`;
  const out: Expanded = { lines: [], origins: [], markers: new Set() };
  const expand = (text: string, file: string, chain: string[]): void => {
    const lines = text.split('\n');
    // An included file's final newline ends its last line; it adds no empty line.
    if (file !== shaderFile && lines.length > 1 && lines[lines.length - 1] === '') lines.pop();
    lines.forEach((line, i) => {
      const origin = { file, line: i + 1 };
      if (!INCLUDE.test(line)) {
        out.lines.push(line);
        out.origins.push(origin);
        return;
      }
      const where = locate(origin, shaderFile);
      const m = INCLUDE_LINE.exec(line);
      if (!m) throw new WgslPreprocessError(`${where}: malformed #include (want #include "name.wgsl"): ${line.trim()}`);
      const path = m[1];
      const bad = badIncludePath(path);
      if (bad) throw new WgslPreprocessError(`${where}: #include "${path}": ${bad}`);
      if (chain.includes(path)) throw new WgslPreprocessError(`${where}: #include "${path}": a cycle (${[...chain, path].join(' → ')})`);
      if (chain.length > MAX_INCLUDE_DEPTH) {
        throw new WgslPreprocessError(`${where}: #include "${path}": includes nest deeper than ${MAX_INCLUDE_DEPTH} (${[...chain, path].join(' → ')})`);
      }
      let included: string;
      try {
        included = resolve(path);
      } catch (e) {
        throw new WgslPreprocessError(`${where}: #include "${path}": ${(e as Error).message}`, { cause: e });
      }
      checkBalanced(included.split('\n'), path, shaderFile);
      const marker = out.lines.length;
      out.lines.push('');
      out.origins.push(origin);
      out.markers.add(marker);
      expand(included, path, [...chain, path]);
      out.lines[marker] = `// #include "${path}" (+${out.lines.length - marker - 1} lines)`;
    });
  };
  expand(source, shaderFile, [shaderFile]);
  return out;
}

function flagsOf(lines: string[]): string[] {
  const flags = new Set<string>();
  for (const line of lines) {
    const m = DIRECTIVE.exec(line);
    if (m && (m[1] === 'ifdef' || m[1] === 'ifndef') && m[2]) flags.add(m[2]);
  }
  return [...flags];
}

/** The flags a shader tests with #ifdef/#ifndef, its includes' too, in order of first use. */
export function shaderFlags(source: string, shaderName = 'shader', resolve: IncludeResolver = libraryIncludes): string[] {
  return flagsOf(expandIncludes(source, shaderName, resolve).lines);
}

/**
 * The variant of `source` with `defined` flags set, includes expanded (see the top of this
 * file for what line numbers mean). Lines of skipped blocks become empty lines.
 */
export function preprocessWgsl(
  source: string,
  shaderName: string,
  defined: Iterable<string> = [],
  resolve: IncludeResolver = libraryIncludes,
): string {
  const shaderFile = `${shaderName}.wgsl`;
  const { lines, origins, markers } = expandIncludes(source, shaderName, resolve);
  const known = new Set(flagsOf(lines));
  const on = new Set(defined);
  for (const flag of on) {
    if (!known.has(flag)) {
      const list = known.size ? [...known].join(', ') : 'none';
      throw new WgslPreprocessError(`${shaderFile}: unknown flag ${flag} (the shader tests: ${list})`);
    }
  }
  // Each open block: is its current branch emitted, and has #else been seen?
  const stack: { active: boolean; parentActive: boolean; sawElse: boolean; origin: Origin }[] = [];
  const out: string[] = [];
  lines.forEach((line, i) => {
    const where = locate(origins[i], shaderFile);
    const active = stack.length === 0 || stack[stack.length - 1].active;
    const m = /^\s*#/.test(line) ? DIRECTIVE.exec(line) : null;
    if (/^\s*#/.test(line) && !m) throw new WgslPreprocessError(`${where}: malformed directive: ${line.trim()}`);
    if (!m) {
      out.push(active || markers.has(i) ? line : '');
      return;
    }
    const [, directive, flag] = m;
    switch (directive) {
      case 'ifdef':
      case 'ifndef': {
        if (!flag) throw new WgslPreprocessError(`${where}: #${directive} needs a flag`);
        const test = directive === 'ifdef' ? on.has(flag) : !on.has(flag);
        stack.push({ active: active && test, parentActive: active, sawElse: false, origin: origins[i] });
        break;
      }
      case 'else': {
        const top = stack[stack.length - 1];
        if (!top || top.sawElse) throw new WgslPreprocessError(`${where}: #else without a matching #ifdef`);
        top.sawElse = true;
        top.active = top.parentActive && !top.active;
        break;
      }
      case 'endif':
        if (!stack.pop()) throw new WgslPreprocessError(`${where}: #endif without a matching #ifdef`);
        break;
      default:
        throw new WgslPreprocessError(`${where}: unknown directive #${directive}`);
    }
    out.push('');
  });
  const open = stack.pop();
  if (open) throw new WgslPreprocessError(`${locate(open.origin, shaderFile)}: #ifdef is never closed by #endif`);
  return out.join('\n');
}

/**
 * Where line `line` (1-based) of preprocessWgsl's output comes from, read off its include
 * markers: `attention.wgsl:57`, or `common/dtype.wgsl:3 (included by attention.wgsl)`. For
 * compiler messages, whose line numbers count the expanded text.
 */
export function wgslLocation(code: string, shaderName: string, line: number): string {
  const shaderFile = `${shaderName}.wgsl`;
  // Open files, innermost last: each with its next line number and how many output lines of
  // its region (nested includes' too) are left.
  const files: { file: string; next: number; left: number }[] = [{ file: shaderFile, next: 1, left: Infinity }];
  const lines = code.split('\n');
  for (let i = 0; i < lines.length; i++) {
    while (files[files.length - 1].left === 0) files.pop();
    const top = files[files.length - 1];
    const here = { file: top.file, line: top.next++ };
    for (const f of files) f.left--;
    if (i + 1 === line) return locate(here, shaderFile);
    const m = MARKER.exec(lines[i]);
    if (m) files.push({ file: m[1], next: 1, left: Number(m[2]) });
  }
  return `${shaderFile}:${line}`;
}

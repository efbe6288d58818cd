// A tiny, closed preprocessor for shader variants (f16/f32 compute, source dtypes):
// `#ifdef FLAG`, `#ifndef FLAG`, `#else`, `#endif`, nestable, one directive per line.
// Closed means strict: a flag the shader never tests, an unknown directive or an unbalanced
// block throws, so a typo in a launcher cannot silently compile the wrong variant.

export class WgslPreprocessError extends Error {
  override readonly name = 'WgslPreprocessError';
}

const DIRECTIVE = /^\s*#(\w+)\s*(\w*)\s*(?:\/\/.*)?$/;

/** The flags a shader tests with #ifdef/#ifndef, in order of first use. */
export function shaderFlags(source: string): string[] {
  const flags = new Set<string>();
  for (const line of source.split('\n')) {
    const m = DIRECTIVE.exec(line);
    if (m && (m[1] === 'ifdef' || m[1] === 'ifndef') && m[2]) flags.add(m[2]);
  }
  return [...flags];
}

/**
 * The variant of `source` with `defined` flags set. Lines of skipped blocks become empty
 * lines, so line numbers in compiler messages still match the file.
 */
export function preprocessWgsl(source: string, shaderName: string, defined: Iterable<string> = []): string {
  const known = new Set(shaderFlags(source));
  const on = new Set(defined);
  for (const flag of on) {
    if (!known.has(flag)) {
      const list = known.size ? [...known].join(', ') : 'none';
      throw new WgslPreprocessError(`${shaderName}.wgsl: unknown flag ${flag} (the shader tests: ${list})`);
    }
  }
  // Each open block: is its current branch emitted, and has #else been seen?
  const stack: { active: boolean; parentActive: boolean; sawElse: boolean; line: number }[] = [];
  const out: string[] = [];
  const lines = source.split('\n');
  lines.forEach((line, i) => {
    const where = `${shaderName}.wgsl:${i + 1}`;
    const active = stack.length === 0 || stack[stack.length - 1].active;
    const m = /^\s*#/.test(line) ? DIRECTIVE.exec(line) : null;
    if (/^\s*#/.test(line) && !m) throw new WgslPreprocessError(`${where}: malformed directive: ${line.trim()}`);
    if (!m) {
      out.push(active ? line : '');
      return;
    }
    const [, directive, flag] = m;
    switch (directive) {
      case 'ifdef':
      case 'ifndef': {
        if (!flag) throw new WgslPreprocessError(`${where}: #${directive} needs a flag`);
        const test = directive === 'ifdef' ? on.has(flag) : !on.has(flag);
        stack.push({ active: active && test, parentActive: active, sawElse: false, line: i + 1 });
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
  if (open) throw new WgslPreprocessError(`${shaderName}.wgsl:${open.line}: #ifdef is never closed by #endif`);
  return out.join('\n');
}

// The URL of a file named by another file (a shard named by its index's weight_map): the
// name is untrusted, and must not lead the caller's headers anywhere but the index's own
// folder. Browser-safe.
//
// Two independent checks. The name is checked as the URL parser will see it: the parser
// deletes tabs and newlines anywhere and trims control characters and spaces, so
// ".\n./x" is "../x" and "ht\ttp:/host/x" an absolute URL; we refuse such characters rather
// than guess. Then the resolved URL itself must keep the index's origin and folder.

import { quote, SluiceError } from '../errors.js';

/**
 * `new URL(name, url)` for a plain relative file name: refuses control characters, leading
 * or trailing spaces, `\`, `?`, `#`, a scheme, a leading `/`, empty, `.` and `..` segments
 * (also percent-encoded), and percent-encoded `/`, `\`, `%` or control characters. The
 * result must share the origin of `url` and lie below its folder. The base's query string
 * is not kept.
 */
export function urlSibling(url: string | URL, name: string): string {
  const refuse = (why: string) =>
    new SluiceError('IO_ERROR', `${String(url)}: refusing sibling name ${quote(name)}: ${why}; it must be a relative path inside the same directory`);
  const why = nameProblem(name);
  if (why) throw refuse(why);
  const base = new URL(url);
  const folder = base.pathname.slice(0, base.pathname.lastIndexOf('/') + 1);
  const resolved = new URL(name, base);
  // Defence in depth: whatever the checks above missed, the result stays where it should.
  if (resolved.origin !== base.origin || !resolved.pathname.startsWith(folder) || resolved.pathname.length === folder.length) {
    throw refuse(`it resolves to ${quote(resolved.href)}, outside ${quote(base.origin + folder)}`);
  }
  return resolved.href;
}

/** Why `name` is not a plain relative file name, or null when it is. */
function nameProblem(name: string): string | null {
  if (name === '') return 'it is empty';
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(name)) return 'it holds a control character';
  if (/^\s|\s$/.test(name)) return 'it starts or ends with a space';
  if (/[\\?#]/.test(name)) return 'it holds \\, ? or #';
  if (/^[a-z][a-z0-9+.-]*:/i.test(name)) return 'it has a URL scheme';
  // %2f and %5c are slashes to servers that decode before routing; %25 hides another escape.
  if (/%(2f|5c|25|[01][0-9a-f]|7f)/i.test(name)) return 'it holds a percent-encoded /, \\, % or control character';
  for (const segment of name.split('/')) {
    if (segment === '') return 'it has an empty path segment (or a leading /)';
    const dots = segment.replace(/%2e/gi, '.');
    if (dots === '.' || dots === '..') return 'it has a . or .. segment';
  }
  return null;
}

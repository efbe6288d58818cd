// The per-type half of the JSON Schema compiler (json-schema.ts has the combinators, refs
// and keyword checks): string, number/integer, object and array schemas → grammar IR.
//
// Objects: properties are written in the schema's order (as OpenAI, XGrammar and llama.cpp
// do); required ones always, optional ones may be left out; only the listed properties are
// generated even where additional ones would be allowed (a valid subset). An object with no
// `properties` and additionalProperties not false is a map: any keys, values of
// additionalProperties' schema.

import { type Expr, EMPTY, MAX_REPEAT, NOTHING, alt, exprSize, grammarError, isNothing, literal, opt, pathKey, rep, seq, shown } from './expr.js';
import { type JsonLexicon, jsonChars } from './json-text.js';
import { type NumberBounds, boundedInteger, boundedNumber } from './number-range.js';
import { parseRegex } from './regex.js';

/** What the type compilers need from the schema compiler. */
export interface SchemaContext {
  readonly json: JsonLexicon;
  compile(schema: unknown, path: string, depth: number): Expr;
  /** Strict: throws `${path}.${keyword}: ${why}`; otherwise the keyword is ignored. */
  unenforced(path: string, keyword: string, why: string): void;
  /** Counts properties (and their names' characters) against the schema's limits. */
  countProperties(keys: readonly string[], path: string): void;
}

export type SchemaObject = Record<string, unknown>;

const isObject = (v: unknown): v is SchemaObject => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A repeated expression larger than this becomes a rule, so its copies share one automaton. */
const SHARE_ABOVE = 4096;

// RFC 3339 full-date without Feb 29 (a valid subset: leap years are never needed), and a
// full-time with its offset always written, which both ajv-formats' strict and lax `time`
// accept (ajv-formats src/formats.ts: date, getTime).
const DATE = '[0-9]{4}-(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])|(?:0[13-9]|1[0-2])-(?:29|30)|(?:0[13578]|1[02])-31)';
const TIME = '(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\\.[0-9]{1,9})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])';
const IPV4_PART = '(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])';
const FORMATS: Record<string, string> = {
  date: DATE,
  time: TIME,
  'date-time': `${DATE}T${TIME}`,
  uuid: '[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}',
  // A simple address: dot-separated atoms, @, dot-separated labels with a letters-only TLD.
  email: '[A-Za-z0-9_+-]+(?:\\.[A-Za-z0-9_+-]+)*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\\.)+[A-Za-z]{2,}',
  ipv4: `${IPV4_PART}(?:\\.${IPV4_PART}){3}`,
};
export const SUPPORTED_FORMATS = Object.keys(FORMATS);

function count(s: SchemaObject, key: string, path: string): number | undefined {
  const v = s[key];
  if (v === undefined) return undefined;
  if (!Number.isSafeInteger(v) || (v as number) < 0) throw grammarError(`${path}.${key}`, `must be a non-negative integer, not ${shown(v)}`);
  return v as number;
}

/** A length or item count: over MAX_REPEAT it is refused (minimum) or not enforced (maximum). */
function bound(ctx: SchemaContext, s: SchemaObject, key: string, path: string, isMax: boolean): number | undefined {
  const n = count(s, key, path);
  if (n === undefined || n <= MAX_REPEAT) return n;
  if (!isMax) throw grammarError(`${path}.${key}`, `${n} is over the limit of ${MAX_REPEAT}`);
  ctx.unenforced(path, key, `${n} is over the limit of ${MAX_REPEAT}`);
  return undefined;
}

export function compileString(ctx: SchemaContext, s: SchemaObject, path: string): Expr {
  const min = bound(ctx, s, 'minLength', path, false) ?? 0;
  const max = bound(ctx, s, 'maxLength', path, true) ?? Infinity;
  if (min > max) throw grammarError(path, `minLength ${min} is over maxLength ${max}`);
  let body: Expr | null = null;
  if (s.format !== undefined) {
    if (typeof s.format !== 'string') throw grammarError(`${path}.format`, 'must be a string');
    const pattern = Object.hasOwn(FORMATS, s.format) ? FORMATS[s.format] : undefined;
    if (pattern === undefined) throw grammarError(`${path}.format`, `unknown format ${shown(s.format)} (supported: ${SUPPORTED_FORMATS.join(', ')})`);
    if (s.pattern === undefined) body = parseRegex(pattern, { chars: jsonChars, where: `${path}.format` });
    else ctx.unenforced(path, 'format', 'cannot be combined with pattern');
  }
  if (s.pattern !== undefined) {
    if (typeof s.pattern !== 'string') throw grammarError(`${path}.pattern`, 'must be a string');
    body = parseRegex(s.pattern, { chars: jsonChars, where: `${path}.pattern` });
  }
  if (body === null) return ctx.json.string(min, max);
  if (min > 0 || max < Infinity) ctx.unenforced(path, min > 0 ? 'minLength' : 'maxLength', 'cannot be combined with pattern or format');
  if (isNothing(body)) throw grammarError(`${path}.pattern`, 'matches no string');
  return seq(literal('"'), body, literal('"'));
}

export function compileNumber(ctx: SchemaContext, s: SchemaObject, path: string, integer: boolean): Expr {
  const bounds: NumberBounds = {};
  for (const key of ['minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum'] as const) {
    const v = s[key];
    if (v === undefined) continue;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw grammarError(`${path}.${key}`, `must be a number, not ${shown(v)}`);
    bounds[key] = v;
  }
  let asInteger = integer;
  if (s.multipleOf !== undefined) {
    const m = s.multipleOf;
    if (typeof m !== 'number' || !(m > 0) || !Number.isFinite(m)) throw grammarError(`${path}.multipleOf`, 'must be a number above 0');
    // multipleOf 1 means "an integer". Every integer is also a multiple of 1/2^k, and
    // validators find it so: they divide in floating point, where 3 / 0.1 is not whole.
    const binaryFraction = Number.isInteger(Math.log2(1 / m)) && m <= 1;
    if (m === 1) asInteger = true;
    else if (!(integer && binaryFraction)) ctx.unenforced(path, 'multipleOf', `only multipleOf 1 (or 1/2, 1/4, ... on an integer) can be enforced, not ${m}`);
  }
  const bounded = Object.keys(bounds).length > 0;
  const e = asInteger ? (bounded ? boundedInteger(bounds) : ctx.json.integer) : bounded ? boundedNumber(bounds) : ctx.json.number;
  if (isNothing(e)) throw grammarError(path, `no ${asInteger ? 'integer' : 'number'} of at most 15 digits meets ${JSON.stringify(bounds)}`);
  return e;
}

interface Member {
  key: string;
  schema: unknown;
  path: string;
  required: boolean;
}

export function compileObject(ctx: SchemaContext, s: SchemaObject, path: string, depth: number): Expr {
  const properties = s.properties ?? {};
  if (!isObject(properties)) throw grammarError(`${path}.properties`, 'must be an object');
  const required = s.required ?? [];
  if (!Array.isArray(required) || required.some((r) => typeof r !== 'string')) throw grammarError(`${path}.required`, 'must be a list of strings');
  const additional = s.additionalProperties;
  if (additional !== undefined && typeof additional !== 'boolean' && !isObject(additional)) throw grammarError(`${path}.additionalProperties`, 'must be a boolean or a schema');
  if (s.unevaluatedProperties !== undefined && s.unevaluatedProperties !== false) ctx.unenforced(path, 'unevaluatedProperties', 'only false is supported');
  for (const key of ['patternProperties', 'propertyNames', 'dependentRequired', 'dependentSchemas']) {
    if (s[key] !== undefined) ctx.unenforced(path, key, 'not supported');
  }
  const closed = additional === false || s.unevaluatedProperties === false;
  const extraSchema = isObject(additional) ? additional : true;
  const keys = Object.keys(properties);
  const members: Member[] = keys.map((key) => ({ key, schema: properties[key], path: `${path}.properties.${pathKey(key)}`, required: required.includes(key) }));
  for (const key of new Set(required as string[])) {
    if (Object.hasOwn(properties, key)) continue;
    if (closed) throw grammarError(`${path}.required`, `${shown(key)} is not in properties, and additional properties are not allowed`);
    members.push({ key, schema: extraSchema, path: `${path}.required`, required: true });
  }
  if (members.length === 0 && !closed) return compileMap(ctx, s, path, depth, extraSchema);
  ctx.countProperties(members.map((m) => m.key), path);
  const minProps = count(s, 'minProperties', path);
  const maxProps = count(s, 'maxProperties', path);
  const requiredCount = members.filter((m) => m.required).length;
  if (minProps !== undefined && minProps > requiredCount) ctx.unenforced(path, 'minProperties', 'is more than the required properties');
  if (maxProps !== undefined && maxProps < members.length) ctx.unenforced(path, 'maxProperties', 'is less than the listed properties');

  const kvs: Array<{ kv: Expr; required: boolean; key: string }> = [];
  for (const m of members) {
    const value = ctx.compile(m.schema, m.path, depth + 1);
    if (isNothing(value)) {
      if (m.required) throw grammarError(m.path, 'can never be satisfied, and the property is required');
      continue;
    }
    kvs.push({ kv: seq(literal(JSON.stringify(m.key)), ctx.json.ws, literal(':'), ctx.json.ws, value), required: m.required, key: m.key });
  }
  return objectOf(ctx, kvs, path);
}

/**
 * `{ kv_a (, kv_b)? ... }` in order, commas only between members present. The tail after
 * member i is shared by every way of reaching it; long tails become rules so the object
 * stays linear in its size (one automaton copy per tail, not one per optional prefix).
 */
function objectOf(ctx: SchemaContext, kvs: Array<{ kv: Expr; required: boolean; key: string }>, path: string): Expr {
  const { ws, builder } = ctx.json;
  if (kvs.length === 0) return seq(literal('{'), ws, literal('}'));
  const firstRequired = kvs.findIndex((m) => m.required);
  const starts = firstRequired < 0 ? kvs.length : firstRequired + 1; // members that may come first
  const shareAbove = starts > 1 ? 256 : SHARE_ABOVE;
  const tail: Expr[] = new Array(kvs.length + 1);
  tail[kvs.length] = EMPTY;
  for (let i = kvs.length - 1; i >= 1; i--) {
    const next = seq(ws, literal(','), ws, kvs[i].kv);
    tail[i] = seq(kvs[i].required ? next : opt(next), tail[i + 1]);
    if (exprSize(tail[i]) > shareAbove) tail[i] = builder.share(`${path} (from property ${shown(kvs[i].key)})`, tail[i]);
  }
  const first = alt(...kvs.slice(0, starts).map((m, k) => seq(m.kv, tail[k + 1])));
  const inner = seq(first, ws);
  return seq(literal('{'), ws, firstRequired < 0 ? opt(inner) : inner, literal('}'));
}

function compileMap(ctx: SchemaContext, s: SchemaObject, path: string, depth: number, valueSchema: unknown): Expr {
  const minProps = count(s, 'minProperties', path) ?? 0;
  const maxProps = count(s, 'maxProperties', path);
  // A map's keys are free, so two may repeat and collapse into one when parsed: only
  // "at least one" can be promised.
  if (minProps > 1) ctx.unenforced(path, 'minProperties', 'keys of a map may repeat, so only minProperties ≤ 1 can be enforced');
  if (maxProps !== undefined && minProps > maxProps) throw grammarError(path, `minProperties ${minProps} is over maxProperties ${maxProps}`);
  const value = ctx.compile(valueSchema, `${path}.additionalProperties`, depth + 1);
  const { json } = ctx;
  if (isNothing(value)) return maxProps === 0 || minProps === 0 ? seq(literal('{'), json.ws, literal('}')) : NOTHING;
  const member = seq(json.string(), json.ws, literal(':'), json.ws, value);
  if (minProps === 0) return json.objectOf(member, maxProps ?? Infinity);
  // At least one member: the object must not be `{ }`.
  const more = rep(seq(json.ws, literal(','), json.ws, member), 0, (maxProps ?? Infinity) - 1);
  return seq(literal('{'), json.ws, member, more, json.ws, literal('}'));
}

export function compileArray(ctx: SchemaContext, s: SchemaObject, path: string, depth: number): Expr {
  const { ws, builder } = ctx.json;
  const tupleItems = Array.isArray(s.items) ? s.items : undefined; // draft-04..07 tuple form
  const prefixSchemas = (s.prefixItems ?? tupleItems ?? []) as unknown;
  if (!Array.isArray(prefixSchemas)) throw grammarError(`${path}.prefixItems`, 'must be a list of schemas');
  // unevaluatedItems: false with nothing else evaluating the rest = no more items.
  const closedRest = s.unevaluatedItems === false ? false : true;
  const restSchema = tupleItems ? (s.additionalItems ?? closedRest) : (s.items ?? closedRest);
  if (s.uniqueItems === true) ctx.unenforced(path, 'uniqueItems', 'cannot be enforced by a grammar');
  for (const key of ['contains', 'minContains', 'maxContains']) if (s[key] !== undefined) ctx.unenforced(path, key, 'not supported');
  if (s.unevaluatedItems !== undefined && s.unevaluatedItems !== false) ctx.unenforced(path, 'unevaluatedItems', 'only false is supported');
  const min = bound(ctx, s, 'minItems', path, false) ?? 0;
  let max = bound(ctx, s, 'maxItems', path, true) ?? Infinity;

  const prefix: Expr[] = [];
  for (const [i, schema] of prefixSchemas.entries()) {
    if (i >= max) break;
    const e = ctx.compile(schema, `${path}.prefixItems[${i}]`, depth + 1);
    if (isNothing(e)) break; // no array reaches past an impossible item
    prefix.push(e);
  }
  const restPath = tupleItems ? `${path}.additionalItems` : `${path}.items`;
  let rest: Expr | null = prefix.length === prefixSchemas.length ? ctx.compile(restSchema, restPath, depth + 1) : NOTHING;
  if (isNothing(rest)) {
    rest = null;
    max = Math.min(max, prefix.length);
  }
  if (min > max) throw grammarError(path, `minItems ${min} cannot be met (at most ${max} items are possible)`);
  const m = prefix.length;
  const comma = (e: Expr) => seq(ws, literal(','), ws, e);
  if (rest && Number.isFinite(max) && exprSize(rest) * (max - m) > SHARE_ABOVE) rest = builder.share(`${restPath} (item)`, rest);

  let first: Expr | null = null;
  if (m > 0) {
    let after = rest && max > m ? rep(comma(rest), Math.max(0, min - m), max - m) : EMPTY;
    for (let i = m - 1; i >= 1; i--) {
      const present = seq(comma(prefix[i]), after);
      after = i < min ? present : opt(present);
    }
    first = seq(prefix[0], after);
  } else if (rest && max > 0) {
    first = seq(rest, rep(comma(rest), Math.max(0, min - 1), max - 1));
  }
  const body = first === null ? EMPTY : min >= 1 ? seq(first, ws) : opt(seq(first, ws));
  return seq(literal('['), ws, body, literal(']'));
}

export { isObject };

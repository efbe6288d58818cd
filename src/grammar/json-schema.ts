// JSON Schema → grammar IR, for what OpenAI's structured outputs accept and a little more
// (json-schema-types.ts compiles each type). Every error names the keyword's path:
// `schema.properties.age.format: unknown format "foo" (supported: ...)`.
//
// Strict mode (the default) refuses every keyword it cannot enforce, so a schema it accepts
// is one every output validates against; `strict: false` ignores those keywords instead
// (the output may then fail them). Malformed schemas, unknown formats, remote $refs,
// $ref cycles with no way out, more than MAX_PROPERTIES properties and nesting deeper than
// MAX_DEPTH fail in both modes.
//
// Combinators: anyOf is an alternation; oneOf too, and strict mode accepts it only when its
// branches cannot both match (different types, or objects told apart by a required const
// property). Keywords next to anyOf/oneOf/allOf are merged into each branch when their
// keys do not clash. $ref takes local JSON pointers (#, #/$defs/x, #/definitions/x, any
// #/path); each target is one rule, so recursive schemas work.

import { type Expr, type Grammar, GrammarBuilder, NOTHING, alt, exprSize, grammarError, isNothing, literal, pathKey, ref, shown } from './expr.js';
import { JSON_BOOLEAN, JSON_NULL, JsonLexicon, type WhitespacePolicy } from './json-text.js';
import { type SchemaContext, type SchemaObject, compileArray, compileNumber, compileObject, compileString, isObject } from './json-schema-types.js';

export interface JsonSchemaOptions {
  strict: boolean;
  whitespace: WhitespacePolicy;
}

/** OpenAI's limit on the properties of one schema. */
export const MAX_PROPERTIES = 5000;
/** Subschemas nested deeper than this are refused (OpenAI allows 10 levels of objects). */
export const MAX_DEPTH = 64;
/** Automaton states one subschema may expand to. */
const MAX_SIZE = 1_000_000;

const ANNOTATIONS = new Set(['title', 'description', '$comment', 'examples', 'default', '$schema', '$id', '$anchor', 'deprecated', 'readOnly', 'writeOnly', '$defs', 'definitions', 'contentEncoding', 'contentMediaType']);
const TYPE_KEYWORDS: Record<string, readonly string[]> = {
  string: ['minLength', 'maxLength', 'pattern', 'format'],
  number: ['minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum', 'multipleOf'],
  object: ['properties', 'required', 'additionalProperties', 'minProperties', 'maxProperties', 'patternProperties', 'propertyNames', 'dependentRequired', 'dependentSchemas', 'unevaluatedProperties'],
  array: ['items', 'prefixItems', 'additionalItems', 'minItems', 'maxItems', 'uniqueItems', 'contains', 'minContains', 'maxContains', 'unevaluatedItems'],
};
const COMBINATORS = ['$ref', 'allOf', 'anyOf', 'oneOf', 'enum', 'const', 'type'];
const UNSUPPORTED = ['not', 'if', 'then', 'else', '$dynamicRef', '$recursiveRef', '$dynamicAnchor', '$recursiveAnchor'];
const KNOWN = new Set([...COMBINATORS, ...Object.values(TYPE_KEYWORDS).flat()]);
const TYPES = ['string', 'number', 'integer', 'boolean', 'null', 'object', 'array'];

export function jsonSchemaGrammar(schema: unknown, options: JsonSchemaOptions): Grammar {
  const compiler = new SchemaCompiler(schema, options);
  const root = compiler.builder.declare('schema');
  compiler.refRules.set('#', root);
  const body = compiler.compile(schema, 'schema', 0);
  if (isNothing(body)) throw grammarError('schema', 'can never be satisfied');
  compiler.builder.define(root, body);
  return compiler.builder.build(root);
}

class SchemaCompiler implements SchemaContext {
  readonly builder = new GrammarBuilder();
  readonly json: JsonLexicon;
  readonly refRules = new Map<string, number>();
  private properties = 0;
  private keyText = 0;

  constructor(
    private readonly root: unknown,
    private readonly options: JsonSchemaOptions,
  ) {
    this.json = new JsonLexicon(this.builder, options.whitespace);
  }

  compile(schema: unknown, path: string, depth: number): Expr {
    if (depth > MAX_DEPTH) throw grammarError(path, `nested more than ${MAX_DEPTH} levels deep`);
    if (schema === true) return this.json.anyValue();
    if (schema === false) return NOTHING;
    if (!isObject(schema)) throw grammarError(path, `a schema must be an object or a boolean, not ${shown(schema)}`);
    for (const key of Object.keys(schema)) {
      if (ANNOTATIONS.has(key) || KNOWN.has(key)) continue;
      this.unenforced(path, key, UNSUPPORTED.includes(key) ? 'not supported' : 'unknown keyword');
    }
    const e = this.dispatch(schema, path, depth);
    if (exprSize(e) > MAX_SIZE) throw grammarError(path, `too large to enforce (over ${MAX_SIZE} automaton states)`);
    return e;
  }

  unenforced(path: string, keyword: string, why: string): void {
    if (this.options.strict) throw grammarError(`${path}.${keyword}`, `${why} (strict mode refuses what it cannot enforce)`);
  }

  countProperties(keys: readonly string[], path: string): void {
    this.properties += keys.length;
    if (this.properties > MAX_PROPERTIES) throw grammarError(path, `the schema has more than ${MAX_PROPERTIES} properties`);
    for (const key of keys) this.keyText += key.length;
    if (this.keyText > MAX_SIZE) throw grammarError(path, `the schema's property names are over ${MAX_SIZE} characters long in all`);
  }

  private dispatch(s: SchemaObject, path: string, depth: number): Expr {
    if (s.$ref !== undefined) return this.ref(s, path, depth);
    if (s.allOf !== undefined) return this.allOf(s, path, depth);
    if (s.anyOf !== undefined || s.oneOf !== undefined) return this.anyOf(s, path, depth);
    if (s.enum !== undefined || s.const !== undefined) return this.enumeration(s, path);
    return this.typed(s, path, depth);
  }

  private typed(s: SchemaObject, path: string, depth: number): Expr {
    let types: string[];
    if (s.type === undefined) {
      // No type: what the keywords present imply (a subset of "anything"), else any value.
      types = Object.keys(TYPE_KEYWORDS).filter((t) => TYPE_KEYWORDS[t].some((k) => s[k] !== undefined));
      if (types.length === 0) return this.json.anyValue();
    } else {
      const list = Array.isArray(s.type) ? s.type : [s.type];
      for (const t of list) if (typeof t !== 'string' || !TYPES.includes(t)) throw grammarError(`${path}.type`, `unknown type ${shown(t)} (one of ${TYPES.join(', ')})`);
      if (list.length === 0) throw grammarError(`${path}.type`, 'is an empty list');
      types = list as string[];
    }
    return alt(...types.map((t) => this.ofType(t, s, path, depth)));
  }

  private ofType(type: string, s: SchemaObject, path: string, depth: number): Expr {
    switch (type) {
      case 'null': return JSON_NULL;
      case 'boolean': return JSON_BOOLEAN;
      case 'string': return compileString(this, s, path);
      case 'number': return compileNumber(this, s, path, false);
      case 'integer': return compileNumber(this, s, path, true);
      case 'object': return compileObject(this, s, path, depth);
      default: return compileArray(this, s, path, depth);
    }
  }

  private enumeration(s: SchemaObject, path: string): Expr {
    if (s.enum !== undefined && (!Array.isArray(s.enum) || s.enum.length === 0)) throw grammarError(`${path}.enum`, 'must be a non-empty list');
    let values: unknown[] = s.enum !== undefined ? (s.enum as unknown[]) : [s.const];
    if (s.enum !== undefined && s.const !== undefined) values = values.filter((v) => JSON.stringify(v) === JSON.stringify(s.const));
    for (const key of Object.keys(s)) {
      if (!ANNOTATIONS.has(key) && !['enum', 'const', 'type'].includes(key)) this.unenforced(path, key, 'cannot be combined with enum/const');
    }
    if (s.type !== undefined) {
      const types = (Array.isArray(s.type) ? s.type : [s.type]) as string[];
      values = values.filter((v) => types.some((t) => jsonTypeMatches(v, t)));
    }
    const where = `${path}.${s.enum !== undefined ? 'enum' : 'const'}`;
    if (values.length === 0) throw grammarError(where, 'leaves no value (check it against type and const)');
    const texts = values.map((v) => JSON.stringify(v));
    const total = texts.reduce((n, t) => n + t.length, 0);
    if (total > MAX_SIZE) throw grammarError(where, `too large to enforce (${total} characters of values)`);
    return alt(...texts.map((t) => literal(t)));
  }

  private anyOf(s: SchemaObject, path: string, depth: number): Expr {
    if (s.anyOf !== undefined && s.oneOf !== undefined) this.unenforced(path, 'oneOf', 'cannot be combined with anyOf');
    const key = s.anyOf !== undefined ? 'anyOf' : 'oneOf';
    const branches = s[key];
    if (!Array.isArray(branches) || branches.length === 0) throw grammarError(`${path}.${key}`, 'must be a non-empty list of schemas');
    const merged = branches.map((b, i) => this.mergeSiblings(s, key, b, `${path}.${key}[${i}]`));
    if (key === 'oneOf' && this.options.strict) this.refuseOverlap(merged, path);
    return alt(...merged.map((b, i) => this.compile(b, `${path}.${key}[${i}]`, depth + 1)));
  }

  private allOf(s: SchemaObject, path: string, depth: number): Expr {
    const parts = s.allOf;
    if (!Array.isArray(parts) || parts.length === 0) throw grammarError(`${path}.allOf`, 'must be a non-empty list of schemas');
    if (parts.length === 1) return this.compile(this.mergeSiblings(s, 'allOf', parts[0], `${path}.allOf[0]`), `${path}.allOf[0]`, depth + 1);
    let merged: unknown = siblingsOf(s, 'allOf');
    parts.forEach((p, i) => (merged = this.merge(merged, this.resolveRefs(p, `${path}.allOf[${i}]`), `${path}.allOf[${i}]`, 'allOf')));
    return this.compile(merged, `${path}.allOf`, depth + 1);
  }

  /** `branch` with the parent's other keywords folded in (they apply to every branch). */
  private mergeSiblings(s: SchemaObject, key: string, branch: unknown, path: string): unknown {
    const siblings = siblingsOf(s, key);
    if (Object.keys(siblings).length === 0) return branch;
    return this.merge(siblings, branch, path, key);
  }

  private merge(a: unknown, b: unknown, path: string, key: string): unknown {
    if (a === false || b === false) return false;
    if (a === true) return b;
    if (b === true) return a;
    if (!isObject(a) || !isObject(b)) throw grammarError(path, 'a schema must be an object or a boolean');
    const out: SchemaObject = { ...a };
    for (const [k, v] of Object.entries(b)) {
      const clash = Object.hasOwn(out, k) && !ANNOTATIONS.has(k) && JSON.stringify(out[k]) !== JSON.stringify(v);
      if (clash || (k === '$ref' && Object.keys(a).some((x) => !ANNOTATIONS.has(x)))) {
        this.unenforced(path, k, `cannot be merged with the keywords next to ${key}`);
        continue; // not strict: the first one wins
      }
      out[k] = v;
    }
    return out;
  }

  /** Follows a schema's `$ref` chain to a schema without one (for allOf merging). */
  private resolveRefs(schema: unknown, path: string): unknown {
    for (let hops = 0; isObject(schema) && typeof schema.$ref === 'string'; hops++) {
      if (hops > MAX_DEPTH) throw grammarError(`${path}.$ref`, 'is a cycle of $refs');
      const { $ref, ...rest } = schema;
      const target = this.pointer($ref as string, path);
      schema = Object.keys(rest).length === 0 ? target.schema : this.merge(rest, target.schema, path, '$ref');
    }
    return schema;
  }

  private ref(s: SchemaObject, path: string, depth: number): Expr {
    if (typeof s.$ref !== 'string') throw grammarError(`${path}.$ref`, 'must be a string');
    for (const key of Object.keys(s)) if (key !== '$ref' && !ANNOTATIONS.has(key)) this.unenforced(path, key, 'cannot be combined with $ref');
    const target = this.pointer(s.$ref, path);
    let id = this.refRules.get(target.key);
    if (id === undefined) {
      id = this.builder.declare(target.path);
      this.refRules.set(target.key, id);
      this.builder.define(id, this.compile(target.schema, target.path, depth + 1));
    }
    return ref(id);
  }

  /** A local JSON pointer (RFC 6901, in a URI fragment) → the schema it names. */
  private pointer(target: string, path: string): { key: string; path: string; schema: unknown } {
    if (!target.startsWith('#')) throw grammarError(`${path}.$ref`, `only local references (#/...) are supported, not ${shown(target)}`);
    let fragment: string;
    try {
      fragment = decodeURIComponent(target.slice(1));
    } catch {
      throw grammarError(`${path}.$ref`, `${shown(target)} is not a valid URI fragment`);
    }
    if (fragment !== '' && !fragment.startsWith('/')) throw grammarError(`${path}.$ref`, `${shown(target)}: anchors are not supported, only JSON pointers`);
    const segments = fragment === '' ? [] : fragment.slice(1).split('/').map((x) => x.replaceAll('~1', '/').replaceAll('~0', '~'));
    let node: unknown = this.root;
    for (const seg of segments) {
      node = (isObject(node) || Array.isArray(node)) && Object.hasOwn(node, seg) ? (node as Record<string, unknown>)[seg] : undefined;
      if (node === undefined) throw grammarError(`${path}.$ref`, `${shown(target)} does not resolve`);
    }
    return { key: `#/${segments.join('/')}`, path: ['schema', ...segments.map(pathKey)].join('.'), schema: node };
  }

  /** Strict oneOf: refuse branches that could both match one value. */
  private refuseOverlap(branches: unknown[], path: string): void {
    for (let i = 0; i < branches.length; i++) {
      for (let j = i + 1; j < branches.length; j++) {
        const a = this.resolveRefs(branches[i], `${path}.oneOf[${i}]`);
        const b = this.resolveRefs(branches[j], `${path}.oneOf[${j}]`);
        if (!disjointTypes(typeSet(a), typeSet(b)) && !discriminated(a, b)) {
          throw grammarError(`${path}.oneOf`, `branches ${i} and ${j} may both match one value, which oneOf forbids (use anyOf, or tell them apart by type or by a required const property)`);
        }
      }
    }
  }
}

function siblingsOf(s: SchemaObject, key: string): SchemaObject {
  return Object.fromEntries(Object.entries(s).filter(([k]) => k !== key && !ANNOTATIONS.has(k)));
}

function jsonType(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

function jsonTypeMatches(v: unknown, type: string): boolean {
  const t = jsonType(v);
  return t === type || (type === 'number' && t === 'integer');
}

/** The JSON types a schema's values can have; null = any. */
function typeSet(s: unknown): Set<string> | null {
  if (s === false) return new Set();
  if (!isObject(s)) return null;
  if (s.const !== undefined) return new Set([jsonType(s.const)]);
  if (Array.isArray(s.enum)) return new Set(s.enum.map(jsonType));
  if (s.type === undefined) return null;
  return new Set((Array.isArray(s.type) ? s.type : [s.type]) as string[]);
}

function disjointTypes(a: Set<string> | null, b: Set<string> | null): boolean {
  if (!a || !b) return false;
  const numeric = (t: string) => t === 'number' || t === 'integer';
  for (const x of a) for (const y of b) if (x === y || (numeric(x) && numeric(y))) return false;
  return true;
}

/** Two object schemas that both require a property whose const/enum values do not meet. */
function discriminated(a: unknown, b: unknown): boolean {
  if (!isObject(a) || !isObject(b) || !isObject(a.properties) || !isObject(b.properties)) return false;
  const ra = Array.isArray(a.required) ? a.required : [];
  const rb = Array.isArray(b.required) ? b.required : [];
  const values = (p: unknown): Set<string> | null => {
    if (!isObject(p)) return null;
    if (p.const !== undefined) return new Set([JSON.stringify(p.const)]);
    return Array.isArray(p.enum) ? new Set(p.enum.map((v) => JSON.stringify(v))) : null;
  };
  return Object.keys(a.properties).some((k) => {
    if (!ra.includes(k) || !rb.includes(k)) return false;
    const va = values((a.properties as SchemaObject)[k]);
    const vb = values((b.properties as SchemaObject)[k]);
    return va !== null && vb !== null && [...va].every((v) => !vb.has(v));
  });
}

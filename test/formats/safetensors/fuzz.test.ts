// Mutation fuzzing of SafetensorsFile.open + read. Every mutated input must either open
// (and then every tensor lies within the file and its size matches shape × dtype) or fail
// with a SluiceError: never a TypeError/RangeError, never a read outside the input, never
// a read longer than the input (our proxy for "no allocation larger than the input"),
// and the source is closed on failure. Seeded; a failure prints seed, case and input.
//
// FUZZ_SEED=<n> runs another seed, FUZZ_CASES=<n> changes the cases per family and
// FUZZ_STATS=1 prints how each family's cases ended (opened, or which error code).

import { describe, expect, it } from 'vitest';
import { SluiceError } from '../../../src/errors.js';
import { DTYPES, type Dtype, dtypeBits, dtypeBytes } from '../../../src/formats/dtypes.js';
import { SafetensorsFile } from '../../../src/formats/safetensors/file.js';
import { MemorySource } from '../../../src/io/memory-source.js';
import {
  CountingSource, type TensorSpec, assemble, buildValid, byteSize, concat, mulberry32, randInt, randomBytes,
  toJson, validHeader,
} from '../../support/safetensors-bytes.js';

const SEED = Number(process.env.FUZZ_SEED ?? 0x0f022ed);
const CASES = Number(process.env.FUZZ_CASES ?? 2500);

// ─── seed files ─────────────────────────────────────────────────────────────────────────

interface Seed {
  json: string; // header text, padding included
  data: Uint8Array;
}

/** N as the prefix says, clamped to the bytes there are (0 without a whole prefix). */
function headerLength(bytes: Uint8Array): number {
  if (bytes.byteLength < 8) return 0;
  return Math.min(bytes.byteLength - 8, Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true)));
}

/** A file (possibly already mutated) split into header text and data, so mutations stack. */
function asSeed(bytes: Uint8Array): Seed {
  const n = headerLength(bytes);
  return { json: new TextDecoder().decode(bytes.subarray(8, 8 + n)), data: bytes.slice(8 + n) };
}

function seedFiles(): Seed[] {
  const r = mulberry32(SEED);
  const t = (name: string, dtype: Dtype, shape: number[]): TensorSpec => ({ name, dtype, shape, data: randomBytes(r, byteSize(dtype, shape)) });
  const mixed = [
    t('model.embed.weight', 'BF16', [4, 3]), t('norm', 'F32', [3]), t('step', 'I64', []), t('empty', 'U8', [0]),
    t('q4', 'F4', [6]), t('q6', 'F6_E2M3', [4]), t('mask', 'BOOL', [3, 1]), t('c', 'C64', [2]), t('e8', 'F8_E8M0', [5]),
  ];
  const reversed = Object.fromEntries(Object.entries(validHeader(mixed)).reverse());
  const many = Array.from({ length: 24 }, (_, i) => t(`layers.${i}.w`, DTYPES[i % DTYPES.length], [4, i % 5])); // 4 × n: whole bytes for F4/F6
  return [
    asSeed(buildValid(mixed, { format: 'pt', note: 'seed one' })),
    { json: toJson(reversed) + ' '.repeat(16), data: concat(mixed.map((x) => x.data)) },
    asSeed(buildValid([t('scalar', 'F16', [])], null)),
    asSeed(buildValid(many, { a: '1', b: '2' })),
    // A header over 64 KiB, so open takes its second read.
    asSeed(buildValid(mixed.slice(0, 4), { blob: 'x'.repeat(70_000) })),
  ];
}

const SEEDS = seedFiles();
const enc = new TextEncoder();
const fileOf = (s: Seed) => assemble(enc.encode(s.json), s.data);

// ─── mutations ──────────────────────────────────────────────────────────────────────────

type Rng = () => number;
type Mutation = (r: Rng, bytes: Uint8Array, seed: Seed) => { bytes: Uint8Array; what: string };

const HUGE = ['18446744073709551615', '18446744073709551616', '9007199254740993', '9007199254740992', '4294967296', '100000001', '-1', '1.5', '1e308', '-0', '0'];
const INSERTS = ['"', '{', '}', '[', ']', ',', ':', '\\', 'null', '"F32"', '\u0000', 'é'];

const pick = <T>(r: Rng, xs: readonly T[]): T => xs[randInt(r, 0, xs.length - 1)];
const withJson = (seed: Seed, json: string, r: Rng): Uint8Array => {
  const header = enc.encode(json);
  // Mostly a consistent N; sometimes the seed's N, so length and text disagree.
  return r() < 0.8 ? assemble(header, seed.data) : assemble(header, seed.data, BigInt(enc.encode(seed.json).byteLength));
};

const truncate: Mutation = (r, bytes) => {
  const at = r() < 0.3 ? randInt(r, 0, Math.min(16, bytes.byteLength)) : randInt(r, 0, bytes.byteLength);
  return { bytes: bytes.slice(0, at), what: `truncate to ${at}` };
};

const flipIn = (region: 'prefix' | 'header' | 'data'): Mutation => (r, bytes) => {
  const out = bytes.slice();
  const n = headerLength(bytes);
  const [lo, hi] = region === 'prefix' ? [0, Math.min(8, out.byteLength)] : region === 'header' ? [8, Math.min(8 + n, out.byteLength)] : [Math.min(8 + n, out.byteLength), out.byteLength];
  if (hi <= lo) return { bytes: out, what: `flip ${region}: empty region` };
  const what: string[] = [];
  for (let k = randInt(r, 1, 3); k > 0; k--) {
    const at = randInt(r, lo, hi - 1);
    out[at] = r() < 0.5 ? out[at] ^ (1 << randInt(r, 0, 7)) : randInt(r, 0, 255);
    what.push(`[${at}]=0x${out[at].toString(16)}`);
  }
  return { bytes: out, what: `flip ${region} ${what.join(' ')}` };
};

const jsonEdit: Mutation = (r, _bytes, seed) => {
  let json = seed.json;
  const kind = randInt(r, 0, 7);
  const at = randInt(r, 0, Math.max(0, json.length - 1));
  const numbers = [...json.matchAll(/-?\d+/g)];
  const strings = [...json.matchAll(/"(?:[^"\\]|\\.)*"/g)];
  let what: string;
  if (kind === 0 && numbers.length) {
    const m = pick(r, numbers);
    const v = r() < 0.5 ? pick(r, HUGE) : String(Number(m[0]) + randInt(r, -3, 3));
    json = json.slice(0, m.index) + v + json.slice(m.index! + m[0].length);
    what = `number ${m[0]}@${m.index} → ${v}`;
  } else if (kind === 1) {
    json = json.slice(0, at) + json.slice(at + 1);
    what = `delete char @${at}`;
  } else if (kind === 2) {
    const s = pick(r, INSERTS);
    json = json.slice(0, at) + s + json.slice(at);
    what = `insert ${JSON.stringify(s)} @${at}`;
  } else if (kind === 3 && strings.length > 1) {
    const [a, b] = [pick(r, strings), pick(r, strings)].sort((x, y) => x.index! - y.index!);
    if (a.index === b.index) return { bytes: withJson(seed, json, r), what: 'swap: same key' };
    json = json.slice(0, a.index) + b[0] + json.slice(a.index! + a[0].length, b.index) + a[0] + json.slice(b.index! + b[0].length);
    what = `swap ${a[0]}@${a.index} ↔ ${b[0]}@${b.index}`;
  } else if (kind === 4) {
    const entries = [...json.matchAll(/"[^"]+": ?\{[^{}]*\}/g)];
    if (!entries.length) return { bytes: withJson(seed, json, r), what: 'duplicate: no entry' };
    const e = pick(r, entries);
    json = json.slice(0, e.index! + e[0].length) + ',' + e[0] + json.slice(e.index! + e[0].length);
    what = `duplicate entry ${e[0].slice(0, 40)}`;
  } else if (kind === 5 && numbers.length) {
    const m = pick(r, numbers);
    json = json.slice(0, m.index) + '1' + '0'.repeat(randInt(r, 15, 40)) + json.slice(m.index! + m[0].length);
    what = `huge number @${m.index}`;
  } else if (kind === 6) {
    const dtypes = [...json.matchAll(/"dtype": ?"(\w+)"/g)];
    if (!dtypes.length) return { bytes: withJson(seed, json, r), what: 'dtype: none' };
    const m = pick(r, dtypes);
    const d = r() < 0.8 ? pick(r, DTYPES) : pick(r, ['f32', 'F128', '', 'U4']);
    json = json.slice(0, m.index) + m[0].replace(m[1], d) + json.slice(m.index! + m[0].length);
    what = `dtype ${m[1]} → ${d}`;
  } else {
    const dims = [...json.matchAll(/"shape": ?\[[^\]]*\]/g)];
    if (!dims.length) return { bytes: withJson(seed, json, r), what: 'shape: none' };
    const m = pick(r, dims);
    const shape = `"shape":[${Array.from({ length: randInt(r, 0, 3) }, () => pick(r, ['0', '1', '2', '3', '4', '65536', '4294967296', ...HUGE]))}]`;
    json = json.slice(0, m.index) + shape + json.slice(m.index! + m[0].length);
    what = `shape → ${shape}`;
  }
  return { bytes: withJson(seed, json, r), what: `json ${what}` };
};

const stacked: Mutation = (r, bytes, seed) => {
  const steps = [jsonEdit, flipIn('header'), flipIn('data'), flipIn('prefix'), truncate];
  const first = jsonEdit(r, bytes, seed);
  let out = first.bytes;
  const what = [first.what];
  for (let k = randInt(r, 1, 3); k > 0; k--) {
    const m = pick(r, steps)(r, out, asSeed(out));
    out = m.bytes;
    what.push(m.what);
  }
  return { bytes: out, what: what.join(' ; ') };
};

/**
 * Structure-aware hostile headers (step 11): a valid seed with one part blown up: a huge
 * number, deep nesting, many keys, a long string, huge or zero dims, many dims, junk in an
 * unknown field. Sizes up to ~40 K units (≤ ~300 KB) keep 500 cases fast; bombs.test.ts runs the 100 MB ones.
 */
const hostile: Mutation = (r, _bytes, seed) => {
  const big = () => randInt(r, 1, 4) * 10 ** randInt(r, 1, 4);
  const digits = () => String(randInt(r, 1, 9)).repeat(big());
  const nest = (open: string, close: string) => open.repeat(randInt(r, 30, 200)) + close.repeat(randInt(r, 30, 200));
  const keys = (value: string) => Array.from({ length: big() }, (_, i) => `"k${i}":${value}`).join(',');
  const dims = () => `[${Array.from({ length: randInt(r, 0, 4) }, () => pick(r, ['0', '1', '7', '4294967296', '9007199254740993', '1152921504606846976', '18446744073709551615', '18446744073709551616', digits()]))}]`;
  const values = [
    digits, () => `-${digits()}`, () => `0.${digits()}`, () => `1e${digits()}`, () => nest('[', ']'), () => nest('{"a":', '}'),
    () => `{${keys('{}')}}`, () => `[${'{},'.repeat(big())}{}]`, () => `"${'s'.repeat(big())}"`, () => `"${'\\u00e9'.repeat(big() / 10)}"`,
    dims, () => `[${'1,'.repeat(randInt(r, 60, 70))}1]`, () => `[${'1,'.repeat(big())}1]`,
  ];
  const value = () => pick(r, values)();
  const kind = randInt(r, 0, 5);
  let json = seed.json;
  let what: string;
  if (kind === 0) {
    // A whole entry replaced: `"w": <value>`.
    const entries = [...json.matchAll(/"[^"]+": ?\{[^{}]*\}/g)];
    const e = entries.length ? pick(r, entries) : null;
    const v = value();
    json = e ? json.slice(0, e.index) + `"w":${v}` + json.slice(e.index! + e[0].length) : `{"w":${v}}`;
    what = `entry → ${v.slice(0, 40)} (${v.length} chars)`;
  } else if (kind <= 3) {
    // One field of an entry replaced (shape, data_offsets, dtype) or an unknown field added.
    const field = pick(r, ['"shape"', '"data_offsets"', '"dtype"', '"x"']);
    const v = field === '"shape"' && r() < 0.5 ? dims() : value();
    const at = json.indexOf('"dtype"');
    json = at < 0 ? json : `${json.slice(0, at)}${field}:${v},${json.slice(at)}`;
    what = `${field} → ${v.slice(0, 40)} (${v.length} chars)`;
  } else if (kind === 4) {
    const v = r() < 0.5 ? `{${keys('""')}}` : `{"k":${value()}}`;
    json = json.replace(/^\s*\{/, `{"__metadata__":${v},`);
    what = `__metadata__ → ${v.slice(0, 40)} (${v.length} chars)`;
  } else {
    const name = r() < 0.5 ? 'n'.repeat(big()) : '\\ud800'.repeat(randInt(r, 1, 3));
    json = json.replace(/^\s*\{/, `{"${name}":{"dtype":"U8","shape":[0],"data_offsets":[0,0]},`);
    what = `name of ${name.length} chars`;
  }
  return { bytes: withJson(seed, json, r), what: `hostile ${what}` };
};

// ─── the property ───────────────────────────────────────────────────────────────────────

/** Opens and reads everything; `problem` names a broken property, null when all is well. */
async function check(bytes: Uint8Array, name: string): Promise<{ problem: string | null; outcome: string }> {
  const src = new CountingSource(new MemorySource(bytes, name));
  let file: SafetensorsFile | null = null;
  let problem: string | null = null;
  let outcome = 'opened';
  try {
    file = await SafetensorsFile.open(src);
    problem = await readAll(file, bytes.byteLength);
  } catch (e) {
    outcome = e instanceof SluiceError ? e.code : 'other';
    if (!(e instanceof SluiceError)) problem = `threw ${(e as Error)?.constructor?.name}: ${(e as Error)?.message ?? e}`;
    else if (file) problem = `opened, then reading a tensor failed: ${e.code} ${e.message}`;
    else if (!e.message.includes(name)) problem = `${e.code} does not name the file: ${e.message}`;
    else if (!file && !src.closed) problem = `${e.code} on open left the source open`;
  }
  if (src.violations.length) problem = src.violations.join('; ');
  else if (src.maxReadLength > bytes.byteLength) problem = `a read of ${src.maxReadLength} bytes from a ${bytes.byteLength}-byte input`;
  return { problem, outcome };
}

/** After a successful open: the tensors tile the data and each reads back whole. */
async function readAll(file: SafetensorsFile, size: number): Promise<string | null> {
  const { dataStart, tensors } = file.header;
  let cursor = 0;
  for (const t of tensors) {
    if (t.begin !== cursor || t.end < t.begin) return `accepted but ${t.name} is at [${t.begin}, ${t.end}) after ${cursor}`;
    cursor = t.end;
    const info = file.info(t.name);
    const bits = info.shape.reduce((a, d) => a * d, 1) * dtypeBits(info.dtype);
    if (bits / 8 !== info.byteLength) return `accepted ${t.name}: shape [${info.shape}] ${info.dtype} is ${bits / 8} bytes, byteLength ${info.byteLength}`;
    const bytes = await file.read(t.name);
    if (bytes.byteLength !== info.byteLength) return `read(${t.name}) gave ${bytes.byteLength} of ${info.byteLength} bytes`;
    if (dtypeBytes(info.dtype) !== undefined) {
      const s = await file.slice(t.name, []);
      if (s.data.byteLength !== info.byteLength) return `slice(${t.name}) gave ${s.data.byteLength} bytes`;
    }
  }
  if (dataStart + cursor !== size) return `accepted, but tensors end at ${dataStart + cursor} of ${size}`;
  return null;
}

function dump(bytes: Uint8Array): string {
  return bytes.byteLength <= 4096 ? Buffer.from(bytes).toString('base64') : `(${bytes.byteLength} bytes)`;
}

async function fuzz(family: string, mutate: Mutation, salt: number, cases = CASES): Promise<Record<string, number>> {
  const seed = (SEED ^ Math.imul(salt, 0x9e3779b1)) >>> 0;
  const r = mulberry32(seed);
  const failures: string[] = [];
  const outcomes: Record<string, number> = {};
  let slowest = 0;
  for (let i = 0; i < cases && failures.length < 5; i++) {
    const s = SEEDS[i % SEEDS.length];
    const { bytes, what } = mutate(r, fileOf(s), s);
    const started = performance.now();
    const { problem, outcome } = await check(bytes, `fuzz-${family}-${i}.safetensors`);
    slowest = Math.max(slowest, performance.now() - started);
    if (problem) failures.push(`seed ${seed} (FUZZ_SEED=${SEED}) case ${i} [${what}]: ${problem}\n  input base64: ${dump(bytes)}`);
    outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
  }
  expect(failures, `${family}: failing cases`).toEqual([]);
  expect(slowest, `${family}: slowest case (ms)`).toBeLessThan(2000);
  if (process.env.FUZZ_STATS) console.log(family, outcomes);
  return outcomes;
}

describe('fuzz: seed files are valid', () => {
  it.for(SEEDS.map((s, i) => [i, s] as const))('seed file %i opens and reads', async ([i, s]) => {
    expect(await check(fileOf(s), `seed-${i}.safetensors`)).toEqual({ problem: null, outcome: 'opened' });
  });
});

describe(`fuzz: ${CASES} mutations per family (FUZZ_SEED=${SEED})`, () => {
  it('random truncation', async () => { await fuzz('truncate', truncate, 1); });
  it('byte flips in the 8-byte prefix', async () => { await fuzz('prefix', flipIn('prefix'), 2); });
  it('byte flips in the header', async () => { await fuzz('header', flipIn('header'), 3); });
  it('byte flips in the data (always still valid)', async () => {
    expect(await fuzz('data', flipIn('data'), 4)).toEqual({ opened: CASES });
  });
  it('JSON edits: numbers, deletions, inserted quotes/braces, swapped keys, duplicates, huge numbers', async () => {
    await fuzz('json', jsonEdit, 5);
  });
  it('stacked mutations', async () => { await fuzz('stacked', stacked, 6); });
  it('hostile structure: huge numbers, deep nesting, many keys, long strings, huge/zero/many dims', async () => {
    const outcomes = await fuzz('hostile', hostile, 7, Math.ceil(CASES / 5));
    expect(outcomes.opened ?? 0, 'some hostile-looking headers are valid and open').toBeGreaterThan(0);
  });
});

// Step 11 · Hostile checkpoints: the reproducers of the header fuzz, each a named case
// that writes its file into a temp dir and runs `sluice inspect` on it in a child process
// (test/support/bounded-cli.ts) with its time and peak RSS measured. Every case must end
// within 20 s and 1.5 GB, and far below that for its size: a proportional budget of
// BASE_MIB + 3 × the header's MiB (the buffer and its decoded text are 2×; a JS object
// per `{}` would be ~50×), plus ~500 bytes per tensor entry where the header is
// tensor-shaped (what any valid header of that many tensors costs). A refusal is one `sluice: <file>: …` line quoting at most a few
// hundred characters of the file. Before the fix (same machine, one core free):
//   100 MB of `"k":{}` entries       39 s, 1.8 GB, aborted (heap)  → refused at the first key
//   100 MB array of `{}` in an entry 19 s, 1.9 GB, aborted (heap)  → refused at the entry
//   a 100 M-digit dimension          27 s, 530 MB                   → refused by its length
//   50 M dims of 1 (a valid 1-byte tensor) opened: 16 s, 1.7 GB, a 100 MB line → > 64 dims
//   a 100 MB key or dtype            3.5 s, a 100 MB error line     → a 300-character line

import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SluiceError } from '../../../src/errors.js';
import { SafetensorsFile } from '../../../src/formats/safetensors/file.js';
import { MemorySource } from '../../../src/io/memory-source.js';
import { type BoundedRun, errorLine, runBoundedCli } from '../../support/bounded-cli.js';

const MB = 1_000_000;
/** RSS of `sluice inspect` on a tiny file is ~60 MiB; this leaves room for the report. */
const BASE_MIB = 120;
const LIMIT_MS = 20_000;
const LIMIT_MIB = 1536;

const dir = mkdtempSync(join(tmpdir(), 'sluice-bombs-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/**
 * A part of a header: text, `unit` × `count`, or `count` copies of `template` joined by
 * commas, each with a distinct 7-digit base-36 key over its `KKKKKKK` (10^7 unique keys
 * without 10^7 strings).
 */
type Part = string | { repeat: string; count: number } | { keyed: string; count: number };

const partBytes = (p: Part) =>
  typeof p === 'string' ? Buffer.byteLength(p) : 'repeat' in p ? p.repeat.length * p.count : (p.keyed.length + 1) * p.count - 1;

/**
 * Writes [u64 N][header parts][data] in chunks of at most 4 MiB, and returns the path. Never
 * a whole 100 MB buffer here: the child's peak RSS (getrusage) starts from this process's
 * RSS at fork, so a big buffer in the test would count against the child's budget.
 */
function writeFile(name: string, parts: Part[], data = Buffer.alloc(0)): string {
  const path = join(dir, `${name}.safetensors`);
  const fd = openSync(path, 'w');
  try {
    const prefix = Buffer.alloc(8);
    prefix.writeBigUInt64LE(BigInt(parts.reduce((n, p) => n + partBytes(p), 0)));
    writeSync(fd, prefix);
    for (const p of parts) {
      if (typeof p === 'string') writeSync(fd, Buffer.from(p));
      else if ('repeat' in p) {
        const per = Math.max(1, Math.floor(CHUNK / p.repeat.length));
        const chunk = Buffer.alloc(per * p.repeat.length, p.repeat);
        for (let left = p.count; left > 0; left -= per) writeSync(fd, chunk, 0, Math.min(left, per) * p.repeat.length);
      } else writeKeyed(fd, p.keyed, p.count);
    }
    writeSync(fd, data);
  } finally {
    closeSync(fd);
  }
  return path;
}

const CHUNK = 4 * 2 ** 20;

function writeKeyed(fd: number, template: string, count: number): void {
  const unit = template.length + 1;
  const per = Math.floor(CHUNK / unit);
  const chunk = Buffer.alloc(per * unit, `${template},`);
  const at = template.indexOf('KKKKKKK');
  const digits = Buffer.from('0123456789abcdefghijklmnopqrstuvwxyz');
  for (let first = 0; first < count; first += per) {
    const n = Math.min(per, count - first);
    for (let i = 0; i < n; i++) {
      let v = first + i;
      for (let d = 6, o = i * unit + at; d >= 0; d--, v = Math.floor(v / 36)) chunk[o + d] = digits[v % 36];
    }
    // The last copy has no comma after it.
    writeSync(fd, chunk, 0, n * unit - (first + n === count ? 1 : 0));
  }
}

async function inspect(path: string, ...flags: string[]): Promise<BoundedRun> {
  return runBoundedCli(['inspect', path, ...flags], { timeoutMs: LIMIT_MS + 5_000 });
}

/** Within 20 s, 1.5 GB and the proportional budget for a header of `headerBytes` (and `tensors` entries). */
function expectBounded(run: BoundedRun, headerBytes: number, tensors = 0): void {
  const what = `${run.ms.toFixed(0)} ms, ${run.peakMiB.toFixed(0)} MiB, code ${run.code} ${run.signal ?? ''}: ${run.stderr.slice(0, 300)}`;
  expect(run.timedOut, what).toBe(false);
  expect(run.ms, what).toBeLessThan(LIMIT_MS);
  expect(run.peakMiB, what).toBeGreaterThan(0); // it reported, so it exited normally
  expect(run.peakMiB, what).toBeLessThan(Math.min(LIMIT_MIB, BASE_MIB + (3 * headerBytes + 500 * tensors) / 2 ** 20));
}

/** Refused: exit 1, one line naming the file, at most `maxQuoted` characters past it. */
function expectRefused(run: BoundedRun, path: string, headerBytes: number, pattern: RegExp, tensors = 0): string {
  expectBounded(run, headerBytes, tensors);
  const line = errorLine(run);
  expect(run.code, line).toBe(1);
  expect(line.startsWith(`sluice: ${path}: `), line).toBe(true);
  expect(line.length - path.length, line).toBeLessThan(500);
  expect(line).toMatch(pattern);
  return line;
}

const entry = (dtype: string, shape: string, offsets: string) => `{"dtype":"${dtype}","shape":${shape},"data_offsets":${offsets}}`;

describe('hostile headers: refused early, in bounded time and memory', () => {
  it('100 MB of empty objects under distinct keys ({"0000000":{},...}): refused at the first key', async () => {
    const body = { keyed: '"KKKKKKK":{}', count: Math.floor((100 * MB - 2) / 13) };
    const path = writeFile('empty-objects', ['{', body, '}']);
    expectRefused(await inspect(path), path, partBytes(body), /tensor "0000000": missing "dtype"/);
  });

  it('30 MB array of empty objects as one entry: refused at the entry', async () => {
    const n = Math.floor((30 * MB - 8) / 3);
    const path = writeFile('array-of-objects', ['{"a":[', { repeat: '{},', count: n }, '{}]}']);
    expectRefused(await inspect(path), path, 30 * MB, /tensor "a": entry is not an object/);
  });

  it('a 100 M-digit dimension: refused from its length, quoted in 200 characters', async () => {
    const n = 100 * MB - 60;
    const path = writeFile('huge-dim', ['{"w":{"dtype":"U8","data_offsets":[0,1],"shape":[', { repeat: '9', count: n }, ']}}'], Buffer.alloc(1));
    expectRefused(await inspect(path), path, n + 60, new RegExp(`tensor "w": dimension "9{200}"… \\(${n} characters\\) is too large`));
  });

  it('a 20 M-digit data offset: OFFSET_TOO_LARGE, quoted in 200 characters', async () => {
    const n = 20 * MB;
    const path = writeFile('huge-offset', ['{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,', { repeat: '7', count: n }, ']}}'], Buffer.alloc(1));
    expectRefused(await inspect(path), path, n + 60, new RegExp(`data offset "7{200}"… \\(${n} characters\\) is beyond 2\\^53`));
  });

  it('10 M dims of 1 (a valid 1-byte tensor for the reference): refused past 64 dims', async () => {
    const n = 10 * MB - 1;
    const path = writeFile('many-dims', ['{"w":{"dtype":"U8","data_offsets":[0,1],"shape":[', { repeat: '1,', count: n }, '1]}}'], Buffer.alloc(1));
    expectRefused(await inspect(path), path, 2 * n, /tensor "w": "shape" has more than 64 dims/);
  });

  it('a 64-dim shape of 20-digit dims: the shape is cut in the message', async () => {
    const path = writeFile('wide-shape', [`{"w":${entry('U8', `[${Array(64).fill('18446744073709551615')}]`, '[0,1]')}}`], Buffer.alloc(1));
    expectRefused(await inspect(path), path, 2000, /has too many elements/);
  });

  it('a 20 MB tensor name and a 20 MB dtype: one short line each', async () => {
    const key = writeFile('long-key', ['{"', { repeat: 'k', count: 20 * MB }, '":{}}']);
    expectRefused(await inspect(key), key, 20 * MB, /tensor "k{200}"… \(20000000 characters\): missing "dtype"/);
    const dtype = writeFile('long-dtype', ['{"w":{"shape":[],"dtype":"', { repeat: 'X', count: 20 * MB }, '"}}']);
    expectRefused(await inspect(dtype), dtype, 20 * MB, /unknown dtype "X{200}"… \(20000000 characters\)/);
  });

  it('1,000,001 metadata entries ({"__metadata__":{"0000000":"",...}}): refused past 1 M', async () => {
    const body = { keyed: '"KKKKKKK":""', count: 1_000_001 };
    const path = writeFile('metadata-entries', ['{"__metadata__":{', body, '}}']);
    expectRefused(await inspect(path), path, partBytes(body), /__metadata__ has more than 1000000 entries/, 1_000_000);
  });

  it('unknown fields are skipped unbuilt: 20 MB of {} in one opens; 1,000 nested arrays in one are INVALID_JSON', async () => {
    const n = Math.floor((20 * MB) / 3);
    const junk = writeFile('junk-field', [`{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":[`, { repeat: '{},', count: n }, '{}]}}'], Buffer.alloc(1));
    const run = await inspect(junk);
    expectBounded(run, 20 * MB);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/^w\s+U8\s+\[1\]\s+1 B$/m);
    const deep = writeFile('deep-field', [`{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":`, '['.repeat(1000), ']'.repeat(1000), '}}'], Buffer.alloc(1));
    expectRefused(await inspect(deep), deep, 2100, /header is not valid JSON: nesting deeper than 64/);
  });

  it('a 20 MB metadata value of \\u00e9 escapes opens as one flat string', async () => {
    const n = Math.floor((20 * MB) / 6);
    const path = writeFile('escapes', ['{"__metadata__":{"k":"', { repeat: '\\u00e9', count: n }, '"}}']);
    const run = await inspect(path);
    expectBounded(run, 20 * MB);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/metadata\s+k=é{57}\.\.\./);
  });
});

describe('valid headers that looked hostile: opened exactly', () => {
  it('a 100,000-tensor header opens and totals exactly', async () => {
    const n = 100_000;
    const parts = Array.from({ length: n }, (_, i) => `"model.layers.${i}.w":${entry('F16', '[2,2]', `[${i * 8},${i * 8 + 8}]`)}`);
    const header = `{"__metadata__":{"format":"pt"},${parts.join(',')}}`;
    const path = writeFile('valid-100k', [header], Buffer.alloc(n * 8));
    const run = await inspect(path);
    expectBounded(run, header.length, n);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain('model.layers.*.w (×100000)');
    expect(run.stdout).toMatch(/parameters\s+400K \(400,000\)/);
    expect(run.stdout).toMatch(/bytes\s+800 kB = 800,000 B \(F16 800 kB\)/);
  });

  // tensor.rs Metadata::validate folds the shape with usize::checked_mul from the left: a
  // zero after a huge dim is reached without overflow, so these hold 0 elements and are valid.
  it('zero-element shapes with dims up to u64::MAX: [0, 2^64 − 1], [2^62, 0], exact in both outputs', async () => {
    const path = writeFile('zero-dims', [
      `{"a":${entry('U8', '[0,18446744073709551615]', '[0,0]')},"b":${entry('F32', '[4611686018427387904,0]', '[0,0]')},"c":${entry('BF16', '[0,1152921504606846976]', '[0,0]')}}`,
    ]);
    const human = await inspect(path);
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toMatch(/^a\s+U8\s+\[0, 18446744073709551615\]\s+0 B$/m);
    expect(human.stdout).toMatch(/^b\s+F32\s+\[4611686018427387904, 0\]\s+0 B$/m);
    const json = await inspect(path, '--json');
    expect(json.code, json.stderr).toBe(0);
    const doc = JSON.parse(json.stdout);
    // Integers past 2^53 − 1 are decimal strings in --json: no JSON reader rounds them.
    expect(doc.tensors.map((t: { shape: unknown }) => t.shape)).toEqual([[0, '18446744073709551615'], ['4611686018427387904', 0], [0, '1152921504606846976']]);
    expect(doc.parameters).toBe(0);
  });

  it('the FNUZ fp8 dtypes the reference reads (F8_E4M3FNUZ, F8_E5M2FNUZ)', async () => {
    const path = writeFile('fnuz', [`{"a":${entry('F8_E4M3FNUZ', '[2]', '[0,2]')},"b":${entry('F8_E5M2FNUZ', '[3]', '[2,5]')}}`], Buffer.alloc(5));
    const run = await inspect(path, '--json');
    expect(run.code, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout).bytes_by_dtype).toEqual({ F8_E4M3FNUZ: 2, F8_E5M2FNUZ: 3 });
  });
});

// Last: reading its 60 MB file grows this process, and a child's getrusage peak starts from it.
describe('the tensor-count bound', () => {
  // In-process: a million valid-looking entries cost what a valid header of that size
  // costs (~5 s of CPU), too slow for the child's 20 s budget on a loaded 2-core machine.
  it('1,000,001 empty tensors (valid for the reference): HEADER_TOO_LARGE past 1 M tensors', async () => {
    const path = writeFile('tensor-count', ['{', { keyed: `"KKKKKKK":${entry('U8', '[0]', '[0,0]')}`, count: 1_000_001 }, '}']);
    const error = await SafetensorsFile.open(new MemorySource(readFileSync(path), 'tensor-count.safetensors')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SluiceError);
    expect((error as SluiceError).code).toBe('HEADER_TOO_LARGE');
    expect((error as SluiceError).message).toBe('tensor-count.safetensors: header lists more than 1000000 tensors');
  });
});

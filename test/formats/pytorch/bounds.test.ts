// The PyTorch reader's bounds (src/formats/pytorch/limits.ts), in process: the unpickler's
// counts of objects, items, tensors and bytes (with small limits, so each case is a few
// bytes); the tensor walk over shared references (a DAG: names per path, counted before
// they are built); the bounded metadata printer; the zip reader's per-entry limit; the
// overlapping-view budget; the checksum fuse. Then a seeded structure-aware fuzz of
// pickles made of shared references, nested containers and huge counts.
//
// FUZZ_SEED=<n> runs another seed, FUZZ_CASES=<n> changes the number of generated pickles.

import { describe, expect, it } from 'vitest';
import { MAX_CHECKSUM_BYTES, tensorSha256 } from '../../../src/checkpoint/checksum.js';
import type { Checkpoint } from '../../../src/checkpoint/types.js';
import { SluiceError } from '../../../src/errors.js';
import { PytorchCheckpoint } from '../../../src/formats/pytorch/checkpoint.js';
import { MAX_METADATA_TEXT, MAX_NAME_CHARS, MAX_OVERLAP_BYTES, MAX_TENSORS } from '../../../src/formats/pytorch/limits.js';
import { toText } from '../../../src/formats/pytorch/metadata-text.js';
import type { PickleValue, TensorRef } from '../../../src/formats/pytorch/types.js';
import { type UnpickleOptions, unpickle } from '../../../src/formats/pytorch/unpickler.js';
import { findTensors } from '../../../src/formats/pytorch/walk.js';
import { ZipReader } from '../../../src/formats/pytorch/zip.js';
import { MemorySource } from '../../../src/io/memory-source.js';
import { dict, get, int, list, pickle, pk, put, repeatedDeflate, str, tensor, torchZip, tuple } from '../../support/pickle-bytes.js';
import { mulberry32, randInt } from '../../support/safetensors-bytes.js';
import { buildZip } from '../../support/zip-bytes.js';

const NAME = 'bounds.pkl';
const T = (key = '0', extra: Partial<Parameters<typeof tensor>[0]> = {}) => tensor({ key, numel: 4, shape: [2, 2], ...extra });
const load = (bytes: Uint8Array, opts: Partial<UnpickleOptions> = {}): PickleValue => unpickle(bytes, { name: NAME, ...opts });

function thrown(f: () => unknown): SluiceError {
  try {
    f();
  } catch (e) {
    if (e instanceof SluiceError) return e;
    throw e;
  }
  throw new Error('expected a SluiceError');
}

async function rejected(p: Promise<unknown>): Promise<SluiceError> {
  return p.then(
    () => { throw new Error('expected a SluiceError'); },
    (e: unknown) => { if (e instanceof SluiceError) return e; throw e; },
  );
}

const timed = <R>(f: () => R): [R, number] => {
  const t0 = performance.now();
  const r = f();
  return [r, performance.now() - t0];
};

/** Li = [L(i-1)] * 10 for `levels` levels, memo 100.. so callers' memo stays free. */
function laughs(levels: number, leaf: Uint8Array = pk(']')): Uint8Array {
  let body = pk(leaf, put(100), '0');
  for (let i = 1; i <= levels; i++) body = pk(body, list(...Array.from({ length: 10 }, () => get(99 + i))), put(100 + i), '0');
  return pk(body, get(100 + levels));
}

describe('the unpickler counts what it builds', () => {
  it('objects (a dict counts 2), items, one container, tensors and bytes', () => {
    expect(thrown(() => load(pk('(', ']'.repeat(5), 'l.'), { maxObjects: 5 })).message).toMatch(/bad pickle at byte 6: more than 5 objects/);
    expect(load(pk('(', ']'.repeat(4), 'l.'), { maxObjects: 5 })).toHaveLength(4);
    expect(thrown(() => load(pk('(}}}l.'), { maxObjects: 6 })).message).toMatch(/more than 6 objects/);
    expect(thrown(() => load(pk('](K\x01K\x01K\x01e(K\x01e.'), { maxItems: 3 })).message).toMatch(/more than 3 container items/);
    expect(thrown(() => load(pk('(K\x01K\x02K\x03t.'), { maxContainer: 2 })).message).toMatch(/a container of more than 2 items/);
    expect(thrown(() => load(pk('}(K\x01K\x01K\x02K\x02u.'), { maxContainer: 3 })).message).toMatch(/more than 3 items/);
    expect(thrown(() => load(pickle(list(T('0'), T('1'))), { maxTensors: 1 })).message).toMatch(/more than 1 tensors/);
    expect(thrown(() => load(pk('(C\x05helloC\x05hellol.'), { maxBytes: 8 })).message).toMatch(/more than 8 bytes of bytes objects/);
  });

  it('set() and bytearray() of one shared object, again and again, stop at the item and byte budgets', () => {
    const setOfL = pk(']', put(0), `(${'K\x01'.repeat(1000)}e`, '0', 'cbuiltins\nset\n', put(1), '0', get(0), '\x85', put(2), '0');
    const calls = pk(...Array.from({ length: 20_000 }, () => pk(get(1), get(2), 'R0'))); // set(L), dropped
    const [e, ms] = timed(() => thrown(() => load(pickle(setOfL, calls, 'N'), { maxItems: 10_000 })));
    expect(e.message).toMatch(/more than 10000 container items/);
    expect(ms).toBeLessThan(1000);
    const copies = pk('C\x04abcd', put(0), '0', 'cbuiltins\nbytearray\n', put(1), '0', get(0), '\x85', put(2), '0', ...Array.from({ length: 1000 }, () => pk(get(1), get(2), 'R0')));
    expect(thrown(() => load(pickle(copies, 'N'), { maxBytes: 400 })).message).toMatch(/more than 400 bytes/);
  });

  it('a shape of more than 64 dimensions is refused before it is copied', () => {
    const e = thrown(() => load(pickle(T('0', { numel: 1, shape: new Array(65).fill(1) }))));
    expect(e.message).toMatch(/tensor size has 65 dimensions, more than 64/);
  });

  it('quotes a hostile storage key short', () => {
    const key = 'k'.repeat(100_000);
    const e = thrown(() => load(pickle(list(T(key), T(key, { storage: 'HalfStorage' })))));
    expect(e.message).toMatch(/storage "k{200}"… \(100000 characters\) appears as 4 × F32 and as 4 × F16/);
    expect(e.message.length).toBeLessThan(400);
  });
});

describe('the tensor walk treats shared references as a DAG', () => {
  it('a tensor or a state_dict under two keys is named under both, one object', () => {
    const tied = findTensors(load(pickle(dict(str('embed'), T(), put(0), str('head'), get(0)))), NAME);
    expect([...tied.tensors.keys()]).toEqual(['embed', 'head']);
    expect(tied.tensors.get('embed')).toBe(tied.tensors.get('head'));
    const sd = pk(dict(str('w'), T(), str('step'), int(3)), put(0));
    const twice = findTensors(load(pickle(dict(str('model'), sd, str('ema'), get(0)))), NAME);
    expect([...twice.tensors.keys()]).toEqual(['model.w', 'ema.w']);
    expect({ ...twice.metadata }).toEqual({ 'model.step': '3', 'ema.step': '3' });
  });

  it('10^30 paths to metadata: printed once, cut at MAX_METADATA_TEXT with an ellipsis, in milliseconds', () => {
    const [found, ms] = timed(() => findTensors(load(pickle(dict(str('t'), T(), str('m'), laughs(30, pk(str('x')))))), NAME));
    expect(ms).toBeLessThan(500);
    expect([...found.tensors.keys()]).toEqual(['t']);
    expect(found.metadata.m).toHaveLength(MAX_METADATA_TEXT + 1);
    expect(found.metadata.m.startsWith('[[[[')).toBe(true);
    expect(found.metadata.m.endsWith('"x"]]]]…') || found.metadata.m.endsWith('…')).toBe(true);
  });

  /** Xi = (X(i-1), X(i-1)) from one tensor: 2^levels paths to it. */
  function doubling(levels: number): PickleValue {
    let body = pk(T(), put(0), '0');
    for (let i = 1; i <= levels; i++) body = pk(body, get(i - 1), get(i - 1), '\x86', put(i), '0');
    return load(pickle(body, get(levels)));
  }

  it(`2^20 paths to one tensor: refused past ${MAX_TENSORS} names before any is built`, () => {
    const value = doubling(20);
    const [e, ms] = timed(() => thrown(() => findTensors(value, NAME)));
    expect(e.message).toBe(`${NAME}: it names more than ${MAX_TENSORS} tensors (counting each path to a shared one)`);
    expect(ms).toBeLessThan(200);
    const within = findTensors(doubling(10), NAME).tensors; // one object, 1024 names
    expect(within.size).toBe(1024);
    expect(within.get('0.1.0.1.0.1.0.1.0.1')).toBe(within.get('1.1.1.1.1.1.1.1.1.1'));
  });

  it('names longer than MAX_NAME_CHARS are refused before they are built, quoted short', () => {
    const long = 'a'.repeat(MAX_NAME_CHARS);
    const e = thrown(() => findTensors(load(pickle(dict(str(long), dict(str('w'), T())))), NAME));
    expect(e.message).toMatch(new RegExp(`^${NAME}: a name longer than ${MAX_NAME_CHARS} characters \\("a{200}"… \\(\\d+ characters\\)\\)$`));
    expect(findTensors(load(pickle(dict(str(long.slice(2)), dict(str('w'), T())))), NAME).tensors.size).toBe(1);
  });

  it('metadata keys named __proto__ are kept as keys', () => {
    const found = findTensors(load(pickle(dict(str('w'), T(), str('__proto__'), int(1)))), NAME);
    expect(Object.keys(found.metadata)).toEqual(['__proto__']);
  });
});

describe('metadata text', () => {
  it('is the JSON of small values, dicts in insertion order', () => {
    const v = load(pickle(dict(str('b'), list(int(1), '\x88N', tuple(str('x'), 'G\x7f\xf8\x00\x00\x00\x00\x00\x00')), str('a'), 'C\x02hi', int(7), int(2 ** 60))));
    expect(toText(v)).toBe('{"b":[1,true,null,["x","NaN"]],"a":"<2 bytes>","7":"1152921504606846976"}');
    expect(toText('plain')).toBe('plain');
  });

  it('cuts long strings, long lists and long keys', () => {
    expect(toText('s'.repeat(10_000))).toBe(`${'s'.repeat(MAX_METADATA_TEXT)}…`);
    expect(toText(new Array(100_000).fill(7), 20)).toBe('[7,7,7,7,7,7,7,7,7,7…');
    expect(toText(new Map([['k'.repeat(50), 1]]), 10)).toBe('{"kkkkkkkk…');
  });
});

describe('zip entries read whole are bounded by a limit per entry', () => {
  const zipOf = (entry: Parameters<typeof buildZip>[0][number]) => ZipReader.open(new MemorySource(buildZip([entry]).bytes, 'z.pth'));

  it('refuses by the declared size before reading, and stops inflating past a declared size that lies', async () => {
    const big = await zipOf({ name: 'a/byteorder', data: new Uint8Array(100) });
    expect((await rejected(big.read(big.entry('a/byteorder')!, 16))).message).toMatch(/^z\.pth: zip entry "a\/byteorder": 100 bytes .* \(16\)$/);
    const bomb = repeatedDeflate([new Uint8Array(65536), 8]); // 512 KiB from ~600 bytes
    const lying = await zipOf({ name: 'a/byteorder', data: bomb.deflated, method: 8, raw: true, size: 6, crc: bomb.crc });
    expect((await rejected(lying.read(lying.entry('a/byteorder')!, 16))).message).toBe('z.pth: zip entry "a/byteorder": inflates to more than its declared 6 bytes');
  });
});

describe('overlapping views', () => {
  const open = (bytes: Uint8Array) => PytorchCheckpoint.open(new MemorySource(bytes, 'v.pth'));
  const f32 = (x: number) => new Uint8Array(new Float32Array([x]).buffer);

  it('an expand() view within the budget opens and reads its repeats', async () => {
    const ck = await open(torchZip({ pkl: pickle(dict(str('mask'), T('0', { numel: 1, shape: [3, 4], stride: [0, 0] }))), storages: { 0: f32(1.5) } }));
    expect(ck.info('mask')).toMatchObject({ shape: [3, 4], byteLength: 48 });
    expect([...new Float32Array((await ck.read('mask')).slice().buffer)]).toEqual(new Array(12).fill(1.5));
    await ck.close();
  });

  it(`past ${MAX_OVERLAP_BYTES} bytes of repeats in all, the view that crosses it is refused`, async () => {
    const half = { numel: 1, shape: [2 ** 27], stride: [0] }; // 512 MiB of one float
    const e = await rejected(open(torchZip({ pkl: pickle(dict(str('a'), T('0', half), str('b'), T('0', half), str('c'), T('0', half))), storages: { 0: 4 } })));
    expect(e.code).toBe('INVALID_PICKLE');
    expect(e.message).toMatch(/^v\.pth: tensor "c": its view \(offset 0, shape \[134217728\], stride \[0\]\) is an overlapping view of 536870912 bytes over 4 bytes of storage "0"/);
  });
});

describe('checksum', () => {
  it(`refuses a tensor past ${MAX_CHECKSUM_BYTES} bytes before reading any`, async () => {
    let reads = 0;
    const fake = {
      info: (name: string) => ({ name, dtype: 'F32', shape: [2 ** 39], byteLength: 2 ** 41, file: 'huge.pth' }),
      readRange: async () => { reads++; return new Uint8Array(0); },
    } as unknown as Checkpoint;
    const e = await rejected(tensorSha256(fake, 'x'));
    expect(e.message).toBe(`huge.pth: tensor "x" has ${2 ** 41} bytes, more than sluice checksums (${MAX_CHECKSUM_BYTES})`);
    expect(reads).toBe(0);
  });
});

// ─── structure-aware fuzz ───────────────────────────────────────────────────────────────

describe('structure-aware fuzz: shared references, nested containers, huge counts', () => {
  const SEED = Number(process.env.FUZZ_SEED ?? 0x5eed11);
  const CASES = Number(process.env.FUZZ_CASES ?? 100);

  /** One pickle: each call of `value` pushes exactly one value; about 100 KB at most. */
  function generate(rng: () => number): Uint8Array {
    const memo: number[] = [];
    let budget = 3000; // values left to generate
    const pick = <X>(xs: X[]): X => xs[randInt(rng, 0, xs.length - 1)];
    const remember = (bytes: Uint8Array): Uint8Array => {
      memo.push(memo.length);
      return pk(bytes, put(memo.length - 1));
    };
    const many = (n: number, item: () => Uint8Array): Uint8Array => pk(...Array.from({ length: n }, item));
    const shared = () => (memo.length ? get(pick(memo)) : pk('N'));
    /** LONG_BINGET of each index, in one buffer. */
    const gets = (indices: number[]): Uint8Array => {
      const out = new Uint8Array(indices.length * 5);
      const v = new DataView(out.buffer);
      indices.forEach((m, i) => { out[i * 5] = 0x6a; v.setUint32(i * 5 + 1, m, true); });
      return out;
    };
    const leaf = () => pick([
      () => int(randInt(rng, -5, 2 ** 40)), () => str('k'.repeat(randInt(rng, 0, 3) ** 6)), () => pk('N'), () => T(String(randInt(rng, 0, 2))),
      () => T('9', { numel: 1, shape: [randInt(rng, 1, 2 ** 20), randInt(rng, 1, 2 ** 20)], stride: [0, 0] }),
    ])();
    function value(depth: number): Uint8Array {
      const r = rng();
      if (memo.length && r < 0.25) return get(pick(memo)); // a shared reference
      if (depth <= 0 || r < 0.4 || --budget < 0) return leaf();
      const n = randInt(rng, 0, 4);
      const child = () => value(depth - 1);
      switch (randInt(rng, 0, 5)) {
        case 0: return remember(pk('(', many(n, child), 'l'));
        case 1: return remember(pk('(', many(n, child), 't'));
        case 2: return remember(pk('}(', many(n, () => pk(str(String(randInt(rng, 0, 20))), child())), 'u'));
        case 3: { // a huge count of shared references, appended 1000 at a time
          const chunk = () => (memo.length ? pk('(', gets(Array.from({ length: 1000 }, () => pick(memo))), 'e') : pk('(Ne'));
          return remember(pk(']', ...Array.from({ length: randInt(rng, 1, 20) }, chunk)));
        }
        case 4: return remember(pk('(', many(randInt(rng, 2, 10), shared), 'l')); // an amplifier: [x] * k
        default: return remember(pk('\x8f(', many(randInt(rng, 1, 50), () => int(randInt(rng, 0, 99))), '\x90'));
      }
    }
    return pickle(dict(str('root'), value(randInt(rng, 1, 30)), str('more'), value(10)));
  }

  it(`${CASES} generated pickles each load and walk, or throw a SluiceError, in bounded time and text`, () => {
    const rng = mulberry32(SEED);
    const outcomes = new Map<string, number>();
    const t0 = performance.now();
    for (let i = 0; i < CASES; i++) {
      const bytes = generate(rng);
      const started = performance.now();
      let outcome = 'loaded';
      try {
        const { tensors, metadata } = findTensors(load(bytes), NAME);
        for (const name of tensors.keys()) expect(name.length).toBeLessThanOrEqual(MAX_NAME_CHARS);
        for (const text of Object.values(metadata)) expect(text.length).toBeLessThanOrEqual(MAX_METADATA_TEXT + 1);
        expect([...tensors.values()].every((t: TensorRef) => t.kind === 'tensor')).toBe(true);
      } catch (e) {
        if (!(e instanceof SluiceError)) throw new Error(`seed ${SEED} case ${i}: ${String(e)}`);
        outcome = e.message.replace(/.*: /, '').replace(/\d+/g, 'N');
      }
      expect(performance.now() - started, `seed ${SEED} case ${i} (${bytes.length} bytes)`).toBeLessThan(5000);
      outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
    }
    if (process.env.FUZZ_STATS) console.log(outcomes, `${(performance.now() - t0).toFixed(0)} ms`);
    expect(outcomes.get('loaded')).toBeGreaterThan(CASES / 4);
    expect(performance.now() - t0).toBeLessThan(15_000);
  });
});

// The sharded writer: sizes as transformers parses them, shard splitting as huggingface_hub
// splits (hand-worked cases), directories read back with openCheckpoint, the index byte
// for byte as transformers writes it, and stale files of earlier writes cleaned up.

import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openCheckpoint } from '../../../src/checkpoint/open-path.js';
import { SluiceError } from '../../../src/errors.js';
import type { Dtype } from '../../../src/formats/dtypes.js';
import { SafetensorsFile } from '../../../src/formats/safetensors/file.js';
import { indexJson, parseSize, planShards, writeShardedSafetensors } from '../../../src/formats/safetensors/sharded-writer.js';
import type { TensorToWrite } from '../../../src/formats/safetensors/writer.js';
import { FileSource } from '../../../src/io/file-source.js';
import { byteSize, mulberry32, randomBytes, errorCode } from '../../support/safetensors-bytes.js';

const rng = mulberry32(0x5a4d);

let root: string;
let n = 0;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'sluice-sharded-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});
const freshDir = () => join(root, `d${n++}`);

const tensor = (name: string, dtype: Dtype, shape: number[]): TensorToWrite & { data: Uint8Array } => ({
  name, dtype, shape, data: randomBytes(rng, byteSize(dtype, shape)),
});
/** A U8 tensor of `size` bytes: sizes read straight off the test. */
const u8 = (name: string, size: number) => tensor(name, 'U8', [size]);


/** Opens `dir` and checks every tensor's info and bytes. */
async function expectReadsBack(dir: string, tensors: ReadonlyArray<TensorToWrite & { data: Uint8Array }>): Promise<void> {
  const ckpt = await openCheckpoint(dir);
  try {
    expect(ckpt.tensors().map((t) => t.name).sort()).toEqual(tensors.map((t) => t.name).sort());
    for (const t of tensors) {
      expect(ckpt.info(t.name), t.name).toMatchObject({ name: t.name, dtype: t.dtype, shape: t.shape, byteLength: t.data.byteLength });
      expect(await ckpt.read(t.name), t.name).toEqual(t.data);
    }
  } finally {
    await ckpt.close();
  }
}

const ls = async (dir: string) => (await readdir(dir)).sort();

describe('parseSize (transformers convert_file_size_to_int)', () => {
  it.for([
    ['5GB', 5_000_000_000],
    ['5GiB', 5 * 2 ** 30],
    ['5gib', 5 * 2 ** 30],
    ['500MB', 500_000_000],
    ['10MiB', 10 * 2 ** 20],
    ['200KB', 200_000],
    ['200kB', 200_000],
    ['1KiB', 1024],
    ['5Gb', 625_000_000], // a lower-case final b means bits
    ['5gb', 625_000_000],
    ['7kb', 875],
    ['1000', 1000],
    [' 2GB ', 2_000_000_000],
    [4096, 4096],
  ] as const)('%s → %d', ([input, bytes]) => {
    expect(parseSize(input)).toBe(bytes);
  });

  it.for(['', 'GB', '1.5GB', '-5GB', '5TB', '5B', '5 G', 'abc', '0GB', '0', '99999999999999GiB', 0, -1, 1.5, Number.NaN, Infinity])(
    '%s → USAGE',
    async (input) => {
      expect(await errorCode(() => parseSize(input))).toBe('USAGE');
    },
  );
});

describe('planShards (huggingface_hub split_state_dict_into_shards_factory)', () => {
  const names = (shards: Array<Array<{ name: string }>>) => shards.map((s) => s.map((t) => t.name));

  it('splits greedily in input order; a tensor over the limit gets its own shard at once', () => {
    // limit 10: a4 b4 → [a b]=8; c4 tips over → close [a b]; d12 > limit → [d] appended now
    // while [c] stays open; e3 → [c e]=7; f8 tips → close; g10 tips → close [f]; h0 fits (10).
    const tensors = [u8('a', 4), u8('b', 4), u8('c', 4), u8('d', 12), u8('e', 3), u8('f', 8), u8('g', 10), u8('h', 0)];
    expect(names(planShards(tensors, 10))).toEqual([['a', 'b'], ['d'], ['c', 'e'], ['f'], ['g', 'h']]);
  });

  it('handles a first tensor over the limit, an exact fit, one shard, and nothing', () => {
    expect(names(planShards([u8('big', 11), u8('x', 5), u8('y', 5)], 10))).toEqual([['big'], ['x', 'y']]);
    expect(names(planShards([u8('x', 10), u8('y', 1)], 10))).toEqual([['x'], ['y']]);
    expect(names(planShards([u8('x', 3), u8('y', 3)], 10))).toEqual([['x', 'y']]);
    expect(planShards([], 10)).toEqual([]);
  });

  it('sizes tensors by dtype and shape, sub-byte included', () => {
    const ts = [tensor('f32', 'F32', [3]), tensor('f4', 'F4', [8]), tensor('bf16', 'BF16', [2, 2])];
    // 12 | 4 + 8 = 12
    expect(names(planShards(ts, 12))).toEqual([['f32'], ['f4', 'bf16']]);
  });
});

describe('writeShardedSafetensors', () => {
  // limit 100: embed 64 + l0 16 + l10 16 = 96 stay open; lm_head 160 > 100 is appended at
  // once, so it is shard 1; l2 8 tips over → [embed l0 l10] closes as shard 2; then
  // l2 8 + norm 50 + é 42 = 100 → shard 3.
  const model = () => [
    tensor('model.embed_tokens.weight', 'F32', [4, 4]),
    tensor('model.layers.0.w', 'BF16', [8]),
    tensor('model.layers.10.w', 'BF16', [8]),
    tensor('lm_head.weight', 'F32', [40]),
    tensor('model.layers.2.w', 'F16', [4]),
    tensor('model.norm.weight', 'U8', [50]),
    tensor('é', 'I8', [42]),
  ];

  it('writes shards + an index exactly as transformers does, and reads back', async () => {
    const dir = freshDir();
    const tensors = model();
    const result = await writeShardedSafetensors(dir, tensors, { maxShardSize: 100 });
    const shard = (i: number) => `model-0000${i}-of-00003.safetensors`;
    expect(result).toEqual({ files: [1, 2, 3].map((i) => join(dir, shard(i))), index: join(dir, 'model.safetensors.index.json'), totalSize: 356 });
    expect(await ls(dir)).toEqual([shard(1), shard(2), shard(3), 'model.safetensors.index.json']);
    expect(await readFile(join(dir, 'model.safetensors.index.json'), 'utf8')).toBe(
      [
        '{',
        '  "metadata": {',
        '    "total_size": 356',
        '  },',
        '  "weight_map": {',
        `    "lm_head.weight": "${shard(1)}",`,
        `    "model.embed_tokens.weight": "${shard(2)}",`,
        `    "model.layers.0.w": "${shard(2)}",`,
        `    "model.layers.10.w": "${shard(2)}",`,
        `    "model.layers.2.w": "${shard(3)}",`,
        `    "model.norm.weight": "${shard(3)}",`,
        `    "\\u00e9": "${shard(3)}"`,
        '  }',
        '}',
        '',
      ].join('\n'),
    );
    await expectReadsBack(dir, tensors);
    const second = await SafetensorsFile.open(await FileSource.open(join(dir, shard(2))));
    expect(second.metadata).toEqual({ format: 'pt' });
    // Within a shard the reference order: F32 before BF16, names by bytes.
    expect(second.tensors().map((t) => t.name)).toEqual(['model.embed_tokens.weight', 'model.layers.0.w', 'model.layers.10.w']);
    await second.close();
  });

  it('writes one model.safetensors and no index when everything fits', async () => {
    const dir = freshDir();
    const tensors = model();
    expect(await writeShardedSafetensors(dir, tensors)).toEqual({ files: [join(dir, 'model.safetensors')], index: null, totalSize: 356 });
    expect(await ls(dir)).toEqual(['model.safetensors']);
    await expectReadsBack(dir, tensors);
    const ckpt = await openCheckpoint(dir);
    expect(ckpt.metadata).toEqual({ format: 'pt' });
    await ckpt.close();
  });

  it('honours prefix, metadata and a size string', async () => {
    const dir = freshDir();
    const tensors = [u8('a', 600), u8('b', 600)];
    const r = await writeShardedSafetensors(dir, tensors, { maxShardSize: '1KB', prefix: 'diffusion_pytorch_model', metadata: null });
    expect(await ls(dir)).toEqual([
      'diffusion_pytorch_model-00001-of-00002.safetensors',
      'diffusion_pytorch_model-00002-of-00002.safetensors',
      'diffusion_pytorch_model.safetensors.index.json',
    ]);
    expect(r.index).toBe(join(dir, 'diffusion_pytorch_model.safetensors.index.json'));
    const head = await readFile(r.files[0]);
    expect(head.subarray(8, 30).toString()).toBe('{"a":{"dtype":"U8","sh');
  });

  it('re-writing a directory removes shards, index and single file that the new layout does not use', async () => {
    const dir = freshDir();
    await mkdir(dir, { recursive: true });
    const keep = ['config.json', 'model-1-of-2.safetensors', 'other-00001-of-00002.safetensors', 'model.safetensors.bak'];
    for (const f of keep) await writeFile(join(dir, f), 'x');
    const tensors = Array.from({ length: 4 }, (_, i) => u8(`t${i}`, 10));

    await writeShardedSafetensors(dir, tensors, { maxShardSize: 10 });
    expect(await ls(dir)).toEqual([...keep, ...[1, 2, 3, 4].map((i) => `model-0000${i}-of-00004.safetensors`), 'model.safetensors.index.json'].sort());

    await writeShardedSafetensors(dir, tensors, { maxShardSize: 20 });
    expect(await ls(dir)).toEqual([...keep, 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', 'model.safetensors.index.json'].sort());
    await expectReadsBack(dir, tensors);

    await writeShardedSafetensors(dir, tensors);
    expect(await ls(dir)).toEqual([...keep, 'model.safetensors'].sort());

    const three = tensors.slice(0, 3);
    await writeShardedSafetensors(dir, three, { maxShardSize: 10 });
    expect(await ls(dir)).toEqual([...keep, ...[1, 2, 3].map((i) => `model-0000${i}-of-00003.safetensors`), 'model.safetensors.index.json'].sort());
    await expectReadsBack(dir, three);
    for (const f of keep) expect(await readFile(join(dir, f), 'utf8')).toBe('x');
  });

  it('a producer failing in a later shard leaves the earlier checkpoint untouched and no temp files', async () => {
    const dir = freshDir();
    const old = Array.from({ length: 3 }, (_, i) => u8(`t${i}`, 10));
    await writeShardedSafetensors(dir, old, { maxShardSize: 10 });
    const before = await Promise.all((await ls(dir)).map(async (f) => [f, await readFile(join(dir, f))] as const));

    const boom = new Error('producer failed');
    const failing: TensorToWrite = { name: 't2', dtype: 'U8', shape: [10], data: async function* () { yield new Uint8Array(4); throw boom; } };
    await expect(writeShardedSafetensors(dir, [u8('t0', 10), u8('t1', 10), failing], { maxShardSize: 10 })).rejects.toBe(boom);
    const after = await Promise.all((await ls(dir)).map(async (f) => [f, await readFile(join(dir, f))] as const));
    expect(after).toEqual(before);
    await expectReadsBack(dir, old);
  });

  it('refuses duplicate names across shards before writing anything', async () => {
    const dir = freshDir();
    expect(await errorCode(writeShardedSafetensors(dir, [u8('a', 10), u8('b', 10), u8('a', 10)], { maxShardSize: 10 }))).toBe('DUPLICATE_KEY');
    await expect(readdir(dir)).rejects.toThrow();
  });

  it('refuses a bad tensor in the last shard before writing the first, naming that shard', async () => {
    const dir = freshDir();
    const bad: TensorToWrite = { name: 'bad', dtype: 'U8', shape: [10], data: new Uint8Array(9) };
    try {
      await writeShardedSafetensors(dir, [u8('a', 10), bad], { maxShardSize: 10 });
      expect.unreachable();
    } catch (e) {
      expect((e as SluiceError).code).toBe('SIZE_MISMATCH');
      expect((e as SluiceError).message).toContain(join(dir, 'model-00002-of-00002.safetensors'));
      expect((e as SluiceError).message).toContain('"bad"');
    }
    await expect(readdir(dir)).rejects.toThrow();
  });

  it('writes an empty checkpoint as one empty model.safetensors', async () => {
    const dir = freshDir();
    expect(await writeShardedSafetensors(dir, [])).toMatchObject({ index: null, totalSize: 0 });
    await expectReadsBack(dir, []);
  });
});

describe('indexJson (json.dumps(indent=2, sort_keys=True) + "\\n")', () => {
  it('sorts keys by code point and escapes as ensure_ascii does', () => {
    const names = ['a', 'B', '9', '10', '\u007f', '\n', '\uFF61', '\u{1F600}'];
    const text = indexJson(7, names.map((k) => [k, 'f.safetensors']));
    const line = (k: string) => `    ${k}: "f.safetensors"`;
    expect(text).toBe(
      '{\n  "metadata": {\n    "total_size": 7\n  },\n  "weight_map": {\n' +
        ['"\\n"', '"10"', '"9"', '"B"', '"a"', '"\\u007f"', '"\\uff61"', '"\\ud83d\\ude00"'].map(line).join(',\n') +
        '\n  }\n}\n',
    );
    expect(Object.keys(JSON.parse(text).weight_map)).toHaveLength(names.length);
  });
});

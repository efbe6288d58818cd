// The hostile torch.save files of step 11, each built in well under a second from at most
// a few MB of pickle, most from a few hundred bytes (no committed blobs): the fuzz findings, and the neighbours a
// fix for them must also cover. Used by test/formats/pytorch/bombs.test.ts, which runs
// `sluice inspect` on each under a time and memory budget.

import { concat } from './safetensors-bytes.js';
import { dict, get, list, pickle, pk, put, repeatedDeflate, str, tensor, torchZip } from './pickle-bytes.js';

export interface HostileCase {
  name: string;
  /** Extra `sluice inspect` flags. */
  flags?: string[];
  build(): Uint8Array;
  /** The one error line must match this (it must also name the file); null: the file opens. */
  error: RegExp | null;
}

const ONE_FLOAT = { key: '0', numel: 1, shape: [1] };
const KiB64 = 65536;

/** Li = [L(i-1)] * 10, 30 levels from L0 = []: 10^30 paths through 31 lists (a billion laughs). */
function laughs(): Uint8Array {
  let body = pk(']', put(0), '0');
  for (let i = 1; i <= 30; i++) body = pk(body, list(...Array.from({ length: 10 }, () => get(i - 1))), put(i), '0');
  return pk(body, get(30));
}

/** Xi = (X(i-1), X(i-1)) from X0 = one tensor: 2^levels paths to it, each a tensor name. */
function tensorPaths(levels: number): Uint8Array {
  let body = pk(tensor(ONE_FLOAT), put(0), '0');
  for (let i = 1; i <= levels; i++) body = pk(body, get(i - 1), get(i - 1), '\x86', put(i), '0');
  return pk(body, get(levels));
}

/** A 64 KiB chunk: MARK, `item` as often as fits, then `end`. */
function chunk(item: string, end: string): Uint8Array {
  return pk('(', item.repeat(Math.floor((KiB64 - 2) / item.length)), end);
}

/** data.pkl of ~256 MiB (the old limit) deflated: `head`, 4095 copies of `body`, `tail`. */
function bigPickle(head: string, body: Uint8Array, tail: string) {
  return repeatedDeflate([pk('\x80\x02', head), 1], [body, 4095], [pk(tail, '.'), 1]);
}

export const HOSTILE: HostileCase[] = [
  {
    // {'t': tensor, 'm': laughs}: the tensor search and the metadata printer walked every path.
    name: 'shared references: 10^30 paths to metadata (1 KB)',
    build: () => torchZip({ pkl: pickle(dict(str('t'), tensor(ONE_FLOAT), str('m'), laughs())), storages: { 0: 4 } }),
    error: null,
  },
  {
    name: 'shared references: 2^20 paths to one tensor (500 B)',
    build: () => torchZip({ pkl: pickle(dict(str('w'), tensorPaths(20))), storages: { 0: 4 } }),
    error: /more than 524288 tensors/,
  },
  {
    // [] then APPENDS of 134M ints: the old 256 MiB limit let it through to the heap.
    name: 'data.pkl inflating to 256 MiB: a list of 134M ints',
    build: () => torchZip({ pkl: bigPickle(']', chunk('K\x01', 'e'), ''), storages: {} }),
    error: /zip entry "archive\/data\.pkl".*268[0-9]{6} bytes.*67108864/,
  },
  {
    name: 'data.pkl inflating to 256 MiB: 134M opcodes',
    build: () => torchZip({ pkl: bigPickle('N', pk('N0'.repeat(KiB64 / 2)), ''), storages: {} }),
    error: /zip entry "archive\/data\.pkl".*67108864/,
  },
  {
    name: 'data.pkl declaring 4 KiB, inflating to 256 MiB',
    build: () => torchZip({ pkl: bigPickle('N', pk('N0'.repeat(KiB64 / 2)), ''), declare: { pkl: 4096 } }),
    error: /zip entry "archive\/data\.pkl": inflates to more than its declared 4096 bytes/,
  },
  {
    // 2 MiB of pickle, within the new limit: 2M empty dicts (~500 MB) appended to one list.
    name: 'data.pkl of 2M empty dicts (2 MiB inflated)',
    build: () => torchZip({ pkl: repeatedDeflate([pk('\x80\x02]'), 1], [chunk('}', 'e'), 32], [pk('.'), 1]) }),
    error: /more than 2097152 objects/,
  },
  {
    // set(L) copies L: 200k calls on a list of 1M ints, 2e11 copies from 3 MB of pickle.
    name: 'set() of a shared 1M-item list, 200k times',
    build: () => torchZip({
      pkl: pickle(
        ']', put(0), `(${'K\x01'.repeat(1000)}e`.repeat(1000), '0', // L: 1M ints
        'cbuiltins\nset\n', put(1), '0', get(0), '\x85', put(2), '0', // set, (L,)
        pk(get(1), get(2), 'R0').reduce((a, b) => a + String.fromCharCode(b), '').repeat(200_000), // set(L), dropped
        dict(),
      ),
    }),
    error: /more than 8388608 container items/,
  },
  {
    // [tensor, 1, 1, ...]: every int beside the tensor is a metadata entry "w.<i>".
    name: '1M metadata entries beside one tensor (2 MB)',
    build: () => torchZip({
      pkl: pickle(dict(str('w'), pk(']', tensor(ONE_FLOAT), 'a', `(${'K\x01'.repeat(1000)}e`.repeat(1000)))),
      compressPkl: true,
      storages: { 0: 4 },
    }),
    error: /more than 524288 metadata entries/,
  },
  {
    name: 'byteorder inflating to 1 GiB',
    build: () => torchZip({ pkl: pickle(dict()), byteorder: repeatedDeflate([new Uint8Array(1 << 20), 1024]) }),
    error: /zip entry "archive\/byteorder".*1073741824 bytes.*16/,
  },
  {
    name: 'byteorder declaring 6 bytes, inflating to 1 GiB from 1 MB',
    build: () => torchZip({ pkl: pickle(dict()), byteorder: repeatedDeflate([new Uint8Array(1 << 20), 1024]), declare: { byteorder: 6 } }),
    error: /zip entry "archive\/byteorder": 6 bytes \(1061890 compressed\) is more than sluice reads whole for this entry \(16\)/,
  },
  {
    // shape (2^17)^3 with stride 0 over one double: 2^51 elements, 18 PB to hash.
    name: 'a stride-0 view of 18 PB, --checksum',
    flags: ['--checksum'],
    build: () => torchZip({
      pkl: pickle(dict(str('x'), tensor({ key: '0', storage: 'DoubleStorage', numel: 1, shape: [2 ** 17, 2 ** 17, 2 ** 17], stride: [0, 0, 0] }))),
      storages: { 0: 8 },
    }),
    error: /tensor "x".*overlapping view/,
  },
  {
    // {S: {'0': T, ..., '19999': T}}, S 1 MiB long: every name starts with S (20 GB of names).
    name: '20k tensor names under a 1 MiB key',
    build: () => torchZip({
      pkl: pickle(dict(str('a'.repeat(1 << 20)), pk(tensor(ONE_FLOAT), put(0), '0', dict(concat(Array.from({ length: 20_000 }, (_, i) => pk(str(String(i)), get(0)))))))),
      compressPkl: true,
      storages: { 0: 4 },
    }),
    error: /a name longer than 4096 characters \("aaaa/,
  },
];


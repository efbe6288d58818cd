// `sluice bench <benchmark>`: benchmarks, each measured against a goal in the same run.
// One module per benchmark under src/cli/bench/; this file only dispatches and prints.

import { benchUpdate, type UpdateBenchResult } from '../bench/update-bench.js';
import { SluiceError } from '../../errors.js';
import { parseCommandArgs } from '../args.js';
import { formatBytes, table } from '../format.js';
import type { CliIo, Command } from '../io.js';

interface Benchmark {
  name: string;
  summary: string;
  run(args: string[], io: CliIo): Promise<number>;
}

const update: Benchmark = {
  name: 'update',
  summary: 'in-place tensor update vs rewriting the whole file (goal: ≥ 20× faster)',
  async run(args, io) {
    const { values, positionals } = parseCommandArgs('bench update', args, {
      dir: { type: 'string' },
      'size-mib': { type: 'string' },
      repeat: { type: 'string' },
      json: { type: 'boolean' },
    });
    if (positionals.length) throw new SluiceError('USAGE', `bench update: unexpected argument ${JSON.stringify(positionals[0])}`);
    const int = (v: unknown) => (v === undefined ? undefined : Number(v));
    const result = await benchUpdate({
      dir: values.dir as string | undefined,
      sizeMiB: int(values['size-mib']),
      repeat: int(values.repeat),
      onStep: io.isTty && !values.json ? (what) => io.stderr(`${what}\n`) : undefined,
    });
    io.stdout(values.json ? `${JSON.stringify(updateJson(result), null, 2)}\n` : updateTable(result));
    return 0;
  },
};

/** The benchmarks, in the order usage lists them. */
const BENCHMARKS: Benchmark[] = [update];

const USAGE = `Usage: sluice bench <benchmark> [options]

Benchmarks:
${BENCHMARKS.map((b) => `  ${b.name.padEnd(8)}  ${b.summary}`).join('\n')}

sluice bench update [--size-mib N] [--repeat R] [--dir DIR] [--json]
  Writes a safetensors file of N MiB (default 1024: 64 tensors of 16 MiB) in a temp
  directory (inside DIR if given; removed afterwards), then times replacing one 16 MiB
  tensor in place and by rewriting the whole file, R times each (default 3); reports the
  medians and their ratio against the goal of 20×.

Options:
  --json   one JSON document on stdout
  --debug  stack traces on errors
`;

export const benchCommand: Command = {
  name: 'bench',
  summary: 'benchmarks, each against a goal measured in the same run',
  usage: USAGE,
  usesGpu: false,
  async run(args, io) {
    const [name, ...rest] = args;
    const bench = BENCHMARKS.find((b) => b.name === name);
    if (!bench) {
      const available = BENCHMARKS.map((b) => b.name).join(', ');
      const what = name === undefined || name.startsWith('-') ? 'which benchmark?' : `unknown benchmark ${JSON.stringify(name)}`;
      throw new SluiceError('USAGE', `bench: ${what} Available: ${available} (see 'sluice bench --help')`);
    }
    return bench.run(rest, io);
  },
};

function updateJson(r: UpdateBenchResult) {
  const { file_bytes, tensor_bytes, update_ms, rewrite_ms, ratio, goal, pass } = r;
  return { file_bytes, tensor_bytes, update_ms, rewrite_ms, ratio, goal, pass };
}

function updateTable(r: UpdateBenchResult): string {
  const ms = (xs: number[]) => xs.map((x) => x.toFixed(1)).join(', ');
  const rows = [
    ['in-place update', r.update_ms.toFixed(1), ms(r.update_runs_ms)],
    ['full rewrite', r.rewrite_ms.toFixed(1), ms(r.rewrite_runs_ms)],
  ];
  return [
    `replacing one ${formatBytes(r.tensor_bytes)} tensor of a ${formatBytes(r.file_bytes)} file (${r.tensors} tensor${r.tensors === 1 ? '' : 's'}), ${r.repeat} run${r.repeat === 1 ? '' : 's'} each\n`,
    table(['method', 'median ms', 'runs ms'], rows, [1]),
    `ratio ${r.ratio.toFixed(1)}× (goal ≥ ${r.goal}×): ${r.pass ? 'pass' : 'FAIL'}\n`,
  ].join('');
}

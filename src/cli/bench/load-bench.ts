// `sluice bench load`: how fast a checkpoint reaches the GPU, against limits measured in
// the same run. Each measurement runs in a fresh worker process (load-worker.ts):
//   (a) read    the checkpoint's tensor bytes from the source, as the loader reads them
//   (b) upload  that many bytes from host memory to fresh GPU buffers, same staging ring
//   (c) load    sluice: safetensors → GPU (loadTensors)
//   (d) load    sluice: the same tensors from the .pth → GPU
//   (e) torch   torch.load of the .pth to CPU memory (/usr/bin/python3, when it has torch)
//   (q) load    with --quantize q8|q4: the safetensors → GPU with the matrices quantized on
//               the GPU as they stream in (loadTensors' quantize option)
// The pipelined limit is max(a, b): the loader overlaps reading with uploading, so it
// cannot beat the slower of the two. Goals: limit/(c) ≥ 0.8, (d)/(c) ≤ 1.1, (e)/(c) > 1,
// (q)/(c) ≤ 1.15 (quantizing adds at most 15% to the plain load in the same compute dtype:
// F16 where the GPU has shader-f16), host memory during (c) and (q) ≤ 256 MiB. "cold" runs
// first drop the files from the page cache (dd iflag=nocache: fadvise DONTNEED, no root
// needed), "warm" runs follow a read.

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openCheckpoint } from '../../checkpoint/open-path.js';
import { SluiceError } from '../../errors.js';
import { DEFAULT_STAGING_BYTES, DEFAULT_STAGING_SLOTS, type DtypeChoice } from '../../gpu/load-tensors.js';
import type { QuantKind } from '../../gpu/quantized-tensor.js';
import { createNoiseFilter } from '../dawn-noise.js';
import type { Measurement, WorkerResult } from './load-worker.js';
import { type SyntheticDtype, writeSyntheticCheckpoint } from './synthetic-checkpoint.js';

export const LOAD_GOALS = { limitOverLoad: 0.8, pthOverLoad: 1.1, torchOverLoad: 1, quantizedOverLoad: 1.15, hostOverheadBytes: 256 * 2 ** 20 };

export interface LoadBenchOptions {
  checkpoint?: string;
  pth?: string;
  /** Generate a checkpoint of this many bytes in both formats instead (in `dir`). */
  syntheticBytes?: number;
  /** Storage dtype of the synthetic checkpoint (default BF16). */
  syntheticDtype?: SyntheticDtype;
  dir?: string;
  dtype?: DtypeChoice;
  /** Also measure (q): the same load with the matrices quantized to q8 or q4 on the GPU. */
  quantize?: QuantKind;
  /** Warm runs of each measurement (median reported); default 2. */
  repeat?: number;
  stagingBytes?: number;
  stagingSlots?: number;
  /** Progress lines and bars (a terminal). */
  onStep?: (what: string) => void;
  progress?: boolean;
  stderr: (text: string) => void;
}

export interface Timing {
  seconds: number;
  gbps: number;
  runs: number[];
}

export interface LoadRow {
  cold: Timing | null;
  warm: Timing;
}

/** Device bytes at the end of a load, as GpuTensors splits them; scratch was freed when it ended. */
export interface DeviceBytes {
  total: number;
  dense: number;
  quantized: number;
  scratch: number;
}

/** (q): the load with quantize-on-load, against (c) in the same run. */
export interface QuantizedLoad {
  kind: QuantKind;
  load: LoadRow;
  /** Tensors stored quantized (the others stayed dense: embedding, norms, any the loader could not quantize). */
  quantized_tensors: number;
  device_bytes: DeviceBytes;
  /** (q)'s device bytes ÷ (c)'s. */
  device_over_load: number;
  /** (q) warm ÷ (c) warm: what quantizing adds to the load (goal ≤ quantizedOverLoad). */
  load_over_load: number;
  rss_growth_bytes: number;
  host_overhead_bytes: number;
  pass: { time: boolean; host_memory: boolean };
}

export interface LoadBenchResult {
  checkpoint: string;
  pth: string | null;
  bytes: number;
  tensors: number;
  adapter: string;
  software_adapter: boolean;
  compute_dtype: string;
  staging: { slots: number; bytes: number };
  read: LoadRow;
  upload: LoadRow;
  load: LoadRow;
  load_pth: LoadRow | null;
  torch_load: LoadRow | null;
  torch_note: string | null;
  memory: { rss_growth_bytes: number; device_bytes: number; host_overhead_bytes: number };
  /** (c)'s device bytes, split as for (q). */
  device_bytes: DeviceBytes;
  /** null without --quantize. */
  quantized: QuantizedLoad | null;
  ratios: { limit_over_load: number; pth_over_load: number | null; torch_over_load: number | null };
  goals: typeof LOAD_GOALS;
  pass: { load_vs_limit: boolean; pth_vs_load: boolean | null; torch_vs_load: boolean | null; host_memory: boolean };
}

export async function benchLoad(options: LoadBenchOptions): Promise<LoadBenchResult> {
  const repeat = options.repeat ?? 2;
  if (!Number.isSafeInteger(repeat) || repeat < 1) throw new SluiceError('USAGE', 'bench load: --repeat must be a positive integer');
  if (!options.checkpoint === !options.syntheticBytes) {
    throw new SluiceError('USAGE', 'bench load: give a CHECKPOINT or --synthetic SIZE (one of them)');
  }
  const step = options.onStep ?? (() => {});
  const dir = options.syntheticBytes ? await mkdtemp(join(options.dir ?? tmpdir(), 'sluice-bench-load-')) : null;
  try {
    let checkpoint = options.checkpoint ?? '';
    let pth = options.pth ?? null;
    if (dir && options.syntheticBytes) {
      const dtype = options.syntheticDtype ?? 'BF16';
      step(`writing a synthetic ${dtype} checkpoint of ~${Math.round(options.syntheticBytes / 2 ** 20)} MiB as .safetensors and .pth in ${dir}`);
      ({ safetensors: checkpoint, pth } = await writeSyntheticCheckpoint(dir, options.syntheticBytes, dtype));
    }
    const opened = await openCheckpoint(checkpoint);
    const files = opened.files.filter((f) => !f.endsWith('.json'));
    const tensors = opened.tensors().length;
    await opened.close();
    const pthFiles = pth ? await checkpointFiles(pth) : [];

    const base = {
      dtype: options.dtype ?? 'auto',
      stagingBytes: options.stagingBytes ?? DEFAULT_STAGING_BYTES,
      stagingSlots: options.stagingSlots ?? DEFAULT_STAGING_SLOTS,
    };
    const worker = (kind: Measurement['kind'], path: string, progress = false, quantize?: QuantKind) =>
      runWorker({ ...base, kind, path, progress, quantize }, options.stderr);

    step('(a) raw read');
    const read = await coldAndWarm(files, repeat, () => worker('read', checkpoint));
    step('(b) raw upload');
    const upload = await coldAndWarm(null, repeat, () => worker('upload', checkpoint));
    step('(c) safetensors → GPU');
    const load = await coldAndWarm(files, repeat, () => worker('load', checkpoint, options.progress));
    let loadQuantized: Row | null = null;
    if (options.quantize) {
      step(`(q) safetensors → GPU, quantized to ${options.quantize}`);
      loadQuantized = await coldAndWarm(files, repeat, () => worker('load', checkpoint, options.progress, options.quantize));
    }
    let loadPth: Row | null = null;
    if (pth) {
      step('(d) .pth → GPU');
      loadPth = await coldAndWarm(pthFiles, repeat, () => worker('load', pth, options.progress));
    }
    let torch: Row | null = null;
    let torchNote: string | null = null;
    if (pth) {
      const available = await torchAvailable();
      if (available === true) {
        step('(e) torch.load');
        torch = await coldAndWarm(pthFiles, repeat, () => torchLoad(pth));
      } else torchNote = available;
    } else torchNote = 'no .pth given (--pth or --synthetic)';

    const bytes = load.warm[0].bytes;
    const limit = Math.max(median(read.warm), median(upload.warm));
    const c = median(load.warm);
    const first = load.warm[0];
    const rssGrowth = peakRss(load);
    // On a software adapter "device" memory is this process's memory: subtract it.
    const hostOverhead = rssGrowth - (first.softwareAdapter ? first.deviceBytes : 0);
    const ratios = {
      limit_over_load: round(limit / c),
      pth_over_load: loadPth ? round(median(loadPth.warm) / c) : null,
      torch_over_load: torch ? round(median(torch.warm) / c) : null,
    };
    return {
      checkpoint,
      pth,
      bytes,
      tensors,
      adapter: first.adapter ?? 'unknown',
      software_adapter: first.softwareAdapter ?? false,
      compute_dtype: first.computeDtype ?? 'unknown',
      staging: { slots: base.stagingSlots, bytes: base.stagingBytes },
      read: row(read, bytes),
      upload: row(upload, bytes),
      load: row(load, bytes),
      load_pth: loadPth ? row(loadPth, bytes) : null,
      torch_load: torch ? row(torch, bytes) : null,
      torch_note: torchNote,
      memory: { rss_growth_bytes: rssGrowth, device_bytes: first.deviceBytes, host_overhead_bytes: hostOverhead },
      device_bytes: deviceBytes(first),
      quantized: loadQuantized && options.quantize ? quantizedLoad(options.quantize, loadQuantized, load, bytes) : null,
      ratios,
      goals: LOAD_GOALS,
      pass: {
        load_vs_limit: ratios.limit_over_load >= LOAD_GOALS.limitOverLoad,
        pth_vs_load: ratios.pth_over_load === null ? null : ratios.pth_over_load <= LOAD_GOALS.pthOverLoad,
        torch_vs_load: ratios.torch_over_load === null ? null : ratios.torch_over_load > LOAD_GOALS.torchOverLoad,
        host_memory: hostOverhead <= LOAD_GOALS.hostOverheadBytes,
      },
    };
  } finally {
    if (dir) await rm(dir, { recursive: true, force: true });
  }
}

interface Row {
  cold: WorkerResult[];
  warm: WorkerResult[];
}

/** The largest RSS growth of a measurement's runs. */
const peakRss = (r: Row) => Math.max(...[...r.cold, ...r.warm].map((x) => x.rssGrowthBytes));

function deviceBytes(r: WorkerResult): DeviceBytes {
  const d = r.device ?? { dense: r.deviceBytes, quantized: 0, scratch: 0 };
  return { total: r.deviceBytes, dense: d.dense, quantized: d.quantized, scratch: d.scratch };
}

/** (q) against (c), both in this run: time, device bytes, host memory. */
function quantizedLoad(kind: QuantKind, q: Row, c: Row, bytes: number): QuantizedLoad {
  const first = q.warm[0];
  const rssGrowth = peakRss(q);
  const hostOverhead = rssGrowth - (first.softwareAdapter ? first.deviceBytes : 0);
  const loadOverLoad = round(median(q.warm) / median(c.warm));
  return {
    kind,
    load: row(q, bytes),
    quantized_tensors: first.device?.quantizedTensors ?? 0,
    device_bytes: deviceBytes(first),
    device_over_load: round(first.deviceBytes / c.warm[0].deviceBytes),
    load_over_load: loadOverLoad,
    rss_growth_bytes: rssGrowth,
    host_overhead_bytes: hostOverhead,
    pass: { time: loadOverLoad <= LOAD_GOALS.quantizedOverLoad, host_memory: hostOverhead <= LOAD_GOALS.hostOverheadBytes },
  };
}

/** One cold run (files dropped from the page cache first; none when files is null), then `repeat` warm ones. */
async function coldAndWarm(files: string[] | null, repeat: number, run: () => Promise<WorkerResult>): Promise<Row> {
  const cold: WorkerResult[] = [];
  if (files) {
    await dropFromPageCache(files);
    cold.push(await run());
  }
  const warm: WorkerResult[] = [];
  for (let i = 0; i < repeat; i++) warm.push(await run());
  return { cold, warm };
}

function row(r: Row, bytes: number): LoadRow {
  const timing = (runs: WorkerResult[]): Timing => {
    const seconds = median(runs);
    return { seconds: round(seconds), gbps: round(bytes / seconds / 1e9), runs: runs.map((x) => round(x.seconds)) };
  };
  return { cold: r.cold.length ? timing(r.cold) : null, warm: timing(r.warm) };
}

function median(runs: WorkerResult[]): number {
  const s = runs.map((r) => r.seconds).sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

const round = (x: number) => Math.round(x * 1000) / 1000;

async function checkpointFiles(path: string): Promise<string[]> {
  const c = await openCheckpoint(path);
  await c.close();
  return c.files.filter((f) => !f.endsWith('.json'));
}

/** The compiled worker: beside this file in dist/, or in dist/ when this runs from src/ (tests). */
function workerPath(): string {
  const candidates = ['./load-worker.js', '../../../dist/cli/bench/load-worker.js'].map((p) => fileURLToPath(new URL(p, import.meta.url)));
  const found = candidates.find((p) => existsSync(p));
  if (!found) throw new SluiceError('NOT_FOUND', `${candidates[candidates.length - 1]} is missing: run 'npm run build'`);
  return found;
}

async function runWorker(m: Measurement, stderr: (text: string) => void): Promise<WorkerResult> {
  const { code, stdout } = await run(process.execPath, [workerPath(), JSON.stringify(m)], stderr);
  if (code !== 0) throw new SluiceError('IO_ERROR', `bench load: the ${m.kind} measurement of ${m.path} failed (exit ${code})`);
  return JSON.parse(stdout) as WorkerResult;
}

/** Runs a program, its stderr through the Dawn noise filter to `stderr`; resolves with its stdout. */
function run(file: string, args: string[], stderr: (text: string) => void): Promise<{ code: number; stdout: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    const filter = createNoiseFilter(stderr);
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => filter.write(s));
    child.on('error', reject);
    child.on('close', (code) => {
      filter.end();
      resolve({ code: code ?? 1, stdout });
    });
  });
}

async function dropFromPageCache(files: string[]): Promise<void> {
  for (const file of files) {
    // count=0 with iflag=nocache: "drop cache for the whole file" (GNU dd), for clean pages.
    await run('dd', [`if=${file}`, 'iflag=nocache', 'count=0', 'status=none'], () => {});
  }
}

const PYTHON = '/usr/bin/python3';
const TORCH_LOAD = `
import sys, time, torch
start = time.perf_counter()
state = torch.load(sys.argv[1], map_location="cpu")
seconds = time.perf_counter() - start
print('{"seconds": %r, "bytes": %d}' % (seconds, sum(t.numel() * t.element_size() for t in state.values())))
`;

/** true, or why (e) is skipped. */
async function torchAvailable(): Promise<true | string> {
  if (!existsSync(PYTHON)) return `${PYTHON} not found`;
  const { code } = await run(PYTHON, ['-c', 'import torch'], () => {});
  return code === 0 ? true : `${PYTHON} has no torch (Debian: apt-get install python3-torch)`;
}

async function torchLoad(path: string): Promise<WorkerResult> {
  let err = '';
  const { code, stdout } = await run(PYTHON, ['-c', TORCH_LOAD, path], (s) => (err += s));
  if (code !== 0) throw new SluiceError('IO_ERROR', `bench load: torch.load(${path}) failed: ${err.trim().split('\n').pop()}`);
  const { seconds, bytes } = JSON.parse(stdout) as { seconds: number; bytes: number };
  return { seconds, bytes, rssGrowthBytes: 0, deviceBytes: 0 };
}


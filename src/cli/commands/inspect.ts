import { basename } from 'node:path';
import { tensorSha256 } from '../../checkpoint/checksum.js';
import { openCheckpoint } from '../../checkpoint/open-path.js';
import { dimsOf, groupByLayer, summarize } from '../../checkpoint/summary.js';
import type { Checkpoint, TensorInfo } from '../../checkpoint/types.js';
import { SluiceError } from '../../errors.js';
import { parseCommandArgs } from '../args.js';
import { clip, exact, formatBytes, formatCount, jsonInteger, table } from '../format.js';
import { quantizationJson, type QuantizationReport, quantizationRows, readQuantization } from '../inspect-quantization.js';
import type { CliIo, Command } from '../io.js';
import { modelSource } from '../model-source.js';
import { Progress } from '../progress.js';

/** Rows shown before the list is cut short (human output without --all). */
const MAX_ROWS = 60;
/** Widest name cell: one hostile 100 MB name must not pad every row to 100 MB (--json keeps it whole). */
const MAX_NAME = 160;

const USAGE = `Usage: sluice inspect PATH [--json] [--checksum] [--all]

List the tensors of a checkpoint (name, dtype, shape, size, file), then totals:
tensors, parameters, bytes by dtype, metadata. Only headers are read, unless --checksum.
When config.json beside it declares a quantization_config (GPTQ, AWQ, compressed-tensors),
also: the scheme (method, format, bits, group size or per channel, symmetric, act-order,
modules left dense) and bytes per parameter = bytes of the packed tensors with their
scales, zeros and g_idx ÷ the weights they stand for (from the packed shapes).

PATH  a .safetensors or .pth/.bin/.pt file, a model.safetensors.index.json or
      pytorch_model.bin.index.json, a directory (safetensors preferred), an http(s) URL, or
      org/name[@REVISION] already in the HF cache (see sluice pull, sluice list)

Options:
  --json      one JSON document on stdout
  --checksum  add each tensor's sha256 over its contiguous little-endian bytes (reads all data)
  --all       list every tensor (the default groups per-layer tensors and cuts long lists)
  --debug     stack traces on errors

In --json, an integer past 2^53 - 1 (a total, or a dim of an empty tensor) is written as a
decimal string, so that no JSON reader rounds it; smaller ones are numbers.
`;

export const inspectCommand: Command = {
  name: 'inspect',
  summary: 'list the tensors, parameters and metadata of a checkpoint',
  usage: USAGE,
  usesGpu: false,
  async run(args, io) {
    const { values, positionals } = parseCommandArgs('inspect', args, {
      json: { type: 'boolean' },
      checksum: { type: 'boolean' },
      all: { type: 'boolean' },
    });
    if (positionals.length !== 1) throw new SluiceError('USAGE', "inspect: expected one PATH (see 'sluice inspect --help')");
    // A Hub name is looked up in the HF cache only: inspect never downloads.
    const { path } = await modelSource(positionals[0], io, { download: false });
    const checkpoint = await openCheckpoint(path, { onNote: (note) => io.stderr(`sluice: ${note}\n`) });
    try {
      const quantization = await readQuantization(path, checkpoint.tensors());
      const sums = values.checksum ? await checksums(checkpoint, io, !values.json) : undefined;
      if (values.json) writeJsonReport(io, checkpoint, quantization, sums);
      else io.stdout(humanReport(checkpoint, quantization, sums, Boolean(values.all)));
      return 0;
    } finally {
      await checkpoint.close();
    }
  },
};

async function checksums(checkpoint: Checkpoint, io: CliIo, showProgress: boolean): Promise<Map<string, string>> {
  const tensors = checkpoint.tensors();
  const total = tensors.reduce((a, t) => a + t.byteLength, 0);
  const progress = new Progress(io, 'sha256', total, showProgress);
  const out = new Map<string, string>();
  for (const t of tensors) out.set(t.name, await tensorSha256(checkpoint, t.name, (n) => progress.add(n)));
  progress.done();
  return out;
}

/**
 * Writes what `JSON.stringify(doc, null, 2)` would, with the tensor list in ~1 MB batches:
 * as one string (and its object graph) a million tensors take ~1.2 GB, batched ~0.5 GB.
 */
function writeJsonReport(io: CliIo, checkpoint: Checkpoint, quantization: QuantizationReport | null, sums?: Map<string, string>): void {
  const tensors = checkpoint.tensors();
  const s = summarize(checkpoint, tensors);
  const head = JSON.stringify(
    {
      format: s.format,
      files: s.files,
      metadata: s.metadata,
      tensor_count: s.tensorCount,
      parameters: jsonInteger(s.parameters),
      bytes: jsonInteger(s.bytes),
      bytes_by_dtype: mapValues(s.bytesByDtype, jsonInteger),
      parameters_by_dtype: mapValues(s.parametersByDtype, jsonInteger),
      ...('indexMetadata' in checkpoint ? { index_metadata: checkpoint.indexMetadata } : {}),
      ...(quantization ? { quantization: quantizationJson(quantization) } : {}),
      tensors: [],
    },
    null,
    2,
  );
  if (tensors.length === 0) {
    io.stdout(`${head}
`);
    return;
  }
  // `"tensors": []` is the last member: open it, then each tensor indented two levels.
  let batch = `${head.slice(0, head.lastIndexOf('[]'))}[\n`;
  tensors.forEach((t, i) => {
    const doc = {
      name: t.name,
      dtype: t.dtype,
      shape: dimsOf(t).map(jsonInteger),
      bytes: t.byteLength,
      file: t.file,
      ...(sums ? { sha256: sums.get(t.name) } : {}),
    };
    // JSON text holds no raw newline inside a string, so this only indents lines.
    batch += `    ${JSON.stringify(doc, null, 2).replace(/\n/g, '\n    ')}${i + 1 < tensors.length ? ',' : ''}\n`;
    if (batch.length >= 1 << 20) {
      io.stdout(batch);
      batch = '';
    }
  });
  io.stdout(`${batch}  ]\n}\n`);
}

function humanReport(checkpoint: Checkpoint, quantization: QuantizationReport | null, sums: Map<string, string> | undefined, all: boolean): string {
  const tensors = checkpoint.tensors();
  const s = summarize(checkpoint, tensors);
  const multiFile = new Set(tensors.map((t) => t.file)).size > 1;
  const header = ['name', 'dtype', 'shape', 'size', ...(multiFile ? ['file'] : []), ...(sums ? ['sha256'] : [])];
  const fileCell = (ts: TensorInfo[]) => {
    const files = [...new Set(ts.map((t) => basename(t.file)))];
    return files.length === 1 ? files[0] : `${files.length} files`;
  };
  const groups = all || sums ? tensors.map((t) => ({ pattern: t.name, members: [t] })) : groupByLayer(tensors);
  let rows = groups.map(({ pattern, members: [first, ...rest] }) => [
    rest.length ? `${clip(pattern, MAX_NAME)} (×${rest.length + 1})` : clip(pattern, MAX_NAME),
    first.dtype,
    `[${dimsOf(first).join(', ')}]`,
    formatBytes(first.byteLength * (rest.length + 1)),
    ...(multiFile ? [fileCell([first, ...rest])] : []),
    ...(sums ? [sums.get(first.name) ?? ''] : []),
  ]);
  let more = '';
  if (!all && !sums && rows.length > MAX_ROWS) {
    more = `… ${rows.length - MAX_ROWS + 10} more rows (--all lists every tensor)\n`;
    rows = rows.slice(0, MAX_ROWS - 10);
  }
  const byDtype = Object.entries(s.bytesByDtype)
    .map(([dtype, bytes]) => `${dtype} ${formatBytes(Number(bytes))}`)
    .join(', ');
  const meta = Object.entries(s.metadata).map(([k, v]) => `${clip(k, 60)}=${v.length > 60 ? `${v.slice(0, 57)}...` : v}`);
  const totals = table(
    ['', ''],
    [
      ['format', `${s.format}, ${s.files.length} file${s.files.length === 1 ? '' : 's'}`],
      ['tensors', String(s.tensorCount)],
      ['parameters', `${formatCount(s.parameters)} (${exact(s.parameters)})`],
      // formatBytes rounds past 999 B: the exact count follows it.
      ['bytes', `${formatBytes(Number(s.bytes))}${s.bytes >= 1000n ? ` = ${exact(s.bytes)} B` : ''} (${byDtype || 'none'})`],
      ['metadata', meta.length ? meta.join(', ') : 'none'],
      ...(quantization ? quantizationRows(quantization) : []),
    ],
  )
    .split('\n')
    .slice(1)
    .join('\n');
  return `${table(header, rows, [3])}${more}\n${totals}`;
}

function mapValues<T, U>(record: Record<string, T>, f: (v: T) => U): Record<string, U> {
  return Object.fromEntries(Object.entries(record).map(([k, v]) => [k, f(v)]));
}

import { stat } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { CONVERT_DTYPES, type ConvertDtype, type ConvertReport, convertCheckpoint } from '../../checkpoint/convert.js';
import { isUrl } from '../../checkpoint/open.js';
import { openCheckpoint } from '../../checkpoint/open-path.js';
import { SluiceError } from '../../errors.js';
import { parseSize } from '../../formats/safetensors/sharded-writer.js';
import { parseCommandArgs } from '../args.js';
import { formatBytes } from '../format.js';
import type { Command } from '../io.js';
import { modelSource } from '../model-source.js';
import { Progress } from '../progress.js';

const USAGE = `Usage: sluice convert IN OUT_DIR [--max-shard-size 5GB] [--dtype keep|f16|bf16|f32] [--force] [--json]

Convert a checkpoint to safetensors laid out as transformers' save_pretrained writes it:
OUT_DIR/model.safetensors, or model-0000N-of-0000M.safetensors shards plus
model.safetensors.index.json. Tensors stream through one chunk at a time. Then the output
is read back and every tensor's sha256 is compared with what was written.

IN      a .pth/.pt/.bin file, a pytorch_model.bin.index.json, a .safetensors file or index,
        a model directory, or org/name[@REVISION] already in the HF cache. From its
        directory, config.json, generation_config.json and the tokenizer files
        (tokenizer.json, tokenizer_config.json, special_tokens_map.json, tokenizer.model,
        vocab.json, merges.txt, chat_template.jinja) are copied too.
OUT_DIR created if missing; refused if it already holds safetensors files, unless --force

Options:
  --max-shard-size SIZE  largest shard, e.g. 5GB (default), 500MB, 2GiB
  --dtype D              keep (default), or f16, bf16, f32: F32/F16/BF16 tensors are
                         converted, rounding to nearest even; other dtypes are kept
  --force                replace the safetensors files already in OUT_DIR
  --json                 one JSON document on stdout
  --debug                stack traces on errors

Tied weights (one storage under several names, e.g. lm_head and embed_tokens in a .bin)
are written once per name.
`;

export const convertCommand: Command = {
  name: 'convert',
  summary: 'convert a checkpoint (.pth/.bin/safetensors) to HF-layout safetensors, verified',
  usage: USAGE,
  usesGpu: false,
  async run(args, io) {
    const { values, positionals } = parseCommandArgs('convert', args, {
      'max-shard-size': { type: 'string' },
      dtype: { type: 'string' },
      force: { type: 'boolean' },
      json: { type: 'boolean' },
    });
    if (positionals.length !== 2) throw new SluiceError('USAGE', "convert: expected IN and OUT_DIR (see 'sluice convert --help')");
    const [inArg, outDir] = positionals;
    const dtype = (values.dtype ?? 'keep') as ConvertDtype;
    if (!CONVERT_DTYPES.includes(dtype)) {
      throw new SluiceError('USAGE', `convert: --dtype must be one of ${CONVERT_DTYPES.join(', ')}, not ${JSON.stringify(values.dtype)}`);
    }
    const maxShardSize = parseSize((values['max-shard-size'] as string | undefined) ?? '5GB');
    // A Hub name is looked up in the HF cache only: convert never downloads.
    const { path: inPath } = await modelSource(inArg, io, { download: false });
    const sourceDir = isUrl(inPath) ? undefined : (await stat(inPath).catch(() => null))?.isDirectory() ? inPath : dirname(inPath);

    // Notes (which file of a directory was used) go to stderr, as inspect prints them.
    const input = await openCheckpoint(inPath, { onNote: (note) => io.stderr(`sluice: ${note}\n`) });
    const showProgress = !values.json;
    let progress: Progress | undefined;
    let phase = '';
    try {
      const report = await convertCheckpoint(input, outDir, {
        maxShardSize,
        dtype,
        sourceDir,
        force: Boolean(values.force),
        onProgress: (p, bytes, total) => {
          if (p !== phase) {
            progress?.done();
            phase = p;
            progress = new Progress(io, p === 'write' ? 'writing' : 'verifying', total, showProgress);
          }
          progress!.add(bytes);
        },
      });
      progress?.done();
      io.stdout(values.json ? jsonReport(inArg, report) : humanReport(report));
      return 0;
    } finally {
      await input.close();
    }
  },
};

function jsonReport(input: string, r: ConvertReport): string {
  const doc = {
    input,
    out_dir: r.outDir,
    files: r.files,
    index: r.index,
    copied: r.copied,
    tensors: r.tensors,
    bytes: r.bytes,
    dtype: r.dtype,
    converted: r.converted,
    unconverted: r.unconverted,
    verified: r.verified,
  };
  return `${JSON.stringify(doc, null, 2)}\n`;
}

function humanReport(r: ConvertReport): string {
  const lines = [
    `wrote ${r.files.length === 1 ? r.files[0] : `${r.files.length} shards + ${basename(r.index!)} in ${r.outDir}`}: ${r.tensors} tensors, ${formatBytes(r.bytes)}`,
  ];
  if (r.dtype !== 'keep') {
    const kept = Object.entries(r.unconverted).map(([d, n]) => `${n} ${d}`);
    lines.push(`converted ${r.converted} tensors to ${r.dtype.toUpperCase()}${kept.length ? ` (kept as they were: ${kept.join(', ')})` : ''}`);
  }
  lines.push(r.copied.length ? `copied ${r.copied.join(', ')}` : 'copied no config or tokenizer files (none beside the input)');
  lines.push(`verified: ${r.verified}/${r.tensors} tensors read back with the same sha256`);
  return `${lines.join('\n')}\n`;
}

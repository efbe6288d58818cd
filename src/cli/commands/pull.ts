// `sluice pull org/name[@rev] [--include GLOB] [--exclude GLOB] [--json]`: a Hub model into
// the shared HF cache (src/hub/pull.ts), resumable and verified.

import { SluiceError } from '../../errors.js';
import { parseModelName } from '../../hub/model-name.js';
import { pullModel, type PullResult } from '../../hub/pull.js';
import { hubSettings } from '../../hub/settings.js';
import { parseCommandArgs } from '../args.js';
import { formatBytes } from '../format.js';
import type { Command } from '../io.js';
import { pullProgressBar } from '../pull-progress.js';

const USAGE = `Usage: sluice pull org/name[@REVISION] [--include GLOB]... [--exclude GLOB]... [--json]

Downloads a model from the Hugging Face Hub into the HF cache that transformers uses
($HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub), in its layout, so
both share the files. REVISION is a branch, tag or commit (default main).

Files: safetensors weights (model.safetensors.index.json and every shard it names, else
model.safetensors, else *.safetensors); only when a repo has none, PyTorch weights
(pytorch_model.bin.index.json and its shards, else pytorch_model.bin, else *.bin/*.pth);
and config.json, generation_config.json, the tokenizer and chat template files. Other
formats (gguf, onnx, flax, tf) and subfolders are skipped.

A download that is interrupted is continued where it stopped, by this pull (retries) or
the next one; files already cached are not fetched again. Every file is checked against
the Hub's listing (size, and sha256 for LFS files); a corrupt one is discarded.

Options:
  --include GLOB  also fetch the files GLOB matches (e.g. 'original/*'; repeatable)
  --exclude GLOB  never fetch the files GLOB matches (repeatable; --exclude '*.safetensors'
                  falls back to the PyTorch weights)
  --json          one JSON document on stdout
  --debug         stack traces on errors

Environment: HF_TOKEN (gated and private repos), HF_ENDPOINT (another Hub or a mirror),
HF_HUB_CACHE / HF_HOME (where the cache is).
`;

export const pullCommand: Command = {
  name: 'pull',
  summary: 'download a Hugging Face Hub model into the shared HF cache',
  usage: USAGE,
  usesGpu: false,
  async run(args, io) {
    const { values, positionals } = parseCommandArgs('pull', args, {
      include: { type: 'string', multiple: true },
      exclude: { type: 'string', multiple: true },
      offline: { type: 'boolean' },
      json: { type: 'boolean' },
    });
    if (values.offline) throw new SluiceError('USAGE', 'pull: --offline makes no sense here: pulling is downloading (generate, chat and serve take --offline)');
    if (positionals.length !== 1) throw new SluiceError('USAGE', "pull: expected one model name, org/name[@REVISION] (see 'sluice pull --help')");
    const name = parseModelName(positionals[0]);
    if (!name) throw new SluiceError('USAGE', `pull: ${JSON.stringify(positionals[0])} is not a Hub model name (org/name or org/name@REVISION)`);
    const settings = hubSettings();
    const json = Boolean(values.json);
    const result = await pullModel(name, {
      settings,
      include: values.include as string[] | undefined,
      exclude: values.exclude as string[] | undefined,
      onProgress: pullProgressBar(io, !json),
      onNote: (note) => io.stderr(`sluice: ${note}\n`),
    });
    io.stdout(json ? jsonReport(result) : humanReport(result));
    return 0;
  },
};

function jsonReport(r: PullResult): string {
  const doc = {
    repo: r.repo,
    revision: r.revision,
    commit: r.commit,
    path: r.snapshot,
    format: r.format,
    bytes: r.files.reduce((a, f) => a + f.size, 0),
    files: r.files.map((f) => ({ path: f.path, size: f.size, downloaded: f.downloaded, resumed_from: f.resumedFrom, verified: f.verified })),
  };
  return `${JSON.stringify(doc, null, 2)}\n`;
}

function humanReport(r: PullResult): string {
  const bytes = r.files.reduce((a, f) => a + f.size, 0);
  const fetched = r.files.filter((f) => f.downloaded);
  const resumed = fetched.filter((f) => f.resumedFrom > 0).length;
  const what = [`${fetched.length} downloaded`, ...(resumed ? [`${resumed} resumed`] : []), `${r.files.length - fetched.length} already cached`];
  const at = r.revision === r.commit ? r.commit : `${r.revision} (${r.commit.slice(0, 7)})`;
  return `pulled ${r.repo}@${at}: ${r.files.length} files, ${formatBytes(bytes)} (${what.join(', ')}), ${r.format}\n${r.snapshot}\n`;
}

// `sluice list [--json]`: the models in the shared HF cache (src/hub/cache.ts): name,
// revisions (refs and commits), size on disk, weight formats present.

import { listCachedModels, type CachedModel } from '../../hub/cache.js';
import { hubSettings } from '../../hub/settings.js';
import { SluiceError } from '../../errors.js';
import { parseCommandArgs } from '../args.js';
import { formatBytes, table } from '../format.js';
import type { Command } from '../io.js';

const USAGE = `Usage: sluice list [--json]

Lists the models in the HF cache ($HF_HUB_CACHE, else $HF_HOME/hub, else
~/.cache/huggingface/hub), whoever downloaded them (sluice pull, transformers,
huggingface-cli): name, revisions (branch or tag, and commit), size on disk, and the
weight formats present (safetensors, pytorch, gguf, onnx, …). Any of them can be used
as MODEL, e.g. sluice chat org/name, or org/name@REVISION.

Options:
  --json   one JSON document on stdout
  --debug  stack traces on errors
`;

export const listCommand: Command = {
  name: 'list',
  summary: 'list the models in the HF cache',
  usage: USAGE,
  usesGpu: false,
  async run(args, io) {
    const { values, positionals } = parseCommandArgs('list', args, { json: { type: 'boolean' } });
    if (positionals.length) throw new SluiceError('USAGE', `list: unexpected argument ${JSON.stringify(positionals[0])}`);
    const { cacheDir } = hubSettings();
    const { models, warnings } = await listCachedModels(cacheDir);
    for (const w of warnings) io.stderr(`sluice: skipped an unreadable cache entry: ${w}\n`);
    io.stdout(values.json ? jsonReport(cacheDir, models) : humanReport(cacheDir, models));
    return 0;
  },
};

function jsonReport(cacheDir: string, models: CachedModel[]): string {
  const doc = {
    cache_dir: cacheDir,
    models: models.map((m) => ({
      name: m.name,
      path: m.path,
      size: m.size,
      formats: m.formats,
      revisions: m.revisions.map((r) => ({ commit: r.commit, refs: r.refs, size: r.size, formats: r.formats, files: r.files })),
    })),
  };
  return `${JSON.stringify(doc, null, 2)}\n`;
}

function humanReport(cacheDir: string, models: CachedModel[]): string {
  if (!models.length) return `no models in the HF cache (${cacheDir}); 'sluice pull org/name' downloads one\n`;
  const revisions = (m: CachedModel) =>
    m.revisions.map((r) => (r.refs.length ? `${r.refs.join(', ')} (${r.commit.slice(0, 7)})` : r.commit.slice(0, 7))).join('; ');
  const rows = models.map((m) => [m.name, revisions(m), formatBytes(m.size), m.formats.join(', ') || 'no weights']);
  return `${table(['name', 'revisions', 'size', 'formats'], rows, [2])}\n${models.length} model${models.length === 1 ? '' : 's'} in ${cacheDir}\n`;
}

// `sluice rm org/name[@rev]`: removes a model from the shared HF cache, or one revision of
// it (its snapshot, its refs, and the blobs no other revision uses).

import { SluiceError } from '../../errors.js';
import { removeCachedModel } from '../../hub/cache.js';
import { formatModelName, parseModelName } from '../../hub/model-name.js';
import { hubSettings } from '../../hub/settings.js';
import { parseCommandArgs } from '../args.js';
import { formatBytes } from '../format.js';
import type { Command } from '../io.js';

const USAGE = `Usage: sluice rm org/name[@REVISION]

Removes a model from the HF cache ($HF_HUB_CACHE, else $HF_HOME/hub, else
~/.cache/huggingface/hub) — for transformers too, which shares it. With @REVISION (a
branch, tag or commit, as 'sluice list' shows), only that revision goes: its snapshot,
the refs pointing at it, and the files no other cached revision uses.

Options:
  --debug  stack traces on errors
`;

export const rmCommand: Command = {
  name: 'rm',
  summary: 'remove a model (or one revision) from the HF cache',
  usage: USAGE,
  usesGpu: false,
  async run(args, io) {
    const { positionals } = parseCommandArgs('rm', args, {});
    if (positionals.length !== 1) throw new SluiceError('USAGE', "rm: expected one model name, org/name[@REVISION] (see 'sluice rm --help')");
    const name = parseModelName(positionals[0]);
    if (!name) throw new SluiceError('USAGE', `rm: ${JSON.stringify(positionals[0])} is not a Hub model name (org/name or org/name@REVISION)`);
    const removal = await removeCachedModel(hubSettings().cacheDir, name);
    const what = removal.whole ? name.repo : `${formatModelName(name)} (${removal.commits[0].slice(0, 7)})`;
    io.stdout(`removed ${what}: ${formatBytes(removal.freed)} freed\n`);
    return 0;
  },
};

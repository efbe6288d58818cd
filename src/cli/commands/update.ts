import { openCheckpoint } from '../../checkpoint/open-path.js';
import { SluiceError } from '../../errors.js';
import { recoverCheckpoint, updateCheckpoint, type UpdateReport } from '../../formats/safetensors/update.js';
import type { RecoveryReport } from '../../formats/safetensors/transaction.js';
import { parseCommandArgs } from '../args.js';
import { formatBytes } from '../format.js';
import type { Command } from '../io.js';

const USAGE = `Usage: sluice update FILE [--from PATCH.safetensors] [--delete NAME]... [--rename OLD=NEW]... [--recover] [--json]

Replace, delete or rename tensors of a safetensors checkpoint without rewriting it whole.

FILE  a .safetensors file, a directory, or a model.safetensors.index.json (each tensor is
      updated in its shard; a multi-shard update is still all or nothing)

Options:
  --from PATCH     replace the tensors PATCH holds, in place: each must exist in FILE with the
                   same dtype and shape. Crash-safe: the original bytes go to a journal first,
                   and any later open of FILE rolls an interrupted update back
  --delete NAME    remove a tensor (repeatable); rewrites the file atomically
  --rename OLD=NEW rename a tensor (repeatable); rewrites the file atomically
  --recover        only roll back an interrupted update, and say what was done
  --lock-timeout S seconds to wait for another updater of FILE (default 60)
  --json           one JSON document on stdout
  --debug          stack traces on errors
`;

export const updateCommand: Command = {
  name: 'update',
  summary: 'replace, delete or rename tensors of a safetensors file in place, crash-safe',
  usage: USAGE,
  usesGpu: false,
  async run(args, io) {
    const { values, positionals } = parseCommandArgs('update', args, {
      from: { type: 'string' },
      delete: { type: 'string', multiple: true },
      rename: { type: 'string', multiple: true },
      recover: { type: 'boolean' },
      'lock-timeout': { type: 'string' },
      json: { type: 'boolean' },
    });
    if (positionals.length !== 1) throw new SluiceError('USAGE', "update: expected one FILE (see 'sluice update --help')");
    const [path] = positionals;
    const timeout = values['lock-timeout'] === undefined ? 60 : Number(values['lock-timeout']);
    if (!Number.isFinite(timeout) || timeout < 0) throw new SluiceError('USAGE', `update: --lock-timeout must be a number of seconds`);
    const lock = {
      timeoutMs: timeout * 1000,
      onWait: (h: { pid: number }) => io.stderr(`sluice: waiting for process ${h.pid}, which is updating ${path}\n`),
    };
    const renames = ((values.rename as string[] | undefined) ?? []).map((pair): [string, string] => {
      const at = pair.indexOf('=');
      if (at <= 0 || at === pair.length - 1) throw new SluiceError('USAGE', `update: --rename expects OLD=NEW, got ${JSON.stringify(pair)}`);
      return [pair.slice(0, at), pair.slice(at + 1)];
    });
    const deletes = (values.delete as string[] | undefined) ?? [];

    if (values.recover) {
      if (values.from || deletes.length || renames.length) throw new SluiceError('USAGE', 'update: --recover takes no other change');
      const recovered = await recoverCheckpoint(path, lock);
      io.stdout(values.json ? `${JSON.stringify({ target: path, recovered }, null, 2)}\n` : describeRecovery(path, recovered));
      return 0;
    }
    if (!values.from && !deletes.length && !renames.length) {
      throw new SluiceError('USAGE', "update: nothing to do: give --from, --delete, --rename or --recover (see 'sluice update --help')");
    }
    const patch = values.from ? await openCheckpoint(values.from as string) : undefined;
    try {
      const report = await updateCheckpoint(path, { from: patch, delete: deletes, rename: renames, lock });
      io.stdout(values.json ? `${JSON.stringify(report, null, 2)}\n` : describeUpdate(report));
      return 0;
    } finally {
      await patch?.close();
    }
  },
};

function describeRecovery(path: string, recovered: RecoveryReport[]): string {
  if (!recovered.length) return `${path}: no interrupted update to recover\n`;
  return recovered.map(recoveryLine).join('');
}

function recoveryLine(r: RecoveryReport): string {
  return r.action === 'rolled-back'
    ? `${r.file}: rolled back an interrupted update (${r.ranges} range${r.ranges === 1 ? '' : 's'}, ${formatBytes(r.bytes)})\n`
    : `${r.file}: removed the journal of an update that had completed\n`;
}

function describeUpdate(r: UpdateReport): string {
  const lines = r.recovered.map(recoveryLine);
  for (const t of r.replaced) lines.push(`replaced ${t.name} (${formatBytes(t.bytes)}) in ${t.file}\n`);
  for (const name of r.deleted) lines.push(`deleted ${name}\n`);
  for (const { from, to } of r.renamed) lines.push(`renamed ${from} → ${to}\n`);
  const how = r.mode === 'in-place' ? 'in place' : 'by atomic rewrite';
  lines.push(`${r.target}: ${r.files.length} file${r.files.length === 1 ? '' : 's'} updated ${how}, ${formatBytes(r.bytesWritten)} written\n`);
  return lines.join('');
}


import { main } from '../../src/cli/main.js';

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `sluice ARGV` in-process and captures what it printed. */
export async function runCli(argv: string[], isTty = false): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  const code = await main(argv, {
    stdout: (t) => void (stdout += t),
    stderr: (t) => void (stderr += t),
    isTty,
  });
  return { code, stdout, stderr };
}

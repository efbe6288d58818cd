// What a command may touch of the terminal. The CLI owns the terminal; commands write
// through this so tests can run them in-process and read what they printed.

export interface CliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  /** Whether stdout is a terminal (progress bars, colours). */
  isTty: boolean;
}

export const processIo: CliIo = {
  stdout: (text) => void process.stdout.write(text),
  stderr: (text) => void process.stderr.write(text),
  isTty: Boolean(process.stdout.isTTY),
};

/** A command: parses its own arguments (util.parseArgs) and returns the exit code. */
export interface Command {
  name: string;
  summary: string;
  usage: string;
  /** Whether it acquires a GPU device (the launcher then filters Dawn's stderr noise). */
  usesGpu: boolean;
  run(args: string[], io: CliIo): Promise<number>;
}

import type { Command } from '../io.js';
import { gpuCommand } from './gpu.js';
import { inspectCommand } from './inspect.js';

/** Every `sluice` command, in the order `sluice --help` lists them. */
export const commands: Command[] = [inspectCommand, gpuCommand];

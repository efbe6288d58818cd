import type { Command } from '../io.js';
import { benchCommand } from './bench.js';
import { chatCommand } from './chat.js';
import { convertCommand } from './convert.js';
import { generateCommand } from './generate.js';
import { gpuCommand } from './gpu.js';
import { inspectCommand } from './inspect.js';
import { listCommand } from './list.js';
import { pullCommand } from './pull.js';
import { rmCommand } from './rm.js';
import { serveCommand } from './serve.js';
import { updateCommand } from './update.js';

/** Every `sluice` command, in the order `sluice --help` lists them. */
export const commands: Command[] = [inspectCommand, convertCommand, updateCommand, generateCommand, chatCommand, serveCommand, pullCommand, listCommand, rmCommand, benchCommand, gpuCommand];

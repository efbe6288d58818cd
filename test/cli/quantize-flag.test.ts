// --quantize q8|q4 on the model commands: the embedded tiny-chat model, its projections
// quantized on the GPU as they load, still answers; a bad value is a usage error.

import { describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';

describe('--quantize', () => {
  it.each(['q8', 'q4'])('chat --quantize %s: the embedded model answers the addition', async (q) => {
    const { code, stdout, stderr } = await runCli(['chat', '--prompt', 'What is 23 + 58?', '--quantize', q, '--json']);
    expect([code, stderr]).toEqual([0, '']);
    expect(JSON.parse(stdout).text).toBe('23 + 58 = 81.');
  });

  it('a value other than q8 or q4 is refused in one line, exit 2', async () => {
    const { code, stderr } = await runCli(['generate', 'models/tiny-chat', '--prompt', 'x', '--quantize', 'q3']);
    expect([code, stderr]).toEqual([2, 'sluice: generate: --quantize must be q8 or q4, not "q3"\n']);
  });
});

// Issue 21 with a grammar: no JS allocation per decode step on the Engine's path when a
// constrained request decodes beside a free one (its row's mask is filled through its
// slot's callback, made once). Its own file, its own process: the free scenario's optimized
// code would deoptimize here. How allocations are counted: test/support/engine-allocations.ts.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { loadTokenizer } from '../../src/text/tokenizer.js';
import { writeChatModel } from '../support/byte-tokenizer.js';
import { COUNTED, MODEL_DIR, useEngineAllocations } from '../support/engine-allocations.js';
import { readerFor } from '../text/fixtures.js';

const EOS = 2; // the byte tokenizer's <|im_end|> (test/support/byte-tokenizer.ts)
const unexpectedAllocations = useEngineAllocations('test.scheduler-allocations-grammar');

it('none per step with a grammar-constrained row beside a free one', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-scheduler-allocations-'));
  try {
    writeChatModel(MODEL_DIR, dir);
    const tokenizer = await loadTokenizer(readerFor(dir), dir);
    // Complete only after a d, which the bias keeps from being drawn (no frequency penalty
    // on a, b and c to outweigh it): the reply runs past the counted steps.
    const [d] = tokenizer.encode('d');
    const constrained = { grammar: { regex: '[a-c]*d' }, eosIds: [EOS], logitBias: new Map([[d, -100]]), frequencyPenalty: 0, presencePenalty: 0 };
    const { unexpected, seen } = await unexpectedAllocations(tokenizer, [constrained, {}]);
    expect(unexpected, `allocations per step of the functions not INHERENT (each run's counts over ${COUNTED} steps: ${seen})`).toEqual([]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// Issue 21: no JS allocation per decode step on the Engine's path (`sluice chat`, `sluice
// serve`): two free requests decode at once in two slots. How allocations are counted, what
// is not asserted and why: test/support/engine-allocations.ts.

import { expect, it } from 'vitest';
import { COUNTED, useEngineAllocations } from '../support/engine-allocations.js';

const unexpectedAllocations = useEngineAllocations('test.scheduler-allocations');

it('none per step in the step loop, the backend, the sampler or the model pass', async () => {
  const { unexpected, seen } = await unexpectedAllocations(null, [{}, {}]);
  expect(unexpected, `allocations per step of the functions not INHERENT (each run's counts over ${COUNTED} steps: ${seen})`).toEqual([]);
});

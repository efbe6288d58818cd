// Counting JS allocations: V8's sampling heap profiler (the inspector's
// HeapProfiler.startSampling) at a 1-byte mean interval takes a sample at every allocation,
// with the JS stack that made it, objects already collected included. Each sample is
// charged to the innermost frame of JavaScript source (a file or a node: module, not a
// builtin such as Promise or Array.prototype.slice, nor a native binding such as
// GPUBuffer.getMappedRange): what a builtin or the WebGPU binding allocates counts for the
// function that called it. Cold code boxes numbers (an interpreted float op allocates a
// HeapNumber), so count only code warmed up to the optimizing tier.

import { Session } from 'node:inspector/promises';

export interface Frame {
  functionName: string;
  url: string;
}

// The parts of the protocol's SamplingHeapProfile read here (@types/node's copy predates
// node ids and samples, which the DevTools protocol has had since Chrome 66).
interface ProfileNode {
  id: number;
  callFrame: Frame;
  children: ProfileNode[];
}
interface Profile {
  head: ProfileNode;
  samples: { nodeId: number }[];
}

/**
 * Runs `run` under the profiler; returns, per key, the allocations charged to frames
 * `charge` names (a frame it gives null is not counted).
 */
export async function countAllocations(run: () => Promise<void>, charge: (frame: Frame) => string | null): Promise<Map<string, number>> {
  const session = new Session();
  session.connect();
  let profile: Profile;
  try {
    await session.post('HeapProfiler.enable');
    await session.post('HeapProfiler.startSampling', { samplingInterval: 1, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
    try {
      await run();
    } finally {
      profile = (await session.post('HeapProfiler.stopSampling')).profile as unknown as Profile;
    }
    await session.post('HeapProfiler.disable');
  } finally {
    session.disconnect();
  }
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, ProfileNode>();
  const index = (node: ProfileNode) => {
    byId.set(node.id, node);
    for (const child of node.children) {
      parent.set(child.id, node);
      index(child);
    }
  };
  index(profile.head);
  const counts = new Map<string, number>();
  for (const sample of profile.samples) {
    let node = byId.get(sample.nodeId);
    while (node && !node.callFrame.url) node = parent.get(node.id);
    const key = node ? charge(node.callFrame) : null;
    if (key !== null) counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
}

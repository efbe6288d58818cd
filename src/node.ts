// sluice for Node: everything in the browser-safe API plus local files, path resolution,
// streaming checksums and Dawn's WebGPU device.

export * from './index.js';
export { FileSource } from './io/file-source.js';
export { openCheckpoint, type OpenOptions } from './checkpoint/open-path.js';
export { tensorSha256 } from './checkpoint/checksum.js';
export { acquireNodeDevice, nodeGpu } from './gpu/node-gpu.js';

// Safetensors writing to disk: single files, sharded directories, atomic replacement
export { writeSafetensors, writeSafetensorsPlan, type WriteSafetensorsOptions, type WrittenFile } from './formats/safetensors/write-file.js';
export {
  parseSize, planShards, writeShardedSafetensors,
  type ShardItem, type ShardedWriteOptions, type ShardedWriteResult,
} from './formats/safetensors/sharded-writer.js';
export { fsyncDir, writeAll, writeFileAtomic, type AtomicWriteOptions } from './io/atomic-file.js';

// In-place updates: journaled, locked; an interrupted one is refused by readers and
// rolled back by recoverCheckpoint (`sluice update --recover`) or the next update
export { recoverCheckpoint, updateCheckpoint, type UpdateOptions, type UpdateReport } from './formats/safetensors/update.js';
export { checkNoPendingUpdate, type RecoveryReport } from './formats/safetensors/transaction.js';
export { ModelFolder } from './io/model-folder.js';

// Model directories on disk (or behind a base URL)
export { openModel, type OpenedModel, type OpenModelOptions } from './model/open-model.js';
export { loadModel, type LoadModelApiOptions, type SluiceModel } from './generate/load-model.js';

// Models by name: the HF cache that transformers shares, and pulls from the Hub
export { resolveModel, type ResolveOptions, type ResolvedModel } from './hub/resolve.js';
export { pullModel, type PullOptions, type PullProgress, type PullResult } from './hub/pull.js';
export { listCachedModels, removeCachedModel, type CachedModel, type CachedRevision } from './hub/cache.js';
export { parseModelName, formatModelName, type ModelName } from './hub/model-name.js';
export { hubSettings, type HubSettings } from './hub/settings.js';

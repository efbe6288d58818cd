// sluice for Node: everything in the browser-safe API plus local files, path resolution,
// streaming checksums and Dawn's WebGPU device.

export * from './index.js';
export { FileSource } from './io/file-source.js';
export { openCheckpoint, type OpenOptions } from './checkpoint/open-path.js';
export { tensorSha256 } from './checkpoint/checksum.js';
export { acquireNodeDevice, nodeGpu } from './gpu/node-gpu.js';

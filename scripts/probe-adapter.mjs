// Prints the WebGPU adapter Dawn finds, or exits 1 when there is none.
// Used by scripts/setup.sh before anything is compiled, so it is plain JS.
import { create, globals } from 'webgpu';

Object.assign(globalThis, globals);
const adapter = await create([]).requestAdapter();
if (!adapter) {
  console.error('no WebGPU adapter');
  process.exit(1);
}
const { vendor, architecture, description } = adapter.info;
console.log(`${vendor} ${architecture} ${description}`.trim());
process.exit(0);

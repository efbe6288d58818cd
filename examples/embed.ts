// sluice in ten lines: load a model, stream a chat reply, free the GPU.
// Run (after npm run build): on Node ≥ 22.6 `node --experimental-strip-types examples/embed.ts DIR`;
// on Node 20 it typechecks with the project (npm test) and runs once compiled by tsc.
import { loadModel } from 'sluice/node';

const model = await loadModel(process.argv[2] ?? 'models/tiny-chat', {
  onProgress: (p) => p.phase === 'upload' && process.stderr.write(`\rloading ${(p.bytesDone / 1e6).toFixed(1)} / ${(p.bytesTotal / 1e6).toFixed(1)} MB`),
});
process.stderr.write('\n');
for await (const delta of model.chat([{ role: 'user', content: 'What is 23 + 58?' }], { temperature: 0 })) process.stdout.write(delta.text);
process.stdout.write('\n');
model.dispose();

// The full held-out eval of models/tiny-chat through sluice: every prompt of eval.json as a
// fresh single-turn chat (no system message), greedy, f32 compute on the BF16 weights.
// Prints the exact-answer accuracy per family and how many replies equal the torch replies
// stored in eval.json (parity). Exits 1 when a goal is missed (≥ 95% add and repeat, 100%
// capital) or parity fails.
//
// Usage: npm run build && node scripts/eval-tiny-chat.mjs [MODEL_DIR] [--limit N] [--show-misses] [--quantize q8|q4] [--dtype f16|f32]
// With --quantize (or --dtype f16) parity with the torch replies is reported, not required.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { acquireNodeDevice, ChatSession, ModelBatchBackend, openModel } from '../dist/node.js';
import { Engine } from '../dist/generate/engine.js';

const args = process.argv.slice(2);
const flag = (name) => {
  const i = args.indexOf(name);
  const valued = ['--limit', '--quantize', '--dtype'].includes(name);
  return i < 0 ? undefined : args.splice(i, valued ? 2 : 1)[valued ? 1 : 0];
};
const limit = Number(flag('--limit') ?? Infinity);
const showMisses = flag('--show-misses') !== undefined;
const quantize = flag('--quantize');
const dtype = flag('--dtype') ?? 'f32';
const dir = args[0] ?? fileURLToPath(new URL('../models/tiny-chat', import.meta.url));
const GOALS = { add: 0.95, repeat: 0.95, capital: 1 };

const evaluation = JSON.parse(readFileSync(join(dir, 'eval.json'), 'utf8'));
const seen = {};
const items = evaluation.items.filter((i) => (seen[i.family] = (seen[i.family] ?? 0) + 1) <= limit);

const context = await acquireNodeDevice({ label: 'eval-tiny-chat' });
const opened = await openModel(dir, context.device, { dtype, quantize, contextLength: 128 });
const backend = await ModelBatchBackend.create(opened.model);
const { model, tokenizer, chatTemplate: template, eosIds, defaults } = opened;

const score = {};
const misses = [];
const started = performance.now();
for (const item of items) {
  const session = new ChatSession(new Engine({ model, backend, tokenizer, template, eosIds, defaults }));
  let text = '';
  for await (const delta of session.send(item.prompt, { temperature: 0, maxTokens: defaults.maxTokens })) text += delta.text;
  const s = (score[item.family] ??= { n: 0, exact: 0, parity: 0 });
  s.n++;
  s.exact += text === item.expected ? 1 : 0;
  s.parity += text === item.output ? 1 : 0;
  if (text !== item.expected) misses.push(`${item.family}: ${item.prompt} → ${JSON.stringify(text)}`);
  if (text !== item.output) misses.push(`  parity: sluice ${JSON.stringify(text)}, torch ${JSON.stringify(item.output)}`);
}
const seconds = (performance.now() - started) / 1000;
backend.destroy();
opened.dispose();
context.destroy();

let ok = true;
const exactRun = dtype === 'f32' && !quantize; // parity with torch is required only here
console.log(`${dir}: ${items.length} prompts in ${seconds.toFixed(1)} s, greedy, ${dtype} compute${quantize ? `, ${quantize} weights` : ''}`);
console.log('family    exact          torch (eval.json)   parity with torch');
for (const [family, s] of Object.entries(score)) {
  const acc = s.exact / s.n;
  const goal = GOALS[family];
  if ((goal !== undefined && acc < goal) || (exactRun && s.parity !== s.n)) ok = false;
  const torch = evaluation.accuracy[family];
  console.log(`${family.padEnd(9)} ${`${s.exact}/${s.n}`.padStart(7)} ${(100 * acc).toFixed(1).padStart(5)}%   ${torch === undefined ? '' : `${(100 * torch).toFixed(1)}%`.padStart(6)}              ${s.parity}/${s.n}${goal === undefined ? '' : `   (goal ${100 * goal}%)`}`);
}
if (showMisses) for (const m of misses) console.log(m);
console.log(ok ? 'goals met, replies equal torch' : 'FAILED: a goal is missed or a reply differs from torch');
process.exitCode = ok ? 0 : 1;

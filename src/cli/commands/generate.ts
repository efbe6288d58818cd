// `sluice generate MODEL (--prompt TEXT | --ids 1,2,3) [sampling] [--json]`: raw
// completion, no chat template. Text streams to stdout as it is generated.

import { SluiceError } from '../../errors.js';
import { parseCommandArgs, templateVarOption } from '../args.js';
import type { Command } from '../io.js';
import { modelSource } from '../model-source.js';
import { compileGrammarFlag, GRAMMAR_OPTIONS_HELP, grammarFlag, grammarJson, grammarOptions } from '../grammar-args.js';
import { engineOf, MODEL_OPTIONS_HELP, modelOptions, modelSettings, timingsJson, withModel } from '../model-args.js';

const usage = `Usage: sluice generate MODEL (--prompt TEXT | --ids 1,2,3) [options]

Continues a raw prompt (no chat template) with the model MODEL (see below), streaming
the text to stdout. --prompt is tokenized with the model's tokenizer (adding its bos
token, as transformers does); --ids gives token ids directly (no tokenizer needed).
No chat template is applied, so --template-var is refused: use sluice chat (or put
the template's text in --prompt).

${GRAMMAR_OPTIONS_HELP}

${MODEL_OPTIONS_HELP}

--json prints {"ids": [...], "text": "...", "prompt_tokens": N, "stop_reason": "...",
"timings": {"ttft_ms", "prefill_tokens_per_second", "decode_tokens_per_second"}}, and with
a grammar "grammar": {"compile_ms", "mask_ms_per_token"} (host time of the masks).
`;

export const generateCommand: Command = {
  name: 'generate',
  summary: 'continue a raw prompt (no chat template)',
  usage,
  usesGpu: true,
  async run(args, io) {
    const { values, positionals } = parseCommandArgs('generate', args, { ...modelOptions, ...grammarOptions, ...templateVarOption, prompt: { type: 'string' }, ids: { type: 'string' } });
    // Parsed only to be refused in words: generate never renders a chat template.
    if (values['template-var'] !== undefined) throw new SluiceError('USAGE', 'generate: --template-var is for chat templates, and generate applies none (raw text); use sluice chat or sluice serve');
    const [model, extra] = positionals;
    if (!model) throw new SluiceError('USAGE', "generate: which model? (sluice generate MODEL --prompt TEXT; see 'sluice generate --help')");
    if (extra !== undefined) throw new SluiceError('USAGE', `generate: unexpected argument ${JSON.stringify(extra)}`);
    if ((values.prompt === undefined) === (values.ids === undefined)) throw new SluiceError('USAGE', 'generate: give --prompt TEXT or --ids 1,2,3 (one of them)');
    const settings = modelSettings('generate', values);
    const ids = values.ids === undefined ? null : parseIds(values.ids as string);
    const grammar = await grammarFlag('generate', values); // checked before the model loads
    const json = Boolean(values.json);
    const { path: dir } = await modelSource(model, io, { download: true, offline: Boolean(values.offline), quiet: json });

    await withModel(dir, io, settings, json, async (opened, sampler) => {
      const { tokenizer } = opened;
      if (!ids && !tokenizer) throw new SluiceError('NOT_FOUND', `${dir}: no tokenizer.json, so --prompt cannot be tokenized; use --ids`);
      const compiled = grammar && compileGrammarFlag('generate', grammar, tokenizer, opened.model.config.vocabSize, opened.eosIds);
      const out: number[] = [];
      let text = '';
      const run = engineOf(opened, sampler).generate(ids ?? (values.prompt as string), { ...settings.generate, ...(compiled && { grammar: compiled }) });
      let r = await run.next();
      while (!r.done) {
        out.push(...r.value.ids);
        text += r.value.text;
        if (!json) io.stdout(tokenizer ? r.value.text : r.value.ids.map((id) => `${id} `).join(''));
        r = await run.next();
      }
      const s = r.value;
      if (json) {
        const doc = {
          ids: out,
          text,
          prompt_tokens: s.promptTokens,
          generated_tokens: s.generatedTokens,
          stop_reason: s.stopReason,
          timings: timingsJson(s),
          ...(compiled && { grammar: grammarJson(compiled, s) }),
        };
        io.stdout(`${JSON.stringify(doc, null, 2)}\n`);
      } else {
        io.stdout('\n');
        if (io.isTty) io.stderr(`[${s.promptTokens} prompt tokens, ${s.generatedTokens} generated; ${s.prefillTokensPerSecond.toFixed(1)} tok/s prefill, ${s.decodeTokensPerSecond.toFixed(1)} tok/s decode; ${s.stopReason}]\n`);
      }
    });
    return 0;
  },
};

function parseIds(text: string): number[] {
  const ids = text.split(/[\s,]+/).filter(Boolean).map(Number);
  if (!ids.length || ids.some((id) => !Number.isSafeInteger(id) || id < 0)) {
    throw new SluiceError('USAGE', `generate: --ids must be token ids separated by commas, not ${JSON.stringify(text)}`);
  }
  return ids;
}

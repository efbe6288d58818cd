// `sluice chat [MODEL] [--prompt TEXT] [--system TEXT] [--template-var K=V] [sampling] [--json]`: a chat
// REPL over the model's chat template (one turn with --prompt). Earlier turns stay in the
// KV cache: each turn prefills only its own tokens.

import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { SluiceError } from '../../errors.js';
import { ChatSession, type ChatTurnStats } from '../../generate/chat-session.js';
import type { ChatOptions } from '../../generate/engine.js';
import { parseCommandArgs, TEMPLATE_VAR_HELP, templateVarOption, templateVarsFlag } from '../args.js';
import type { CliIo, Command } from '../io.js';
import { modelSource } from '../model-source.js';
import { compileGrammarFlag, GRAMMAR_OPTIONS_HELP, grammarFlag, grammarOptions } from '../grammar-args.js';
import { engineOf, MODEL_OPTIONS_HELP, modelOptions, modelSettings, timingsJson, withModel } from '../model-args.js';

/** The embedded default model (models/tiny-chat, trained by scripts/train-tiny-chat.py), shipped with the package. */
export const DEFAULT_MODEL_DIR = fileURLToPath(new URL('../../../models/tiny-chat', import.meta.url));

const usage = `Usage: sluice chat [MODEL] [--prompt TEXT] [--system TEXT] [options]

Chats with the model MODEL (default: the embedded model; see below) using its chat
template. Without --prompt it is a REPL: type a message, Enter sends it; /reset forgets
the conversation; /exit or Ctrl-D quits; Ctrl-C stops a reply. With --prompt it answers
one message and exits.

  --system TEXT            a system message first
${TEMPLATE_VAR_HELP}

${GRAMMAR_OPTIONS_HELP}
  In the REPL every reply is constrained (compiled once; each reply starts the grammar anew).

${MODEL_OPTIONS_HELP}

--json (with --prompt) prints {"text", "ids", "prompt_tokens", "reused_tokens",
"stop_reason", "timings": {...}}.
`;

export const chatCommand: Command = {
  name: 'chat',
  summary: 'chat with a model (REPL, or one turn with --prompt)',
  usage,
  usesGpu: true,
  async run(args, io) {
    const { values, positionals } = parseCommandArgs('chat', args, { ...modelOptions, ...grammarOptions, ...templateVarOption, prompt: { type: 'string' }, system: { type: 'string' } });
    if (positionals.length > 1) throw new SluiceError('USAGE', `chat: unexpected argument ${JSON.stringify(positionals[1])}`);
    if (positionals[0] === undefined && !existsSync(DEFAULT_MODEL_DIR)) {
      throw new SluiceError('NOT_FOUND', `no MODEL given, and the embedded default model is not in this build (${DEFAULT_MODEL_DIR}); pass a model directory`);
    }
    const settings = modelSettings('chat', values);
    const templateVariables = templateVarsFlag('chat', values);
    const grammar = await grammarFlag('chat', values); // checked before the model loads
    const json = Boolean(values.json);
    if (json && values.prompt === undefined) throw new SluiceError('USAGE', 'chat: --json needs --prompt (one turn)');
    const dir = positionals[0] === undefined ? DEFAULT_MODEL_DIR : (await modelSource(positionals[0], io, { download: true, offline: Boolean(values.offline), quiet: json })).path;

    await withModel(dir, io, settings, json, async (opened, sampler) => {
      if (!opened.tokenizer || !opened.chatTemplate) throw opened.chatTemplateError ?? new SluiceError('NOT_FOUND', `${dir}: no chat template`);
      const engine = engineOf(opened, sampler);
      const session = new ChatSession(engine, values.system as string | undefined, (notice) => io.stderr(`[${notice}]\n`));
      const compiled = grammar && compileGrammarFlag('chat', grammar, opened.tokenizer, opened.model.config.vocabSize, opened.eosIds);
      const options: ChatOptions = { ...settings.generate, templateVariables, ...(compiled && { grammar: compiled }) };
      if (values.prompt === undefined) return repl(session, options, io);
      const { text, ids, stats } = await turn(session, values.prompt as string, options, json ? null : io);
      io.stdout(json ? `${JSON.stringify(turnJson(text, ids, stats), null, 2)}\n` : '\n');
    });
    return 0;
  },
};

async function turn(session: ChatSession, message: string, options: ChatOptions, io: CliIo | null): Promise<{ text: string; ids: number[]; stats: ChatTurnStats }> {
  let text = '';
  const ids: number[] = [];
  const run = session.send(message, options);
  let r = await run.next();
  while (!r.done) {
    text += r.value.text;
    ids.push(...r.value.ids);
    io?.stdout(r.value.text);
    r = await run.next();
  }
  return { text, ids, stats: r.value };
}

function turnJson(text: string, ids: number[], s: ChatTurnStats) {
  return {
    text,
    ids,
    prompt_tokens: s.promptTokens,
    reused_tokens: s.reusedTokens,
    generated_tokens: s.generatedTokens,
    stop_reason: s.stopReason,
    timings: timingsJson(s),
  };
}

async function repl(session: ChatSession, options: ChatOptions, io: CliIo): Promise<void> {
  const terminal = Boolean(process.stdin.isTTY);
  // Lines are read as an async stream, so input piped ahead of the replies (a script, a
  // test) waits its turn instead of racing the generation.
  const rl = createInterface({ input: process.stdin, output: terminal ? process.stdout : undefined, terminal });
  let reply: AbortController | null = null;
  rl.on('SIGINT', () => {
    if (reply) reply.abort(); // Ctrl-C stops the reply…
    else rl.close(); // …or, at the prompt, quits
  });
  rl.setPrompt('> ');
  if (terminal) rl.prompt();
  for await (const raw of rl) {
    const line = raw.trim();
    if (line === '/exit') break;
    if (line === '/reset') {
      session.reset();
      io.stderr('[conversation forgotten]\n');
    } else if (line !== '') {
      reply = new AbortController();
      try {
        const { stats } = await turn(session, raw, { ...options, signal: reply.signal }, io);
        io.stdout('\n');
        if (io.isTty) io.stderr(`[${stats.promptTokens - stats.reusedTokens} new prompt tokens, ${stats.generatedTokens} generated, ${stats.decodeTokensPerSecond.toFixed(1)} tok/s${stats.stopReason === 'abort' ? ', stopped' : ''}]\n`);
      } catch (e) {
        io.stderr(`sluice: ${(e as Error).message}\n`);
      } finally {
        reply = null;
      }
    }
    if (terminal) rl.prompt();
  }
  rl.close();
}

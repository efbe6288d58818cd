// `sluice serve [MODEL] [--host 127.0.0.1] [--port 8080] [--api-key KEY] [--cors ORIGIN]`:
// the OpenAI-compatible server (src/server/) over one model. SIGINT/SIGTERM stop it
// gracefully: no new connections, every request it holds answered 503 (a stream: an
// error event), the GPU freed, the process gone.

import { existsSync } from 'node:fs';
import { SluiceError } from '../../errors.js';
import { loadModel } from '../../generate/load-model.js';
import { MAX_PARALLEL } from '../../model/llama.js';
import { startServer } from '../../server/server.js';
import { kernelsFlag, quantizeFlag } from '../model-args.js';
import { dtypeFlag, parseCommandArgs, templateVarOption, templateVarsFlag, wholeNumberFlag } from '../args.js';
import type { Command } from '../io.js';
import { modelSource } from '../model-source.js';
import { loadProgressBar } from '../progress.js';
import { DEFAULT_MODEL_DIR } from './chat.js';

const usage = `Usage: sluice serve [MODEL] [--host 127.0.0.1] [--port 8080] [--api-key KEY] [--cors ORIGIN] [options]

Serves the model in directory (or base URL) MODEL — or org/name[@REVISION] from the HF
cache, downloaded there if missing; default: the embedded model — over
OpenAI's API: POST /v1/chat/completions and /v1/completions (stream: true for
server-sent events), GET /v1/models, GET /health. Extra sampling fields top_k, min_p
and repetition_penalty are accepted, as llama-server does, and chat_template_kwargs
(an object of chat template variables, as vLLM and llama-server take it).

  --host H          address to bind (default 127.0.0.1: this machine only)
  --port N          port (default 8080; 0 = any free port)
  --api-key KEY     require "Authorization: Bearer KEY" on every request but /health (or
                    SLUICE_API_KEY). Without a key, only requests to this machine by name
                    (localhost, an IP address) are served, and web pages only from this
                    machine or a --cors origin: other pages cannot drive the server
  --cors ORIGIN     let web pages at ORIGIN (e.g. https://app.example:3000; * = any) call
                    the server and read its answers (repeatable)
  --parallel N      requests generated at once, each in its own KV cache slot of --context
                    positions (continuous batching; default 4); more wait for a slot
  --max-queue N     requests that may wait for a slot (default 16; beyond: HTTP 429)
  --offline         never download: org/name from the HF cache only (also HF_HUB_OFFLINE=1)
  --dtype auto|f16|f32, --context N, --quantize q8|q4, --kernels auto|software|gpu
                           as for sluice chat
  --template-var KEY=VALUE
                    a chat template variable of every chat request (repeatable; VALUE
                    as JSON when it parses, else text, as for sluice chat); a request's
                    chat_template_kwargs override these key by key
`;

/** Sequences `serve` decodes at once unless --parallel says otherwise. */
export const DEFAULT_SERVE_PARALLEL = 4;

export const serveCommand: Command = {
  name: 'serve',
  summary: 'OpenAI-compatible HTTP server',
  usage,
  usesGpu: true,
  async run(args, io) {
    const { values, positionals } = parseCommandArgs('serve', args, {
      host: { type: 'string' },
      port: { type: 'string' },
      'api-key': { type: 'string' },
      cors: { type: 'string', multiple: true },
      'max-queue': { type: 'string' },
      parallel: { type: 'string' },
      dtype: { type: 'string' },
      quantize: { type: 'string' },
      context: { type: 'string' },
      kernels: { type: 'string' },
      offline: { type: 'boolean' },
      ...templateVarOption,
    });
    if (positionals.length > 1) throw new SluiceError('USAGE', `serve: unexpected argument ${JSON.stringify(positionals[1])}`);
    if (positionals[0] === undefined && !existsSync(DEFAULT_MODEL_DIR)) throw new SluiceError('NOT_FOUND', `no MODEL given, and the embedded default model is not in this build (${DEFAULT_MODEL_DIR})`);
    const integer = (flag: string, min: number, max: number) => wholeNumberFlag('serve', values, flag, min, max);
    const port = integer('port', 0, 65535) ?? 8080;
    const quantize = quantizeFlag('serve', values);
    const templateVariables = templateVarsFlag('serve', values);
    const apiKey = (values['api-key'] as string | undefined) ?? process.env.SLUICE_API_KEY;
    if (apiKey === '') throw new SluiceError('USAGE', `serve: ${values['api-key'] === '' ? '--api-key' : 'SLUICE_API_KEY'} is empty: give a key, or leave it out`);
    const cors = (values.cors as string[] | undefined) ?? [];
    for (const origin of cors) if (origin !== '*' && !isOrigin(origin)) throw new SluiceError('USAGE', `serve: --cors ${JSON.stringify(origin)} is not an origin (scheme://host[:port], e.g. https://app.example:3000, or *)`);
    const resolved = positionals[0] === undefined ? { path: DEFAULT_MODEL_DIR } : await modelSource(positionals[0], io, { download: true, offline: Boolean(values.offline) });
    const source = resolved.path;

    const model = await loadModel(source, {
      dtype: dtypeFlag('serve', values),
      quantize,
      contextLength: integer('context', 1, 2 ** 24),
      kernels: kernelsFlag('serve', values),
      maxQueue: integer('max-queue', 0, 10_000),
      parallel: integer('parallel', 1, MAX_PARALLEL) ?? DEFAULT_SERVE_PARALLEL,
      templateVariables,
      // A Hub model is served under its repo name, not its snapshot folder (a commit sha).
      ...(resolved.name ? { name: resolved.name.repo } : {}),
      onProgress: loadProgressBar(io, true),
    });
    try {
      const server = await startServer([model], {
        host: (values.host as string | undefined) ?? '127.0.0.1',
        port,
        apiKey,
        cors,
      });
      io.stderr(`sluice: serving ${model.name} on ${server.url} (Ctrl-C stops)\n`);
      await new Promise<void>((resolve) => {
        const stop = (signal: string) => {
          io.stderr(`sluice: ${signal}: shutting down\n`);
          resolve();
        };
        process.once('SIGINT', () => stop('SIGINT'));
        process.once('SIGTERM', () => stop('SIGTERM'));
      });
      await server.close();
    } finally {
      model.dispose();
    }
    return 0;
  },
};

/** `https://app.example:3000` as a browser sends it in Origin (no path, no trailing slash). */
function isOrigin(text: string): boolean {
  try {
    return new URL(text).origin === text;
  } catch {
    return false;
  }
}

// The server's tokenizer thread (see prompt-encoder.ts): loads a model directory's
// tokenizer and chat template the way openModelSource does (the same loaders, the same
// files), then turns prompts into ids, one message at a time:
//   in:  { id, kind: 'chat', messages, variables, tools } | { id, kind: 'text', prompt }
//   out: { id, ids: Uint32Array (transferred) } | { id, error: { code, message } }
// First message out: { ready: true }. A failure to load ends the thread with an error.

import { parentPort, workerData } from 'node:worker_threads';
import { chatTemplateIds, rawTextIds } from '../generate/prompt-ids.js';
import { ModelFolder } from '../io/model-folder.js';
import { MAX_SIDE_FILE_BYTES } from '../model/open-model.js';
import { type ChatMessage, type ChatTemplate, loadChatTemplate } from '../text/chat-template.js';
import { loadTokenizer } from '../text/tokenizer.js';
import type { ToolDefinition } from '../text/tool-calls.js';

export type PromptJob = { id: number; kind: 'chat'; messages: ChatMessage[]; variables: Record<string, unknown>; tools: ToolDefinition[] | null } | { id: number; kind: 'text'; prompt: string };
export type PromptResult = { id: number; ids: Uint32Array } | { id: number; error: { code?: string; message: string } };

if (parentPort) {
  const port = parentPort;
  const { dir } = workerData as { dir: string };
  const folder = await ModelFolder.open(dir);
  const read = (name: string) => folder.readText(name, MAX_SIDE_FILE_BYTES);
  const tokenizer = await loadTokenizer(read, dir);
  let template: ChatTemplate | null = null;
  let templateError: Error | null = null;
  try {
    template = await loadChatTemplate(read, tokenizer);
  } catch (e) {
    templateError = e as Error;
  }
  port.on('message', (job: PromptJob) => {
    try {
      let ids: number[];
      if (job.kind === 'text') ids = rawTextIds(tokenizer, job.prompt);
      else if (template) ids = chatTemplateIds(tokenizer, template.withTools(job.tools), job.messages, job.variables);
      else throw templateError!;
      const packed = Uint32Array.from(ids);
      port.postMessage({ id: job.id, ids: packed } satisfies PromptResult, [packed.buffer]);
    } catch (e) {
      const error = e as Error & { code?: string };
      port.postMessage({ id: job.id, error: { code: error.code, message: error.message } } satisfies PromptResult);
    }
  });
  port.postMessage({ ready: true });
}

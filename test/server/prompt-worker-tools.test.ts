// The server's tokenizer thread (the compiled prompt-worker.js) renders a chat with tools,
// tool calls and tool results to exactly the ids the engine renders in-thread: a request
// with tools must not lose them on its way through the worker.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadModel, type SluiceModel } from '../../src/generate/load-model.js';
import { PromptEncoder } from '../../src/server/prompt-encoder.js';
import type { ChatMessage } from '../../src/text/chat-template.js';
import type { ToolDefinition } from '../../src/text/tool-calls.js';
import { ensureBuilt, root } from '../support/build.js';
import { useGpuTestDevice } from '../support/gpu-helpers.js';
import { HERMES_TEMPLATE, TEST_TOOLS, writeToolChatModel } from '../support/tools.js';

const gpu = useGpuTestDevice('test.prompt-worker-tools');
const dir = mkdtempSync(join(tmpdir(), 'sluice-worker-tools-'));
let model: SluiceModel;
let encoder: PromptEncoder;

beforeAll(async () => {
  await ensureBuilt();
  writeToolChatModel('test/fixtures/models/llama-gqa', dir, HERMES_TEMPLATE);
  model = await loadModel(dir, { device: gpu.device, dtype: 'f32', contextLength: 2048, parallel: 1 });
  encoder = new PromptEncoder(model, pathToFileURL(join(root, 'dist/server/prompt-worker.js')));
}, 120_000);
afterAll(async () => {
  await encoder?.close();
  model?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

it('renders tools, calls and results in the worker as the engine does', async () => {
  expect(await encoder.inWorker).toBe(true);
  const tools = TEST_TOOLS as unknown as ToolDefinition[];
  const messages: ChatMessage[] = [
    { role: 'user', content: 'Route?' },
    { role: 'assistant', content: '', tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'route', arguments: '{"from": {"x": 1, "y": 2}, "to": {"x": 3, "y": 4}}' } }] },
    { role: 'tool', content: '5 km', tool_call_id: 'call_1' },
  ];
  const here = model.engine.chatPromptIds(messages, undefined, tools);
  expect(model.engine.parts.tokenizer!.decode(here)).toContain('"name": "route", "arguments": {"from": {"x": 1, "y": 2}');
  expect(await encoder.chatIds(messages, undefined, undefined, tools)).toEqual(here);
  expect(await encoder.chatIds(messages, undefined)).toEqual(model.engine.chatPromptIds(messages));
  expect(here.length).toBeGreaterThan(model.engine.chatPromptIds(messages).length);
});

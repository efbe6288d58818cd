// The worker: owns the WebGPU device and the model, answers the page's requests (see
// protocol.ts). One model at a time; one reply at a time (the page disables Send while a
// reply streams, and the engine would queue anyway).

import {
  acquireDevice, createSluiceModel, type GpuContext, type GpuTensors, isSluiceError, openModelFromFiles, openModelFromUrl,
  type OpenModelOptions, type SluiceModel,
} from 'sluice/browser';
import { CACHE_NAME, type FromWorker, type ToWorker } from './protocol.js';

const scope = self as unknown as { postMessage(reply: FromWorker): void; onmessage: ((e: MessageEvent<ToWorker>) => void) | null };
const post = (reply: FromWorker) => scope.postMessage(reply);

let gpu: GpuContext | null = null;
let model: SluiceModel | null = null;
let generation: AbortController | null = null;

scope.onmessage = (e) => {
  handle(e.data).catch((error) => post(errorReply(error, 'id' in e.data ? e.data.id : undefined)));
};

async function handle(request: ToWorker): Promise<void> {
  switch (request.type) {
    case 'load':
      return load(request);
    case 'chat':
      return chat(request);
    case 'stop':
      generation?.abort();
      return;
    case 'unload':
      unload();
      return;
    case 'clear-cache': {
      // Cache Storage exists only in secure contexts (https, or localhost).
      if (!('caches' in self)) throw new Error('this page has no Cache Storage (it needs https or localhost), so nothing is cached');
      const cache = await caches.open(CACHE_NAME);
      const entries = (await cache.keys()).length;
      await caches.delete(CACHE_NAME);
      post({ type: 'cache-cleared', entries });
    }
  }
}

async function device(): Promise<GpuContext> {
  if (gpu) return gpu;
  gpu = await acquireDevice(navigator.gpu, {
    label: 'sluice.page',
    onLost: (error) => {
      gpu = null;
      model = null;
      post({ type: 'lost', message: error.message });
    },
  });
  const { adapterInfo, features, device: d } = gpu;
  post({
    type: 'gpu',
    gpu: {
      adapter: adapterInfo.description || [adapterInfo.vendor, adapterInfo.architecture, adapterInfo.device].filter(Boolean).join(' '),
      isSoftware: adapterInfo.isSoftware,
      f16: features.has('shader-f16'),
      maxBindingBytes: d.limits.maxStorageBufferBindingSize,
    },
  });
  return gpu;
}

async function load(request: Extract<ToWorker, { type: 'load' }>): Promise<void> {
  unload();
  const { device: d } = await device();
  const started = performance.now();
  const options: OpenModelOptions = {
    dtype: request.dtype,
    quantize: request.quantize,
    contextLength: request.contextLength,
    onProgress: (progress) => post({ type: 'progress', progress }),
  };
  const { source } = request;
  const opened = source.kind === 'files'
    ? await openModelFromFiles(source.files, d, options)
    : await openModelFromUrl(new URL(source.url, location.href).href, d, { ...options, cache: request.cache && 'caches' in self ? await caches.open(CACHE_NAME) : undefined });
  model = await createSluiceModel(opened);
  const { config } = model;
  const { defaults } = opened;
  post({
    type: 'loaded',
    model: {
      name: model.name,
      computeDtype: opened.model.dtype,
      contextLength: model.contextLength,
      layers: config.numLayers,
      parameters: parameterCount(opened.model.weights),
      quantize: request.quantize,
      deviceBytes: opened.model.weights.deviceBytes,
      quantizedBytes: opened.model.weights.quantizedBytes,
      defaults: { ...defaults, maxTokens: defaults.maxTokens ?? 256 },
      loadMs: performance.now() - started,
    },
  });
}

async function chat(request: Extract<ToWorker, { type: 'chat' }>): Promise<void> {
  if (!model) throw new Error('no model is loaded');
  generation = new AbortController();
  try {
    // JSON mode: the grammar of any JSON object (OpenAI's json_object), compiled once per
    // reply against the model's vocabulary; the sampler draws nothing else.
    const grammar = request.jsonMode ? { jsonObject: true as const } : undefined;
    const stream = model.chat(request.messages, { ...request.sampling, grammar, signal: generation.signal });
    for (let r = await stream.next(); ; r = await stream.next()) {
      if (r.done) {
        post({ type: 'done', id: request.id, stats: r.value });
        return;
      }
      if (r.value.text) post({ type: 'delta', id: request.id, text: r.value.text });
    }
  } finally {
    generation = null;
  }
}

function unload(): void {
  generation?.abort();
  model?.dispose();
  model = null;
}

/** Dense and quantized weights together (a quantized one is not in the dense map). */
function parameterCount(weights: GpuTensors): string {
  let n = 0;
  for (const t of [...weights.values(), ...weights.quantized.values()]) n += t.shape.reduce((a, b) => a * b, 1);
  return n >= 1e9 ? `${(n / 1e9).toFixed(2)}B` : n >= 1e6 ? `${(n / 1e6).toFixed(1)}M` : `${(n / 1e3).toFixed(0)}K`;
}

function errorReply(error: unknown, id?: number): FromWorker {
  if (isSluiceError(error)) return { type: 'error', id, code: error.code, message: error.message };
  const e = error as Error;
  return { type: 'error', id, code: e?.name === 'AbortError' ? 'ABORTED' : 'ERROR', message: e?.message ?? String(error) };
}

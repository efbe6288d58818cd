// The chat page's main thread: the controls, the progress bars and the conversation. The
// model lives in a Web Worker (worker.ts); this file only sends requests and draws replies.
// <body data-state> is idle | loading | ready | generating | error, for people and tests.

import { type ChatMessage, type CompletionStats, formatBytes, type ModelProgress } from 'sluice/browser';
import type { FromWorker, GpuSummary, LoadedSummary, ModelChoice, Quantize, Sampling, ToWorker } from './protocol.js';

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const input = (id: string) => $<HTMLInputElement>(id);

const worker = new Worker(new URL('./worker.ts', import.meta.url), { type: 'module' });
const send = (request: ToWorker) => worker.postMessage(request);

let history: ChatMessage[] = [];
let nextId = 1;
let current: { id: number; li: HTMLLIElement; text: string } | null = null;

function setState(state: 'idle' | 'loading' | 'ready' | 'generating' | 'error'): void {
  document.body.dataset.state = state;
  const busy = state === 'loading' || state === 'generating';
  $<HTMLButtonElement>('load-button').disabled = busy;
  $<HTMLButtonElement>('send').disabled = state !== 'ready';
  $<HTMLButtonElement>('stop').disabled = state !== 'generating';
}

// ───────────────────────────── errors ─────────────────────────────

const ERROR_TITLES: Record<string, string> = {
  NO_ADAPTER: 'No usable WebGPU adapter',
  DEVICE_LOST: 'The GPU device was lost',
  OUT_OF_MEMORY: 'Out of GPU memory',
  HTTP_ERROR: 'Download failed',
  NOT_FOUND: 'Missing file',
  UNSUPPORTED_ARCH: 'Model not supported',
};
const ERROR_HINTS: Record<string, string> = {
  NO_ADAPTER: 'Use a browser with WebGPU (Chrome/Edge 113+, or Firefox/Safari with WebGPU on), and check that hardware acceleration is enabled.',
  DEVICE_LOST: 'The GPU driver reset or the tab was in the background too long. Load the model again.',
  OUT_OF_MEMORY: 'Try a smaller model, a shorter context, or close other GPU-heavy tabs.',
};

function showError(code: string, message: string): void {
  const box = $('error');
  box.replaceChildren();
  const title = document.createElement('strong');
  title.textContent = ERROR_TITLES[code] ?? `Error (${code})`;
  box.append(title, message, ERROR_HINTS[code] ? `\n${ERROR_HINTS[code]}` : '');
  box.hidden = false;
}

const clearError = () => ($('error').hidden = true);

// ───────────────────────────── loading ─────────────────────────────

function chosenModel(): ModelChoice | null {
  const source = document.querySelector<HTMLInputElement>('input[name=source]:checked')!.value;
  if (source === 'embedded') return { kind: 'url', url: new URL('models/tiny-chat/', location.href).href };
  if (source === 'url') {
    const url = input('url').value.trim();
    if (!/^https?:\/\//.test(url)) return showError('USAGE', 'Enter the base URL of a model directory (http:// or https://).'), null;
    return { kind: 'url', url: url.endsWith('/') ? url : `${url}/` };
  }
  const files = Array.from(input('folder').files ?? []);
  if (files.length === 0) return showError('USAGE', 'Choose a model folder first.'), null;
  return { kind: 'files', files };
}

function load(): void {
  const source = chosenModel();
  if (!source) return;
  clearError();
  resetProgress();
  $('chat').hidden = true;
  $('model-info').textContent = '';
  setState('loading');
  const context = Number(input('context').value);
  send({
    type: 'load',
    source,
    dtype: $<HTMLSelectElement>('dtype').value as 'auto' | 'f16' | 'f32',
    quantize: ($<HTMLSelectElement>('weights').value || undefined) as Quantize,
    cache: input('cache').checked,
    contextLength: context > 0 ? context : undefined,
  });
}

/** Per phase: when it started, for the rate. */
const phaseStart = new Map<string, number>();
/** Bytes so far of each file downloaded in this load. */
const downloads = new Map<string, number>();

function resetProgress(): void {
  phaseStart.clear();
  downloads.clear();
  $('progress').hidden = false;
  for (const el of document.querySelectorAll<HTMLElement>('.phase')) {
    el.querySelector('progress')!.value = 0;
    el.querySelector('.detail')!.textContent = el.dataset.phase === 'download' ? 'not needed' : 'waiting';
  }
}

function drawPhase(phase: 'download' | 'upload' | 'kernels', fraction: number, detail: string): void {
  const el = document.querySelector<HTMLElement>(`.phase[data-phase=${phase}]`)!;
  el.querySelector('progress')!.value = Math.min(1, fraction);
  el.querySelector('.detail')!.textContent = detail;
}

/** Seconds since the phase's first report. */
function elapsed(phase: string): number {
  const now = performance.now();
  if (!phaseStart.has(phase)) phaseStart.set(phase, now);
  return (now - phaseStart.get(phase)!) / 1000;
}

function rate(phase: string, bytes: number): string {
  const seconds = elapsed(phase);
  return seconds > 0.05 ? ` · ${formatBytes(bytes / seconds)}/s` : '';
}

function onProgress(p: ModelProgress): void {
  if (p.phase === 'download') {
    // Files come one after another (config, tokenizer, then each shard): the bar shows the
    // file in flight, the text adds what all files so far came to.
    downloads.set(p.file, p.bytesDone);
    const file = p.file.split('/').pop();
    const what = p.fromCache ? `${file}: from cache` : `${file}: ${formatBytes(p.bytesDone)}${p.bytesTotal ? ` / ${formatBytes(p.bytesTotal)}` : ''}${rate(`download ${p.file}`, p.bytesDone)}`;
    const all = downloads.size > 1 ? ` · ${downloads.size} files, ${formatBytes([...downloads.values()].reduce((a, b) => a + b, 0))}` : '';
    drawPhase('download', p.bytesTotal ? p.bytesDone / p.bytesTotal : 1, what + all);
  } else if (p.phase === 'kernels') {
    const seconds = elapsed('kernels');
    const when = p.kernelsDone === p.kernelsTotal ? ` in ${seconds.toFixed(2)} s` : '';
    drawPhase('kernels', p.kernelsTotal ? p.kernelsDone / p.kernelsTotal : 1, `${p.kernelsDone} / ${p.kernelsTotal} pipelines${when}`);
  } else if (p.phase === 'compile') {
    drawPhase('upload', 0, 'compiling the converter');
  } else {
    const detail = p.phase === 'done'
      ? `${formatBytes(p.bytesTotal)} in ${p.tensorsTotal} tensors, ${elapsed('upload').toFixed(2)} s`
      : `${formatBytes(p.bytesDone)} / ${formatBytes(p.bytesTotal)}${rate('upload', p.bytesDone)} · ${p.tensor ?? ''}`;
    drawPhase('upload', p.bytesTotal ? p.bytesDone / p.bytesTotal : 1, detail);
  }
}

function onGpu(gpu: GpuSummary): void {
  const notes = [gpu.isSoftware ? 'a software renderer: correct, but slow' : '', gpu.f16 ? 'shader-f16' : 'no shader-f16: computing in F32 (twice the memory of F16)'];
  $('gpu').textContent = `WebGPU: ${gpu.adapter || 'adapter'} · ${notes.filter(Boolean).join(' · ')} · bindings up to ${formatBytes(gpu.maxBindingBytes)}`;
}

function onLoaded(m: LoadedSummary): void {
  const weights = m.quantize
    ? `${m.quantize} weights, ${formatBytes(m.deviceBytes)} on the GPU (${formatBytes(m.quantizedBytes)} ${m.quantize} + ${formatBytes(m.deviceBytes - m.quantizedBytes)} full precision)`
    : `${formatBytes(m.deviceBytes)} on the GPU`;
  $('model-info').textContent = `${m.name}: ${m.parameters} parameters, ${m.layers} layers, ${m.computeDtype}, ${weights}, context ${m.contextLength} · loaded in ${(m.loadMs / 1000).toFixed(2)} s`;
  fillSampling(m.defaults);
  newChat();
  $('chat').hidden = false;
  setState('ready');
  input('prompt').focus();
}

// ───────────────────────────── chat ─────────────────────────────

function fillSampling(d: Sampling): void {
  const set = (id: string, v: number | undefined) => (input(id).value = v === undefined ? '' : String(v));
  set('temperature', d.temperature ?? 1);
  set('top-p', d.topP ?? 1);
  set('top-k', d.topK ?? 50);
  set('repetition-penalty', d.repetitionPenalty ?? 1);
  set('max-tokens', d.maxTokens);
  set('seed', undefined);
}

function sampling(): Sampling {
  const num = (id: string) => (input(id).value === '' ? undefined : Number(input(id).value));
  return {
    temperature: num('temperature'),
    topP: num('top-p'),
    topK: num('top-k'),
    repetitionPenalty: num('repetition-penalty'),
    maxTokens: num('max-tokens'),
    seed: num('seed') ?? Math.floor(Math.random() * 2 ** 32),
  };
}

function addMessage(role: 'user' | 'assistant', text: string): HTMLLIElement {
  const li = document.createElement('li');
  li.className = role;
  li.textContent = text;
  $('messages').append(li);
  li.scrollIntoView({ block: 'end' });
  return li;
}

function submit(): void {
  const text = input('prompt').value.trim();
  if (!text || document.body.dataset.state !== 'ready') return;
  clearError();
  input('prompt').value = '';
  history.push({ role: 'user', content: text });
  addMessage('user', text);
  const li = addMessage('assistant', '');
  li.classList.add('streaming');
  current = { id: nextId++, li, text: '' };
  setState('generating');
  send({ type: 'chat', id: current.id, messages: history, sampling: sampling(), jsonMode: input('json-mode').checked });
}

function onDelta(id: number, text: string): void {
  if (current?.id !== id) return;
  current.text += text;
  current.li.textContent = current.text;
  current.li.scrollIntoView({ block: 'end' });
}

function onDone(id: number, s: CompletionStats): void {
  if (current?.id !== id) return;
  current.li.classList.remove('streaming');
  history.push({ role: 'assistant', content: current.text });
  current = null;
  const stopped = { eos: 'end of reply', stop: 'stop string', length: 'max tokens', abort: 'stopped', context: 'context full' }[s.stopReason];
  const g = s.grammar; // JSON mode: what the grammar cost on the host
  const json = g ? ` · JSON: compiled in ${g.compileMs.toFixed(0)} ms, masks ${(g.maskMs / Math.max(g.masks, 1)).toFixed(2)} ms/token` : '';
  $('stats').textContent =
    `TTFT ${s.ttftMs.toFixed(0)} ms · prefill ${s.promptTokens - s.reusedTokens} tokens at ${s.prefillTokensPerSecond.toFixed(0)} tok/s` +
    ` (${s.reusedTokens} reused) · ${s.generatedTokens} tokens at ${s.decodeTokensPerSecond.toFixed(1)} tok/s · ${stopped}${json}`;
  setState('ready');
}

function newChat(): void {
  history = [];
  $('messages').replaceChildren();
  $('stats').textContent = '';
}

// ───────────────────────────── wiring ─────────────────────────────

worker.onmessage = (e: MessageEvent<FromWorker>) => {
  const r = e.data;
  switch (r.type) {
    case 'gpu': return onGpu(r.gpu);
    case 'progress': return onProgress(r.progress);
    case 'loaded': return onLoaded(r.model);
    case 'delta': return onDelta(r.id, r.text);
    case 'done': return onDone(r.id, r.stats);
    case 'cache-cleared': return void ($('model-info').textContent = `cache cleared (${r.entries} files)`);
    case 'lost':
      showError('DEVICE_LOST', r.message);
      $('chat').hidden = true;
      return setState('error');
    case 'error':
      showError(r.code, r.message);
      if (r.id !== undefined && current?.id === r.id) {
        current.li.classList.remove('streaming');
        history.pop();
        current = null;
        return setState('ready');
      }
      return setState(document.body.dataset.state === 'generating' ? 'ready' : 'error');
  }
};
worker.onerror = (e) => {
  showError('ERROR', `the worker failed: ${e.message}`);
  setState('error');
};

$('load-button').onclick = load;
$('clear-cache').onclick = () => send({ type: 'clear-cache' });
$('stop').onclick = () => send({ type: 'stop' });
$('reset').onclick = newChat;
$('composer').onsubmit = (e) => {
  e.preventDefault();
  submit();
};
input('prompt').addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey) {
    e.preventDefault();
    submit();
  }
});
for (const el of [input('url'), input('folder')]) {
  el.addEventListener('input', () => (document.querySelector<HTMLInputElement>(`input[name=source][value=${el.id === 'url' ? 'url' : 'folder'}]`)!.checked = true));
}
if (!('gpu' in navigator)) {
  showError('NO_ADAPTER', 'This browser has no WebGPU (navigator.gpu is undefined).');
  setState('error');
} else setState('idle');

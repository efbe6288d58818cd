// The chat page end to end in a real browser: Debian's Chromium, headless, WebGPU on its
// bundled SwiftShader (no shader-f16, so the F32 path), driven by playwright-core. The
// page is built as users build it (npm run build:page) and served by `vite preview` on
// 127.0.0.1. It loads the embedded model, answers "What is 23 + 58?" in streamed deltas,
// and the answer must equal what `sluice chat --prompt` gives in Node; loaded with q4
// weights (quantized on the GPU as they stream in, f32 scales) it still answers. A
// screenshot is kept in test-artifacts/.

import { execFile } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { type Browser, type BrowserContext, chromium, type Page, type Request } from 'playwright-core';
import { type PreviewServer, preview } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';
import { root } from '../support/build.js';

// Debian's package; SLUICE_CHROMIUM names another build (setup.sh reads it too).
const CHROMIUM = process.env.SLUICE_CHROMIUM || '/usr/bin/chromium';
const PROMPT = 'What is 23 + 58?';
const artifacts = join(root, 'test-artifacts');
// Flags for a headless Chromium on a machine with no GPU and no network: WebGPU on
// SwiftShader's Vulkan, and none of Chromium's calls home (refused here, and slow to fail).
const QUIET = ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-sync'];
const WEBGPU = ['--enable-unsafe-webgpu', '--enable-features=Vulkan', '--use-vulkan=swiftshader', '--use-webgpu-adapter=swiftshader'];

let server: PreviewServer;
let url: string;
let browser: Browser;
// One profile for the page's tests, so Cache Storage outlives a page (a reload).
let profile: BrowserContext;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: the browser test needs Chromium (Debian's chromium package). \`npm run setup\` installs it when run as root; otherwise, as root: apt-get install chromium`);
  }
  await promisify(execFile)('npm', ['run', '--silent', 'build:page'], { cwd: root, timeout: 120_000 });
  server = await preview({ configFile: join(root, 'examples/browser/vite.config.ts'), preview: { port: 0, strictPort: false }, logLevel: 'warn' });
  url = server.resolvedUrls!.local[0];
  browser = await chromium.launch({ executablePath: CHROMIUM, args: [...QUIET, ...WEBGPU], headless: true });
  profile = await browser.newContext({ viewport: { width: 1000, height: 800 } });
  mkdirSync(artifacts, { recursive: true });
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await server?.close();
});

/** A page whose console errors and crashes are collected, for failure messages. */
async function openPage(context: BrowserContext): Promise<{ page: Page; problems: string[] }> {
  const page = await context.newPage();
  const problems: string[] = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  // 404s are expected: the loader asks for optional files (a shard index, a chat template).
  page.on('console', (m) => m.type() === 'error' && !/status of 404/.test(m.text()) && problems.push(`console: ${m.text()}`));
  await page.goto(url);
  return { page, problems };
}

/** Waits until the page is ready again; if it shows an error instead, fails with its message. */
async function waitUntilReady(page: Page, problems: string[], timeout = 120_000): Promise<void> {
  await page.waitForFunction(() => ['ready', 'error'].includes(document.body.dataset.state ?? ''), null, { timeout, polling: 100 });
  if ((await page.evaluate(() => document.body.dataset.state)) === 'error') {
    throw new Error(`the page shows: ${await page.textContent('#error')}\n${problems.join('\n')}`);
  }
}

interface Chat {
  page: Page;
  /** Clicks Load and waits until the model is ready. */
  load(): Promise<void>;
  /** Sends `prompt` (Send button, or Enter) and returns the finished reply. */
  ask(prompt: string, by?: 'click' | 'enter'): Promise<string | null>;
  /** Waits until the page is ready again. */
  ready(timeout?: number): Promise<void>;
}

/** Runs `body` on a fresh page of `profile`, which must end without page errors. */
async function withChat(body: (chat: Chat) => Promise<void>): Promise<void> {
  const { page, problems } = await openPage(profile);
  const ready = (timeout?: number) => waitUntilReady(page, problems, timeout);
  const chat: Chat = {
    page,
    ready,
    async load() {
      await page.click('#load-button');
      await ready();
    },
    async ask(prompt, by = 'click') {
      await page.fill('#prompt', prompt);
      await (by === 'click' ? page.click('#send') : page.press('#prompt', 'Enter'));
      await ready();
      return page.textContent('#messages li.assistant:last-child');
    },
  };
  try {
    await body(chat);
    expect(problems).toEqual([]);
  } finally {
    await page.close();
  }
}

describe('browser chat page (Chromium, SwiftShader WebGPU)', () => {
  it('loads the embedded model and streams the same greedy answer as `sluice chat --prompt`', async () => {
    const node = await runCli(['chat', '--prompt', PROMPT, '--json']);
    expect(node.code, node.stderr).toBe(0);
    const expected = (JSON.parse(node.stdout) as { text: string }).text;
    expect(expected).toMatch(/81/);

    await withChat(async ({ page, load, ask }) => {
      await load();
      // SwiftShader has no shader-f16: the page says so and computes in F32.
      expect(await page.textContent('#gpu')).toMatch(/no shader-f16: computing in F32/);
      expect(await page.textContent('#model-info')).toMatch(/tiny-chat: .* F32, /);
      expect(await page.textContent('.phase[data-phase=upload] .detail')).toMatch(/in \d+ tensors/);

      // Every text the reply shows on its way, to see it stream in deltas.
      await page.evaluate(() => {
        const seen: string[] = [];
        (window as unknown as { seen: string[] }).seen = seen;
        new MutationObserver(() => {
          const li = document.querySelector('#messages li.assistant:last-child');
          if (li && li.textContent !== seen.at(-1)) seen.push(li.textContent ?? '');
        }).observe(document.getElementById('messages')!, { subtree: true, childList: true, characterData: true });
      });
      const answer = await ask(PROMPT);
      const seen = await page.evaluate(() => (window as unknown as { seen: string[] }).seen);
      await page.screenshot({ path: join(artifacts, 'browser-chat.png'), fullPage: true });

      // The figures for the record (CI's log): load time, TTFT and tok/s on SwiftShader.
      const phases = await page.$$eval('.phase', (els) => els.map((e) => `${e.querySelector('.name')!.textContent}: ${e.querySelector('.detail')!.textContent}`).join('; '));
      console.log(`[browser] ${await page.textContent('#model-info')} | ${phases} | ${await page.textContent('#stats')}`);
      expect(answer).toBe(expected);
      expect(seen.filter((t) => t !== '').length).toBeGreaterThan(1);
      expect(seen.at(-1)).toBe(expected);
      expect(await page.textContent('#stats')).toMatch(/TTFT \d+ ms .* tok\/s · end of reply/);
    });
  }, 300_000);

  it('a reload loads from the browser cache: no download, same answer', async () => {
    // Runs after the first test, in the same browser profile: its download is in Cache Storage.
    await withChat(async ({ page, load, ask }) => {
      await load();
      expect(await page.textContent('.phase[data-phase=download] .detail')).toMatch(/model\.safetensors: from cache/);
      console.log(`[browser, from cache] ${await page.textContent('#model-info')}`);
      expect(await ask(PROMPT, 'enter')).toMatch(/81/);
    });
  }, 300_000);

  it('with q4 weights (quantized as they load) the page says so, takes a quarter of the GPU bytes, and answers as in full precision', async () => {
    await withChat(async ({ page, load, ask }) => {
      await load();
      // "2.99 MB" → 2.99e6, as formatBytes writes sizes.
      const bytes = (text: string) => {
        const [, value, unit] = /^([\d.]+) ([kMG]?)B$/.exec(text)!;
        return Number(value) * { '': 1, k: 1e3, M: 1e6, G: 1e9 }[unit]!;
      };
      const full = (await page.textContent('#model-info'))!;
      const fullAnswer = await ask(PROMPT);
      const fullBytes = bytes(/, ([\d.]+ [kMG]?B) on the GPU,/.exec(full)![1]);
      await page.selectOption('#weights', 'q4');
      await load();
      const info = (await page.textContent('#model-info'))!;
      console.log(`[browser, q4] ${info}`);
      // SwiftShader has no shader-f16: F32 compute, and the quantized weights' scales in f32.
      const m = /^tiny-chat: .* F32, q4 weights, ([\d.]+ [kMG]?B) on the GPU \(([\d.]+ [kMG]?B) q4 \+ ([\d.]+ [kMG]?B) full precision\), /.exec(info);
      expect(m, info).not.toBeNull();
      const [total, q4, dense] = m!.slice(1).map(bytes);
      expect(Math.abs(q4 + dense - total) / total).toBeLessThan(0.01); // each rounded to 3 digits
      expect(q4).toBeGreaterThan(dense);
      // The full-precision load holds every weight in F32 (4 bytes); q4 takes ~0.6 byte for the
      // projections, and the embedding and norms stay F32: a quarter of it for this model.
      expect(total / fullBytes).toBeLessThan(0.35);
      // The tiny model's q4 greedy replies equal its full-precision ones on ~all of its eval
      // prompts (scripts/eval-tiny-chat.mjs --quantize q4, on lavapipe); this one too.
      const answer = await ask(PROMPT);
      console.log(`[browser, q4] ${JSON.stringify(answer)}`);
      expect(answer).toMatch(/81/);
      expect(answer).toBe(fullAnswer);
    });
  }, 300_000);

  it('Stop ends a long reply at once; the next turn reuses the cached conversation', async () => {
    await withChat(async ({ page, load, ask, ready }) => {
      await load();
      // A reply that would run for seconds: hot sampling with a fixed seed, 400 tokens.
      await page.click('#sampling summary');
      await page.fill('#temperature', '1.5');
      await page.fill('#seed', '7');
      await page.fill('#max-tokens', '400');
      await page.fill('#prompt', 'Tell me a joke');
      await page.click('#send');
      await page.waitForFunction(() => (document.querySelector('#messages li.assistant:last-child')?.textContent ?? '') !== '', null, { timeout: 60_000 });
      await page.click('#stop');
      await ready(60_000);
      const stats = (await page.textContent('#stats'))!;
      expect(stats).toMatch(/ · stopped$/);
      expect(Number(/ (\d+) tokens at /.exec(stats)![1])).toBeLessThan(400);

      await page.fill('#temperature', '0');
      await ask(PROMPT);
      expect(Number(/\((\d+) reused\)/.exec((await page.textContent('#stats'))!)![1])).toBeGreaterThan(0);
      expect(await page.$$eval('#messages li', (els) => els.map((e) => e.className))).toEqual(['user', 'assistant', 'user', 'assistant']);
    });
  }, 300_000);

  it('without the cache, a URL model streams with Range requests from the worker', async () => {
    const ranges: string[] = [];
    const onRequest = (r: Request) => {
      const range = r.headers().range;
      if (r.url().endsWith('/models/tiny-chat/model.safetensors') && range) ranges.push(range);
    };
    profile.on('request', onRequest);
    try {
      await withChat(async ({ page, load, ask }) => {
        await page.uncheck('#cache');
        await load();
        expect(await page.textContent('.phase[data-phase=download] .detail')).toBe('not needed');
        expect(ranges.length).toBeGreaterThan(1); // the header, then the tensors' bytes
        expect(await ask(PROMPT)).toMatch(/81/);
      });
    } finally {
      profile.off('request', onRequest);
    }
  }, 300_000);

  it('a folder picked on the disk (webkitdirectory) loads lazily from its File objects', async () => {
    await withChat(async ({ page, load, ask }) => {
      await page.setInputFiles('#folder', join(root, 'models/tiny-chat'));
      expect(await page.isChecked('input[name=source][value=folder]')).toBe(true);
      await load();
      expect(await page.textContent('.phase[data-phase=download] .detail')).toBe('not needed');
      expect(await page.textContent('#model-info')).toMatch(/^tiny-chat: /);
      expect(await ask(PROMPT)).toMatch(/81/);
    });
  }, 300_000);

  it('without WebGPU the page says so instead of failing silently', async () => {
    const plain = await chromium.launch({ executablePath: CHROMIUM, args: [...QUIET, '--disable-gpu'], headless: true });
    try {
      const { page } = await openPage(await plain.newContext());
      await page.click('#load-button').catch(() => {}); // disabled when navigator.gpu is absent
      await page.waitForFunction(() => document.body.dataset.state === 'error', null, { timeout: 60_000 });
      expect(await page.textContent('#error')).toMatch(/No usable WebGPU adapter.*(no WebGPU|requestAdapter found none)/s);
    } finally {
      await plain.close();
    }
  }, 120_000);
});

// Whole-file downloads kept in a cache, so a page reload reads the model from disk rather
// than the network. Browser-safe. `DownloadCache` is the part of the Cache API
// (`await caches.open('sluice-models')`) this uses; anything with the same three methods
// works, which is how Node tests run it.
//
// A file streams from fetch() straight into cache.put(), counting bytes on the way: it is
// never held whole in memory. The cached copy is then read back as a Blob, which the
// browser keeps on disk, and BlobSource slices it tensor by tensor.
//
// Requests go through http.ts: timeouts, retries of the request (not of a download that has
// begun: that fails and leaves nothing cached), and the caller's headers only on its origin.

import { SluiceError } from '../errors.js';
import { type Attempt, discard, type HttpOptions, httpSettings, RetryableStatus, retryAfterMs, statusLine, withRetries } from './http.js';

export interface DownloadCache {
  match(url: string): Promise<Response | undefined>;
  put(url: string, response: Response): Promise<void>;
  delete(url: string): Promise<boolean>;
}

export interface CachedFetchOptions extends HttpOptions {
  /** Bytes so far and in all (0 when unknown); fromCache when no download was needed. */
  onProgress?: (bytesDone: number, bytesTotal: number, fromCache: boolean) => void;
}

// A small file (config.json, tokenizer.json: tens of MB at most) read whole into memory;
// a server sending more is refused before it fills the heap.
const MAX_TEXT_BYTES = 256 * 1024 * 1024;

/**
 * The response for `url` from `cache`, downloading it into the cache first when absent.
 * null for 404/410 (remembered in the cache as absent); any other failure is HTTP_ERROR
 * (IO_ERROR for network errors and stalls) naming the URL, and leaves nothing in the cache
 * (a truncated download is deleted, never served later as the file).
 */
export async function cachedFetch(url: string, cache: DownloadCache, options: CachedFetchOptions = {}): Promise<Response | null> {
  const hit = await cache.match(url);
  if (hit?.status === 404) return null;
  if (hit) {
    const size = Number(hit.headers.get('content-length') ?? 0);
    options.onProgress?.(size, size, true);
    return hit;
  }
  const found = await withRetries(url, httpSettings(options), options.signal, async (attempt) => {
    const res = await absentOrRetry(await attempt.send(url));
    if (res === null) return null;
    if (!res.ok || !res.body) {
      await discard(res);
      throw httpError(url, statusLine(res));
    }
    // The body is read below, after withRetries: the watchdog stays armed until then.
    attempt.detached = true;
    return { res, attempt };
  });
  if (!found) {
    // Remembered too: opening a model asks for optional files (a shard index, a chat
    // template), and a reload must not need the network to learn again that they are absent.
    await cache.put(url, new Response(null, { status: 404 }));
    return null;
  }
  try {
    return await download(url, cache, found.res, found.attempt, options);
  } finally {
    found.attempt.end();
  }
}

/** Streams `res` into `cache` under `url`, counting; see cachedFetch. */
async function download(url: string, cache: DownloadCache, res: Response, attempt: Attempt, options: CachedFetchOptions): Promise<Response> {
  // Content-Length is the body's size only when the server sent it unencoded.
  const encoded = (res.headers.get('content-encoding') ?? 'identity') !== 'identity';
  const total = encoded ? 0 : Number(res.headers.get('content-length') ?? 0);
  let done = 0;
  options.onProgress?.(0, total, false);
  const counted = res.body!.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        done += chunk.byteLength;
        attempt.progress(chunk.byteLength);
        options.onProgress?.(done, total, false);
        controller.enqueue(chunk);
      },
    }),
  );
  const headers = new Headers({ 'content-type': res.headers.get('content-type') ?? 'application/octet-stream' });
  if (total > 0) headers.set('content-length', String(total));
  try {
    await cache.put(url, new Response(counted, { headers }));
  } catch (e) {
    await cache.delete(url).catch(() => false);
    if (options.signal?.aborted) throw options.signal.reason ?? e;
    const why = attempt.stall?.message ?? (e as Error)?.message ?? String(e);
    throw httpError(url, `download into the cache failed after ${done} bytes: ${why}`, e);
  }
  if (total > 0 && done !== total) {
    await cache.delete(url);
    throw httpError(url, `download ended after ${done} of ${total} bytes`);
  }
  const stored = await cache.match(url);
  if (!stored) throw httpError(url, 'the cache dropped the file just written (storage full?)');
  if (total === 0) {
    // Stored again with its length, so a later hit can report its size.
    const blob = await stored.blob();
    const response = new Response(blob, { headers: { 'content-type': headers.get('content-type')!, 'content-length': String(blob.size) } });
    await cache.put(url, response.clone());
    return response;
  }
  return stored;
}

function httpError(url: string, what: string, cause?: unknown): SluiceError {
  return new SluiceError('HTTP_ERROR', `${url}: ${what}`, cause === undefined ? undefined : { cause });
}

/**
 * A small file's text by one GET (config.json, tokenizer.json), with http.ts's timeouts,
 * retries and redirect rules; null for 404/410. At most 256 MiB.
 */
export async function fetchText(url: string, options: HttpOptions = {}): Promise<string | null> {
  return withRetries(url, httpSettings(options), options.signal, async (attempt) => {
    const res = await absentOrRetry(await attempt.send(url));
    if (res === null) return null;
    const tooBig = () => new SluiceError('HTTP_ERROR', `${url}: larger than ${MAX_TEXT_BYTES / 1024 / 1024} MiB, too large for a model's small file`);
    if (!res.ok) {
      await discard(res);
      throw new SluiceError('HTTP_ERROR', `${url}: ${statusLine(res)}`);
    }
    if (Number(res.headers.get('content-length') ?? 0) > MAX_TEXT_BYTES) {
      await discard(res);
      throw tooBig();
    }
    const parts: Uint8Array[] = [];
    let size = 0;
    const reader = res.body?.getReader();
    for (;;) {
      const next = await reader?.read();
      if (!next || next.done) break;
      size += next.value.byteLength;
      attempt.progress(next.value.byteLength);
      if (size > MAX_TEXT_BYTES) {
        await reader!.cancel().catch(() => {});
        throw tooBig();
      }
      parts.push(next.value);
    }
    const bytes = new Uint8Array(size); // (size,) u8
    let at = 0;
    for (const p of parts) {
      bytes.set(p, at);
      at += p.byteLength;
    }
    return new TextDecoder().decode(bytes);
  });
}

/** null for 404/410 (an absent file), RetryableStatus for 429/5xx, else the response. */
async function absentOrRetry(res: Response): Promise<Response | null> {
  if (res.status === 404 || res.status === 410) {
    await discard(res);
    return null;
  }
  if (res.status === 429 || res.status >= 500) {
    await discard(res);
    throw new RetryableStatus(statusLine(res), retryAfterMs(res.headers.get('retry-after')));
  }
  return res;
}

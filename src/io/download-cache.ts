// Whole-file downloads kept in a cache, so a page reload reads the model from disk rather
// than the network. Browser-safe. `DownloadCache` is the part of the Cache API
// (`await caches.open('sluice-models')`) this uses; anything with the same three methods
// works, which is how Node tests run it.
//
// A file streams from fetch() straight into cache.put(), counting bytes on the way: it is
// never held whole in memory. The cached copy is then read back as a Blob, which the
// browser keeps on disk, and BlobSource slices it tensor by tensor.

import { SluiceError } from '../errors.js';

export interface DownloadCache {
  match(url: string): Promise<Response | undefined>;
  put(url: string, response: Response): Promise<void>;
  delete(url: string): Promise<boolean>;
}

export interface CachedFetchOptions {
  signal?: AbortSignal;
  /** Extra request headers (e.g. Authorization). */
  headers?: HeadersInit;
  /** Bytes so far and in all (0 when unknown); fromCache when no download was needed. */
  onProgress?: (bytesDone: number, bytesTotal: number, fromCache: boolean) => void;
  /** fetch implementation; defaults to the global one. */
  fetch?: typeof globalThis.fetch;
}

/**
 * The response for `url` from `cache`, downloading it into the cache first when absent.
 * null for 404/410 (remembered in the cache as absent); any other failure is HTTP_ERROR naming the URL, and leaves nothing in
 * the cache (a truncated download is deleted, never served later as the file).
 */
export async function cachedFetch(url: string, cache: DownloadCache, options: CachedFetchOptions = {}): Promise<Response | null> {
  const hit = await cache.match(url);
  if (hit?.status === 404) return null;
  if (hit) {
    const size = Number(hit.headers.get('content-length') ?? 0);
    options.onProgress?.(size, size, true);
    return hit;
  }
  const fail = (what: string, cause?: unknown) => new SluiceError('HTTP_ERROR', `${url}: ${what}`, cause === undefined ? undefined : { cause });
  let res: Response;
  try {
    res = await (options.fetch ?? fetch)(url, { signal: options.signal, headers: options.headers });
  } catch (e) {
    if (options.signal?.aborted) throw options.signal.reason ?? e;
    throw fail((e as Error)?.message ?? String(e), e);
  }
  if (res.status === 404 || res.status === 410) {
    await res.body?.cancel();
    // Remembered too: opening a model asks for optional files (a shard index, a chat
    // template), and a reload must not need the network to learn again that they are absent.
    await cache.put(url, new Response(null, { status: 404 }));
    return null;
  }
  if (!res.ok || !res.body) {
    await res.body?.cancel();
    throw fail(`HTTP ${res.status} ${res.statusText}`.trim());
  }
  // Content-Length is the body's size only when the server sent it unencoded.
  const encoded = (res.headers.get('content-encoding') ?? 'identity') !== 'identity';
  const total = encoded ? 0 : Number(res.headers.get('content-length') ?? 0);
  let done = 0;
  options.onProgress?.(0, total, false);
  const counted = res.body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        done += chunk.byteLength;
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
    throw fail(`download into the cache failed after ${done} bytes: ${(e as Error)?.message ?? String(e)}`, e);
  }
  if (total > 0 && done !== total) {
    await cache.delete(url);
    throw fail(`download ended after ${done} of ${total} bytes`);
  }
  const stored = await cache.match(url);
  if (!stored) throw fail('the cache dropped the file just written (storage full?)');
  if (total === 0) {
    // Stored again with its length, so a later hit can report its size.
    const blob = await stored.blob();
    const response = new Response(blob, { headers: { 'content-type': headers.get('content-type')!, 'content-length': String(blob.size) } });
    await cache.put(url, response.clone());
    return response;
  }
  return stored;
}

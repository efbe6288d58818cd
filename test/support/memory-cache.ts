// A DownloadCache in memory, with the Cache API's behaviour that matters here: put()
// consumes the response body (a failing body fails put and stores nothing) and match()
// answers a fresh Response each time.
import type { DownloadCache } from '../../src/io/download-cache.js';

export class MemoryCache implements DownloadCache {
  readonly entries = new Map<string, { body: Uint8Array; status: number; headers: [string, string][] }>();

  async match(url: string): Promise<Response | undefined> {
    const e = this.entries.get(url);
    return e ? new Response(e.status === 200 ? e.body.slice() : null, { status: e.status, headers: e.headers }) : undefined;
  }

  async put(url: string, response: Response): Promise<void> {
    const body = new Uint8Array(await response.arrayBuffer());
    this.entries.set(url, { body, status: response.status, headers: [...response.headers] });
  }

  async delete(url: string): Promise<boolean> {
    return this.entries.delete(url);
  }
}

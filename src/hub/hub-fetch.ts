// The `fetch` sluice hands to every `@huggingface/hub` call. The library turns a failed
// response into a HubApiError whose message is the body's `error` field plus the URL, and
// drops the headers that say why (`X-Error-Code: GatedRepo | RepoNotFound |
// RevisionNotFound | EntryNotFound`). For requests to the Hub itself, this wrapper reads
// them first and throws one line that names the repo and the remedy instead; network
// failures become one line too.

import { SluiceError } from '../errors.js';
import { type HttpOptions, watchedFetch } from '../io/http.js';

export interface HubContext {
  /** `org/name`. */
  repo: string;
  revision: string;
  endpoint: string;
  token?: string;
}

export function hubFetch(ctx: HubContext, limits: HttpOptions = {}): typeof fetch {
  const hubOrigin = new URL(ctx.endpoint).origin;
  // Every request, the Hub's and its CDN's, with the same header timeout and minimum
  // transfer rate as URL sources: a stalled server fails the pull instead of hanging it.
  const watched = watchedFetch(globalThis.fetch, limits);
  return async (input, init) => {
    const url = String(input instanceof Request ? input.url : input);
    // Requests elsewhere (Xet storage, which retries its own 403s and 429s by status)
    // get their responses untouched.
    if (new URL(url).origin !== hubOrigin) return watched(input, init);
    let res: Response;
    try {
      res = await watched(input, init);
    } catch (e) {
      if ((e as Error).name === 'AbortError' || e instanceof SluiceError) throw e;
      const cause = (e as { cause?: { code?: string; message?: string } }).cause;
      const why = cause?.code ?? cause?.message ?? (e as Error).message;
      throw new SluiceError('HTTP_ERROR', `${ctx.repo}: cannot reach the Hub at ${ctx.endpoint} (${why}); cached models need no network (--offline)`, { cause: e });
    }
    if (res.ok) return res;
    await res.body?.cancel().catch(() => {});
    throw responseError(ctx, url, res);
  };
}

function responseError(ctx: HubContext, url: string, res: Response): SluiceError {
  const { status } = res;
  const errorCode = res.headers.get('x-error-code') ?? '';
  const detail = res.headers.get('x-error-message');
  const page = `${ctx.endpoint}/${ctx.repo}`;
  const file = /\/resolve\/[^/]+\/(.+)$/.exec(new URL(url).pathname)?.[1];
  const subject = file ? `${ctx.repo}: ${decodeURIComponent(file)}` : ctx.repo;

  if (errorCode === 'GatedRepo') {
    const remedy = ctx.token
      ? `HF_TOKEN's account has no access yet: accept the terms at ${page}`
      : `accept the terms at ${page} and set HF_TOKEN to a token of that account`;
    return new SluiceError('ACCESS_DENIED', `${ctx.repo}: access denied (${status}): gated repo; ${remedy}`);
  }
  if (errorCode === 'RepoNotFound' || (status === 404 && !errorCode)) {
    const privately = status === 401 && !ctx.token ? ', or private: set HF_TOKEN if you have access' : '';
    return new SluiceError('NOT_FOUND', `${ctx.repo}: no such model on the Hub (${status})${privately}`);
  }
  if (errorCode === 'RevisionNotFound') return new SluiceError('NOT_FOUND', `${ctx.repo}@${ctx.revision}: no such revision on the Hub (${status})`);
  if (errorCode === 'EntryNotFound') return new SluiceError('NOT_FOUND', `${subject}: not found on the Hub at ${ctx.revision} (${status})`);
  if (status === 401 || status === 403) {
    const why = ctx.token ? 'HF_TOKEN was refused (wrong, expired or without read access)' : 'private repo? set HF_TOKEN';
    return new SluiceError('ACCESS_DENIED', `${subject}: access denied (${status}): ${detail ?? why}`);
  }
  const hint = status === 429 ? ' (rate limited: wait, or set HF_TOKEN)' : '';
  return new SluiceError('HTTP_ERROR', `${subject}: the Hub answered ${status} ${res.statusText}${hint}${detail ? `: ${detail}` : ''}`);
}

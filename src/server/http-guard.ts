// Who may drive the server. A local server without a key must not be usable by the web
// pages its user visits: a page can POST to http://127.0.0.1:8080 (CSRF), and with DNS
// rebinding (evil.example resolving to 127.0.0.1) it can even read the answers. So, as
// Ollama does (server/routes.go, allowedHostsMiddleware and its CORS origins):
//   - Host must name this machine: localhost (or *.localhost), an IP literal (rebinding
//     needs a DNS name), this machine's hostname, or the address given to --host;
//   - an Origin header (a browser's request) must be a page on this machine (localhost,
//     127.0.0.1, [::1], the bound address) or one that --cors allows;
//   - POST bodies must say Content-Type: application/json, which a page can send only
//     after a CORS preflight — and preflights are answered only for --cors origins.
// With an API key, the key is the protection (a page cannot know it): Host and Origin are
// not checked. The key is compared in constant time; "Bearer" in any case (RFC 7235).

import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isIP } from 'node:net';
import { hostname } from 'node:os';
import { ApiError } from './openai.js';

export interface GuardOptions {
  apiKey?: string;
  /** Origins whose pages may call the server (`https://app.example:3000`; `*`: any). */
  cors?: readonly string[];
  /** The --host value and the address the server is bound to. */
  host: string;
  boundAddress: string;
}

export class RequestGuard {
  private readonly key: Buffer | null;
  private readonly cors: ReadonlySet<string>;
  private readonly localNames: ReadonlySet<string>;
  /** This machine's hostname, as a Host header may name it. */
  private readonly machine: string;

  constructor(private readonly options: GuardOptions) {
    this.key = options.apiKey === undefined ? null : digest(options.apiKey);
    this.cors = new Set(options.cors ?? []);
    this.localNames = new Set(['localhost', '127.0.0.1', '[::1]', ...[options.host, options.boundAddress].map(bracketed)]);
    this.machine = hostname().toLowerCase();
  }

  /** Whether a page at `origin` may call the server, reading the answers (CORS). */
  corsAllows(origin: string | undefined): origin is string {
    return origin !== undefined && (this.cors.has('*') || this.cors.has(origin));
  }

  /**
   * Refuses a request this server must not serve (403): without an API key, a Host that
   * does not name this machine or an Origin neither local nor allowed. Sets the CORS
   * headers for an allowed origin.
   */
  checkOrigin(req: IncomingMessage, res: ServerResponse): void {
    const origin = req.headers.origin;
    if (this.corsAllows(origin)) {
      res.setHeader('access-control-allow-origin', origin);
      res.setHeader('vary', 'Origin');
    }
    if (this.key) return;
    const host = hostOf(req.headers.host);
    if (host !== null && !this.isThisMachine(host)) {
      throw new ApiError(403, `Host ${JSON.stringify(req.headers.host)} does not name this machine; without --api-key the server answers only requests to localhost or an IP address (this refuses DNS rebinding)`, 'invalid_request_error', null, 'forbidden_host');
    }
    if (origin !== undefined && !this.corsAllows(origin) && !this.isLocalOrigin(origin)) {
      throw new ApiError(403, `requests from pages at ${origin} are refused; start the server with --cors ${origin} to allow them (or set --api-key)`, 'invalid_request_error', null, 'forbidden_origin');
    }
  }

  /** 401 unless the request carries the API key (when there is one). */
  checkKey(req: IncomingMessage): void {
    if (!this.key) return;
    const m = /^bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
    if (!m || !timingSafeEqual(digest(m[1]), this.key)) {
      throw new ApiError(401, 'invalid or missing API key (send Authorization: Bearer KEY)', 'invalid_request_error', null, 'invalid_api_key');
    }
  }

  /** A CORS preflight's answer headers, for an allowed origin. */
  preflight(req: IncomingMessage, res: ServerResponse, allow: readonly string[]): void {
    if (!this.corsAllows(req.headers.origin)) return;
    res.setHeader('access-control-allow-methods', allow.join(', '));
    // The OpenAI SDKs send their own x-stainless-* headers: allow what the page asks for.
    res.setHeader('access-control-allow-headers', req.headers['access-control-request-headers'] ?? 'authorization, content-type');
    res.setHeader('access-control-max-age', '600');
  }

  private isThisMachine(host: string): boolean {
    return host === 'localhost' || host.endsWith('.localhost') || isIP(host.replace(/^\[(.*)\]$/, '$1')) !== 0 || host === this.machine || this.localNames.has(host);
  }

  private isLocalOrigin(origin: string): boolean {
    let url: URL;
    try {
      url = new URL(origin);
    } catch {
      return false; // "null" (a sandboxed page, a file://) and the like
    }
    return (url.protocol === 'http:' || url.protocol === 'https:') && this.localNames.has(url.hostname.toLowerCase());
  }
}

/** 415 unless the body is declared JSON. */
export function requireJson(req: IncomingMessage): void {
  const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
  if (type !== 'application/json') {
    throw new ApiError(415, `the body must be JSON sent with Content-Type: application/json${type ? `, not ${type}` : ' (none was given)'}`, 'invalid_request_error', null, 'unsupported_media_type');
  }
}

/** The host name of a Host header (`[::1]:8080` → `[::1]`), lower case; null when absent. */
function hostOf(header: string | undefined): string | null {
  if (!header) return null;
  const h = header.trim().toLowerCase();
  return h.startsWith('[') ? h.slice(0, h.indexOf(']') + 1) : h.replace(/:\d*$/, '');
}

/** An IPv6 address as URLs and Host headers write it. */
function bracketed(address: string): string {
  const a = address.toLowerCase();
  return isIP(a) === 6 ? `[${a}]` : a;
}

/** Fixed-length digests, so timingSafeEqual never sees different lengths. */
function digest(key: string): Buffer {
  return createHash('sha256').update(key).digest();
}

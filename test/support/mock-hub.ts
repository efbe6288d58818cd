// A stand-in for the Hugging Face Hub on 127.0.0.1 (port 0), answering the endpoints
// @huggingface/hub calls for a pull, the way huggingface.co answers them:
//   GET /api/models/:org/:name/revision/:rev      model info with `sha`
//   GET /api/models/:org/:name/tree/:rev          the listing: size, git oid, lfs {oid, size}
//   GET /:org/:name/resolve/:rev/:path            small files directly (ETag = git oid);
//                                                 LFS files by a 302 to /cdn/<sha256>
//   GET /cdn/:sha256                              the LFS bytes (ETag = sha256), Range-able
// Errors carry the Hub's `X-Error-Code`: RepoNotFound (401 without a token, 404 with one,
// as the Hub hides private repos), RevisionNotFound, EntryNotFound, GatedRepo (401 without
// a token, 403 with a token that has no access). Gated repos list their files publicly but
// refuse downloads, as on the Hub. Switches: drop the connection mid-file, serve corrupt
// bytes. Every request is recorded.

import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export const MOCK_TOKEN = 'hf_mock_token_with_access';

export interface MockRepo {
  files: Record<string, Uint8Array | string>;
  /** Downloads need MOCK_TOKEN. */
  gated?: boolean;
  /** Branches and tags besides main, all at the same commit. */
  refs?: string[];
}

export interface HubRequest {
  method: string;
  path: string;
  range?: string;
  authorization?: string;
  status: number;
  /** Body bytes written (fewer than the body when the connection was dropped). */
  bytesSent: number;
}

interface File {
  body: Uint8Array;
  lfs?: { oid: string; size: number; pointerSize: number };
  oid: string;
}

interface Repo {
  commit: string;
  gated: boolean;
  refs: string[];
  files: Map<string, File>;
}

const LFS = /\.(safetensors|bin|pth|pt|gguf|onnx|h5|msgpack|model)$/;

export class MockHub {
  readonly requests: HubRequest[] = [];
  private readonly repos = new Map<string, Repo>();
  private readonly blobs = new Map<string, Uint8Array>();
  private readonly drops = new Map<string, { after: number; times: number }>();
  private readonly corrupted = new Set<string>();

  private constructor(
    private readonly server: Server,
    readonly url: string,
  ) {}

  static async start(repos: Record<string, MockRepo>): Promise<MockHub> {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const hub = new MockHub(server, `http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    for (const [name, repo] of Object.entries(repos)) hub.add(name, repo);
    server.on('request', (req, res) => hub.handle(req, res));
    return hub;
  }

  add(name: string, spec: MockRepo): void {
    const files = new Map<string, File>();
    for (const [path, content] of Object.entries(spec.files)) {
      const body = typeof content === 'string' ? new TextEncoder().encode(content) : content;
      if (LFS.test(path)) {
        const sha256 = createHash('sha256').update(body).digest('hex');
        const pointer = `version https://git-lfs.github.com/spec/v1\noid sha256:${sha256}\nsize ${body.length}\n`;
        files.set(path, { body, oid: gitOid(new TextEncoder().encode(pointer)), lfs: { oid: sha256, size: body.length, pointerSize: pointer.length } });
        this.blobs.set(sha256, body);
      } else files.set(path, { body, oid: gitOid(body) });
    }
    const commit = createHash('sha1').update(`commit of ${name}`).digest('hex');
    this.repos.set(name, { commit, gated: spec.gated ?? false, refs: spec.refs ?? [], files });
  }

  commitOf(name: string): string {
    return this.repos.get(name)!.commit;
  }

  /** The listing's entry for a file: its git oid and, for LFS files, the sha256. */
  entry(name: string, path: string): File {
    return this.repos.get(name)!.files.get(path)!;
  }

  /** The next `times` downloads of `path` send `after` bytes, then the connection drops. */
  dropAfter(name: string, path: string, after: number, times = 1): void {
    this.drops.set(this.dataPath(name, path), { after, times });
  }

  /** `path` is served with one byte changed (the listing keeps the true hash). */
  corrupt(name: string, path: string): void {
    this.corrupted.add(this.dataPath(name, path));
  }

  /** Requests that fetched bytes of `path` (not the 1-byte probes the library sends first). */
  downloadsOf(name: string, path: string): HubRequest[] {
    const at = this.dataPath(name, path);
    return this.requests.filter((r) => r.path === at && r.range !== 'bytes=0-0');
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** Where the bytes of a file are served: the CDN path for LFS files. */
  private dataPath(name: string, path: string): string {
    const file = this.entry(name, path);
    return file.lfs ? `/cdn/${file.lfs.oid}` : `/${name}/resolve/${this.commitOf(name)}/${path}`;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', this.url);
    const rec: HubRequest = { method: req.method ?? 'GET', path: decodeURIComponent(url.pathname), range: req.headers.range, authorization: req.headers.authorization, status: 0, bytesSent: 0 };
    this.requests.push(rec);
    const token = req.headers.authorization?.replace(/^Bearer /, '');
    const fail = (status: number, code?: string, message = code ?? 'error') => {
      rec.status = status;
      res.writeHead(status, { 'content-type': 'application/json', ...(code ? { 'x-error-code': code, 'x-error-message': message } : {}) });
      res.end(JSON.stringify({ error: message }));
    };

    const api = /^\/api\/models\/([^/]+\/[^/]+)\/(revision|tree)\/([^/]+)$/.exec(rec.path);
    const resolve = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(rec.path);
    const cdn = /^\/cdn\/([0-9a-f]{64})$/.exec(rec.path);
    if (cdn) {
      const body = this.blobs.get(cdn[1]);
      return body ? this.send(res, rec, body, { etag: `"${cdn[1]}"` }) : fail(404);
    }
    const repoName = api?.[1] ?? resolve?.[1];
    if (!repoName) return fail(404);
    const repo = this.repos.get(repoName);
    if (!repo) return fail(token ? 404 : 401, 'RepoNotFound', 'Repository not found');
    const rev = api?.[3] ?? resolve![2];
    if (rev !== 'main' && rev !== repo.commit && !repo.refs.includes(rev)) return fail(404, 'RevisionNotFound', `Invalid rev id: ${rev}`);

    if (api?.[2] === 'revision') {
      return this.json(res, rec, { _id: repoName, id: repoName, sha: repo.commit, private: false, gated: repo.gated ? 'manual' : false, downloads: 0, likes: 0, lastModified: '2025-01-01T00:00:00.000Z' });
    }
    if (api?.[2] === 'tree') {
      const recursive = url.searchParams.get('recursive') === 'true';
      const dirs = new Set<string>();
      const entries: object[] = [];
      for (const [path, f] of repo.files) {
        if (!recursive && path.includes('/')) {
          dirs.add(path.split('/')[0]);
          continue;
        }
        if (recursive) for (let i = path.indexOf('/'); i > 0; i = path.indexOf('/', i + 1)) dirs.add(path.slice(0, i));
        entries.push({ type: 'file', oid: f.oid, size: f.body.length, path, ...(f.lfs ? { lfs: f.lfs } : {}) });
      }
      return this.json(res, rec, [...[...dirs].map((path) => ({ type: 'directory', oid: gitOid(new Uint8Array()), size: 0, path })), ...entries]);
    }

    const path = resolve![3];
    if (repo.gated && token !== MOCK_TOKEN) {
      return fail(token ? 403 : 401, 'GatedRepo', `Access to model ${repoName} is restricted. You must have access to it and be authenticated to access it.`);
    }
    const file = repo.files.get(path);
    if (!file) return fail(404, 'EntryNotFound', `${path} does not exist on "${rev}"`);
    const commonHeaders = { 'x-repo-commit': repo.commit };
    if (file.lfs) {
      rec.status = 302;
      res.writeHead(302, { ...commonHeaders, location: `/cdn/${file.lfs.oid}`, 'x-linked-etag': `"${file.lfs.oid}"`, 'x-linked-size': String(file.lfs.size) });
      return void res.end();
    }
    this.send(res, rec, file.body, { ...commonHeaders, etag: `"${file.oid}"` });
  }

  private json(res: ServerResponse, rec: HubRequest, doc: unknown): void {
    rec.status = 200;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(doc));
  }

  /** The bytes, honouring `Range: bytes=a-b|a-`, with the drop and corrupt switches applied. */
  private send(res: ServerResponse, rec: HubRequest, full: Uint8Array, headers: Record<string, string>): void {
    let body = full;
    if (this.corrupted.has(rec.path) && full.length) {
      body = full.slice();
      body[body.length >> 1] ^= 0xff;
    }
    const m = /^bytes=(\d+)-(\d*)$/.exec(rec.range ?? '');
    let start = 0;
    let end = body.length;
    if (m) {
      start = Number(m[1]);
      end = m[2] === '' ? body.length : Math.min(body.length, Number(m[2]) + 1);
      if (start >= body.length) {
        rec.status = 416;
        res.writeHead(416, { 'content-range': `bytes */${body.length}` });
        return void res.end();
      }
    }
    const part = body.subarray(start, end);
    rec.status = m ? 206 : 200;
    res.writeHead(rec.status, {
      ...headers,
      'accept-ranges': 'bytes',
      'content-type': 'application/octet-stream',
      'content-length': String(part.length),
      ...(m ? { 'content-range': `bytes ${start}-${end - 1}/${body.length}` } : {}),
    });
    const drop = rec.range === 'bytes=0-0' ? undefined : this.drops.get(rec.path);
    if (drop && drop.times > 0 && drop.after < part.length) {
      drop.times--;
      rec.bytesSent = drop.after;
      // Flushed, given time to be read, then the socket goes: the client holds up to
      // `after` bytes and then an error, as when a connection dies mid-file.
      return void res.write(part.subarray(0, drop.after), () => setTimeout(() => res.socket?.destroy(), 50));
    }
    rec.bytesSent = part.length;
    res.end(part);
  }
}

/** git's blob id: sha1 of "blob <size>\0" + bytes. */
export function gitOid(body: Uint8Array): string {
  return createHash('sha1').update(`blob ${body.length}\0`).update(body).digest('hex');
}

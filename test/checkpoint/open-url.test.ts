// Checkpoints behind HTTP: a single file and a sharded index, through the same
// openCheckpoint / `sluice inspect` paths as local files, against a local server.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openCheckpoint } from '../../src/checkpoint/open-path.js';
import { runCli } from '../support/cli.js';
import { TestServer } from '../support/http-server.js';
import { buildValid, mulberry32, randomBytes, type TensorSpec } from '../support/safetensors-bytes.js';

const rng = mulberry32(7);
const spec = (name: string, shape: number[]): TensorSpec => ({
  name,
  dtype: 'F32',
  shape,
  data: randomBytes(rng, shape.reduce((a, b) => a * b, 1) * 4),
});
const a = spec('model.embed_tokens.weight', [40, 8]);
const b = spec('model.layers.0.mlp.up_proj.weight', [12, 8]);
const c = spec('model.norm.weight', [8]);
const shard1 = buildValid([a], { format: 'pt' });
const shard2 = buildValid([b, c], { format: 'pt' });
const index = new TextEncoder().encode(
  JSON.stringify({
    metadata: { total_size: a.data.length + b.data.length + c.data.length },
    weight_map: {
      [a.name]: 'model-00001-of-00002.safetensors',
      [b.name]: 'model-00002-of-00002.safetensors',
      [c.name]: 'model-00002-of-00002.safetensors',
    },
  }),
);

let server: TestServer;
let plain: TestServer;
beforeAll(async () => {
  const files = {
    '/repo/model.safetensors': shard2,
    '/repo/model.safetensors.index.json': index,
    '/repo/model-00001-of-00002.safetensors': shard1,
    '/repo/model-00002-of-00002.safetensors': shard2,
  };
  server = await TestServer.start(files);
  plain = await TestServer.start(files, { ranges: false });
});
afterAll(async () => {
  await server.close();
  await plain.close();
});

describe('checkpoints over HTTP', () => {
  it('opens a single file in one request and reads tensors by range', async () => {
    server.resetStats();
    const ckpt = await openCheckpoint(server.url('/repo/model.safetensors'));
    expect(server.requests).toHaveLength(1);
    expect(ckpt.tensors().map((t) => t.name)).toEqual([b.name, c.name]);
    expect(Buffer.from(await ckpt.read(c.name)).equals(Buffer.from(c.data))).toBe(true);
    await ckpt.close();
  });

  it('opens a sharded index: one request for the index and one per shard header', async () => {
    server.resetStats();
    const ckpt = await openCheckpoint(server.url('/repo/model.safetensors.index.json'));
    expect(server.requests).toHaveLength(3);
    expect(ckpt.files).toHaveLength(3);
    expect(ckpt.tensors().map((t) => t.name)).toEqual([a.name, b.name, c.name]);
    for (const t of [a, b, c]) expect(Buffer.from(await ckpt.read(t.name)).equals(Buffer.from(t.data))).toBe(true);
    const rows = await ckpt.slice(a.name, [[3, 5]]);
    expect(Buffer.from(rows.data).equals(Buffer.from(a.data.subarray(3 * 32, 5 * 32)))).toBe(true);
    await ckpt.close();
  });

  it('sluice inspect URL --json matches the same checkpoint', async () => {
    const { code, stdout } = await runCli(['inspect', server.url('/repo/model.safetensors.index.json'), '--json', '--checksum']);
    expect(code).toBe(0);
    const doc = JSON.parse(stdout);
    expect(doc.index_metadata).toEqual({ total_size: doc.bytes });
    expect(doc.tensors.map((t: { file: string }) => t.file.split('/').pop())).toEqual([
      'model-00001-of-00002.safetensors',
      'model-00002-of-00002.safetensors',
      'model-00002-of-00002.safetensors',
    ]);
  });

  it('a server without Range support gets one clear line', async () => {
    const { code, stderr } = await runCli(['inspect', plain.url('/repo/model.safetensors')]);
    expect(code).toBe(1);
    expect(stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(stderr).toMatch(/^sluice: .*Range/);
  });

  it('an index naming shards outside its folder: refused in one line, nothing fetched there', async () => {
    const names = ['.\n./.\n./secret/model.safetensors', '%2e%2e/%2e%2e/secret/model.safetensors', 'sub/..\t/../secret/model.safetensors'];
    for (const name of names) {
      server.set('/repo/evil.index.json', new TextEncoder().encode(JSON.stringify({ weight_map: { [a.name]: name } })));
      server.set('/secret/model.safetensors', shard1);
      server.resetStats();
      const { code, stderr } = await runCli(['inspect', server.url('/repo/evil.index.json')]);
      expect(code).toBe(1);
      expect(stderr.trimEnd().split('\n')).toHaveLength(1);
      expect(stderr).toContain(server.url('/repo/evil.index.json'));
      expect(server.requests.map((r) => r.path)).toEqual(['/repo/evil.index.json']);
    }
  });
});

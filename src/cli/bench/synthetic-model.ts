// `sluice bench generate --synthetic NAME`: a random-weight checkpoint with the real
// config.json of a named model (synthetic-models/), so speed is measured at real shapes
// with nothing downloaded. Written once into a cache directory and reused:
//
//   <cache>/<name>[-f16|-f32][-<N>-layers]/
//     config.json             the model's config (num_hidden_layers = N when truncated)
//     model.safetensors       every tensor sluice's loader expects (weights.ts), seeded random
//     sluice-synthetic.json   the completeness marker, written last: without it (an
//                             interrupted write) the folder is written again
//
// Tensors stream to disk one chunk at a time (a 4B model is ~8 GB in BF16: never in memory).
// Values keep activations finite through the whole network, as an initialised model's do:
// matrices and biases ~ N(0, 0.02) (HF's initializer_range), norms the identity (w = 1, or
// w = 0 where the norm is x·(1 + w), Gemma).

import { mkdir, readFile, stat, unlink, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { convertFloats } from '../../checkpoint/convert.js';
import { SluiceError } from '../../errors.js';
import { writeSafetensors } from '../../formats/safetensors/write-file.js';
import { type ModelConfig, modelConfig } from '../../model/config.js';
import { expectedWeights } from '../../model/weights.js';
import type { SyntheticDtype } from './synthetic-checkpoint.js';
import { type SyntheticModel, syntheticModel, SYNTHETIC_MODELS } from './synthetic-models/index.js';

export const MARKER = 'sluice-synthetic.json';
/** Bump when the tensors or values written change: older caches are then rewritten. */
const GENERATOR = 1;

export interface SyntheticModelOptions {
  name: string;
  /** The cache root (default: defaultSyntheticCacheDir()). */
  cacheDir?: string;
  storage?: SyntheticDtype;
  /** Keep only the first N layers (default: all). */
  layers?: number;
  /** Called as bytes are written: done so far, total, the tensor being written. */
  onProgress?: (bytesDone: number, bytesTotal: number, tensor: string) => void;
}

export interface SyntheticCheckpoint {
  name: string;
  repo: string;
  dir: string;
  storage: SyntheticDtype;
  layers: number;
  /** num_hidden_layers of the real config. */
  configLayers: number;
  truncated: boolean;
  /** Whether this call wrote the checkpoint (false: reused from the cache). */
  written: boolean;
  writeSeconds: number;
  /** model.safetensors' size. */
  bytes: number;
  tensors: number;
}

/** `$XDG_CACHE_HOME/sluice/synthetic`, else `~/.cache/sluice/synthetic`. */
export function defaultSyntheticCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'sluice', 'synthetic');
}

export function syntheticModelNames(): string[] {
  return SYNTHETIC_MODELS.map((m) => m.name);
}

/** The model's config.json, cut to its first `layers` layers (per-layer lists too). */
export function syntheticConfig(model: SyntheticModel, layers?: number): Record<string, unknown> {
  const full = model.config.num_hidden_layers as number;
  if (layers === undefined || layers === full) return model.config;
  if (!Number.isSafeInteger(layers) || layers < 1 || layers > full) {
    throw new SluiceError('USAGE', `--layers must be 1 to ${full} for ${model.name}, not ${layers}`);
  }
  const out: Record<string, unknown> = { ...model.config, num_hidden_layers: layers };
  // Per-layer lists some configs carry (transformers v5 layer_types, SmolLM3's no_rope_layers).
  for (const key of ['layer_types', 'no_rope_layers']) {
    if (Array.isArray(out[key])) out[key] = (out[key] as unknown[]).slice(0, layers);
  }
  return out;
}

export interface SyntheticTensor {
  name: string;
  dtype: SyntheticDtype;
  shape: number[];
  byteLength: number;
  /** random: ~ N(0, 0.02); identity: a norm's weight that leaves its input unscaled. */
  fill: 'random' | 'identity';
}

/**
 * The tensors of an HF checkpoint of `config`, in each family's layout, as weights.ts
 * expects them (expectedWeights: Phi-3's fused tensors, q/k norms, Gemma's sandwich norms,
 * biases, lm_head unless tied). Norm weights are identity, everything else random.
 */
export function syntheticModelTensors(config: ModelConfig, storage: SyntheticDtype = 'BF16'): SyntheticTensor[] {
  const width = storage === 'F32' ? 4 : 2;
  return [...expectedWeights(config)].map(([name, shape]) => ({
    name,
    dtype: storage,
    shape,
    byteLength: shape.reduce((a, b) => a * b, width),
    // input_layernorm, q_norm, pre_feedforward_layernorm, model.norm …: the identity
    fill: name.endsWith('norm.weight') ? 'identity' : 'random',
  }));
}

export async function ensureSyntheticModel(options: SyntheticModelOptions): Promise<SyntheticCheckpoint> {
  const model = syntheticModel(options.name);
  if (!model) throw new SluiceError('USAGE', `--synthetic: unknown model ${JSON.stringify(options.name)}; one of ${syntheticModelNames().join(', ')}`);
  const storage = options.storage ?? 'BF16';
  const configLayers = model.config.num_hidden_layers as number;
  const layers = options.layers ?? configLayers;
  const rawConfig = syntheticConfig(model, layers);
  const config = modelConfig(rawConfig, `${model.name} config.json`);
  const tensors = syntheticModelTensors(config, storage);
  const truncated = layers < configLayers;
  const folder = `${model.name}${storage === 'BF16' ? '' : `-${storage.toLowerCase()}`}${truncated ? `-${layers}-layers` : ''}`;
  const dir = join(options.cacheDir ?? defaultSyntheticCacheDir(), folder);
  const tensorBytes = tensors.reduce((s, t) => s + t.byteLength, 0);
  const marker = { generator: GENERATOR, model: model.name, repo: model.repo, storage, layers, tensors: tensors.length, tensor_bytes: tensorBytes };
  const result = { name: model.name, repo: model.repo, dir, storage, layers, configLayers, truncated, tensors: tensors.length };

  const cached = await readMarker(dir);
  if (cached && sameMarker(cached, marker)) {
    const bytes = await fileSize(join(dir, 'model.safetensors'));
    if (bytes !== null && bytes === cached.file_bytes) return { ...result, written: false, writeSeconds: 0, bytes };
  }

  // (Re)write: the marker goes first, so a crash from here on leaves a folder that is redone.
  const began = performance.now();
  await mkdir(dir, { recursive: true });
  await unlink(join(dir, MARKER)).catch(() => {});
  const { bytes } = await writeSafetensors(join(dir, 'model.safetensors'), randomTensors(tensors, config, options.onProgress), {
    metadata: { format: 'pt', sluice_synthetic: `${model.name} (${model.repo}), random weights` },
  });
  await writeFile(join(dir, 'config.json'), `${JSON.stringify(rawConfig, null, 2)}\n`);
  await writeFile(join(dir, MARKER), `${JSON.stringify({ ...marker, file_bytes: bytes }, null, 2)}\n`);
  return { ...result, written: true, writeSeconds: (performance.now() - began) / 1000, bytes };
}

type Marker = Record<string, unknown>;

async function readMarker(dir: string): Promise<Marker | null> {
  try {
    const parsed: unknown = JSON.parse(await readFile(join(dir, MARKER), 'utf8'));
    return typeof parsed === 'object' && parsed !== null ? (parsed as Marker) : null;
  } catch {
    return null;
  }
}

function sameMarker(cached: Marker, wanted: Marker): boolean {
  return Object.entries(wanted).every(([k, v]) => cached[k] === v);
}

async function fileSize(path: string): Promise<number | null> {
  try {
    return (await stat(path)).size;
  } catch {
    return null;
  }
}

// ───────────────────────────── values ─────────────────────────────

/**
 * Pool of N(0, 0.02) values (seeded LCG + Box-Muller), in the storage dtype. Each tensor
 * reads it from its own offset (a hash of its name), wrapping: the pool's length is not a
 * power of two, so rows of power-of-two widths do not repeat in step, and no two tensors
 * start alike. 2^20 + 7 values: 2 MiB in BF16, made in ~30 ms.
 */
const POOL_VALUES = (1 << 20) + 7;

function randomPool(storage: SyntheticDtype): Uint8Array {
  const f32 = new Float32Array(POOL_VALUES);
  let state = 0x2545f491;
  const uniform = () => ((state = (Math.imul(state, 1664525) + 1013904223) >>> 0) + 0.5) / 2 ** 32;
  for (let i = 0; i < f32.length; i++) f32[i] = 0.02 * Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
  const bytes = new Uint8Array(f32.buffer);
  return storage === 'F32' ? bytes : convertFloats(bytes, 'F32', storage);
}

/** 1 in the storage dtype, little-endian. */
const ONE: Record<SyntheticDtype, number[]> = { BF16: [0x80, 0x3f], F16: [0x00, 0x3c], F32: [0x00, 0x00, 0x80, 0x3f] };

function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

function randomTensors(tensors: SyntheticTensor[], config: ModelConfig, onProgress?: SyntheticModelOptions['onProgress']) {
  let pool: Uint8Array | undefined; // made when the writer first asks, not before
  const total = tensors.reduce((s, t) => s + t.byteLength, 0);
  let done = 0;
  return tensors.map((t) => ({
    name: t.name,
    dtype: t.dtype,
    shape: t.shape,
    data: async function* (): AsyncIterable<Uint8Array> {
      const width = t.dtype === 'F32' ? 4 : 2;
      if (t.fill === 'identity') {
        // x·w with w = 1, or x·(1 + w) with w = 0 (Gemma): the norm leaves x as RMSNorm made it.
        const bytes = new Uint8Array(t.byteLength);
        if (config.features.norm === 'w') for (let i = 0; i < bytes.length; i += width) bytes.set(ONE[t.dtype], i);
        done += bytes.length;
        onProgress?.(done, total, t.name);
        yield bytes;
        return;
      }
      pool ??= randomPool(t.dtype);
      let at = (fnv1a(t.name) % POOL_VALUES) * width;
      for (let left = t.byteLength; left > 0; ) {
        const chunk = pool.subarray(at, at + Math.min(left, pool.length - at));
        at = (at + chunk.length) % pool.length;
        left -= chunk.length;
        done += chunk.length;
        onProgress?.(done, total, t.name);
        yield chunk;
      }
    },
  }));
}

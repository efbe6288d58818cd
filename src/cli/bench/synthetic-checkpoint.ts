// A Llama-shaped checkpoint (BF16 by default, as most HF checkpoints) of about `bytes`, written as model.safetensors and as
// model.pth (torch.save layout) with the same tensors, for `sluice bench load --synthetic`.

import { join } from 'node:path';
import { convertFloats } from '../../checkpoint/convert.js';
import type { Dtype } from '../../formats/dtypes.js';
import { writeTorchCheckpoint } from '../../formats/pytorch/writer.js';
import { writeSafetensors } from '../../formats/safetensors/write-file.js';

export type SyntheticDtype = 'BF16' | 'F16' | 'F32';

interface SyntheticTensor {
  name: string;
  dtype: Dtype;
  shape: number[];
  byteLength: number;
}

/** Tensor list: an embedding table, then whole layers (Llama-2-7B-like proportions at h = 2048). */
export function syntheticTensors(bytes: number, dtype: SyntheticDtype = 'BF16'): SyntheticTensor[] {
  const h = bytes >= 256 * 2 ** 20 ? 2048 : 256;
  const inter = Math.round((h * 11) / 4); // 5632 at h = 2048, as TinyLlama
  const kv = h / 8; // GQA, 4 KV heads of 64 at h = 2048
  const vocab = h === 2048 ? 32000 : 1000;
  const width = dtype === 'F32' ? 4 : 2;
  const t = (name: string, shape: number[]): SyntheticTensor => ({ name, dtype, shape, byteLength: shape.reduce((a, b) => a * b, width) });
  const out = [t('model.embed_tokens.weight', [vocab, h]), t('model.norm.weight', [h])];
  let total = out.reduce((s, x) => s + x.byteLength, 0);
  for (let layer = 0; layer === 0 || total < bytes; layer++) {
    const p = `model.layers.${layer}`;
    const tensors = [
      t(`${p}.input_layernorm.weight`, [h]),
      t(`${p}.self_attn.q_proj.weight`, [h, h]),
      t(`${p}.self_attn.k_proj.weight`, [kv, h]),
      t(`${p}.self_attn.v_proj.weight`, [kv, h]),
      t(`${p}.self_attn.o_proj.weight`, [h, h]),
      t(`${p}.post_attention_layernorm.weight`, [h]),
      t(`${p}.mlp.gate_proj.weight`, [inter, h]),
      t(`${p}.mlp.up_proj.weight`, [inter, h]),
      t(`${p}.mlp.down_proj.weight`, [h, inter]),
    ];
    const layerBytes = tensors.reduce((s, x) => s + x.byteLength, 0);
    if (layer > 0 && total + layerBytes > bytes * 1.05) break;
    out.push(...tensors);
    total += layerBytes;
  }
  return out;
}

// Weights ~ N(0, 0.02) (a seeded LCG + Box-Muller: realistic bit patterns for the
// conversion kernel, no NaN or subnormal slow paths), 1 MiB as f32, converted with the
// CPU converter `sluice convert` uses. Reused for every chunk of every tensor; made on
// first use, not at CLI start-up.
export function weightBlock(dtype: SyntheticDtype): Uint8Array<ArrayBuffer> {
  const f32 = new Float32Array(1 << 18);
  let state = 0x2545f491;
  const uniform = () => ((state = (Math.imul(state, 1664525) + 1013904223) >>> 0) + 0.5) / 2 ** 32;
  for (let i = 0; i < f32.length; i++) f32[i] = 0.02 * Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
  const bytes = new Uint8Array(f32.buffer);
  return dtype === 'F32' ? bytes : (convertFloats(bytes, 'F32', dtype) as Uint8Array<ArrayBuffer>);
}

function* blockStream(block: Uint8Array, length: number): Iterable<Uint8Array> {
  for (let at = 0; at < length; at += block.length) yield block.subarray(0, Math.min(block.length, length - at));
}

/** Writes dir/model.safetensors and dir/model.pth; returns their paths. */
export async function writeSyntheticCheckpoint(
  dir: string,
  bytes: number,
  dtype: SyntheticDtype = 'BF16',
): Promise<{ safetensors: string; pth: string }> {
  const tensors = syntheticTensors(bytes, dtype);
  const block = weightBlock(dtype);
  const safetensors = join(dir, 'model.safetensors');
  const pth = join(dir, 'model.pth');
  await writeSafetensors(
    safetensors,
    tensors.map((x) => ({ ...x, data: async function* () { yield* blockStream(block, x.byteLength); } })),
    { metadata: { format: 'pt' } },
  );
  await writeTorchCheckpoint(pth, tensors.map((x) => ({ ...x, data: () => blockStream(block, x.byteLength) })), { archiveName: 'model' });
  return { safetensors, pth };
}

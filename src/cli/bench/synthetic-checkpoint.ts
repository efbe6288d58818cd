// A Llama-shaped BF16 checkpoint of about `bytes`, written as model.safetensors and as
// model.pth (torch.save layout) with the same tensors, for `sluice bench load --synthetic`.

import { join } from 'node:path';
import type { Dtype } from '../../formats/dtypes.js';
import { writeTorchCheckpoint } from '../../formats/pytorch/writer.js';
import { writeSafetensors } from '../../formats/safetensors/write-file.js';

interface SyntheticTensor {
  name: string;
  dtype: Dtype;
  shape: number[];
  byteLength: number;
}

/** Tensor list: an embedding table, then whole layers (Llama-2-7B-like proportions at h = 2048). */
export function syntheticTensors(bytes: number): SyntheticTensor[] {
  const h = bytes >= 256 * 2 ** 20 ? 2048 : 256;
  const inter = Math.round((h * 11) / 4); // 5632 at h = 2048, as TinyLlama
  const kv = h / 8; // GQA, 4 KV heads of 64 at h = 2048
  const vocab = h === 2048 ? 32000 : 1000;
  const t = (name: string, shape: number[]): SyntheticTensor => ({ name, dtype: 'BF16', shape, byteLength: shape.reduce((a, b) => a * b, 2) });
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

// 1 MiB of bf16 weights ~ N(0, 0.02) (a seeded LCG + Box-Muller: realistic bit patterns
// for the conversion kernel), reused for every chunk of every tensor. Made on first use,
// not at CLI start-up.
let block_: Uint8Array | undefined;
function weightBlock(): Uint8Array {
  if (block_) return block_;
  const block = new Uint16Array(1 << 19);
  let state = 0x2545f491;
  const uniform = () => ((state = (Math.imul(state, 1664525) + 1013904223) >>> 0) + 0.5) / 2 ** 32;
  const f32 = new Float32Array(1);
  const u32 = new Uint32Array(f32.buffer);
  for (let i = 0; i < block.length; i++) {
    f32[0] = 0.02 * Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
    block[i] = u32[0] >>> 16;
  }
  block_ = new Uint8Array(block.buffer);
  return block_;
}

function* blockStream(length: number): Iterable<Uint8Array> {
  const block = weightBlock();
  for (let at = 0; at < length; at += block.length) yield block.subarray(0, Math.min(block.length, length - at));
}

/** Writes dir/model.safetensors and dir/model.pth; returns their paths. */
export async function writeSyntheticCheckpoint(dir: string, bytes: number): Promise<{ safetensors: string; pth: string }> {
  const tensors = syntheticTensors(bytes);
  const safetensors = join(dir, 'model.safetensors');
  const pth = join(dir, 'model.pth');
  await writeSafetensors(
    safetensors,
    tensors.map((x) => ({ ...x, data: async function* () { yield* blockStream(x.byteLength); } })),
    { metadata: { format: 'pt' } },
  );
  await writeTorchCheckpoint(pth, tensors.map((x) => ({ ...x, data: () => blockStream(x.byteLength) })), { archiveName: 'model' });
  return { safetensors, pth };
}

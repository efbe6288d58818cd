// Pre-quantized checkpoints end to end (step 13): the tiny GPTQ / AWQ / compressed-tensors models
// of test/fixtures/quantized/models/ (make_quantized_models.py: packed by quantized_packers.py,
// the reference an independent float32 forward over the dequantized weights) load through the
// repack on the GPU and greedy-decode the reference's ids exactly with F32 compute; device memory
// peaks at the kept weights + the load's scratch (never every packed tensor at once).
// Malformed checkpoints fail before any upload with one line naming the tensors.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { openCheckpointSource } from '../../src/checkpoint/open.js';
import { openCheckpoint } from '../../src/checkpoint/open-path.js';
import type { Checkpoint, TensorInfo } from '../../src/checkpoint/types.js';
import { isSluiceError } from '../../src/errors.js';
import { serializeSafetensors, type TensorToWrite } from '../../src/formats/safetensors/writer.js';
import { loadTensors } from '../../src/gpu/load-tensors.js';
import { MemorySource } from '../../src/io/memory-source.js';
import { modelConfig, type ModelConfig } from '../../src/model/config.js';
import type { PreparedOp } from '../../src/ops/op.js';
import { LlamaModel } from '../../src/model/llama.js';
import { weightNames } from '../../src/model/weights.js';
import { trackPeak } from '../support/device-peak.js';
import { spyDevice, useGpuTestDevice } from '../support/gpu-helpers.js';
import { greedy, type Reference } from '../support/model-reference.js';

const gpu = useGpuTestDevice('test.prequantized');
const stats = process.env.PREQUANTIZED_STATS ? console.log : () => {};

const dir = (name: string) => `test/fixtures/quantized/models/${name}`;
const rawConfig = (name: string) => JSON.parse(readFileSync(`${dir(name)}/config.json`, 'utf8')) as Record<string, unknown>;
const reference = (name: string) => JSON.parse(readFileSync(`${dir(name)}/reference.json`, 'utf8')) as Reference & { quantization: { linears: number } };

async function withCheckpoint<T>(name: string, use: (c: Checkpoint) => Promise<T>): Promise<T> {
  const checkpoint = await openCheckpoint(`${dir(name)}/model.safetensors`);
  try {
    return await use(checkpoint);
  } finally {
    await checkpoint.close();
  }
}

// name → what its linears become; f16: also checked with F16 compute (all five hold there too,
// measured when written; three keep the file under 20 s: one per tool)
const FIXTURES = {
  'gptq-llama-actorder': { kind: 'q4', zeros: true, perms: true, f16: true },
  'gptq-v2-qwen2': { kind: 'q8', zeros: true, perms: false, f16: false },
  'awq-mistral': { kind: 'q4', zeros: true, perms: false, f16: true },
  'ct-w4a16-asym': { kind: 'q4', zeros: true, perms: false, f16: false },
  'ct-w8-phi3': { kind: 'q8', zeros: false, perms: false, f16: true },
} as const;

describe.each(Object.entries(FIXTURES))('%s', (name, want) => {
  it('F32 compute: the reference greedy ids exactly, prefill and multi-turn; every projection quantized, the rest dense', async () => {
    const ref = reference(name);
    const config = modelConfig(rawConfig(name));
    const started = performance.now();
    const model = await withCheckpoint(name, (c) => LlamaModel.load(c, config, gpu.device, { dtype: 'f32', contextLength: 64 }));
    const loadMs = performance.now() - started;
    try {
      const w = model.weights;
      // 7 projections a layer, (Phi-3: qkv_proj → q, k, v and one gate_up_proj = 6)
      const perLayer = config.features.fused ? 6 : 7;
      expect(w.quantized.size).toBe(perLayer * config.numLayers);
      expect([...w.quantized.values()].every((t) => t.kind === want.kind && t.hasZeros === want.zeros)).toBe(true);
      expect(w.has('model.embed_tokens.weight') && w.get('model.embed_tokens.weight')!.dtype === 'F32').toBe(true);
      expect(w.quantized.has('lm_head.weight')).toBe(false); // left dense by every tool here
      expect(w.notes).toEqual([expect.stringMatching(new RegExp(`^pre-quantized .* ${ref.quantization.linears} linears repacked on the GPU to ${want.kind} `))]);
      expect(w.inputPerms.size > 0).toBe(want.perms);
      expect(await greedy(model, ref.prompt_ids, 0, ref.greedy_ids.length)).toEqual(ref.greedy_ids);
      const m = ref.multi_turn;
      const first = await greedy(model, m.first_ids, 0, m.first_greedy_ids.length);
      const at = m.first_ids.length + first.length - 1;
      expect([first, await greedy(model, [first.at(-1)!, ...m.second_ids], at, m.greedy_after_both.length)]).toEqual([m.first_greedy_ids, m.greedy_after_both]);
      stats(`${name}: load ${loadMs.toFixed(0)} ms, ${w.deviceBytes} device bytes (${w.quantizedBytes} quantized), scratch ${w.scratchBytes}`);
    } finally {
      model.dispose();
    }
  });

  it('F16 compute: the same greedy ids (where the device has shader-f16)', async () => {
    if (!want.f16 || !gpu.device.features.has('shader-f16')) return; // not this fixture, or no F16 compute on this adapter
    const ref = reference(name);
    const model = await withCheckpoint(name, (c) => LlamaModel.load(c, modelConfig(rawConfig(name)), gpu.device, { dtype: 'f16', contextLength: 64 }));
    try {
      expect(await greedy(model, ref.prompt_ids, 0, ref.greedy_ids.length)).toEqual(ref.greedy_ids);
    } finally {
      model.dispose();
    }
  });
});

it('a device without shader-f16 (F32 compute, F32 scales, as SwiftShader in the browser): the same greedy ids', async () => {
  const name = 'ct-w4a16-asym';
  const spy = spyDevice(gpu.device, { features: new Set(['timestamp-query']) });
  const model = await withCheckpoint(name, (c) => LlamaModel.load(c, modelConfig(rawConfig(name)), spy.device, { contextLength: 32 }));
  try {
    expect([model.dtype, [...model.weights.quantized.values()].every((t) => t.scaleDtype === 'F32')]).toEqual(['F32', true]);
    const ref = reference(name);
    expect(await greedy(model, ref.prompt_ids, 0, 12)).toEqual(ref.greedy_ids.slice(0, 12));
  } finally {
    model.dispose();
  }
});

it('act-order: q/k/v share one input permutation and gate/up another (one gather each); o, down and a v_proj with its own order have theirs', async () => {
  const name = 'gptq-llama-actorder';
  const config = modelConfig(rawConfig(name));
  const model = await withCheckpoint(name, (c) => LlamaModel.load(c, config, gpu.device, { dtype: 'f32', contextLength: 16 }));
  try {
    const perm = (layer: number, m: string) => model.weights.inputPerms.get(`model.layers.${layer}.${m}.weight`);
    expect(perm(0, 'self_attn.q_proj')).toBe(perm(0, 'self_attn.k_proj'));
    expect(perm(0, 'self_attn.q_proj')).toBe(perm(0, 'self_attn.v_proj'));
    expect(perm(0, 'mlp.gate_proj')).toBe(perm(0, 'mlp.up_proj'));
    expect(perm(1, 'self_attn.v_proj')).not.toBe(perm(1, 'self_attn.q_proj'));
    const distinct = new Set([...model.weights.inputPerms.values()]);
    expect(distinct.size).toBe(2 * 4 + 1); // per layer: qkv, o, gate/up, down; + layer 1's v_proj
    expect(model.weights.inputPerms.size).toBe(2 * 7);
    // The gathers a decode step runs: one per (input, permutation) in a row, before the first linear reading it.
    const decode = (model as unknown as { decode: { ops: PreparedOp[] } }).decode.ops;
    const gathers = (layer: number) => ['q_proj', ...(layer === 1 ? ['v_proj'] : []), 'o_proj', 'gate_proj', 'down_proj'].map((m) => `decode.layers.${layer}.${m}.permute`);
    expect(decode.map((op) => op.label).filter((l) => l.endsWith('.permute'))).toEqual([...gathers(0), ...gathers(1)]);
  } finally {
    model.dispose();
  }
});

it('device memory: peak = kept weights + the load scratch (staging, two linears of packed sources at most); nothing else left', async () => {
  for (const name of Object.keys(FIXTURES)) {
    const config = modelConfig(rawConfig(name));
    await withCheckpoint(name, async (checkpoint) => {
      const names = weightNames(config, checkpoint.tensors(), name);
      const { device, state } = trackPeak(spyDevice(gpu.device));
      // 2 KiB staging slots: the packed sources, not the ring, dominate the scratch.
      const options = { dtype: 'f32', stagingBytes: 4096, stagingSlots: 2, filter: (t: TensorInfo) => names.all.has(t.name) } as const;
      const loaded = await loadTensors(checkpoint, device, { ...options, prequantized: { linears: names.packed } });
      try {
        const bytes = (n: string) => Math.ceil(checkpoint.info(n).byteLength / 16) * 16; // buffers are padded to 16
        const perLinear = names.packed.map((l) => [l.qweight, l.scales, ...(l.zeros ? [l.zeros] : [])].reduce((sum, n) => sum + bytes(n), 0));
        const sources = perLinear.reduce((a, b) => a + b, 0);
        const [first, second] = [...perLinear].sort((a, b) => b - a);
        const staging = 4096 + 2048; // the ring, and the convert scratch of the dense F16/BF16 tensors
        expect(state.live).toBe(loaded.deviceBytes); // the repack's temporaries and status words freed
        expect(loaded.scratchBytes).toBeLessThanOrEqual(staging + first + second);
        expect(state.peak).toBeLessThanOrEqual(loaded.deviceBytes + loaded.scratchBytes + 2048); // + Params uniforms in flight
        expect(state.peak - loaded.deviceBytes).toBeLessThan(sources); // never every packed tensor at once
        stats(`${name}: peak ${state.peak} B = kept ${loaded.deviceBytes} + ${state.peak - loaded.deviceBytes} (bound ${loaded.scratchBytes}); all packed sources ${sources} B`);
      } finally {
        loaded.destroy();
        await gpu.device.queue.onSubmittedWorkDone();
      }
    });
  }
});

it('a packed tensor over one binding (the repack reads each from one buffer) is refused before anything is allocated', async () => {
  const config = modelConfig(rawConfig('gptq-llama-actorder'));
  await withCheckpoint('gptq-llama-actorder', async (checkpoint) => {
    const names = weightNames(config, checkpoint.tensors(), 'm');
    const spy = spyDevice(gpu.device);
    const e = await loadTensors(checkpoint, spy.device, { maxChunkBytes: 2048, prequantized: { linears: names.packed } }).catch((err: Error) => err);
    expect(isSluiceError(e, 'TENSOR_TOO_LARGE')).toBe(true);
    expect((e as Error).message).toMatch(/model\.safetensors: packed tensor "model\.layers\.0\.mlp\.gate_proj\.qweight" is 4096 bytes; the GPU repack reads it from one buffer, and this device binds at most 2048$/);
    expect(spy.created).toEqual([]);
  });
});

// ─── malformed checkpoints ───

const GPTQ = 'gptq-llama-actorder';
const infos = await withCheckpoint(GPTQ, async (c) => c.tensors());
const gptqConfig = (quantization: Record<string, unknown> = {}) => {
  const raw = rawConfig(GPTQ);
  return modelConfig({ ...raw, quantization_config: { ...(raw.quantization_config as object), ...quantization } });
};
const L0 = 'model.layers.0';

/** weightNames' error for a header change: one line, a SluiceError. */
function headerProblem(config: ModelConfig, tensors: TensorInfo[]): string {
  try {
    weightNames(config, tensors, 'm/');
  } catch (e) {
    expect(isSluiceError(e, 'UNSUPPORTED_ARCH')).toBe(true);
    expect((e as Error).message).not.toContain('\n');
    return (e as Error).message;
  }
  throw new Error('no error');
}
const edit = (name: string, change: Partial<TensorInfo> | null) =>
  infos.flatMap((t) => (t.name !== name ? [t] : change === null ? [] : [{ ...t, ...change }]));

describe('a malformed checkpoint: one line naming the tensors, before anything loads', () => {
  it('packed shapes that contradict the bits in config.json', () => {
    expect(headerProblem(gptqConfig({ bits: 8 }), infos)).toMatch(
      new RegExp(`^m/: the weights do not match config\\.json \\(LlamaForCausalLM, 2 layers\\): ${L0}\\.self_attn\\.q_proj\\.qweight is \\[8, 64\\]; with 8 bits, K = 64 and N = 64 expected \\[16, 64\\], .* and 9 more$`),
    );
  });

  it('a scale tensor missing', () => {
    expect(headerProblem(gptqConfig(), edit('model.layers.1.mlp.down_proj.scales', null))).toMatch(/: model\.layers\.1\.mlp\.down_proj\.scales is missing; gptq stores it$/);
  });

  it('a layer quantized with another group size than config.json', () => {
    const tensors = edit(`${L0}.mlp.up_proj.scales`, { shape: [1, 128] });
    expect(headerProblem(gptqConfig(), tensors)).toMatch(/: model\.layers\.0\.mlp\.up_proj\.scales \[1, 128\] is quantized with per channel, config\.json says group size 32$/);
    expect(headerProblem(gptqConfig({ group_size: 64 }), infos)).toMatch(/: model\.layers\.0\.self_attn\.q_proj\.scales \[2, 64\] is quantized with group size 32, config\.json says group size 64, /);
  });

  it('wrong dtypes, and every problem in the one line', () => {
    const tensors = edit(`${L0}.self_attn.k_proj.qweight`, { dtype: 'F16' }).filter((t) => t.name !== 'model.norm.weight');
    const message = headerProblem(gptqConfig(), tensors);
    expect(message).toContain('missing model.norm.weight');
    expect(message).toContain(`${L0}.self_attn.k_proj.qweight is F16; gptq stores it as I32 or U32`);
  });

  it('Phi-3: a packed fused qkv_proj becomes q, k and v by output rows (no dense split); gate_up_proj stays one', async () => {
    const phi3 = await withCheckpoint('ct-w8-phi3', async (c) => weightNames(modelConfig(rawConfig('ct-w8-phi3')), c.tensors(), 'm/'));
    const qkv = `${L0}.self_attn.qkv_proj`;
    expect(phi3.splits).toEqual([]);
    expect(phi3.packed.find((l) => l.module === qkv)).toMatchObject({ format: 'int-quantized', groupSize: 64, k: 64, n: 192, qweight: `${qkv}.weight`, scales: `${qkv}.weight_scale` });
    expect(phi3.packed.find((l) => l.module === qkv)!.outputs).toEqual(['q', 'k', 'v'].map((p, i) => ({ name: `${qkv}.weight[${p}]`, firstOutput: 64 * i, rows: 64 })));
    expect(phi3.packed.find((l) => l.module === `${L0}.mlp.gate_up_proj`)!.outputs).toEqual([{ name: `${L0}.mlp.gate_up_proj.weight`, firstOutput: 0, rows: 256 }]);
  });

  it('a linear stored both dense and packed', () => {
    const both = [...infos, { ...infos.find((t) => t.name === 'lm_head.weight')!, name: `${L0}.mlp.down_proj.weight`, shape: [64, 128] }];
    expect(headerProblem(gptqConfig(), both)).toMatch(/model\.layers\.0\.mlp\.down_proj is stored both dense \(model\.layers\.0\.mlp\.down_proj\.weight\) and packed$/);
  });
});

/** The fixture's tensors with `change` applied to some (and `more` added), written to memory and opened. */
async function corrupted(name: string, change: (t: TensorToWrite) => TensorToWrite | null, more: TensorToWrite[] = []): Promise<Checkpoint> {
  const tensors = await withCheckpoint(name, async (c) =>
    Promise.all(c.tensors().map(async (t): Promise<TensorToWrite> => ({ name: t.name, dtype: t.dtype, shape: t.shape, data: new Uint8Array(await c.read(t.name)) }))),
  );
  const kept = [...tensors.map(change).filter((t): t is TensorToWrite => t !== null), ...more];
  return openCheckpointSource(new MemorySource(await serializeSafetensors(kept), 'bad.safetensors'));
}

it('biases on packed linears (GPTQ-for-LLaMa wrote zero ones for every QuantLinear): expected, loaded, added by the bias kernels', async () => {
  const modules = infos.filter((t) => t.name.endsWith('.qweight')).map((t) => ({ module: t.name.replace(/\.qweight$/, ''), n: t.shape[1] }));
  const biases = modules.map(({ module, n }) => ({ name: `${module}.bias`, dtype: 'F16' as const, shape: [n], data: new Uint8Array(2 * n) }));
  const checkpoint = await corrupted(GPTQ, (t) => t, biases);
  try {
    const names = weightNames(gptqConfig(), checkpoint.tensors(), 'm/');
    expect([names.layers[1].qBias, names.layers[1].oBias, names.layers[1].gateBias, names.layers[1].upBias, names.layers[1].downBias]).toEqual(
      ['self_attn.q_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj'].map((m) => `model.layers.1.${m}.bias`),
    );
    const model = await LlamaModel.load(checkpoint, gptqConfig(), gpu.device, { dtype: 'f32', contextLength: 32 });
    try {
      const ref = reference(GPTQ);
      expect(await greedy(model, ref.prompt_ids, 0, 8)).toEqual(ref.greedy_ids.slice(0, 8)); // prefill (matmul + bias) and decode (gemv + bias)
    } finally {
      model.dispose();
    }
  } finally {
    await checkpoint.close();
  }
});

/** LlamaModel.load's error, with every buffer it made freed. */
async function loadError(checkpoint: Checkpoint, config: ModelConfig, options = {}): Promise<Error> {
  const spy = spyDevice(gpu.device);
  try {
    const e = await LlamaModel.load(checkpoint, config, spy.device, { dtype: 'f32', contextLength: 16, ...options }).then(
      (m) => (m.dispose(), new Error('loaded')),
      (err: Error) => err,
    );
    await gpu.device.queue.onSubmittedWorkDone();
    expect(spy.live()).toEqual([]);
    expect(e.message).not.toContain('\n');
    return e;
  } finally {
    await checkpoint.close();
  }
}
const i32 = (t: TensorToWrite) => new Int32Array((t.data as Uint8Array).buffer);

describe('a malformed checkpoint whose header is fine: the index and zero-point values', () => {
  it('g_idx out of range, and a g_idx group without group-size columns → INVALID_INDEX naming both, before any weight is uploaded', async () => {
    const checkpoint = await corrupted(GPTQ, (t) => {
      if (t.name === `${L0}.mlp.down_proj.g_idx`) i32(t)[5] = 99;
      if (t.name === `${L0}.self_attn.o_proj.g_idx`) i32(t)[0] = (i32(t)[0] + 1) % 2;
      return t;
    });
    const e = await loadError(checkpoint, gptqConfig());
    expect(isSluiceError(e, 'INVALID_INDEX')).toBe(true);
    expect(e.message).toMatch(/^bad\.safetensors: model\.layers\.0\.self_attn\.o_proj\.g_idx: group \d has (31|33) columns, expected 32 \(K = 64\); model\.layers\.0\.mlp\.down_proj\.g_idx: value 99 at column 5 is out of range \(4 groups\)$/);
  });

  it('compressed-tensors weight_shape other than [N, K]', async () => {
    const checkpoint = await corrupted('ct-w4a16-asym', (t) => {
      if (t.name === `${L0}.mlp.gate_proj.weight_shape`) new BigInt64Array((t.data as Uint8Array).buffer)[1] = 65n;
      return t;
    });
    const e = await loadError(checkpoint, modelConfig(rawConfig('ct-w4a16-asym')));
    expect(e.message).toBe('bad.safetensors: model.layers.0.mlp.gate_proj.weight_shape is [128, 65], expected [128, 64]');
  });

  it('a GPTQ v1 zero point of 0 (stored as 2^bits − 1) → an error naming the qzeros tensor; everything freed', async () => {
    const checkpoint = await corrupted(GPTQ, (t) => {
      if (t.name === 'model.layers.1.mlp.up_proj.qzeros') i32(t)[0] |= 0xf;
      return t;
    });
    const e = await loadError(checkpoint, gptqConfig());
    expect(e.message).toMatch(/^model\.layers\.1\.mlp\.up_proj\.qzeros: the zero point of output 0, group 0 is stored as 15/);
  });

  it('quantize on load asked of a pre-quantized checkpoint → USAGE', async () => {
    const e = await loadError(await openCheckpoint(`${dir(GPTQ)}/model.safetensors`), gptqConfig(), { quantize: 'q8' });
    expect(isSluiceError(e, 'USAGE')).toBe(true);
    expect(e.message).toMatch(/model\.safetensors: the weights are already quantized \(gptq, 4-bit, group 32\); quantize q8 applies to float checkpoints only \(drop --quantize\)$/);
  });
});

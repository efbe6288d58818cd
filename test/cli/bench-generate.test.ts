// `sluice bench generate` on a tiny reference model: the JSON has every figure, and they
// agree with each other and with the model (dispatch count, weight bytes). No speed asserted.

import { describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';

describe('sluice bench generate', () => {
  it('--json: speeds, per-token costs, weight bandwidth vs the read limit', async () => {
    const { code, stdout, stderr } = await runCli(['bench', 'generate', 'test/fixtures/models/llama-gqa', '--prompt-tokens', '20', '--tokens', '8', '--json', '--dtype', 'f32']);
    expect([code, stderr]).toEqual([0, '']);
    const r = JSON.parse(stdout);
    expect(r).toMatchObject({ compute_dtype: 'F32', prompt_tokens: 20, generated_tokens: 8, submits_per_token: 1, readback_bytes_per_token: 4 });
    // 2 layers × (norm, q, k, v, rope, kv_store, attention, o, add, norm, gate, up, swiglu, down, add)
    // + embedding + final norm + LM head + sampler; the tiny cache fits one decode split.
    expect(r.dispatches_per_token).toBe(2 * 15 + 1 + 2 + 1);
    // Every weight once in f32, the tied table as the LM head, plus one embedding row.
    const params = 256 * 64 + 64 + 2 * (2 * 64 + 64 * 64 + 2 * 32 * 64 + 64 * 64 + 3 * 160 * 64);
    expect(r.weight_bytes_per_token).toBe(params * 4 + 64 * 4);
    for (const key of ['ttft_ms', 'prefill_tokens_per_second', 'decode_tokens_per_second', 'weight_gbps', 'read_limit_gbps']) expect(r[key], key).toBeGreaterThan(0);
    expect(r.weight_over_read).toBeCloseTo(r.weight_gbps / r.read_limit_gbps, 1);
  });

  it('usage errors', async () => {
    expect((await runCli(['bench', 'generate'])).code).toBe(2);
    expect((await runCli(['bench', 'generate', 'x', '--tokens', '0'])).code).toBe(2);
  });
});

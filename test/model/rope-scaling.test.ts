// rope-scaling.ts against transformers' rope functions, re-implemented in torch float32 by
// test/fixtures/make_rope_references.py (tables committed in test/fixtures/rope/).

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { isSluiceError } from '../../src/errors.js';
import { type RopeParseOptions, type RopeScaling, parseRope, ropeForLayer, ropeTableSeqLen, ropeTables } from '../../src/model/rope-scaling.js';

interface Table {
  seqLen: number | null;
  invFreq: number[];
  invFreqExactPow: number[];
  attentionFactor: number;
}
interface Case {
  name: string;
  config: Record<string, unknown>;
  options: { headDim?: number; phi3?: boolean };
  layerType: string | null;
  tables: Table[];
}
const refs = JSON.parse(readFileSync(new URL('../fixtures/rope/rope-references.json', import.meta.url), 'utf8')) as { cases: Case[] };

/** Phi3Config's rope handling, as the Phi-3 family record would pass it. */
const PHI3: RopeParseOptions = { typeAliases: { su: 'longrope', yarn: 'longrope' }, originalMaxPositionEmbeddings: 4096 };
const optionsOf = (c: Case): RopeParseOptions => ({ ...(c.options.phi3 ? PHI3 : {}), ...(c.options.headDim ? { headDim: c.options.headDim } : {}) });

/** Distance in f32 ulps (values of one sign, as every inv_freq is). */
function ulps(a: number, b: number): number {
  const bits = new Int32Array(new Float32Array([a, b]).buffer);
  return Math.abs(bits[0] - bits[1]);
}

describe('ropeTables against the torch references', () => {
  let worst = 0;
  const rows = refs.cases.flatMap((c) => c.tables.map((t) => [`${c.name}${c.layerType ? ` [${c.layerType}]` : ''}, seq_len ${t.seqLen ?? 'init'}`, c, t] as const));

  it.each(rows)('%s', (_, c, t) => {
    const rope = ropeForLayer(parseRope(c.config, optionsOf(c)), c.layerType ?? undefined);
    const got = ropeTables(rope, t.seqLen ?? undefined);
    expect(got.invFreq.length).toBe(t.invFreq.length);
    // Bit for bit against the same f32 formulas with a correctly rounded pow: every other
    // operation and its order is torch's.
    expect(Array.from(got.invFreq)).toEqual(t.invFreqExactPow);
    // Within 1 ulp of torch itself: its f32 pow is SLEEF's powf (documented max error
    // 1.0 ulp), and the ops after it (reciprocal, ×, +) are exact roundings that keep a
    // 1-ulp input within 1 ulp here.
    const max = Math.max(...t.invFreq.map((x, i) => ulps(x, got.invFreq[i])));
    worst = Math.max(worst, max);
    expect(max).toBeLessThanOrEqual(1);
    // The attention factor is python float64 math (log, sqrt): exactly the same value.
    expect(got.attentionFactor).toBe(t.attentionFactor);
  });

  it('covers every rope type and reports the worst distance from torch', () => {
    const types = new Set(refs.cases.map((c) => ropeForLayer(parseRope(c.config, optionsOf(c)), c.layerType ?? undefined).type));
    expect([...types].sort()).toEqual(['default', 'dynamic', 'linear', 'llama3', 'longrope', 'yarn']);
    expect(worst).toBeLessThanOrEqual(1);
  });
});

// Moved from test/ops/rope.test.ts (its ropeInvFreq is gone): an independent check of the
// default, linear and llama3 formulas in float64, and llama3's three bands.
describe('default, linear and llama3 tables against HF\'s formulas', () => {
  const LLAMA3_SCALING = { rope_type: 'llama3', factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 };
  // Llama-3.2-1B/3B's rope: theta 500000, llama3 scaling by 32 from an 8192 context.
  const LLAMA32 = { head_dim: 64, rope_theta: 500000, rope_scaling: LLAMA3_SCALING };
  const invFreqOf = (config: Record<string, unknown>): Float32Array => ropeTables(parseRope(config).rope).invFreq;

  /** HF's rope init functions transcribed in float64 (no f32 rounding anywhere). */
  function invFreq64(config: { head_dim: number; rope_theta: number; rope_scaling?: Record<string, unknown> }): number[] {
    const { head_dim: d, rope_theta: theta } = config;
    const s = (config.rope_scaling ?? {}) as Record<string, number | string>;
    const inv = Array.from({ length: d / 2 }, (_, i) => 1 / theta ** ((2 * i) / d));
    const type = s.rope_type ?? s.type ?? 'default';
    if (type === 'linear') return inv.map((x) => x / (s.factor as number));
    if (type !== 'llama3') return inv;
    const [factor, low, high, old] = [s.factor, s.low_freq_factor, s.high_freq_factor, s.original_max_position_embeddings] as number[];
    return inv.map((x) => {
      const wavelen = (2 * Math.PI) / x;
      if (wavelen < old / high) return x;
      if (wavelen > old / low) return x / factor;
      const smooth = (old / wavelen - low) / (high - low);
      return ((1 - smooth) * x) / factor + smooth * x;
    });
  }

  it.each([
    ['default', { head_dim: 128, rope_theta: 10000 }],
    ['linear', { head_dim: 64, rope_theta: 10000, rope_scaling: { type: 'linear', factor: 4 } }],
    ['llama3 (Llama-3.2)', LLAMA32],
    ['llama3, head_dim 128 (Llama-3.1-8B)', { head_dim: 128, rope_theta: 500000, rope_scaling: { ...LLAMA3_SCALING, factor: 8 } }],
  ])('%s matches HF in float64', (_, config) => {
    const got = invFreqOf(config);
    const want = invFreq64(config);
    expect(got.length).toBe(want.length);
    // f32 emulation vs float64: ~6 f32 roundings, and theta^e amplifies the exponent's
    // rounding (2^-25 relative) by ln(theta) ≤ 13.2: a few 2^-24 ulps in all.
    const worst = Math.max(...want.map((w, i) => Math.abs(got[i] - w) / Math.abs(w)));
    expect(worst).toBeLessThanOrEqual(2 ** -19);
  });

  it('llama3: high frequencies kept, low ones divided by the factor exactly, the middle between', () => {
    const base = invFreqOf({ head_dim: 64, rope_theta: 10000 });
    const base500k = invFreqOf({ head_dim: 64, rope_theta: 500000 });
    const got = invFreqOf(LLAMA32);
    expect(base).not.toEqual(base500k);
    let kept = 0;
    let divided = 0;
    let middle = 0;
    got.forEach((x, i) => {
      const wavelen = (2 * Math.PI) / base500k[i];
      if (wavelen < 8192 / 4) expect(x, `i=${i}`).toBe(base500k[i]), kept++;
      else if (wavelen > 8192 / 1) expect(x, `i=${i}`).toBe(base500k[i] / 32), divided++;
      else expect(x > base500k[i] / 32 && x < base500k[i], `i=${i}`).toBe(true), middle++;
    });
    // Llama-3.2's table has all three bands.
    expect([kept > 0, divided > 0, middle > 0]).toEqual([true, true, true]);
  });

  it('`rope_scaling: {rope_type: "default"}`, null and none are all the default table', () => {
    const none = invFreqOf({ head_dim: 8, rope_theta: 1e4 });
    expect(invFreqOf({ head_dim: 8, rope_theta: 1e4, rope_scaling: { rope_type: 'default' } })).toEqual(none);
    expect(invFreqOf({ head_dim: 8, rope_theta: 1e4, rope_scaling: null })).toEqual(none);
  });
});

describe('parseRope', () => {
  const llama = { hidden_size: 4096, num_attention_heads: 32, max_position_embeddings: 4096, rope_theta: 10000 };

  it('reads type or rope_type, rope_scaling or rope_parameters, theta at the top or inside', () => {
    const yarn = { factor: 4, original_max_position_embeddings: 32768 };
    const a = parseRope({ ...llama, rope_theta: 1e6, rope_scaling: { type: 'yarn', ...yarn } }).rope;
    const b = parseRope({ ...llama, rope_theta: 1e6, rope_scaling: { rope_type: 'yarn', ...yarn } }).rope;
    const c = parseRope({ ...llama, rope_theta: undefined, rope_parameters: { rope_type: 'yarn', rope_theta: 1e6, ...yarn } }).rope;
    expect(b).toEqual(a);
    expect(c).toEqual(a);
    // `rope_scaling or rope_parameters`: the legacy key wins; the dict's own rope_theta wins over the top-level one.
    const d = parseRope({ ...llama, rope_scaling: { type: 'linear', factor: 2, rope_theta: 5e5 }, rope_parameters: { rope_type: 'default' } }).rope;
    expect([d.type, d.theta]).toEqual(['linear', 5e5]);
    // No rope settings at all: the default rope on the family's theta.
    expect(parseRope({ hidden_size: 64, num_attention_heads: 2 }, { defaultTheta: 1e6 }).rope).toEqual({ type: 'default', theta: 1e6, headDim: 32, rotaryDim: 32, attentionFactor: 1 });
  });

  it('takes original_max_position_embeddings from the top level first (Phi-3), then rope_scaling, then max_position_embeddings', () => {
    const base = { ...llama, max_position_embeddings: 131072, rope_scaling: { type: 'yarn', factor: 4, original_max_position_embeddings: 8192 } };
    const orig = (cfg: Record<string, unknown>, options?: RopeParseOptions) => (parseRope(cfg, options).rope as { originalMaxPositionEmbeddings: number }).originalMaxPositionEmbeddings;
    expect(orig(base)).toBe(8192);
    expect(orig({ ...base, original_max_position_embeddings: 4096 })).toBe(4096);
    expect(orig({ ...base, rope_scaling: { type: 'yarn', factor: 4 } })).toBe(131072);
    expect(orig({ ...base, rope_scaling: { type: 'yarn', factor: 4 } }, { originalMaxPositionEmbeddings: 4096 })).toBe(4096); // a family default (Phi3Config's)
  });

  it('maps legacy Phi-3 type names only where the family says so', () => {
    const cfg = { ...llama, hidden_size: 3072, rope_scaling: { type: 'su', short_factor: Array(48).fill(1), long_factor: Array(48).fill(2) } };
    expect(parseRope(cfg, PHI3).rope.type).toBe('longrope');
    expect(() => parseRope(cfg)).toThrow(/rope_scaling\.rope_type "su" is not supported/);
  });

  it('Gemma 3: rope_local_base_freq (legacy) and per-layer-type rope_parameters (transformers 5) give the same ropes', () => {
    const gemma = { hidden_size: 2560, num_attention_heads: 8, head_dim: 256, max_position_embeddings: 131072 };
    const legacy = parseRope({ ...gemma, rope_theta: 1e6, rope_local_base_freq: 1e4, rope_scaling: { rope_type: 'linear', factor: 8 } });
    const nested = parseRope({
      ...gemma,
      rope_parameters: { full_attention: { rope_type: 'linear', factor: 8, rope_theta: 1e6 }, sliding_attention: { rope_type: 'default', rope_theta: 1e4 } },
    });
    expect(nested).toEqual(legacy);
    expect(ropeForLayer(legacy, 'sliding_attention')).toMatchObject({ type: 'default', theta: 1e4 });
    expect(ropeForLayer(legacy, 'full_attention')).toMatchObject({ type: 'linear', theta: 1e6, factor: 8 });
    expect(ropeForLayer(legacy)).toBe(legacy.rope);
    expect(parseRope({ ...llama, rope_theta: 1e6 }).byLayerType).toEqual({});
    // The family's defaults (Gemma3TextConfig: global 1e6, local 1e4) when config.json omits them.
    const gemmaDefaults = { defaultTheta: 1e6, defaultLocalTheta: 1e4 };
    expect(parseRope({ ...gemma, rope_scaling: { rope_type: 'linear', factor: 8 } }, gemmaDefaults)).toEqual(legacy);
    expect(parseRope({ ...gemma, rope_parameters: { full_attention: { rope_type: 'linear', factor: 8 }, sliding_attention: { rope_type: 'default' } } }, gemmaDefaults)).toEqual(legacy);
  });

  it('yarn attention factor: given, from mscale / mscale_all_dim, or 0.1 ln(factor) + 1', () => {
    const att = (extra: Record<string, unknown>) => parseRope({ ...llama, rope_scaling: { type: 'yarn', factor: 40, ...extra } }).rope.attentionFactor;
    expect(att({})).toBe(0.1 * Math.log(40) + 1);
    expect(att({ mscale: 0.707, mscale_all_dim: 0.707 })).toBe(1);
    expect(att({ mscale: 1, mscale_all_dim: 0 })).toBe(0.1 * Math.log(40) + 1); // `if mscale and mscale_all_dim`
    expect(att({ mscale: 1, mscale_all_dim: 0.707, attention_factor: 1.25 })).toBe(1.25);
    // factor null: max_position_embeddings / original_max_position_embeddings.
    expect((parseRope({ ...llama, max_position_embeddings: 16384, rope_scaling: { type: 'yarn', factor: null, original_max_position_embeddings: 4096 } }).rope as { factor: number }).factor).toBe(4);
  });
});

describe('sequence-length dependent tables', () => {
  it('dynamic: grows past the longest length seen, resets below max_position_embeddings (dynamic_frequency_update)', () => {
    const rope = parseRope({ hidden_size: 4096, num_attention_heads: 32, max_position_embeddings: 4096, rope_scaling: { type: 'dynamic', factor: 2 } }).rope;
    let state: number | undefined;
    const seen: number[] = [];
    for (const seqLen of [10, 4096, 4097, 5000, 4500, 5001, 4095, 100]) seen.push((state = ropeTableSeqLen(rope, state, seqLen)));
    expect(seen).toEqual([4096, 4096, 4097, 5000, 5000, 5001, 4096, 4096]);
    // Up to max_position_embeddings the table is the default one (base × 1^(d/(d−2)) = base).
    expect(ropeTables(rope, 4096).invFreq).toEqual(ropeTables({ ...rope, type: 'default' } as RopeScaling).invFreq);
    expect(ropeTables(rope, 4097).invFreq[1]).toBeLessThan(ropeTables(rope, 4096).invFreq[1]);
  });

  it('longrope: short factors up to original_max_position_embeddings, long ones past it; other types ignore seqLen', () => {
    const cfg = { hidden_size: 256, num_attention_heads: 8, max_position_embeddings: 8192, original_max_position_embeddings: 2048 };
    const rope = parseRope({ ...cfg, rope_scaling: { type: 'longrope', short_factor: Array(16).fill(1), long_factor: Array(16).fill(4) } }).rope;
    const plain = ropeTables({ ...rope, type: 'default' } as RopeScaling).invFreq;
    expect(ropeTables(rope).invFreq).toEqual(plain);
    expect(ropeTables(rope, 2048).invFreq).toEqual(plain);
    expect(ropeTables(rope, 2049).invFreq[3]).toBe(Math.fround(1 / Math.fround(4 * Math.fround(1 / plain[3]))));
    expect(ropeTableSeqLen(rope, 9000, 100)).toBe(100);
    const yarn = parseRope({ ...cfg, rope_scaling: { type: 'yarn', factor: 4 } }).rope;
    expect(ropeTables(yarn, 100000)).toEqual(ropeTables(yarn));
  });
});

describe('bad rope settings: one line naming the file and the key', () => {
  const cfg = { hidden_size: 4096, num_attention_heads: 32, max_position_embeddings: 4096 };
  const fails = (config: Record<string, unknown>, code: string, pattern: RegExp) => {
    let error: unknown;
    try {
      parseRope(config, { file: 'models/x/config.json' });
    } catch (e) {
      error = e;
    }
    expect(isSluiceError(error, code as never), String(error)).toBe(true);
    const message = (error as Error).message;
    expect(message).not.toContain('\n');
    expect(message.startsWith('models/x/config.json: ')).toBe(true);
    expect(message).toMatch(pattern);
  };

  it('refuses unknown types by name, listing the supported ones', () => {
    fails({ ...cfg, rope_scaling: { rope_type: 'mrope', factor: 2 } }, 'UNSUPPORTED_ARCH', /rope_scaling\.rope_type "mrope" is not supported \(supported: default, linear, dynamic, yarn, longrope, llama3\)/);
    fails({ ...cfg, rope_parameters: { type: 'ntk', factor: 2 } }, 'UNSUPPORTED_ARCH', /rope_parameters\.rope_type "ntk"/);
    fails({ ...cfg, rope_scaling: { type: 7 } }, 'INVALID_JSON', /rope_scaling\.rope_type must be a string, not 7/);
  });

  it('refuses missing and non-numeric factors', () => {
    fails({ ...cfg, rope_scaling: { type: 'linear' } }, 'INVALID_JSON', /rope_scaling\.factor is missing/);
    fails({ ...cfg, rope_scaling: { type: 'yarn' } }, 'INVALID_JSON', /rope_scaling\.factor is missing/);
    fails({ ...cfg, rope_scaling: { type: 'dynamic', factor: '2' } }, 'INVALID_JSON', /rope_scaling\.factor must be a number > 0, not "2"/);
    fails({ ...cfg, rope_scaling: { rope_type: 'llama3', factor: 8, high_freq_factor: 4, original_max_position_embeddings: 8192 } }, 'INVALID_JSON', /rope_scaling\.low_freq_factor is missing/);
    fails({ ...cfg, rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 4, high_freq_factor: 1 } }, 'INVALID_JSON', /rope_scaling\.high_freq_factor must exceed/);
    fails({ ...cfg, rope_scaling: { type: 'yarn', factor: 4, beta_fast: 'x' } }, 'INVALID_JSON', /rope_scaling\.beta_fast must be a number/);
    fails({ ...cfg, rope_theta: 'big' }, 'INVALID_JSON', /rope_theta must be a number > 0, not "big"/);
    fails({ ...cfg, rope_theta: 0 }, 'INVALID_JSON', /rope_theta must be a number > 0, not 0/);
    fails({ ...cfg, rope_scaling: 'linear' }, 'INVALID_JSON', /rope_scaling must be an object or null/);
    fails({ ...cfg, rope_scaling: [1], rope_parameters: {} }, 'INVALID_JSON', /rope_scaling must be an object or null, not \[1\]/);
    fails({ ...cfg, rope_parameters: { full_attention: { rope_type: 'linear' } } }, 'INVALID_JSON', /rope_parameters\.full_attention\.factor is missing/);
  });

  it('refuses longrope factor lists that are not rotary_dim / 2 numbers', () => {
    const longrope = (extra: Record<string, unknown>) => ({ ...cfg, rope_scaling: { type: 'longrope', short_factor: Array(64).fill(1), long_factor: Array(64).fill(2), ...extra } });
    fails(longrope({ long_factor: Array(63).fill(2) }), 'INVALID_JSON', /rope_scaling\.long_factor must have rotary_dim \/ 2 = 64 numbers, not 63/);
    fails({ ...longrope({}), partial_rotary_factor: 0.75 }, 'INVALID_JSON', /rope_scaling\.short_factor must have rotary_dim \/ 2 = 48 numbers, not 64/);
    fails(longrope({ short_factor: [...Array(63).fill(1), 'a'] }), 'INVALID_JSON', /rope_scaling\.short_factor\[63\] must be a number > 0, not "a"/);
    fails(longrope({ long_factor: undefined }), 'INVALID_JSON', /rope_scaling\.long_factor is missing/);
    // A hostile list is quoted, not printed whole.
    fails(longrope({ long_factor: 'x'.repeat(10000) }), 'INVALID_JSON', /must be a list of numbers, not "x+… \(10002 characters\)$/);
  });

  it('refuses odd or empty rotary dims', () => {
    fails({ ...cfg, partial_rotary_factor: 0.2 }, 'UNSUPPORTED_ARCH', /rotary dim 25 \(head_dim 128 × partial_rotary_factor 0\.2\)/);
    fails({ ...cfg, partial_rotary_factor: 0.01 }, 'UNSUPPORTED_ARCH', /rotary dim 1 /);
    fails({ ...cfg, partial_rotary_factor: 1.5 }, 'INVALID_JSON', /partial_rotary_factor must be in \(0, 1\]/);
    fails({ ...cfg, head_dim: 63 }, 'UNSUPPORTED_ARCH', /rotary dim 63 \(head_dim 63 × partial_rotary_factor 1\)/);
  });
});

// The real config.json of each model `sluice bench generate --synthetic NAME` can imitate,
// as published in its Hugging Face repository (fields kept verbatim; imported, so the
// build emits them beside this file and the CLI needs no download).

import gemma3_1b from './gemma-3-1b.json' with { type: 'json' };
import llama32_1b from './llama-3.2-1b.json' with { type: 'json' };
import phi4Mini from './phi-4-mini.json' with { type: 'json' };
import qwen25_05b from './qwen2.5-0.5b.json' with { type: 'json' };
import qwen3_06b from './qwen3-0.6b.json' with { type: 'json' };
import smollm2_135m from './smollm2-135m.json' with { type: 'json' };

export interface SyntheticModel {
  name: string;
  /** The Hugging Face repository the config comes from. */
  repo: string;
  config: Record<string, unknown>;
}

export const SYNTHETIC_MODELS: readonly SyntheticModel[] = [
  { name: 'smollm2-135m', repo: 'HuggingFaceTB/SmolLM2-135M-Instruct', config: smollm2_135m },
  { name: 'qwen2.5-0.5b', repo: 'Qwen/Qwen2.5-0.5B', config: qwen25_05b },
  { name: 'qwen3-0.6b', repo: 'Qwen/Qwen3-0.6B', config: qwen3_06b },
  { name: 'gemma-3-1b', repo: 'google/gemma-3-1b-it', config: gemma3_1b },
  { name: 'llama-3.2-1b', repo: 'meta-llama/Llama-3.2-1B-Instruct', config: llama32_1b },
  { name: 'phi-4-mini', repo: 'microsoft/Phi-4-mini-instruct', config: phi4Mini },
];

export function syntheticModel(name: string): SyntheticModel | undefined {
  return SYNTHETIC_MODELS.find((m) => m.name === name);
}

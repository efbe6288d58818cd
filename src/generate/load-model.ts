// The embedding API (Node): a model directory, base URL or Hub name (`org/name[@rev]`,
// from the HF cache, downloaded there when missing) → a model that streams chat
// replies and completions, queued one at a time, and frees every GPU buffer on dispose.
//
//   const model = await loadModel('path/to/model', { onProgress });
//   for await (const d of model.chat([{ role: 'user', content: 'Hi' }])) process.stdout.write(d.text);
//   model.dispose();
//
// Several models may share one device (pass `device`); without one, the model acquires
// its own and releases it on dispose.

import type { DtypeChoice } from '../gpu/load-tensors.js';
import { acquireNodeDevice } from '../gpu/node-gpu.js';
import { resolveModel } from '../hub/resolve.js';
import type { QuantKind } from '../gpu/quantized-tensor.js';
import type { KernelChoice } from '../model/kernel-family.js';
import type { PullProgress } from '../hub/pull.js';
import { openModel, type ModelProgress } from '../model/open-model.js';
import { checkTemplateVariables } from '../text/chat-template.js';
import { createSluiceModel, lastSegment, type SluiceModel } from './sluice-model.js';

export type { SluiceModel } from './sluice-model.js';

export interface LoadModelApiOptions {
  /** A device to share with other models; default: one of its own. */
  device?: GPUDevice;
  /** Compute precision: 'auto' (default: f16 where the device has shader-f16), 'f16', 'f32'. */
  dtype?: DtypeChoice;
  /** Quantize the projections on the GPU as they load: 'q8' or 'q4' (group 32). Default: dense. */
  quantize?: QuantKind;
  /** KV cache positions (default min(max_position_embeddings, 4096)). */
  contextLength?: number;
  /**
   * Sequences generated at once, each in its own KV cache slot of contextLength positions
   * (continuous batching; default 1). Requests beyond wait for a slot.
   */
  parallel?: number;
  /**
   * The designs of the gemv, matmul and attention kernels: 'auto' (default: 'software' on a
   * CPU renderer, 'gpu' otherwise), 'software' or 'gpu'. Both give the same results.
   */
  kernels?: KernelChoice;
  /** Requests that may wait for a free slot (default 16; beyond: BUSY). */
  maxQueue?: number;
  onProgress?: (progress: ModelProgress) => void;
  signal?: AbortSignal;
  /** The model's name (servers list it); default: the Hub name, else the directory's or URL's last segment. */
  name?: string;
  /** A Hub name that is not cached is an error rather than a download (also HF_HUB_OFFLINE=1). */
  offline?: boolean;
  /** Download progress when a Hub name has to be pulled first. */
  onPullProgress?: (progress: PullProgress) => void;
  /** Chat template variables of every chat() (e.g. `{ enable_thinking: false }` for Qwen3,
   *  `{ date_string: '26 Jul 2024' }`); chat(messages, { templateVariables }) wins key by
   *  key. Reserved names (messages, add_generation_prompt, bos_token, tools…) are refused. */
  templateVariables?: Readonly<Record<string, unknown>>;
}

export async function loadModel(source: string, options: LoadModelApiOptions = {}): Promise<SluiceModel> {
  checkTemplateVariables(options.templateVariables, 'templateVariables'); // before any download or upload
  const resolved = await resolveModel(source, { download: true, offline: options.offline, pull: { onProgress: options.onPullProgress } });
  const name = options.name ?? resolved.name?.repo;
  source = resolved.path;
  const own = options.device ? null : await acquireNodeDevice({ label: `sluice.${lastSegment(source)}` });
  const device = options.device ?? own!.device;
  try {
    const opened = await openModel(source, device, options);
    return await createSluiceModel(opened, { maxQueue: options.maxQueue, name, templateVariables: options.templateVariables, onDispose: () => own?.destroy() });
  } catch (e) {
    own?.destroy();
    throw e;
  }
}

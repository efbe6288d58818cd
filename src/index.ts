// sluice's public, browser-safe API. Node-only additions (local files, the Dawn device,
// checksums) are in `sluice/node`.

export { SluiceError, isSluiceError, type ErrorCode } from './errors.js';
export { formatBytes } from './units.js';

// Sources of bytes
export type { ByteSource, SourceOpener } from './io/byte-source.js';
export { MemorySource } from './io/memory-source.js';
export { UrlSource, type UrlSourceOptions } from './io/url-source.js';
export { BlobSource } from './io/blob-source.js';
export { cachedFetch, type CachedFetchOptions, type DownloadCache } from './io/download-cache.js';

// Checkpoints
export type { Checkpoint, SliceRanges, TensorInfo, TensorSlice } from './checkpoint/types.js';
export { openCheckpointSource, openCheckpointUrl } from './checkpoint/open.js';
export { summarize, groupByLayer, type CheckpointSummary } from './checkpoint/summary.js';
export { DTYPES, dtypeBits, dtypeBytes, isDtype, type Dtype } from './formats/dtypes.js';
export { SafetensorsFile } from './formats/safetensors/file.js';
export { ShardedSafetensors } from './formats/safetensors/sharded.js';
export { MAX_HEADER_SIZE, parseHeader, parseHeaderLength, type SafetensorsHeader, type TensorEntry } from './formats/safetensors/header.js';

// GPU
export { acquireDevice, type AcquireOptions, type GpuContext } from './gpu/device.js';
export { describeAdapter, type AdapterReport } from './gpu/adapter-info.js';
export {
  loadTensors, resolveComputeDtype, GpuTensors, DEFAULT_STAGING_BYTES, DEFAULT_STAGING_SLOTS,
  type LoadOptions, type LoadProgress, type DtypeChoice,
} from './gpu/load-tensors.js';
export { singleBuffer, type GpuTensor, type GpuTensorChunk } from './gpu/gpu-tensor.js';
export { readBuffer, readTensor } from './gpu/read-back.js';
export { PipelineCache, pipelineCache, type PipelineSpec } from './gpu/pipeline-cache.js';
export { setShaderLoader, shaderSource, shaderTable, type ShaderLoader } from './gpu/shader-library.js';

// Safetensors writing (browser-safe: planning and streaming; files are in sluice/node)
export {
  planSafetensors, serializeSafetensors, streamSafetensors, tensorByteLength,
  type SafetensorsPlan, type TensorToWrite,
} from './formats/safetensors/writer.js';

// Models, text and generation (Node's loadModel, in sluice/node, adds paths and its own device)
export { parseModelConfig, modelConfig, SUPPORTED_ARCHITECTURES, type ModelConfig } from './model/config.js';
export { parseRope, ropeTables, SUPPORTED_ROPE_TYPES, type RopeScaling, type RopeSettings } from './model/rope-scaling.js';
export { FAMILIES, type Features, type LayerKind } from './model/families.js';
export { weightNames, type WeightNames } from './model/weights.js';
export { LlamaModel, PREFILL_CHUNK, type LoadModelOptions } from './model/llama.js';
export { parseGenerationConfig, type GenerationDefaults } from './model/generation-config.js';
export {
  openModelSource, openModelFromUrl, openModelFromFiles,
  type ModelSource, type OpenedModel, type OpenModelOptions, type UrlModelOptions,
  type ModelProgress, type DownloadProgress, type KernelsProgress,
} from './model/open-model-source.js';
export { Tokenizer, loadTokenizer, type ReadModelFile } from './text/tokenizer.js';
export { ChatTemplate, loadChatTemplate, type ChatMessage } from './text/chat-template.js';
export { Detokenizer } from './text/detokenizer.js';
export { StopMatcher, eosTokenIds } from './text/stop.js';
export { GpuSampler } from './generate/sampler.js';
export { type BatchBackend, type BatchOptions, type BatchRow, BatchScheduler, type BatchStats } from './generate/batch-scheduler.js';
export { ModelBatchBackend } from './generate/model-backend.js';
export { CompiledGrammar, compileGrammar, type GrammarOptions, type GrammarSource, GrammarMatcher, TokenVocabulary } from './grammar/index.js';
export { RowSampler, type RowRequest, type SamplerConfig } from './generate/row-sampler.js';
export type { TokenLogprob, TokenLogprobs } from './ops/logprobs.js';
export { generate, type GenerateOptions, type GenerationDelta, type GenerationStats, type GrammarStats } from './generate/generate.js';
export { ChatSession, type ChatTurnStats } from './generate/chat-session.js';
export { Engine, type ChatOptions, type ChatDelta, type CompletionStats } from './generate/engine.js';
export { type ToolDefinition, type ToolChoice, type ToolCall, type ToolCallSyntax, ToolCallParser, toolCallSyntax } from './text/tool-calls.js';
export { type ResponseFormat, type ChatPlan } from './generate/chat-plan.js';
export { createSluiceModel, type SluiceModel, type SluiceModelOptions } from './generate/sluice-model.js';
export { DEFAULT_SAMPLING, type PenaltyParams, type SamplingParams } from './ops/sample.js';

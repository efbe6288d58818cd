// Every pipeline variant of every kernel, by its cache key, so one test compiles them all
// (getCompilationInfo: no errors, no warnings) and no variant rots unseen. Each op file
// exports its own list; add new ops here.

import type { PipelineSpec } from '../gpu/pipeline-cache.js';
import { addVariants } from './add.js';
import { argmaxVariants } from './argmax.js';
import { attentionVariants } from './attention.js';
import { bandwidthVariants } from './bandwidth.js';
import { CONVERT_WORKGROUP, convertPipelineKey } from './convert.js';
import { embeddingVariants } from './embedding.js';
import { gemvBatchVariants, gemvVariants } from './gemv.js';
import { qkvRopeStoreVariants } from './qkv-rope-store.js';
import { normAddNormVariants } from './norm-add-norm.js';
import { attentionTiledVariants } from './attention-tiled.js';
import { gemvCoalescedVariants } from './gemv-coalesced.js';
import { matmulTiledVariants } from './matmul-tiled.js';
import { kvStoreVariants } from './kv-store.js';
import { logprobsVariants } from './logprobs.js';
import { matmulVariants } from './matmul.js';
import { qembeddingVariants } from './qembedding.js';
import { qgemvVariants } from './qgemv.js';
import { qmatmulVariants } from './qmatmul.js';
import { quantizeVariants } from './quantize.js';
import { repackVariants } from './repack.js';
import type { ComputeDtype } from './op.js';
import { permuteVariants } from './permute.js';
import { rmsNormVariants } from './rms-norm.js';
import { scaleColumnsVariants } from './scale-columns.js';
import { sampleVariants } from './sample.js';
import { softcapVariants } from './softcap.js';
import { softmaxVariants } from './softmax.js';
import { ropeVariants } from './rope.js';
import { swigluVariants } from './swiglu.js';

export interface Variant {
  key: string;
  spec: PipelineSpec;
}

function convertVariants(): Variant[] {
  const pairs = [['BF16', 'F32'], ['F16', 'F32'], ['BF16', 'F16'], ['F32', 'F16']] as const;
  return pairs.map(([from, to]) => ({
    key: convertPipelineKey(from, to),
    spec: { shader: 'convert', flags: [`SRC_${from}`, ...(to === 'F16' ? ['DST_F16'] : [])], constants: { WORKGROUP_SIZE: CONVERT_WORKGROUP } },
  }));
}

/** All variants the device can run: F16 ones only where it has shader-f16. */
export function allVariants(features: ReadonlySet<string>): Variant[] {
  const dtypes: ComputeDtype[] = features.has('shader-f16') ? ['F32', 'F16'] : ['F32'];
  return [
    ...convertVariants(),
    ...bandwidthVariants(),
    ...addVariants(dtypes),
    ...embeddingVariants(dtypes, features),
    ...rmsNormVariants(dtypes, features),
    ...scaleColumnsVariants(dtypes, features),
    ...normAddNormVariants(dtypes, features),
    ...ropeVariants(dtypes, features),
    ...swigluVariants(dtypes, features),
    ...matmulVariants(dtypes, features),
    ...gemvVariants(dtypes, features),
    ...gemvBatchVariants(dtypes, features),
    ...gemvCoalescedVariants(dtypes, features),
    ...matmulTiledVariants(dtypes, features),
    ...qkvRopeStoreVariants(dtypes, features),
    ...quantizeVariants(),
    ...repackVariants(),
    ...permuteVariants(dtypes),
    ...qembeddingVariants(dtypes, features),
    ...qgemvVariants(dtypes, features),
    ...qmatmulVariants(dtypes, features),
    ...kvStoreVariants(dtypes, features),
    ...attentionVariants(dtypes, features),
    ...attentionTiledVariants(dtypes, features),
    ...softmaxVariants(dtypes, features),
    ...softcapVariants(),
    ...argmaxVariants(dtypes, features),
    ...sampleVariants(dtypes, features),
    ...logprobsVariants(dtypes, features),
  ];
}

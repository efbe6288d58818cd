// What a torch.save pickle describes, as plain data: the restricted unpickler builds these
// instead of executing anything, and the checkpoint reads bytes through them.

import type { Dtype } from '../dtypes.js';

/** A storage: `numel` elements of `dtype`, whose bytes are the zip entry `data/<key>`. */
export interface StorageRef {
  kind: 'storage';
  key: string;
  dtype: Dtype;
  /** Where torch had it ('cpu', 'cuda:0'); informative only. */
  location: string;
  numel: number;
}

/** A tensor as `torch._utils._rebuild_tensor_v2` describes it: a strided view of a storage. */
export interface TensorRef {
  kind: 'tensor';
  storage: StorageRef;
  /** In elements, not bytes. */
  storageOffset: number;
  shape: number[];
  /** In elements, per dimension. */
  stride: number[];
  requiresGrad: boolean;
}

export interface PickleTuple {
  kind: 'tuple';
  items: PickleValue[];
}

/** An allow-listed global that is not called (a storage class, a dtype, torch.device). */
export interface PickleGlobal {
  kind: 'global';
  module: string;
  name: string;
}

/** A dict or OrderedDict, insertion-ordered; keys are primitives or tuples. */
export type PickleDict = Map<PickleValue, PickleValue>;

export type PickleValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array // bytes / bytearray
  | PickleValue[] // list
  | PickleTuple
  | PickleDict
  | PickleGlobal
  | StorageRef
  | TensorRef;

// Every bound the PyTorch reader puts on a hostile checkpoint, in one place with its reason.
// The yardstick: the largest real checkpoints list ~100k tensors (a big MoE's state_dict,
// or a smaller model's training state with optimizer moments), in a data.pkl of ~15-30 MB
// (~150 bytes of pickle per tensor). Each bound leaves several times that room, and keeps
// the worst file under it to well below 1.5 GB of memory and a few seconds of work.
// Past a bound the file is refused with INVALID_PICKLE / INVALID_ZIP naming file and bound.

/** data.pkl holds structure, not weights: 64 MiB is 2-4× the largest real one (see above). */
export const MAX_PICKLE_BYTES = 64 * 1024 * 1024;

/** `byteorder` holds "little" or "big". */
export const MAX_BYTEORDER_BYTES = 16;

/**
 * Containers, tensors, storages and bytes objects the unpickler creates, a dict or set
 * counting 2. torch writes ~8 per tensor (the tensor, its storage, the persistent-id,
 * argument, size and stride tuples, an OrderedDict of hooks): 2^21 is ~260k tensors'
 * worth. At ≤ ~250 bytes per unit (half an empty Map plus the unpickler's bookkeeping)
 * that is ≤ 512 MiB, and a few seconds to build.
 */
export const MAX_OBJECTS = 2 ** 21;

/**
 * Items put into containers, all containers together (a dict entry counts 2, a copy made
 * by set() counts again): ~17 per tensor in torch's pickle, so 2^23 is ~490k tensors'
 * worth; ≤ ~40 bytes per item (a Map entry) keeps it ≤ 320 MiB.
 */
export const MAX_ITEMS = 2 ** 23;

/** One list, tuple, dict or set: a state_dict of 524k tensors is one dict of 2^19 entries, 8× that. */
export const MAX_CONTAINER = 2 ** 22;

/**
 * Tensors, as the unpickler rebuilds them and as the checkpoint names them (a tensor
 * reachable by several paths is named once per path, as torch.load's dict would show
 * it): 5× the ~100k of the largest real checkpoints.
 */
export const MAX_TENSORS = 2 ** 19;

/** Dimensions of one tensor: model weights have ≤ 5; 64 leaves room for anything real. */
export const MAX_RANK = 64;

/** bytes / bytearray made by the pickle, in all: the input itself is ≤ 64 MiB. */
export const MAX_BYTES = 2 ** 27;

/** One tensor name or metadata key (a dotted path): real names are < 200 characters. */
export const MAX_NAME_CHARS = 4096;

/** All names and metadata keys together: 524k names of 64 characters. */
export const MAX_ALL_NAMES_CHARS = 2 ** 25;

/** Steps of the walk that names tensors (one per container or leaf per path). */
export const MAX_WALK_STEPS = 2 ** 23;

/** Metadata entries (non-tensor leaves beside tensors): as many as tensors. */
export const MAX_METADATA_ENTRIES = 2 ** 19;

/** One metadata value's text: a shared or huge structure is cut here, with an ellipsis. */
export const MAX_METADATA_TEXT = 4096;

/**
 * All metadata text together (cut values included): 1024 values of the longest text. Real
 * metadata is a few short values, or ~100k of them beside optimizer state (~1M chars).
 */
export const MAX_ALL_METADATA_CHARS = 2 ** 22;

/**
 * Bytes that overlapping views (stride 0 from expand(), or strides that revisit elements)
 * add beyond the storage they read, all tensors together. A contiguous or plain strided
 * view's bytes lie in the file, so reading, hashing or converting the checkpoint is
 * bounded by its size; an overlapping view could otherwise claim petabytes from 8 bytes
 * (`--checksum` would hash forever). Real expanded buffers are small (a mask, an index
 * row): 1 GiB in all is generous and hashes in seconds.
 */
export const MAX_OVERLAP_BYTES = 2 ** 30;

// A shard index (`model.safetensors.index.json`, `pytorch_model.bin.index.json`) as
// transformers writes it:
//   {"metadata": {"total_size": N, ...}, "weight_map": {"tensor name": "shard file", ...}}
// Parsed strictly (duplicate tensor names refused) and with shard names that must stay
// inside the index's directory.

import { quote, SluiceError } from '../errors.js';
import { JsonFloat, type JsonObject, type JsonValue, JsonSyntaxError, parseStrictJson } from './strict-json.js';

/** An index bigger than this is not an index (Llama-405B's is ~100 KB). */
export const MAX_INDEX_BYTES = 64 * 1024 * 1024;

export interface ShardIndex {
  /** `metadata` as written (total_size among others), or {}. */
  metadata: Record<string, unknown>;
  /** tensor name → shard file name, in the order the index lists them. */
  weightMap: Map<string, string>;
  /** Distinct shard names, sorted (model-00001-of-0000N first). */
  shards: string[];
}

export function parseShardIndex(bytes: Uint8Array, indexName: string): ShardIndex {
  const bad = (what: string): never => {
    throw new SluiceError('INVALID_INDEX', `${indexName}: ${what}`);
  };
  let text = '';
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    bad('not valid UTF-8');
  }
  let root: JsonValue;
  try {
    root = parseStrictJson(text);
  } catch (e) {
    if (e instanceof JsonSyntaxError && e.duplicateKey !== undefined) bad(`lists ${JSON.stringify(e.duplicateKey)} twice`);
    return bad(`not valid JSON: ${(e as Error).message}`);
  }
  if (!isObject(root)) return bad('not a JSON object');
  const map = root.weight_map;
  if (!isObject(map)) return bad('has no "weight_map" object');
  const meta = root.metadata ?? {};
  if (!isObject(meta)) return bad('"metadata" is not an object');
  const weightMap = new Map<string, string>();
  for (const [tensor, shard] of Object.entries(map)) {
    if (typeof shard !== 'string') bad(`weight_map entry for ${JSON.stringify(tensor)} is not a file name`);
    checkShardName(shard as string, indexName);
    weightMap.set(tensor, shard as string);
  }
  // fromEntries defines own properties, so a "__proto__" key stays data.
  if (weightMap.size === 0) bad('"weight_map" lists no tensors');
  const metadata = plainJson(meta) as Record<string, unknown>;
  return { metadata, weightMap, shards: [...new Set(weightMap.values())].sort() };
}

/**
 * The strict parser's integers past 2^53 are bigints, which JSON.stringify cannot write
 * (`inspect --json` failed on them): safe ones become numbers, larger ones exact decimal
 * strings. Nesting is already bounded by the parser.
 */
function plainJson(v: JsonValue): unknown {
  if (v instanceof JsonFloat) return v.value;
  if (typeof v === 'bigint') return Number.isSafeInteger(Number(v)) ? Number(v) : v.toString();
  if (Array.isArray(v)) return v.map(plainJson);
  // fromEntries defines own properties, so a "__proto__" key stays data.
  if (typeof v === 'object' && v !== null) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plainJson(x)]));
  return v;
}

/**
 * A shard name must name a file beside the index or below it, never outside. Control
 * characters are refused too: a URL parser deletes tabs and newlines, so `.\n./x` would
 * pass a check made before parsing and then mean `../x`.
 */
export function checkShardName(name: string, indexName: string): void {
  const escapes =
    name === '' ||
    /[\u0000-\u001f\u007f]/.test(name) ||
    name.startsWith('/') ||
    name.startsWith('\\') ||
    /^[a-zA-Z]:/.test(name) || // C:\ or a URL scheme
    name.split(/[\\/]/).some((part) => part === '..' || part === '.' || part === '');
  if (escapes) {
    throw new SluiceError('INVALID_INDEX', `${indexName}: shard path ${quote(name)} is not a file inside the checkpoint directory`);
  }
}

function isObject(v: JsonValue | undefined): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

// Pre-quantized checkpoints (step 13): which linears of a checkpoint whose config.json has a
// quantization_config are stored packed, under which tensor names, checked against the
// header before anything loads. Every problem found is returned (weights.ts reports them all
// in one line, with the dense tensors' problems).
//
// A linear is packed when any tensor only its method writes is present (GPTQ/AWQ
// X.qweight/X.qzeros/X.scales/X.g_idx, compressed-tensors X.weight_packed/X.weight_scale/
// X.weight_zero_point/X.weight_shape, or an I8 X.weight with its X.weight_scale), else dense
// (X.weight). The tools leave some modules dense (lm_head always in AutoAWQ and AutoGPTQ
// unless GPTQModel's lm_head: true; compressed-tensors `ignore`; AutoAWQ
// `modules_to_not_convert`; GPTQModel's `dynamic` skips), so the tensors present decide, not
// those lists — but a quantized config whose linears are all dense is refused.
// The layouts themselves (shapes, dtypes, packing) are src/ops/repack-layout.ts's.

import type { TensorInfo } from '../checkpoint/types.js';
import type { PackedLinear } from '../gpu/load-prequantized.js';
import { checkPackedShapes, PACKED_TENSOR_NAMES, type PackedShapes } from '../ops/repack-layout.js';
import type { Quantization } from './quantization.js';

/** One linear of the forward pass, as the dense layout names it. */
export interface LinearSlot {
  /** The dense weight, e.g. model.layers.0.self_attn.q_proj.weight. */
  weight: string;
  /** [N outputs, K inputs]. */
  shape: readonly [number, number];
  /** What the forward pass reads of it: one name per range of output rows (Phi-3's fused qkv_proj: q, k, v). */
  outputs: PackedLinear['outputs'];
}

export interface PackedCheck {
  linears: PackedLinear[];
  /** Every packed tensor the linears read (the loader's dense filter skips them; not "unexpected"). */
  sources: Set<string>;
  problems: string[];
}

const moduleOf = (weight: string) => weight.replace(/\.weight$/, '');

/** compressed-tensors pack-quantized also stores the dense shape, [N, K] (I64 as compress_weight writes it; I32 in its compression_param_info). */
const WEIGHT_SHAPE = 'weight_shape';

/** Whether `weight`'s module is stored in `q`'s packed layout in this checkpoint. */
export function isPacked(q: Quantization, weight: string, present: ReadonlyMap<string, TensorInfo>): boolean {
  const module = moduleOf(weight);
  const names = PACKED_TENSOR_NAMES[q.format];
  const own = [names.qweight, names.scales, names.zeros, names.gIdx, ...(q.format === 'pack-quantized' ? [WEIGHT_SHAPE] : [])].filter((s) => s !== 'weight');
  // int-quantized keeps the name `weight`: an integer one is the packed form.
  return own.some((s) => present.has(`${module}.${s}`)) || (q.format === 'int-quantized' && present.get(weight)?.dtype === 'I8');
}

/**
 * The packed linears among `slots`, their source tensors, and every problem of their
 * headers: a tensor missing or of the wrong dtype or shape for the bits and group size,
 * a layer quantized with another group size than config.json's, a linear stored both ways.
 * The values of g_idx and weight_shape are checked when they are read (load-prequantized.ts).
 */
export function packedLinears(q: Quantization, slots: readonly LinearSlot[], present: ReadonlyMap<string, TensorInfo>): PackedCheck {
  const names = PACKED_TENSOR_NAMES[q.format];
  const out: PackedCheck = { linears: [], sources: new Set(), problems: [] };
  for (const slot of slots.filter((s) => isPacked(q, s.weight, present))) {
    const module = moduleOf(slot.weight);
    const [n, k] = slot.shape;
    // A group at least K wide is one group per row (AutoGPTQ's g_idx = k // G is 0 throughout): per channel.
    const groupSize = q.groupSize === null || q.groupSize >= k ? k : q.groupSize;
    const name = (suffix: string) => `${module}.${suffix}`;
    const info = (suffix: string | undefined) => (suffix === undefined ? undefined : present.get(name(suffix)));
    const found = { qweight: info(names.qweight), scales: info(names.scales), zeros: info(names.zeros), gIdx: info(names.gIdx) };
    for (const t of Object.values(found)) if (t) out.sources.add(t.name);
    // checkPackedShapes names a missing qweight or scales tensor itself.
    const shapes = found as PackedShapes & typeof found;
    const problem = (p: string) => out.problems.push(p);
    if (q.format !== 'int-quantized' && present.has(slot.weight)) problem(`${module} is stored both dense (${slot.weight}) and packed`);
    if (q.format === 'pack-quantized') {
      const shape = info(WEIGHT_SHAPE);
      if (!shape) problem(`${name(WEIGHT_SHAPE)} is missing; pack-quantized stores it`);
      else if (!['I64', 'I32'].includes(shape.dtype) || shape.shape.length !== 1 || shape.shape[0] !== 2) problem(`${shape.name} is ${shape.dtype} [${shape.shape.join(', ')}], expected I64 or I32 [2]`);
      else out.sources.add(shape.name);
    }
    // The zero points an asymmetric scheme needs (GPTQ and AWQ always store them: the shape check asks).
    const ct = q.format === 'pack-quantized' || q.format === 'int-quantized';
    if (ct && !q.symmetric && !shapes.zeros) problem(`${name(names.zeros)} is missing; config.json's scheme is asymmetric`);
    if (q.actOrder && !shapes.gIdx && q.method === 'gptq') problem(`${name(names.gIdx)} is missing; config.json's desc_act needs it`);
    const otherGroup = groupSizeInFile(q, found.scales, n, k);
    if (otherGroup !== null && otherGroup !== groupSize) {
      const said = q.groupSize === null ? 'per channel' : `group size ${q.groupSize}`;
      const actual = otherGroup === k ? 'per channel' : `group size ${otherGroup}`;
      problem(`${found.scales!.name} [${found.scales!.shape.join(', ')}] is quantized with ${actual}, config.json says ${said}`);
    } else {
      try {
        checkPackedShapes(module, q.format, q.bits, groupSize, k, n, shapes);
      } catch (e) {
        problem((e as Error).message);
      }
    }
    out.linears.push({
      module,
      format: q.format,
      bits: q.bits,
      groupSize,
      k,
      n,
      qweight: name(names.qweight),
      scales: name(names.scales),
      zeros: shapes.zeros?.name,
      gIdx: shapes.gIdx?.name,
      shape: q.format === 'pack-quantized' ? name(WEIGHT_SHAPE) : undefined,
      outputs: slot.outputs,
    });
  }
  return out;
}

/**
 * The group size a scale tensor's shape implies ((groups, N) for GPTQ/AWQ, (N, groups) for
 * compressed-tensors), when it is otherwise well-formed; null when the shape says nothing.
 */
function groupSizeInFile(q: Quantization, scales: TensorInfo | undefined, n: number, k: number): number | null {
  if (!scales || scales.shape.length !== 2) return null;
  const ct = q.format === 'pack-quantized' || q.format === 'int-quantized';
  const [groups, outputs] = ct ? [scales.shape[1], scales.shape[0]] : [scales.shape[0], scales.shape[1]];
  return outputs === n && groups >= 1 && k % groups === 0 ? k / groups : null;
}

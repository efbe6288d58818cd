// The dtypes a checkpoint can hold, named as safetensors names them (huggingface/safetensors
// `Dtype`, case-sensitive), with their width in bits (`Dtype::bitsize`), in the reference
// enum's order (the writer sorts by it). Sub-byte types (F4, F6_*) pack several elements
// per byte. The FNUZ fp8 variants (no negative zero, NaN at 0x80: AMD's) are storage
// types only: sluice lists and reads them; no GPU kernel converts them.

export const DTYPE_BITS = {
  BOOL: 8,
  F4: 4,
  F6_E2M3: 6,
  F6_E3M2: 6,
  U8: 8,
  I8: 8,
  F8_E5M2: 8,
  F8_E4M3: 8,
  F8_E8M0: 8,
  F8_E4M3FNUZ: 8,
  F8_E5M2FNUZ: 8,
  I16: 16,
  U16: 16,
  F16: 16,
  BF16: 16,
  I32: 32,
  U32: 32,
  F32: 32,
  C64: 64,
  F64: 64,
  I64: 64,
  U64: 64,
} as const;

export type Dtype = keyof typeof DTYPE_BITS;

export const DTYPES = Object.keys(DTYPE_BITS) as Dtype[];

export function isDtype(s: string): s is Dtype {
  return Object.hasOwn(DTYPE_BITS, s);
}

export function dtypeBits(dtype: Dtype): number {
  return DTYPE_BITS[dtype];
}

/** Bytes per element, or undefined for the sub-byte types. */
export function dtypeBytes(dtype: Dtype): number | undefined {
  const bits = DTYPE_BITS[dtype];
  return bits % 8 === 0 ? bits / 8 : undefined;
}

// Converts one piece of a tensor from its storage dtype to the compute dtype, on the GPU.
// Launcher: src/ops/convert.ts. Variants: one SRC_* flag (F32, F16, BF16); DST_F16 for
// F16 output, F32 otherwise.
//
// Integer arithmetic only, no float casts: WGSL leaves f32→f16 rounding of inexact values
// and overflow implementation-defined, and a GPU may flush subnormals or canonicalise NaNs
// in float ops. Bit manipulation gives the same bits on every GPU and matches PyTorch's
// `.half()` / `.float()` bit for bit (round to nearest even, overflow to ±inf, NaNs as
// torch: f32→f16 gives sign|0x7e00, f16→f32 keeps the payload and sets the quiet bit).
// test/fixtures/dtype/ holds torch's outputs; test/support/dtype-reference.ts mirrors them.

struct Params {
  count: u32,    // elements in this piece
  dst_word: u32, // where the piece starts in dst, in u32 words (even f16 element: whole words)
}

override WORKGROUP_SIZE: u32;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;       // (ceil(count·srcBytes/4),) the piece, packed LE
@group(0) @binding(2) var<storage, read_write> dst: array<u32>; // the tensor's chunk, packed LE compute dtype

// The 16-bit element i of src (f16 or bf16 bits): little-endian, element 0 in the low half.
fn half_at(i: u32) -> u32 {
  return (src[i >> 1u] >> ((i & 1u) * 16u)) & 0xffffu;
}

// f16 bits → f32 bits, exact: every f16 (subnormals included) is a normal f32.
fn f16_to_f32_bits(h: u32) -> u32 {
  let sign = (h & 0x8000u) << 16u;
  let exponent = (h >> 10u) & 0x1fu;
  let mantissa = h & 0x3ffu;
  if (exponent == 0x1fu) {
    // ±inf; a NaN keeps its payload and becomes quiet, as PyTorch's `.float()` does.
    return sign | select(0x7f800000u, 0x7fc00000u | (mantissa << 13u), mantissa != 0u);
  }
  if (exponent != 0u) { return sign | ((exponent + 112u) << 23u) | (mantissa << 13u); } // rebias 15 → 127
  if (mantissa == 0u) { return sign; }
  // Subnormal: mantissa·2^-24 with its top set bit at p is 1.xxx·2^(p-24), f32 exponent p+103.
  let p = 31u - countLeadingZeros(mantissa);
  return sign | ((p + 103u) << 23u) | ((mantissa << (23u - p)) & 0x7fffffu);
}

// f32 bits → f16 bits, rounding to nearest even.
fn f32_to_f16_bits(x: u32) -> u32 {
  let sign = (x >> 16u) & 0x8000u;
  let exponent = (x >> 23u) & 0xffu;
  let mantissa = x & 0x7fffffu;
  if (exponent == 0xffu) { return sign | select(0x7c00u, 0x7e00u, mantissa != 0u); } // ±inf; NaN as PyTorch
  let e = i32(exponent) - 112; // f16 biased exponent
  if (e >= 31) { return sign | 0x7c00u; } // beyond 65520 after rounding: ±inf
  if (e <= 0) {
    // f16 subnormal (or zero): the value is m·2^-(14-e) in units of 2^-24, m with its implicit bit.
    if (e < -10) { return sign; } // below half the smallest subnormal: ±0
    let m = mantissa | 0x800000u;
    let shift = u32(14 - e);
    let kept = m >> shift;
    let rest = m & ((1u << shift) - 1u);
    let half = 1u << (shift - 1u);
    return sign | (kept + select(0u, 1u, rest > half || (rest == half && (kept & 1u) == 1u)));
  }
  let kept = (u32(e) << 10u) | (mantissa >> 13u);
  let rest = mantissa & 0x1fffu;
  // A carry out of the mantissa bumps the exponent, up to 0x7c00 = inf: what IEEE wants.
  return sign | (kept + select(0u, 1u, rest > 0x1000u || (rest == 0x1000u && (kept & 1u) == 1u)));
}

// Source element i as f32 bits.
fn source_bits(i: u32) -> u32 {
#ifdef SRC_F32
  return src[i];
#endif
#ifdef SRC_F16
  return f16_to_f32_bits(half_at(i));
#endif
#ifdef SRC_BF16
  return half_at(i) << 16u; // bf16 is the top half of an f32
#endif
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  // Dispatches past 65535 workgroups use a second dimension (src/gpu/dispatch.ts).
  let word = gid.x + gid.y * groups.x * WORKGROUP_SIZE; // output word of this piece
#ifdef DST_F16
  // Two f16 per word: a thread owns a whole word, so no two threads write the same one.
  let first = word * 2u;
  if (first >= params.count) { return; }
  let low = f32_to_f16_bits(source_bits(first));
  var high = 0u; // an odd count leaves the last word's high half zero (padding)
  if (first + 1u < params.count) { high = f32_to_f16_bits(source_bits(first + 1u)); }
  dst[params.dst_word + word] = low | (high << 16u);
#else
  if (word >= params.count) { return; }
  dst[params.dst_word + word] = source_bits(word);
#endif
}

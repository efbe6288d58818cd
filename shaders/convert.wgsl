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
//
// Each invocation converts 8 elements (ELEMENTS_PER_INVOCATION in the launcher) with
// vec4 loads and stores, branch-free: on lavapipe, where invocations are SIMD lanes of a
// CPU, one element per invocation ran at 0.4 GB/s, bound by per-invocation overhead.

struct Params {
  count: u32,   // elements in this piece
  dst_vec: u32, // where the piece starts in dst, in vec4<u32> (16-byte) units
}

override WORKGROUP_SIZE: u32;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<vec4u>;       // the piece, packed LE storage dtype
@group(0) @binding(2) var<storage, read_write> dst: array<vec4u>; // the tensor's chunk, packed LE compute dtype

// f16 bits → f32 bits, exact: every f16 (subnormals included) is a normal f32.
fn f16_to_f32_bits(h: vec4u) -> vec4u {
  let sign = (h & vec4u(0x8000u)) << vec4u(16u);
  let e = (h >> vec4u(10u)) & vec4u(0x1fu);
  let m = h & vec4u(0x3ffu);
  let normal = ((e + vec4u(112u)) << vec4u(23u)) | (m << vec4u(13u)); // rebias 15 → 127
  // Subnormal m·2^-24 with its top set bit at p is 1.xxx·2^(p-24): f32 exponent p + 103.
  // (m = 0 makes p wrap; that lane is replaced by ±0 below.)
  let p = vec4u(31u) - countLeadingZeros(m);
  let subnormal = ((p + vec4u(103u)) << vec4u(23u)) | ((m << (vec4u(23u) - p)) & vec4u(0x7fffffu));
  var f = select(normal, subnormal, e == vec4u(0u));
  f = select(f, vec4u(0u), (e == vec4u(0u)) & (m == vec4u(0u)));
  // ±inf; a NaN keeps its payload and becomes quiet, as PyTorch's `.float()` does.
  let special = vec4u(0x7f800000u) | select(vec4u(0u), vec4u(0x400000u), m != vec4u(0u)) | (m << vec4u(13u));
  f = select(f, special, e == vec4u(0x1fu));
  return sign | f;
}

// f32 bits → f16 bits, rounding to nearest even.
fn f32_to_f16_bits(x: vec4u) -> vec4u {
  let sign = (x >> vec4u(16u)) & vec4u(0x8000u);
  let a = x & vec4u(0x7fffffffu);
  // Normal: rebias (−112 in the exponent) and round in one add: + 0xfff + the kept lsb,
  // then truncate. A carry out of the mantissa bumps the exponent, as IEEE wants.
  let normal = (a - vec4u(0x38000000u) + vec4u(0xfffu) + ((a >> vec4u(13u)) & vec4u(1u))) >> vec4u(13u);
  // Subnormal (below 2^-14): the value in units of 2^-24 is m >> (126 − e), m with its
  // implicit bit; rounded to nearest even by the bits shifted out. Shifts past 31 would
  // wrap in WGSL, and anything shifted that far rounds to 0 anyway.
  let e = a >> vec4u(23u);
  let m = (a & vec4u(0x7fffffu)) | vec4u(0x800000u);
  let shift = min(vec4u(126u) - min(e, vec4u(126u)), vec4u(31u));
  let kept = m >> shift;
  let rest = m & ((vec4u(1u) << shift) - vec4u(1u));
  let half = vec4u(1u) << (shift - vec4u(1u));
  let round_up = (rest > half) | ((rest == half) & ((kept & vec4u(1u)) == vec4u(1u)));
  let subnormal = kept + select(vec4u(0u), vec4u(1u), round_up);
  var h = select(normal, subnormal, a < vec4u(0x38800000u));
  h = select(h, vec4u(0x7c00u), a >= vec4u(0x477ff000u)); // 65520 and up round to ±inf
  h = select(h, vec4u(0x7e00u), a > vec4u(0x7f800000u)); // NaN, as PyTorch's `.half()`
  return sign | h;
}

// The 16-bit elements of one source vec4 (8 halves, element 0 in the low half of .x):
// elements 0..3 and 4..7.
fn low_elements(w: vec4u) -> vec4u {
  return vec4u(w.x & 0xffffu, w.x >> 16u, w.y & 0xffffu, w.y >> 16u);
}
fn high_elements(w: vec4u) -> vec4u {
  return vec4u(w.z & 0xffffu, w.z >> 16u, w.w & 0xffffu, w.w >> 16u);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  // Dispatches past 65535 workgroups use a second dimension (src/gpu/dispatch.ts).
  let v = gid.x + gid.y * groups.x * WORKGROUP_SIZE; // this invocation: elements 8v .. 8v+7
  let first = v * 8u;
  if (first >= params.count) { return; }

  // Elements 8v..8v+3 in a, 8v+4..8v+7 in b, as f32 bits.
#ifdef SRC_F32
  var a = src[2u * v];
  var b = src[2u * v + 1u];
#else
  let w = src[v];
#endif
#ifdef SRC_F16
  var a = f16_to_f32_bits(low_elements(w));
  var b = f16_to_f32_bits(high_elements(w));
#endif
#ifdef SRC_BF16
  var a = low_elements(w) << vec4u(16u); // bf16 is the top half of an f32
  var b = high_elements(w) << vec4u(16u);
#endif
  // The last piece of a chunk may end mid-vector: its tail is the chunk's padding, zeroed.
  let index = vec4u(0u, 1u, 2u, 3u) + first;
  a = select(a, vec4u(0u), index >= vec4u(params.count));
  b = select(b, vec4u(0u), index + vec4u(4u) >= vec4u(params.count));

#ifdef DST_F16
  let ha = f32_to_f16_bits(a);
  let hb = f32_to_f16_bits(b);
  dst[params.dst_vec + v] = vec4u(ha.x | (ha.y << 16u), ha.z | (ha.w << 16u), hb.x | (hb.y << 16u), hb.z | (hb.w << 16u));
#else
  dst[params.dst_vec + 2u * v] = a;
  // The chunk's buffer ends 16 bytes past its last element at most: no store beyond it.
  if (first + 4u < params.count) { dst[params.dst_vec + 2u * v + 1u] = b; }
#endif
}

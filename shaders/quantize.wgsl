// Quantize dense rows (f32, or f16 with SRC_F16) into sluice's quantized layout
// (src/gpu/quantized-tensor.ts): Q4 asymmetric with zero points, else q8 symmetric.
// Launcher and the scheme's definition: src/ops/quantize.ts; its TypeScript reference there is
// bit-exact with this kernel, so every step below is exact or correctly rounded f32 math:
//   q8: scale = f16(absmax · fl(1/127)); q = clamp(rne(x / scale), −127, 127)
//   q4: lo = min(min, 0), hi = max(max, 0) (GPTQ's range, 0 always inside it);
//       scale = f16((hi − lo) · fl(1/15)); zero = clamp(rne(−lo / scale), 0, 15);
//       q = clamp(rne(x / scale) + zero, 0, 15)
// rne(x / s) is found exactly: a guess from x · (1 / s) (division is only 2.5 ulp in WGSL),
// then one correction against the midpoints (q ± ½)·s, which are exact in f32 because s is
// an f16 value (11 bits) and |q| ≤ 256 (10 bits). A scale of 0 (an all-zero group) gives q = 0.
//
// One invocation per 4 consecutive groups of the destination chunk (flat index e = row·groups
// + g), so it owns whole u32 words of data, f16 scale pairs and zero bytes; words the dispatch
// shares with a neighbouring one (its range starts or ends mid-word) keep the other bytes.
//
// Shaped for lavapipe (8 invocations per AVX vector, instruction-bound), each step measured:
//   - every loop has the same trip count in all invocations, and no invocation returns early
//     (the groups of an edge quad outside the dispatch's range, and invocations past the last
//     quad, compute from clamped reads and write nothing): no execution masks;
//   - the source is read as vec4<u32>, 8 elements a load (f16) or two (f32), the first 32 of a
//     group kept in registers for the second pass; quantizing 8 elements is vector math;
//   - no f32 → int conversion (LLVM scalarizes WGSL's saturating ones lane by lane: toInt) and
//     no min/max on f16-converted values (lower/higher): each cost ~2× the whole kernel.
// ~2–4 ns per weight (CPU time, 2 cores, noisy) where it was 12–17 ns per weight.
#ifdef Q4
const EPW = 8u; // elements per packed word
#else
const EPW = 4u;
#endif

struct Params {
  groups: u32,     // groups this dispatch quantizes
  firstGroup: u32, // flat index in the destination chunk of the first one
  srcOffset: u32,  // element of src where the first group starts (a multiple of 8)
  groupSize: u32,  // G, a multiple of 8
  scalesF16: u32,  // 1: scales stored as f16 pairs, 0: f32
  threads: u32,    // threads with work (quads touched)
}

override WORKGROUP_SIZE: u32;
const CACHED = 4u; // 8-element steps of a group kept in registers between the two passes (G = 32)

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<vec4<u32>>;  // (rows, K) f32 (4 per vec4) or f16 (8)
@group(0) @binding(2) var<storage, read_write> data: array<u32>; // (rows, K / EPW) packed
@group(0) @binding(3) var<storage, read_write> scales: array<u32>; // (rows, K / G) f16 pairs or f32
#ifdef Q4
@group(0) @binding(4) var<storage, read_write> zeros: array<u32>;  // (rows, K / G) bytes
#endif

// Elements 8i .. 8i + 7 of src as two vec4f.
fn eight(i: u32) -> array<vec4f, 2> {
#ifdef SRC_F16
  let v = src[i];
  return array(vec4f(unpack2x16float(v.x), unpack2x16float(v.y)), vec4f(unpack2x16float(v.z), unpack2x16float(v.w)));
#else
  return array(bitcast<vec4f>(src[2u * i]), bitcast<vec4f>(src[2u * i + 1u]));
#endif
}

// min and max of finite values as compare + select. WGSL's min/max check for NaN, and LLVM
// narrows that check on an f16-converted value to a half compare, which it scalarizes lane by
// lane (~2× the whole kernel). Signed zeros may differ from min/max; no output bit does.
fn lower(a: vec4f, b: vec4f) -> vec4f { return select(a, b, b < a); }
fn higher(a: vec4f, b: vec4f) -> vec4f { return select(a, b, b > a); }

// f32 → f16 bits, round half to even, v ≥ 0 finite; past 65504 clamps to 65504.
fn f16Bits(v: f32) -> u32 {
  let b = bitcast<u32>(v);
  let e = i32(b >> 23u) - 127;
  if (e < -25) { return 0u; }
  if (e > 15) { return 0x7bffu; }
  let m = (b & 0x7fffffu) | 0x800000u;
  let shift = u32(select(13 + (-14 - e), 13, e >= -14));
  let q = m >> shift;
  let rem = m & ((1u << shift) - 1u);
  let half = 1u << (shift - 1u);
  let up = select(0u, 1u, rem > half || (rem == half && (q & 1u) == 1u));
  let bits = select(q, (u32(e + 14) << 10u) + q, e >= -14);
  return min(bits + up, 0x7bffu);
}

// The integer value of integral f32s with |x| < 2^22, by the magic-number trick: adding 1.5·2^23
// puts x in the mantissa's low bits, exactly. LLVM scalarizes WGSL's (saturating) f32 → int
// conversions lane by lane on AVX2 (~6 instructions each); this is 2 vector ops.
const MAGIC = 12582912.0; // 1.5 · 2^23
fn toInt(x: vec4f) -> vec4i { return bitcast<vec4i>(x + MAGIC) - vec4i(0x4b400000); }

// rne(x / s) for s > 0 an f16 value and r ≈ 1/s, exact when |x / s| ≤ 256; beyond, a value
// past ±256 of the right sign (every caller clamps).
fn rneDiv(x: vec4f, s: f32, r: f32) -> vec4f {
  let t = x * r;
  let q = round(t); // a guess: WGSL's round is half-to-even, but t is not exact
  let odd = (toInt(q) & vec4i(1)) != vec4i(0); // garbage when |t| > 256, then unused
  let hi = (2.0 * q + 1.0) * s * 0.5; // (q + ½)·s, exact
  let lo = (2.0 * q - 1.0) * s * 0.5;
  let up = (x > hi) | ((x == hi) & odd);
  let down = !up & ((x < lo) | ((x == lo) & odd));
  let fixed = q + select(vec4f(0.0), vec4f(1.0), up) - select(vec4f(0.0), vec4f(1.0), down);
  return select(fixed, t, abs(t) > vec4f(256.0));
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  // Invocations past the last quad redo it and write nothing (no early return: code after a
  // divergent return runs under an execution mask on llvmpipe).
  let t = gid.x + gid.y * groups.x * WORKGROUP_SIZE;
  let live = t < params.threads;
  let G = params.groupSize;
  let eights = G / 8u; // 8-element steps per group
  let quad = params.firstGroup / 4u + min(t, params.threads - 1u);
  let begin = params.firstGroup;
  let end = params.firstGroup + params.groups;
  var scaleBits: array<u32, 4>;
  var zeroBits = 0u;
  var written = 0u; // bit p: group quad·4 + p is in [begin, end)
  for (var p = 0u; p < 4u; p++) {
    let e = quad * 4u + p;
    let inside = live && e >= begin && e < end;
    written |= select(0u, 1u << p, inside);
    // A group outside the range reads a clamped group of it and writes nothing.
    let first = (params.srcOffset + (clamp(e, begin, end - 1u) - begin) * G) / 8u; // in 8-element steps
    // The group's first CACHED·8 elements stay in registers for the second pass, which
    // reloads only the rest (a few % at G = 32: per-invocation loads are the other big cost).
    var cache: array<array<vec4f, 2>, CACHED>;
    var lo = vec4f(3.4e38);
    var hi = vec4f(-3.4e38);
    for (var i = 0u; i < CACHED; i++) {
      if (i < eights) {
        cache[i] = eight(first + i);
        lo = lower(lower(lo, cache[i][0]), cache[i][1]);
        hi = higher(higher(hi, cache[i][0]), cache[i][1]);
      }
    }
    for (var i = CACHED; i < eights; i++) {
      let v = eight(first + i);
      lo = lower(lower(lo, v[0]), v[1]);
      hi = higher(higher(hi, v[0]), v[1]);
    }
    var l = min(min(lo.x, lo.y), min(lo.z, lo.w));
    var h = max(max(hi.x, hi.y), max(hi.z, hi.w));
#ifdef Q4
    l = min(l, 0.0);
    h = max(h, 0.0);
    let bits = f16Bits((h - l) * (1.0 / 15.0));
#else
    let bits = f16Bits(max(abs(l), abs(h)) * (1.0 / 127.0));
#endif
    let s = unpack2x16float(bits).x;
    let r = select(0.0, 1.0 / s, s > 0.0);
    scaleBits[p] = bits;
#ifdef Q4
    let zero = select(0.0, clamp(rneDiv(vec4f(-l), s, r).x, 0.0, 15.0), s > 0.0);
    zeroBits |= bitcast<u32>(toInt(vec4f(zero)).x) << (8u * p);
#endif
    for (var i = 0u; i < eights; i++) {
      var v: array<vec4f, 2>;
      if (i < CACHED) { v = cache[min(i, CACHED - 1u)]; } else { v = eight(first + i); }
#ifdef Q4
      let q0 = bitcast<vec4u>(toInt(select(vec4f(0.0), clamp(rneDiv(v[0], s, r) + zero, vec4f(0.0), vec4f(15.0)), s > 0.0)));
      let q1 = bitcast<vec4u>(toInt(select(vec4f(0.0), clamp(rneDiv(v[1], s, r) + zero, vec4f(0.0), vec4f(15.0)), s > 0.0)));
      let a = q0 << vec4u(0u, 4u, 8u, 12u);
      let b = q1 << vec4u(16u, 20u, 24u, 28u);
      if (inside) { data[e * eights + i] = (a.x | a.y) | (a.z | a.w) | (b.x | b.y) | (b.z | b.w); }
#else
      let q0 = bitcast<vec4u>(toInt(select(vec4f(0.0), clamp(rneDiv(v[0], s, r), vec4f(-127.0), vec4f(127.0)), s > 0.0))) & vec4u(0xffu);
      let q1 = bitcast<vec4u>(toInt(select(vec4f(0.0), clamp(rneDiv(v[1], s, r), vec4f(-127.0), vec4f(127.0)), s > 0.0))) & vec4u(0xffu);
      let a = q0 << vec4u(0u, 8u, 16u, 24u);
      let b = q1 << vec4u(0u, 8u, 16u, 24u);
      if (inside) {
        data[e * 2u * eights + 2u * i] = (a.x | a.y) | (a.z | a.w);
        data[e * 2u * eights + 2u * i + 1u] = (b.x | b.y) | (b.z | b.w);
      }
#endif
    }
  }
  // Scales: f16 pairs (words quad·2 and quad·2 + 1) or one f32 each; the halves and zero bytes
  // of groups outside the range keep what is there (read-modify-write only at the edges).
  if (params.scalesF16 == 1u) {
    for (var h = 0u; h < 2u; h++) {
      let pair = (written >> (2u * h)) & 3u;
      let word = scaleBits[2u * h] | (scaleBits[2u * h + 1u] << 16u);
      if (pair == 3u) {
        scales[quad * 2u + h] = word;
      } else if (pair != 0u) {
        let mask = select(0u, 0xffffu, (pair & 1u) != 0u) | select(0u, 0xffff0000u, (pair & 2u) != 0u);
        scales[quad * 2u + h] = (scales[quad * 2u + h] & ~mask) | (word & mask);
      }
    }
  } else {
    for (var p = 0u; p < 4u; p++) {
      if (((written >> p) & 1u) != 0u) { scales[quad * 4u + p] = bitcast<u32>(unpack2x16float(scaleBits[p]).x); }
    }
  }
#ifdef Q4
  if (written == 15u) {
    zeros[quad] = zeroBits;
  } else if (written != 0u) {
    let mask = select(0u, 0xffu, (written & 1u) != 0u) | select(0u, 0xff00u, (written & 2u) != 0u)
             | select(0u, 0xff0000u, (written & 4u) != 0u) | select(0u, 0xff000000u, (written & 8u) != 0u);
    zeros[quad] = (zeros[quad] & ~mask) | (zeroBits & mask);
  }
#endif
}

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
// One thread per 4 consecutive groups of the destination chunk (flat index e = row·groups + g),
// so it owns whole u32 words of data, f16 scale pairs and zero bytes; words the dispatch
// shares with a neighbouring one (its range starts or ends mid-word) keep the other bytes.
#ifdef Q4
// q4: 8 nibbles per word.
const EPW = 8u;
#else
const EPW = 4u;
#endif

struct Params {
  groups: u32,     // groups this dispatch quantizes
  firstGroup: u32, // flat index in the destination chunk of the first one
  srcOffset: u32,  // element of src where the first group starts
  groupSize: u32,  // G, a multiple of 8
  scalesF16: u32,  // 1: scales stored as f16 pairs, 0: f32
  threads: u32,    // threads with work (quads touched)
}

override WORKGROUP_SIZE: u32;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;             // (rows, K) f32, or f16 pairs
@group(0) @binding(2) var<storage, read_write> data: array<u32>;      // (rows, K / EPW) packed
@group(0) @binding(3) var<storage, read_write> scales: array<u32>;    // (rows, K / G) f16 pairs or f32
#ifdef Q4
@group(0) @binding(4) var<storage, read_write> zeros: array<u32>;     // (rows, K / G) bytes
#endif

fn srcAt(e: u32) -> f32 {
#ifdef SRC_F16
  return unpack2x16float(src[e / 2u])[e % 2u];
#else
  return bitcast<f32>(src[e]);
#endif
}

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
  let bits = select(q, (u32(e + 14) << 10u) + q, e >= -14) + up;
  return min(bits, 0x7bffu);
}

// rne(x / s) for s > 0 an f16 value, exact when |x / s| ≤ 256; beyond, a value past ±256
// of the right sign (every caller clamps).
fn rneDiv(x: f32, s: f32, r: f32) -> f32 {
  let t = x * r;
  if (abs(t) > 256.0) { return t; }
  var q = round(t); // a guess: WGSL's round is half-to-even, but t is not exact
  let odd = (i32(q) & 1) != 0;
  let hi = (2.0 * q + 1.0) * s * 0.5; // (q + ½)·s, exact
  let lo = (2.0 * q - 1.0) * s * 0.5;
  if (x > hi || (x == hi && odd)) { q += 1.0; } else if (x < lo || (x == lo && odd)) { q -= 1.0; }
  return q;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let t = gid.x + gid.y * groups.x * WORKGROUP_SIZE;
  if (t >= params.threads) { return; }
  let G = params.groupSize;
  let quad = params.firstGroup / 4u + t;
  let begin = max(quad * 4u, params.firstGroup);
  let end = min(quad * 4u + 4u, params.firstGroup + params.groups);
  var scaleBits: array<u32, 4>;
  var zeroBits = 0u;
  var keep = 0xffffffffu; // zero bytes of groups outside [begin, end): kept as they are
  for (var e = begin; e < end; e++) {
    let slot = e % 4u;
    keep &= ~(0xffu << (8u * slot));
    let first = params.srcOffset + (e - params.firstGroup) * G;
    var lo = srcAt(first);
    var hi = lo;
    for (var i = 1u; i < G; i++) { let v = srcAt(first + i); lo = min(lo, v); hi = max(hi, v); }
#ifdef Q4
    lo = min(lo, 0.0);
    hi = max(hi, 0.0);
    let bits = f16Bits((hi - lo) * (1.0 / 15.0));
#else
    let bits = f16Bits(max(abs(lo), abs(hi)) * (1.0 / 127.0));
#endif
    let s = unpack2x16float(bits).x;
    let r = select(0.0, 1.0 / s, s > 0.0);
    scaleBits[slot] = bits;
#ifdef Q4
    let zero = select(0.0, clamp(rneDiv(-lo, s, r), 0.0, 15.0), s > 0.0);
    zeroBits |= u32(zero) << (8u * slot);
#endif
    let words = G / EPW;
    for (var w = 0u; w < words; w++) {
      var word = 0u;
      for (var j = 0u; j < EPW; j++) {
        let x = srcAt(first + w * EPW + j);
#ifdef Q4
        let q = select(0.0, clamp(rneDiv(x, s, r) + zero, 0.0, 15.0), s > 0.0);
        word |= u32(q) << (4u * j);
#else
        let q = select(0.0, clamp(rneDiv(x, s, r), -127.0, 127.0), s > 0.0);
        word |= (bitcast<u32>(i32(q)) & 0xffu) << (8u * j);
#endif
      }
      data[e * words + w] = word;
    }
  }
  // Scales: f16 pairs (words quad·2 and quad·2 + 1) or one f32 each.
  for (var p = 0u; p < 4u; p++) {
    let e = quad * 4u + p;
    if (e < begin || e >= end) { continue; }
    if (params.scalesF16 == 1u) {
      let word = e / 2u;
      let sh = 16u * (e % 2u);
      scales[word] = (scales[word] & ~(0xffffu << sh)) | (scaleBits[p] << sh);
    } else {
      scales[e] = bitcast<u32>(unpack2x16float(scaleBits[p]).x);
    }
  }
#ifdef Q4
  zeros[quad] = (zeros[quad] & keep) | zeroBits;
#endif
}

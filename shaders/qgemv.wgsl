// Decode matrix-vector product with a quantized weight: y = W·x (+ b), W (N, K) in sluice's
// quantized layout (src/gpu/quantized-tensor.ts), dequantized in registers, f32 accumulation.
// Launcher: src/ops/qgemv.ts. Variants: Q4 (8 nibbles per word; else q8, 4 signed bytes),
// F16 (x, y, bias f16), SUBGROUPS (x shared by subgroupBroadcast), BIAS, OUT_F32, RESIDUAL
// (y += W·x (+ b): y is the residual stream, so o_proj and down_proj need no add dispatch),
// GENERIC (the per-word path), GLU (below), RMS_NORM (below), ROPE_STORE (with SCALED; below).
// Scale storage (f16 pairs or f32)
// and zero points are Params flags.
//
// GLU: gate_up_proj and the MLP's activation in one dispatch. W (2I, K) holds [gate; up] (gate
// rows 0..I-1, up rows I..2I-1) and y (I,) = glu(gate_i·x, up_i·x) (common/glu.wgsl; GELU_TANH
// picks GeGLU). Each invocation computes ROWS_PER_THREAD / 2 gate rows and their up rows itself,
// each summed exactly as the plain variant sums it, so y is bit for bit the unfused qgemv (2I
// values rounded to T) then swiglu.wgsl FUSED, with no exchange between invocations.
//
// RMS_NORM: the decode's RMSNorm in the projection after it. x is the un-normalised row (the
// residual stream) and y = r·Σ_k W[n,k]·(x[k]·g[k]) (+ b), g the norm's weight (K,) (`norm`),
// r = 1/sqrt(Σ x²/K + eps) as rms_norm.wgsl computes it; GLU: glu(r·gate, r·up). A quantized
// W cannot carry g in its columns (per-group scales), as the dense gemv's does, so g scales
// each chunk of x where it is loaded, once for all rows: x·g in f32 feeds the products and Σ x
// of the zero-point term alike, and the squares of x as stored (not times g, not pre-scaled)
// give r, applied to the row sums before the epilogue.
//
// ROPE_STORE: the q/k/v projection and qkv_rope_store.wgsl (without qk-norm) in one dispatch
// (common/rope_store.wgsl). W is the joined [q; k; v]; each invocation's ROWS_PER_THREAD rows
// are ROWS_PER_THREAD / 2 whole units, the two rows rope_store_row names each, summed exactly as
// the plain variant sums that row (RMS_NORM's scale and the bias applied as it applies them), so
// rope_store_unit gets the f32 values the plain variant would round and store: bit for bit this
// qgemv into [q | k | v] then qkv_rope_store. y is the rotated q (n_heads·head_dim,).
//
// Per group, Σ_i s·(q_i − z)·x_i = s·(Σ q_i·x_i − z·Σ x_i): the inner loop is unpack + FMA,
// and Σ x_i is shared by every row.
//
// Shaped for lavapipe (the software GPU tests run on), which runs 8 invocations as one AVX
// vector and is instruction-bound here, not memory-bound. Measured at 8192×2048 q4, each
// step kept only where it paid:
//   - Every invocation owns ROWS_PER_THREAD whole rows and all invocations walk K in step, so
//     every loop is uniform (no execution masks on the variables it updates) and no reduction
//     is needed. Threads splitting a row's K, as gemv does, ran as slow as the f16 gemv.
//   - W is read as vec4<u32>: a load at a per-invocation address costs a bounds check and an
//     insert per 32-bit component per invocation, so bytes per load are all that can be won.
//   - A nibble masked in place is q·16^(k%4) (the high half shifted down 16 first): x is
//     pre-scaled by 16^-(k%4) (exact) once per chunk for all rows, and a weight costs an AND,
//     a signed convert, a multiply and an add (llvmpipe does not fuse them); shift + AND +
//     unsigned convert cost 2× the ALU. These 4 ops per weight are now most of the time.
//   - x is the same for every invocation, but a uniform load costs far more than an ALU op on
//     llvmpipe: with SUBGROUPS each of 8 invocations loads, converts and pre-scales 1/8 of a
//     chunk and subgroupBroadcast shares it (~10% faster than uniform loads).
//   - Scales and zero points of a block of 128 elements (4 groups at G = 32) are one or two u32
//     loads per row, not one per group (~25% faster).
// Result (bench kernels, quiet machine): q4 ~1.9× the f16 gemv's speed (was ~1.0×), q8 ~1.1-1.6×.
// The block path needs G a power of two ≥ 32 and K a multiple of 128 (Llama-family shapes at
// G = 32/64/128); the GENERIC path takes any valid layout, a scale per word (several × slower).
#ifdef SUBGROUPS
enable subgroups;
#endif
#include "common/linear_dtypes.wgsl"
#ifdef GLU
#include "common/glu.wgsl"
#endif
#ifdef Q4
const EPW = 8u;           // elements per packed word
const DEFAULT_ZERO = 8.0; // zero point without zeros
#else
const EPW = 4u;
const DEFAULT_ZERO = 0.0;
#endif
const CHUNK = 4u * EPW;        // elements per vec4<u32> of W: q4 32, q8 16
const XV = CHUNK / 4u;         // vec4f of x per chunk: q4 8, q8 4
const BLOCK = 128u;            // elements per block (scale and zero words loaded once per block)
const CHUNKS_PER_BLOCK = BLOCK / CHUNK;
#ifdef F16
const XWORDS = CHUNK / 2u;     // u32 words of x per chunk (2 halves each)
#else
const XWORDS = CHUNK;
#endif

struct Params {
  rows: u32,       // rows of this chunk of W (≤ N); GLU: I, the rows of y (W has 2I, one chunk)
  cols: u32,       // K, a multiple of groupSize
  rowOffset: u32,  // the chunk's first row: where it writes in y and reads in bias
  groupSize: u32,  // G, a multiple of 8
  scalesF16: u32,  // 1: scales are f16 pairs, 0: f32
  hasZeros: u32,   // 1: zero points in `zeros`, 0: DEFAULT_ZERO (zeros is a placeholder)
  eps: f32,        // RMS_NORM: the norm's eps (0 otherwise)
#ifdef ROPE_STORE
#include "common/rope_store_params.wgsl"
#endif
}

override ROWS_PER_THREAD: u32; // ≤ MAX_ROWS
override WORKGROUP_SIZE: u32;
const MAX_ROWS = 4u;           // capacity of the per-row arrays (function arrays need a const size)

@group(0) @binding(0) var<uniform> params: Params;
#ifdef GENERIC
@group(0) @binding(1) var<storage, read> data: array<u32>;       // (rows, K / EPW) packed
#else
@group(0) @binding(1) var<storage, read> data: array<vec4<u32>>; // (rows, K / CHUNK) packed, 4 words each
#endif
@group(0) @binding(2) var<storage, read> scales: array<u32>;     // (rows, K / G) f16 pairs or f32
@group(0) @binding(3) var<storage, read> zeros: array<u32>;      // (rows, K / G) a byte each
@group(0) @binding(4) var<storage, read> x: array<u32>;          // (K,) f16 pairs or f32 bits
@group(0) @binding(5) var<storage, read_write> y: array<Y>;      // (N,) whole output (RESIDUAL: read first; GLU: (I,))
#ifdef BIAS
@group(0) @binding(6) var<storage, read> bias: array<T>;         // (N,)
#endif
// RMS_NORM: the norm's weight g, after the bindings above (bound in order: 7 with BIAS, else 6).
#ifdef RMS_NORM
#ifdef BIAS
@group(0) @binding(7) var<storage, read> norm: array<u32>;       // (K,) f16 pairs or f32 bits, as x
#else
@group(0) @binding(6) var<storage, read> norm: array<u32>;       // (K,) f16 pairs or f32 bits, as x
#endif

// Elements e..e + 3 of g (e a multiple of 4).
fn norm4(e: u32) -> vec4f {
#ifdef F16
  return vec4f(unpack2x16float(norm[e / 2u]), unpack2x16float(norm[e / 2u + 1u]));
#else
  return bitcast<vec4f>(vec4u(norm[e], norm[e + 1u], norm[e + 2u], norm[e + 3u]));
#endif
}

// rms_norm.wgsl's scale from the sum of x² over the row.
fn rmsScale(squares: f32) -> f32 {
  return 1.0 / sqrt(squares / f32(params.cols) + params.eps);
}
#endif
#ifdef ROPE_STORE
// After y, bias and norm (5, 6, 7 at most); the launcher leaves the numbers between unused.
// src/ops/qgemv.ts's ROPE_STORE_FIRST_BINDING.
const ROPE_STORE_FIRST_BINDING: u32 = 8u;
#include "common/round_t.wgsl"
#include "common/rope_store.wgsl"
#endif

// One chunk of x as f32, pre-scaled for dotWord, and its sum (RMS_NORM: of x·g), and x's squares
// (RMS_NORM; SUBGROUPS: this lane's share of them).
struct XChunk {
  v: array<vec4f, XV>,
  sum: f32,
#ifdef RMS_NORM
  squares: f32,
#endif
}

#ifdef Q4
const PRESCALE = vec4f(1.0, 1.0 / 16.0, 1.0 / 256.0, 1.0 / 4096.0);
const MASK = vec4u(0xfu, 0xf0u, 0xf00u, 0xf000u);
// Nibbles 0..3 and 4..7 of a word, each times 16^(k % 4).
fn lo(w: u32) -> vec4f { return vec4f(bitcast<vec4i>(vec4u(w) & MASK)); }
fn hi(w: u32) -> vec4f { return vec4f(bitcast<vec4i>(vec4u(w >> 16u) & MASK)); }
// acc + q·x over a word's 8 elements, in 4 partial sums (x pre-scaled: elements 0..3 in a, 4..7 in b).
fn dotWord(p: u32, a: vec4f, b: vec4f, acc: vec4f) -> vec4f { return fma(hi(p), b, fma(lo(p), a, acc)); }
#else
const PRESCALE = vec4f(1.0);
// acc + q·x over a word's 4 signed bytes (elements in a; b unused).
fn dotWord(p: u32, a: vec4f, b: vec4f, acc: vec4f) -> vec4f {
  return fma(vec4f(bitcast<vec4i>(vec4u(p) << vec4u(24u, 16u, 8u, 0u)) >> vec4u(24u)), a, acc);
}
#endif

// Σ q·x over a chunk (4 words) of one row: one multiply-add chain (products per word summed
// by a tree of adds cost ~10% more).
fn dotChunk(p: vec4u, xc: XChunk) -> f32 {
  let zero = vec4f(0.0);
#ifdef Q4
  let a = dotWord(p.w, xc.v[6], xc.v[7], dotWord(p.z, xc.v[4], xc.v[5], dotWord(p.y, xc.v[2], xc.v[3], dotWord(p.x, xc.v[0], xc.v[1], zero))));
#else
  let a = dotWord(p.w, xc.v[3], xc.v[3], dotWord(p.z, xc.v[2], xc.v[2], dotWord(p.y, xc.v[1], xc.v[1], dotWord(p.x, xc.v[0], xc.v[0], zero))));
#endif
  return (a.x + a.y) + (a.z + a.w);
}

#ifdef SUBGROUPS
// Chunk c of x, shared: each of the subgroup's first 8 invocations (subgroups have at least 8
// where this variant is used) loads XWORDS / 8 words, converts and pre-scales its elements,
// and subgroupBroadcast hands them to all: a fraction of the conversions and loads of every
// invocation doing it all (lane ids must be constants, hence the spelled-out lanes).
#ifdef F16
// Lane l holds elements 2l, 2l + 1 of each 16: returns elements 0..15 as 4 vec4f.
fn share(v: vec2f) -> array<vec4f, 4> {
  return array(
    vec4f(subgroupBroadcast(v.x, 0u), subgroupBroadcast(v.y, 0u), subgroupBroadcast(v.x, 1u), subgroupBroadcast(v.y, 1u)),
    vec4f(subgroupBroadcast(v.x, 2u), subgroupBroadcast(v.y, 2u), subgroupBroadcast(v.x, 3u), subgroupBroadcast(v.y, 3u)),
    vec4f(subgroupBroadcast(v.x, 4u), subgroupBroadcast(v.y, 4u), subgroupBroadcast(v.x, 5u), subgroupBroadcast(v.y, 5u)),
    vec4f(subgroupBroadcast(v.x, 6u), subgroupBroadcast(v.y, 6u), subgroupBroadcast(v.x, 7u), subgroupBroadcast(v.y, 7u)));
}
#else
// Lane l holds element l of each 8: returns elements 0..7 as 2 vec4f.
fn share(v: f32) -> array<vec4f, 2> {
  return array(
    vec4f(subgroupBroadcast(v, 0u), subgroupBroadcast(v, 1u), subgroupBroadcast(v, 2u), subgroupBroadcast(v, 3u)),
    vec4f(subgroupBroadcast(v, 4u), subgroupBroadcast(v, 5u), subgroupBroadcast(v, 6u), subgroupBroadcast(v, 7u)));
}
#endif

fn xChunk(c: u32, sgLane: u32) -> XChunk {
  let lane = sgLane % 8u;
  var xc: XChunk;
  var part = 0.0;
#ifdef RMS_NORM
  var squares = 0.0;
#endif
  for (var i = 0u; i < XWORDS / 8u; i++) {
    let word = x[c * XWORDS + 8u * i + lane];
#ifdef F16
    // Elements 16i + 2·lane + (0, 1): nibble positions 2·(lane % 2) + (0, 1) in their 4.
#ifdef RMS_NORM
    let raw = unpack2x16float(word);
    squares += dot(raw, raw);
    let v = raw * unpack2x16float(norm[c * XWORDS + 8u * i + lane]);
#else
    let v = unpack2x16float(word);
#endif
    part += v.x + v.y;
    let got = share(v * select(PRESCALE.xy, PRESCALE.zw, lane % 2u == 1u));
    for (var m = 0u; m < 4u; m++) { xc.v[4u * i + m] = got[m]; }
#else
    // Element 8i + lane: nibble position lane % 4.
#ifdef RMS_NORM
    let raw = bitcast<f32>(word);
    squares += raw * raw;
    let v = raw * bitcast<f32>(norm[c * XWORDS + 8u * i + lane]);
#else
    let v = bitcast<f32>(word);
#endif
    part += v;
    let got = share(v * PRESCALE[lane % 4u]);
    for (var m = 0u; m < 2u; m++) { xc.v[2u * i + m] = got[m]; }
#endif
  }
  xc.sum = subgroupAdd(select(0.0, part, lane == sgLane));
#ifdef RMS_NORM
  // This lane's squares only: main reduces them once, after the last chunk.
  xc.squares = squares;
#endif
  return xc;
}
#else
// Chunk c of x, the same for every invocation.
fn xChunk(c: u32, sgLane: u32) -> XChunk {
  var xc: XChunk;
  var t = vec4f(0.0);
#ifdef RMS_NORM
  var squares = vec4f(0.0);
#endif
  for (var i = 0u; i < XV; i++) {
#ifdef F16
    let raw = vec4f(unpack2x16float(x[c * XWORDS + 2u * i]), unpack2x16float(x[c * XWORDS + 2u * i + 1u]));
#else
    let raw = bitcast<vec4f>(vec4u(x[c * XWORDS + 4u * i], x[c * XWORDS + 4u * i + 1u], x[c * XWORDS + 4u * i + 2u], x[c * XWORDS + 4u * i + 3u]));
#endif
#ifdef RMS_NORM
    squares += raw * raw;
    let v = raw * norm4(c * CHUNK + 4u * i);
#else
    let v = raw;
#endif
    t += v;
    xc.v[i] = v * PRESCALE;
  }
  xc.sum = (t.x + t.y) + (t.z + t.w);
#ifdef RMS_NORM
  xc.squares = (squares.x + squares.y) + (squares.z + squares.w);
#endif
  return xc;
}
#endif

fn scaleAt(e: u32, f16Scales: bool) -> f32 {
  if (f16Scales) { return unpack2x16float(scales[e / 2u])[e % 2u]; }
  return bitcast<f32>(scales[e]);
}

// Byte b of a zero word as a zero point (q4 unsigned, q8 signed).
fn zeroByte(word: u32, b: u32) -> f32 {
#ifdef Q4
  return f32(bitcast<i32>((word >> (8u * (b % 4u))) & 0xffu)); // signed convert: one AVX2 instruction, unsigned several
#else
  return f32(bitcast<i32>(word << (24u - 8u * (b % 4u))) >> 24u);
#endif
}

fn zeroAt(e: u32, hasZeros: bool) -> f32 {
  if (!hasZeros) { return DEFAULT_ZERO; }
  return zeroByte(zeros[e / 4u], e % 4u);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wid: vec3u,
  @builtin(num_workgroups) groups: vec3u,
#ifdef SUBGROUPS
  @builtin(subgroup_invocation_id) sgLane: u32,
#endif
) {
#ifndef SUBGROUPS
  let sgLane = 0u;
#endif
  let thread = (wid.x + wid.y * groups.x) * WORKGROUP_SIZE + lid;
#ifdef GLU
  // Row j < pairs is gate row firstPair + j, row pairs + j its up row I + firstPair + j.
  let pairs = ROWS_PER_THREAD / 2u;
  let firstPair = thread * pairs;
#else
#ifdef ROPE_STORE
  // Row j is element j % 2 of unit firstUnit + j / 2 (params.rows / 2 units).
  let units = ROWS_PER_THREAD / 2u;
  let firstUnit = thread * units;
#else
  let firstRow = thread * ROWS_PER_THREAD;
#endif
#endif
  let K = params.cols;
  let G = params.groupSize;
  let groupsPerRow = K / G;
  let f16Scales = params.scalesF16 == 1u;
  let hasZeros = params.hasZeros == 1u;

  // Rows past the chunk's end recompute its last row and are not written (GLU: pairs past I
  // recompute the last pair; ROPE_STORE: units past the last, the last unit).
#ifdef GENERIC
  var rowWord: array<u32, MAX_ROWS>;  // first word of the row in data
#else
  var rowChunk: array<u32, MAX_ROWS>; // first vec4 of the row in data
#endif
  var rowGroup: array<u32, MAX_ROWS>; // first group of the row
  var acc: array<f32, MAX_ROWS>;
#ifdef RMS_NORM
  var squares = 0.0; // Σ x² over the row, the same in every invocation
#endif
  for (var j = 0u; j < ROWS_PER_THREAD; j++) {
#ifdef GLU
    let row = min(firstPair + j % pairs, params.rows - 1u) + select(0u, params.rows, j >= pairs);
#else
#ifdef ROPE_STORE
    let row = rope_store_row(min(firstUnit + j / 2u, params.rows / 2u - 1u), j % 2u);
#else
    let row = min(firstRow + j, params.rows - 1u);
#endif
#endif
#ifdef GENERIC
    rowWord[j] = row * (K / EPW);
#else
    rowChunk[j] = row * (K / CHUNK);
#endif
    rowGroup[j] = row * groupsPerRow;
    acc[j] = 0.0;
  }

#ifndef GENERIC
  {
    // Block path. A block holds BLOCK / G groups (G ≤ 128) or lies inside one: with K a multiple
    // of 128 their f16 scales are in one or two words and their zero bytes in one word.
    let gShift = firstTrailingBit(G);
    let blockGroups = clamp(BLOCK >> gShift, 1u, 4u); // groups in a block: 4, 2 or 1
    for (var b = 0u; b < K / BLOCK; b++) {
      let firstGroup = (b * BLOCK) >> gShift;
      // Scales and zero points of the block's groups, per row (group g of the block in [g]).
      var blockScales: array<vec4f, MAX_ROWS>;
      var blockZeros: array<vec4f, MAX_ROWS>;
      for (var j = 0u; j < ROWS_PER_THREAD; j++) {
        let e = rowGroup[j] + firstGroup;
        if (f16Scales) {
          // Groups e.. e + 3 at G = 32 (e a multiple of 4), else 1 or 2 groups in word e / 2.
          let w0 = scales[e / 2u];
          let w1 = select(w0, scales[e / 2u + 1u], blockGroups == 4u);
          let v = vec4f(unpack2x16float(w0), unpack2x16float(w1));
          blockScales[j] = select(v, v.yzwx, e % 2u == 1u);
        } else {
          for (var g = 0u; g < blockGroups; g++) { blockScales[j][g] = bitcast<f32>(scales[e + g]); }
        }
        blockZeros[j] = vec4f(DEFAULT_ZERO);
        if (hasZeros) {
          // The block's zero bytes are in word e / 4 (e % 4 + blockGroups ≤ 4).
          let word = zeros[e / 4u];
          let first = e % 4u;
          blockZeros[j] = vec4f(zeroByte(word, first), zeroByte(word, first + 1u), zeroByte(word, first + 2u), zeroByte(word, first + 3u));
        }
      }
      for (var i = 0u; i < CHUNKS_PER_BLOCK; i++) {
        let c = b * CHUNKS_PER_BLOCK + i;
        let xc = xChunk(c, sgLane);
#ifdef RMS_NORM
        squares += xc.squares;
#endif
        let g = (i * CHUNK) >> gShift; // the chunk's group in the block
        for (var j = 0u; j < ROWS_PER_THREAD; j++) {
          let dq = dotChunk(data[rowChunk[j] + c], xc);
          let s = blockScales[j][g];
          let z = blockZeros[j][g];
          acc[j] += s * (dq - z * xc.sum);
        }
      }
    }
  }
#else
  {
    // Per-word path (any G, a multiple of 8; K a multiple of G): a word lies in one group, so
    // its scale and zero point are loaded and applied per word; x by uniform loads.
    let wordsPerRow = K / EPW;
    for (var w = 0u; w < wordsPerRow; w++) {
#ifdef F16
      let rawA = vec4f(unpack2x16float(x[w * (EPW / 2u)]), unpack2x16float(x[w * (EPW / 2u) + 1u]));
#ifdef Q4
      let rawB = vec4f(unpack2x16float(x[w * 4u + 2u]), unpack2x16float(x[w * 4u + 3u]));
#endif
#else
      let rawA = bitcast<vec4f>(vec4u(x[w * EPW], x[w * EPW + 1u], x[w * EPW + 2u], x[w * EPW + 3u]));
#ifdef Q4
      let rawB = bitcast<vec4f>(vec4u(x[w * 8u + 4u], x[w * 8u + 5u], x[w * 8u + 6u], x[w * 8u + 7u]));
#endif
#endif
#ifdef RMS_NORM
      // The squares of x as stored, then x·g for the products and their sum.
      squares += dot(rawA, rawA);
      let a = rawA * norm4(w * EPW);
#ifdef Q4
      squares += dot(rawB, rawB);
      let b = rawB * norm4(w * EPW + 4u);
#else
      let b = a;
#endif
#else
      let a = rawA;
#ifdef Q4
      let b = rawB;
#else
      let b = a;
#endif
#endif
#ifdef Q4
      let t = a + b;
#else
      let t = a;
#endif
      let xs = (t.x + t.y) + (t.z + t.w);
      let g = (w * EPW) / G;
      for (var j = 0u; j < ROWS_PER_THREAD; j++) {
        let d = dotWord(data[rowWord[j] + w], a * PRESCALE, b * PRESCALE, vec4f(0.0));
        let e = rowGroup[j] + g;
        acc[j] += scaleAt(e, f16Scales) * (((d.x + d.y) + (d.z + d.w)) - zeroAt(e, hasZeros) * xs);
      }
    }
  }
#endif

#ifdef RMS_NORM
#ifdef SUBGROUPS
#ifndef GENERIC
  // The block path summed each lane's share of x's squares (first 8 lanes of the subgroup).
  squares = subgroupAdd(select(0.0, squares, sgLane < 8u));
#endif
#endif
  // The normed row's sums: each sum times r, before the bias or the GLU (glu(r·gate, r·up)).
  let rms = rmsScale(squares);
  for (var j = 0u; j < ROWS_PER_THREAD; j++) { acc[j] *= rms; }
#endif

#ifdef GLU
  for (var j = 0u; j < pairs; j++) {
    let i = firstPair + j;
    if (i >= params.rows) { break; }
    // glu rounds each sum to T first: the values the unfused qgemv would have stored.
    y[i] = glu(acc[j], acc[pairs + j]);
  }
#else
#ifdef ROPE_STORE
  for (var p = 0u; p < units; p++) {
    let g = firstUnit + p;
    if (g >= params.rows / 2u) { break; }
    rope_store_unit(0u, g, rope_store_biased(g, vec2f(acc[2u * p], acc[2u * p + 1u]))); // rounded to T there, as the plain variant's store
  }
#else
  for (var j = 0u; j < ROWS_PER_THREAD; j++) {
    let r = firstRow + j;
    if (r >= params.rows) { break; }
    let at = params.rowOffset + r;
#ifdef BIAS
    let v = Y(acc[j] + f32(bias[at]));
#else
    let v = Y(acc[j]);
#endif
#ifdef RESIDUAL
    // Rounded to T first, then added in T: bit for bit the unfused qgemv + add.wgsl.
    y[at] = y[at] + v;
#else
    y[at] = v;
#endif
  }
#endif
#endif
}

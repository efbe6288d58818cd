// Repack one pre-quantized Linear, as a checkpoint packs it, into sluice's quantized layout
// (src/gpu/quantized-tensor.ts) on the GPU: the packed integers moved (and, for act-order,
// gathered) into rows along K, scales and zero points transposed into (row, group) order.
// Launcher, the source layouts and their reference code: src/ops/repack.ts and
// repack-layout.ts; its TypeScript reference (repack-reference.ts) is bit-exact with this.
//
// Variants: one source layout flag, GPTQ (gptq, gptq_v2), AWQ (awq-gemm) or CT (compressed-
// tensors pack-quantized and int-quantized); Q8 for 8 bits (else 4); ZEROS when the source
// has zero points; PERM to gather columns through perm (act-order).
// In every layout a source word holds EPW values of the same width as sluice's, so without
// PERM a GPTQ or CT destination word is one source word (GPTQ: transposed); AWQ's 8 source
// words of 8 inputs × 8 interleaved outputs are an 8 × 8 nibble transpose into 8 rows.
// Values: 4-bit fields are sluice's unsigned q4 as they are (CT stores q + 8: zero 8 is
// sluice's default). 8-bit unsigned fields (GPTQ, CT pack-quantized: q + 128) become sluice's
// signed q8 by q − 128, i.e. XOR 0x80 per byte (params.dataXor); int-quantized bytes are
// already signed. A zero point becomes unsigned u in [0, 2^b): q4 stores u, q8 u − 128; one
// that does not fit (a GPTQ v1 field of 2^b − 1, an out-of-range CT int8 zero) is written as
// 0 and its position recorded in status for Repack.check to throw.
// Scales: integer bit conversion only (no float ops that may flush subnormals): f16 copied,
// bf16/f32 rounded to f16 half-to-even for f16 storage; all exact into f32 storage.
//
// Threads t < dataThreads write data (a run of WORDS_PER_THREAD words of one row; AWQ: one
// word of 8 rows, see dataThread); the next ones four groups each (flat e = row·groups + g),
// so each owns whole scale-pair and zero-byte words. One dispatch covers one destination
// chunk entirely.
#ifdef Q8
const EPW = 4u;
const BITS = 8u;
#else
const EPW = 8u;
const BITS = 4u;
#endif
const MASK = (1u << BITS) - 1u;

struct Params {
  rows: u32,        // destination rows (this chunk)
  k: u32,           // K, input columns
  n: u32,           // N, outputs of the source tensor
  firstOutput: u32, // source output of the chunk's row 0
  firstRow: u32,    // destination row of the chunk's row 0 (status positions)
  groups: u32,      // K / G
  scaleDtype: u32,  // source scales: 0 f16, 1 bf16, 2 f32
  scalesF16: u32,   // destination scales: 1 f16 pairs, 0 f32
  dataXor: u32,     // XOR of every data word: 0x80808080 for unsigned 8-bit sources
  zeroOffset: u32,  // added to a stored zero: GPTQ v1 1, CT int8 2^(b−1), else 0
  zeroInt8: u32,    // CT zero points: 1 int8 (N, groups), 0 packed int32
  statusSlot: u32,  // this repack's word in status
  dataThreads: u32, // rows · ceil(K / EPW / WORDS_PER_THREAD); AWQ: K / 8 · blocks of 8 outputs
  threads: u32,     // dataThreads + quads of groups
}

override WORKGROUP_SIZE: u32;
override WORDS_PER_THREAD: u32;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> qweight: array<u32>;          // the packed source, see source()
@group(0) @binding(2) var<storage, read> scales: array<u32>;           // f16/bf16 pairs or f32
@group(0) @binding(5) var<storage, read_write> data: array<u32>;       // (rows, K / EPW)
@group(0) @binding(6) var<storage, read_write> dstScales: array<u32>;  // (rows, groups) f16 pairs or f32
#ifdef ZEROS
@group(0) @binding(3) var<storage, read> zeros: array<u32>;            // the source's zero points
@group(0) @binding(7) var<storage, read_write> dstZeros: array<u32>;   // (rows, groups) bytes
@group(0) @binding(8) var<storage, read_write> status: array<atomic<u32>>; // per repack: max of ~(first bad e)
#endif
#ifdef PERM
@group(0) @binding(4) var<storage, read> perm: array<u32>;             // (K,) source column of each column
#endif

// AWQ_REVERSE_ORDER[j] = [0, 4, 1, 5, 2, 6, 3, 7][j]: the nibble of output 8·col + j.
fn awqNibble(j: u32) -> u32 {
  return (j >> 1u) + 4u * (j & 1u);
}

#ifdef PERM
// The stored (unsigned) field of output o, input column c (GPTQ or CT: AWQ has no act-order).
fn field(o: u32, c: u32) -> u32 {
#ifdef GPTQ
  return (qweight[(c / EPW) * params.n + o] >> (BITS * (c % EPW))) & MASK;
#else
  return (qweight[o * (params.k / EPW) + c / EPW] >> (BITS * (c % EPW))) & MASK;
#endif
}
#endif

#ifndef AWQ
// Word w of output o's row: gathered through perm, or one source word as it is.
fn sourceWord(o: u32, w: u32) -> u32 {
#ifdef PERM
  var word = 0u;
  for (var j = 0u; j < EPW; j++) { word |= field(o, perm[w * EPW + j]) << (BITS * j); }
  return word;
#else
#ifdef GPTQ
  return qweight[w * params.n + o];
#else
  return qweight[o * (params.k / EPW) + w];
#endif
#endif
}
#endif

// f16 bits → f32 bits, exact (subnormals included).
fn f16ToF32Bits(h: u32) -> u32 {
  let sign = (h & 0x8000u) << 16u;
  let exp = (h >> 10u) & 0x1fu;
  let mant = h & 0x3ffu;
  if (exp == 0x1fu) { return sign | 0x7f800000u | select(0u, 0x400000u | (mant << 13u), mant != 0u); }
  if (exp == 0u) {
    if (mant == 0u) { return sign; }
    let shifts = countLeadingZeros(mant) - 21u; // brings the leading 1 to bit 10
    return sign | ((113u - shifts) << 23u) | (((mant << shifts) & 0x3ffu) << 13u);
  }
  return sign | ((exp + 112u) << 23u) | (mant << 13u);
}

// f32 bits → f16 bits, round half to even, overflow to ±inf, NaN → sign | 0x7e00 (torch's .half()).
fn f32ToF16Bits(x: u32) -> u32 {
  let sign = (x >> 16u) & 0x8000u;
  let exp = (x >> 23u) & 0xffu;
  let mant = x & 0x7fffffu;
  if (exp == 0xffu) { return sign | select(0x7c00u, 0x7e00u, mant != 0u); }
  let e = i32(exp) - 112;
  if (e >= 0x1f) { return sign | 0x7c00u; }
  if (e <= 0) {
    if (e < -10) { return sign; }
    let m = mant | 0x800000u;
    let shift = u32(14 - e);
    let rest = m & ((1u << shift) - 1u);
    let half = 1u << (shift - 1u);
    var h = m >> shift;
    if (rest > half || (rest == half && (h & 1u) == 1u)) { h += 1u; }
    return sign | h;
  }
  let rest = mant & 0x1fffu;
  var h = (u32(e) << 10u) | (mant >> 13u);
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u) == 1u)) { h += 1u; }
  return sign | h;
}

// The source scale of output o, group g: its index, then its bits as f32 or as f16.
fn scaleIndex(o: u32, g: u32) -> u32 {
#ifdef CT
  return o * params.groups + g;
#else
  return g * params.n + o;
#endif
}

fn halfAt(i: u32) -> u32 {
  return (scales[i / 2u] >> (16u * (i % 2u))) & 0xffffu;
}

fn scaleF32Bits(i: u32) -> u32 {
  if (params.scaleDtype == 0u) { return f16ToF32Bits(halfAt(i)); }
  if (params.scaleDtype == 1u) { return halfAt(i) << 16u; }
  return scales[i];
}

fn scaleF16Bits(i: u32) -> u32 {
  if (params.scaleDtype == 0u) { return halfAt(i); }
  return f32ToF16Bits(scaleF32Bits(i));
}

#ifdef ZEROS
// The zero point of output o, group g as an unsigned u (valid in [0, 2^b)), i32 so that an
// out-of-range CT int8 zero stays negative.
fn sourceZero(o: u32, g: u32) -> i32 {
#ifdef GPTQ
  let f = (zeros[g * (params.n / EPW) + o / EPW] >> (BITS * (o % EPW))) & MASK;
  return i32(f + params.zeroOffset);
#endif
#ifdef AWQ
  return i32((zeros[g * (params.n / 8u) + o / 8u] >> (4u * awqNibble(o % 8u))) & 0xfu);
#endif
#ifdef CT
  if (params.zeroInt8 == 1u) {
    let i = o * params.groups + g;
    let byte = (zeros[i / 4u] >> (8u * (i % 4u))) & 0xffu;
    return (bitcast<i32>(byte << 24u) >> 24u) + i32(params.zeroOffset);
  }
  return i32((zeros[(o / EPW) * params.groups + g] >> (BITS * (o % EPW))) & MASK);
#endif
}

// sluice's zero byte (q4: u; q8: u − 128 as a byte), or 0 with the position recorded.
fn zeroByte(o: u32, g: u32, e: u32) -> u32 {
  let u = sourceZero(o, g);
  if (u < 0 || u > i32(MASK)) {
    let r = e / params.groups;
    atomicMax(&status[params.statusSlot], 0xffffffffu - ((params.firstRow + r) * params.groups + (e - r * params.groups)));
    return 0u;
  }
#ifdef Q8
  return u32(u) ^ 0x80u;
#else
  return u32(u);
#endif
}
#endif

fn groupQuad(t: u32) {
  let count = params.rows * params.groups;
#ifdef ZEROS
  var zeroWord = 0u;
#endif
  for (var p = 0u; p < 4u; p++) {
    let e = 4u * t + p;
    if (e >= count) { break; }
    let r = e / params.groups;
    let g = e - r * params.groups;
    let o = params.firstOutput + r;
    let i = scaleIndex(o, g);
    if (params.scalesF16 == 1u) {
      // Pairs: e even starts word e / 2, e odd fills its high half.
      let bits = scaleF16Bits(i);
      if (p % 2u == 0u) { dstScales[e / 2u] = bits; } else { dstScales[e / 2u] = dstScales[e / 2u] | (bits << 16u); }
    } else {
      dstScales[e] = scaleF32Bits(i);
    }
#ifdef ZEROS
    zeroWord |= zeroByte(o, g, e) << (8u * p);
#endif
  }
#ifdef ZEROS
  dstZeros[t] = zeroWord;
#endif
}

// Data threads. lavapipe runs invocations as the SIMD lanes of a CPU: one word per invocation
// was bound by per-invocation overhead, and lanes that read far-apart words by cache misses.
// So each thread writes several words, and neighbouring threads read neighbouring source words.
fn dataThread(t: u32) {
  let wordsPerRow = params.k / EPW;
#ifdef AWQ
  // Thread (word w, block b of 8 outputs), b fastest: 8 source words (inputs 8w..8w+7 of
  // the block) hold word w of the block's 8 rows, an 8 × 8 nibble transpose.
  let firstBlock = params.firstOutput / 8u;
  let blocks = (params.firstOutput + params.rows + 7u) / 8u - firstBlock;
  let w = t / blocks;
  let b = firstBlock + (t - w * blocks);
  var src: array<u32, 8>;
  for (var i = 0u; i < 8u; i++) { src[i] = qweight[(w * 8u + i) * (params.n / 8u) + b]; }
  for (var j = 0u; j < 8u; j++) {
    let o = b * 8u + j;
    if (o < params.firstOutput || o >= params.firstOutput + params.rows) { continue; }
    let shift = 4u * awqNibble(j);
    var word = 0u;
    for (var i = 0u; i < 8u; i++) { word |= ((src[i] >> shift) & 0xfu) << (4u * i); }
    data[(o - params.firstOutput) * wordsPerRow + w] = word;
  }
#else
  // A run of WORDS_PER_THREAD words of one row. GPTQ: rows fastest (a qweight row holds one
  // word of every output); CT: runs fastest (a weight_packed row is one output's row).
  let runs = (wordsPerRow + WORDS_PER_THREAD - 1u) / WORDS_PER_THREAD;
#ifdef GPTQ
  let run = t / params.rows;
  let r = t - run * params.rows;
#else
  let r = t / runs;
  let run = t - r * runs;
#endif
  let w0 = run * WORDS_PER_THREAD;
  let w1 = min(w0 + WORDS_PER_THREAD, wordsPerRow);
  for (var w = w0; w < w1; w++) {
    data[r * wordsPerRow + w] = sourceWord(params.firstOutput + r, w) ^ params.dataXor;
  }
#endif
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) groups: vec3u) {
  let t = gid.x + gid.y * groups.x * WORKGROUP_SIZE;
  if (t < params.dataThreads) {
    dataThread(t);
  } else if (t < params.threads) {
    groupQuad(t - params.dataThreads);
  }
}
